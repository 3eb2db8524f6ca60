"""`botify analyze` never dies on a bad line: random bytes, invalid UTF-8, NUL bytes, a huge
line, a huge or short unterminated tail are each counted once, the good lines around them give
the same metrics as a clean log, and `--format json` is strict JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from botify.analysis import user_metrics
from tests.test_analysis import write_logs

BAD_LINES = {
    "random bytes": bytes(np.random.default_rng(3).integers(0, 256, 400, dtype=np.uint8)).replace(b"\n", b"\r"),
    "invalid UTF-8": b'{"message": "next", "user": 1, "x": "\xff\xfe\xfd"}',
    "NUL bytes": b'{"message": "next",\x00\x00 "user": 1}',
    "a 3 MB line": b'{"message": "next", "pad": "' + b"a" * (3 << 20) + b'"}',
}
TAILS = {
    "a 30 MB unterminated tail": b'{"message": "next", "pad": "' + b"b" * (30 << 20),
    "a crash's cut line": b'{"message": "next", "timestamp": 1, "user": 1, "ti',
}


def _strict(text: str) -> dict:
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("tail", list(TAILS))
def test_every_bad_line_is_counted_and_the_good_ones_still_count(tmp_path: Path, tail: str) -> None:
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    events = write_logs(clean, users=150)
    write_logs(dirty, users=150)
    files = sorted(dirty.glob("*.jsonl"))
    middle = files[0].read_bytes().splitlines(keepends=True)
    half = len(middle) // 2
    files[0].write_bytes(b"".join(middle[:half]) + b"\n".join(BAD_LINES.values()) + b"\n" + b"".join(middle[half:]))
    with files[-1].open("ab") as handle:
        handle.write(TAILS[tail])
    expected, clean_summary = user_metrics([clean], "EXP")
    found, summary = user_metrics([dirty], "EXP")
    assert summary.malformed == len(BAD_LINES) + 1
    assert summary.lines == len(events) + len(BAD_LINES) + 1 == clean_summary.lines + len(BAD_LINES) + 1
    assert summary.incomplete_fields == clean_summary.incomplete_fields
    for name in expected:  # the same values; DuckDB's parallel sums may differ in the last bit
        if expected[name].dtype.kind == "f":
            np.testing.assert_allclose(found[name], expected[name], rtol=1e-12)
        else:
            np.testing.assert_array_equal(found[name], expected[name])


def test_garbage_files_and_empty_files_are_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "log"
    events = write_logs(log, users=50)
    (log / "events-9-0001.jsonl").write_bytes(b"")
    (log / "events-9-0002.jsonl").write_bytes(bytes(range(256)) * 40)
    users, summary = user_metrics([log], "EXP")
    assert summary.lines == len(events) + 41  # 40 bytes b"\n" end lines, and an unterminated tail
    assert summary.malformed == summary.lines - len(events)
    assert len(users["user"]) > 0


def test_the_cli_survives_and_its_json_is_strict(tmp_path: Path) -> None:
    log = tmp_path / "log"
    write_logs(log, users=120)
    with next(iter(sorted(log.glob("*.jsonl")))).open("ab") as handle:
        handle.write(b"\n".join(BAD_LINES.values()) + b"\n" + TAILS["a 30 MB unterminated tail"])
    command = [sys.executable, "-m", "botify", "analyze", str(log), "--experiment", "EXP"]
    environment = {**os.environ, "COLUMNS": "200"}
    table = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
    assert table.returncode == 0, table.stderr
    assert "skipped 5 malformed lines" in table.stdout
    answer = subprocess.run(command + ["--format", "json"], capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    document = _strict(answer.stdout)
    assert document["malformed_lines"] == 5
    # A control listening 0 s has no relative effect (NaN): written as null, and the verdict still a win.
    flat = tmp_path / "flat"
    flat.mkdir()
    lines = []
    for user in range(40):
        treatment = "C" if user % 2 else "T1"
        for message in ("next", "last"):
            lines.append(json.dumps({"message": message, "timestamp": 1_700_000_000_000 + user, "user": user,
                                     "track": 1, "time": 0.0 if treatment == "C" else 0.5 + user / 100,
                                     "latency": 0.001, "experiments": {"F": treatment}}))
    (flat / "events-1-0001.jsonl").write_text("\n".join(lines) + "\n")
    answer = subprocess.run([sys.executable, "-m", "botify", "analyze", str(flat), "--experiment", "F", "--format",
                             "json"], capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert "NaN" not in answer.stdout and "Infinity" not in answer.stdout
    time_row = next(row for row in _strict(answer.stdout)["comparisons"] if row["metric"] == "time")
    assert time_row["effect"] is None and time_row["verdict"] == "win" and time_row["p_value"] < 1e-6
