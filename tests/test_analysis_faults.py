"""`botify analyze` (and the training dataset, which reads logs the same way) never dies on a bad
line: random bytes, invalid UTF-8, NUL bytes, a 3 MB and a 30 MB line, a line with a control byte
after a valid event, a huge or short unterminated tail, empty and garbage files. Each bad line is
counted exactly once, the good lines around it give the same metrics as a clean log, the terminal
says in one line what was skipped and why, and `--format json` is strict JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from botify.analysis import user_metrics
from botify.cli.main import cli
from botify.events.engine import METRICS
from botify.events.schema import MAX_LINE_BYTES, event
from tests.test_analysis import write_logs


def _event(user: int, treatment: str, **fields) -> bytes:
    """A complete `last` event that would change `user`'s metrics a lot if the analysis took it."""
    record = event("last", 1_700_000_000_000, user, 5, 900.0, 0.5, {"EXP": treatment}, "1-1", "x")
    return json.dumps({**record, **fields}).encode()


_RANDOM = bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8)).replace(b"\n", b"\r")


def malformed_lines(user: int, treatment: str) -> dict[str, bytes]:
    """Lines that are not JSON events (each without its newline), around a real user's event."""
    event = _event(user, treatment)
    return {
        "random bytes": _RANDOM,  # CRs, NULs, chr(1) and invalid UTF-8 among them
        "invalid UTF-8": event[:-1] + b', "x": "\xff\xfe\xc3"}',
        "NUL bytes": event[:20] + b"\x00\x00" + event[20:],
        "a trailing NUL": event + b"\x00",
        "an event then chr(1) and junk": event + b"\x01junk",
        "an event cut in the middle": event[: len(event) // 2],
        "an empty line": b"",
        "a 3 MB line": event[:-1] + b', "pad": "' + b"a" * (3 << 20) + b'"}',
        "a 30 MB line": event[:-1] + b', "pad": "' + b"b" * (30 << 20) + b'"}',
    }


def invalid_events(user: int, treatment: str) -> dict[str, bytes]:
    """JSON lines the analysis cannot use: counted as events with missing or invalid fields."""
    return {
        "NaN time": _event(user, treatment).replace(b'"time": 900.0', b'"time": NaN'),
        "Infinity latency": _event(user, treatment).replace(b'"latency": 0.5', b'"latency": Infinity'),
        "time 1e999": _event(user, treatment).replace(b'"time": 900.0', b'"time": 1e999'),
        "no message": _event(user, treatment).replace(b'"message": "last", ', b""),
        "no user": _event(user, treatment).replace(b'"user": ', b'"someone": '),
        "not an object": b"[1, 2, 3]",
    }


TAILS = {
    "a 30 MB unterminated tail": b'{"message": "next", "pad": "' + b"c" * (30 << 20),
    "a crash's cut line": b'{"message": "next", "timestamp": 1, "user": 1, "ti',
    "an unterminated invalid UTF-8 tail": b'{"message": "next", "x": "\xff',
}


def _strict(text: str) -> dict:
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _assert_same_metrics(found: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(found["user"], expected["user"])
    np.testing.assert_array_equal(found["treatment"], expected["treatment"])
    np.testing.assert_array_equal(found["sessions"], expected["sessions"])
    for metric in METRICS:  # exact sums: the same bits whatever order DuckDB's threads add in
        np.testing.assert_array_equal(found[metric], expected[metric], err_msg=metric)


def _dirty_logs(tmp_path: Path, tail: str, users: int = 150, leave_out: tuple[str, ...] = ()
                ) -> tuple[Path, Path, int, int]:
    """The same logs twice, one with every bad line (but those named in `leave_out`) in the middle
    of the first two files and `tail` at the end of the first and the last; also how many
    malformed lines and invalid events it got."""
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    events = write_logs(clean, users=users)
    write_logs(dirty, users=users)
    user = events[0]["user"]
    treatment = events[0]["experiments"]["EXP"]
    invalid = {name: line for name, line in invalid_events(user, treatment).items() if name not in leave_out}
    bad = [*malformed_lines(user, treatment).values(), *invalid.values()]
    files = sorted(dirty.glob("*.jsonl"))
    for index, file in enumerate(files):
        lines = file.read_bytes().splitlines(keepends=True)
        middle = len(lines) // 2
        inserted = b"\n".join(bad) + b"\n" if index < 2 else b""
        ending = TAILS[tail] if index in (0, len(files) - 1) else b""
        file.write_bytes(b"".join(lines[:middle]) + inserted + b"".join(lines[middle:]) + ending)
    malformed = 2 * len(malformed_lines(user, treatment)) + 2
    return clean, dirty, malformed, 2 * len(invalid)


def test_the_bad_lines_are_what_they_claim() -> None:
    """The fixtures themselves: the random line holds the bytes that trip readers, the events
    around the bad bytes are complete (so that taking one would change the metrics)."""
    assert all(byte in _RANDOM for byte in (b"\r", b"\x00", b"\x01", b"\xff")) and b"\n" not in _RANDOM
    lines = malformed_lines(1, "C")
    assert json.loads(_event(1, "C"))["time"] == 900.0
    for name, line in lines.items():
        assert b"\n" not in line, name
        if name in ("a 3 MB line", "a 30 MB line"):  # events, but over the reader's line size
            assert _strict(line.decode("utf-8"))["time"] == 900.0 and len(line) > MAX_LINE_BYTES
        else:
            with pytest.raises(ValueError):
                _strict(line.decode("utf-8"))
    assert len(lines["a 30 MB line"]) > 30 << 20 and len(lines["a 3 MB line"]) > 3 << 20
    for name, line in invalid_events(1, "C").items():
        assert isinstance(json.loads(line), (dict, list)), name


@pytest.mark.parametrize("tail", list(TAILS))
def test_every_bad_line_is_counted_and_the_good_ones_still_count(tmp_path: Path, tail: str) -> None:
    clean, dirty, malformed, invalid = _dirty_logs(tmp_path, tail)
    expected, clean_summary = user_metrics([clean], "EXP")
    found, summary = user_metrics([dirty], "EXP")
    assert clean_summary.malformed == 0
    assert summary.malformed == malformed
    assert summary.incomplete_fields == clean_summary.incomplete_fields + invalid
    assert summary.lines == clean_summary.lines + malformed + invalid
    _assert_same_metrics(found, expected)
    # Without an experiment (the pre-period of CUPED) every user counts: the same holds.
    expected, _ = user_metrics([clean], None)
    found, summary = user_metrics([dirty], None)
    assert summary.malformed == malformed
    _assert_same_metrics(found, expected)


def test_the_training_dataset_skips_the_same_lines(tmp_path: Path) -> None:
    from botify.train.dataset import read_interactions

    # An event with an infinite latency is still a whole interaction (training needs no latency).
    clean, dirty, _, _ = _dirty_logs(tmp_path, "a crash's cut line", users=60, leave_out=("Infinity latency",))
    expected, found = read_interactions([clean]), read_interactions([dirty])
    for name in ("user", "track", "session", "position", "timestamp", "session_start"):
        np.testing.assert_array_equal(getattr(found, name), getattr(expected, name))
    np.testing.assert_array_equal(found.time, expected.time)


def _crlf(file: Path) -> None:
    file.write_bytes(file.read_bytes().replace(b"\n", b"\r\n"))


def _cut_last_newline(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:-1])


def _gzip(file: Path) -> None:
    import gzip

    file.with_name(file.name + ".gz").write_bytes(gzip.compress(file.read_bytes()))
    file.unlink()


def _empty_line(file: Path) -> None:
    with file.open("ab") as handle:
        handle.write(b"\n")


def _text_with_carriage_returns(file: Path) -> None:
    with file.open("ab") as handle:  # the reader splits it in three, yet it is one line
        handle.write(b"not\rJSON\rat all\n")


@pytest.mark.parametrize("change, malformed", [(None, 0), (_crlf, 0), (_cut_last_newline, 0), (_gzip, 0),
                                               (_empty_line, 1), (_text_with_carriage_returns, 1)])
def test_lines_are_counted_whether_or_not_the_reader_took_every_byte(tmp_path: Path, change, malformed: int) -> None:
    """Clean logs are counted from the reader's rows; anything it may have skipped or split
    differently (CRLF, a last event without its newline, gzip, an empty line, lone CRs) from the
    bytes."""
    clean, log = tmp_path / "clean", tmp_path / "log"
    events = write_logs(clean, users=80)
    write_logs(log, users=80)
    if change is not None:
        change(min(log.glob("*.jsonl")))
    expected, _ = user_metrics([clean], "EXP")
    found, summary = user_metrics([log], "EXP")
    assert summary.lines == len(events) + malformed and summary.malformed == malformed
    _assert_same_metrics(found, expected)


def test_garbage_files_and_empty_files_are_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "log"
    events = write_logs(log, users=50)
    (log / "events-9-0001.jsonl").write_bytes(b"")
    (log / "events-9-0002.jsonl").write_bytes(bytes(range(256)) * 40)  # 40 b"\n", and an unterminated tail
    (log / "events-9-0003.jsonl").write_bytes(b"\x00" * 5000)
    (log / "events-9-0004.jsonl").write_bytes(_RANDOM + b"\n" + _RANDOM)
    users, summary = user_metrics([log], "EXP")
    assert summary.files == 7
    assert summary.lines == len(events) + 41 + 1 + 2
    assert summary.malformed == 41 + 1 + 2
    assert len(users["user"]) > 0


def _note_line(output: str) -> str:
    lines = [line for line in output.splitlines() if "skipped" in line]
    assert len(lines) == 1, output
    return lines[0]


def test_the_cli_survives_says_what_it_skipped_in_one_line_and_writes_strict_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # the width rich gives a pipe: the note is longer, yet one line
    clean, dirty, malformed, invalid = _dirty_logs(tmp_path, "a 30 MB unterminated tail")
    runner = CliRunner()
    base = runner.invoke(cli, ["analyze", str(clean), "--experiment", "EXP", "--format", "json"])
    assert base.exit_code == 0, base.output
    incomplete = _strict(base.stdout)["events_missing_fields"]

    table = runner.invoke(cli, ["analyze", str(dirty), "--experiment", "EXP"])
    assert table.exit_code == 0, table.output
    assert len(_note_line(table.stdout)) > 80
    assert _note_line(table.stdout) == (
        f"skipped {malformed} malformed lines (not JSON, invalid UTF-8, over 2 MiB or cut off) and "
        f"{incomplete + invalid} events with missing or invalid fields")
    assert "95% CI" in table.stdout and "p (Holm)" in table.stdout  # the comparison table follows

    answer = runner.invoke(cli, ["analyze", str(dirty), "--experiment", "EXP", "--format", "json"])
    assert answer.exit_code == 0, answer.output
    document, reference = _strict(answer.stdout), _strict(base.stdout)
    assert document["malformed_lines"] == malformed
    assert document["events_missing_fields"] == incomplete + invalid
    assert document["lines"] == reference["lines"] + malformed + invalid
    assert document["users"] == reference["users"]
    for row, clean_row in zip(document["comparisons"], reference["comparisons"], strict=True):
        assert row.keys() == clean_row.keys()
        for key, value in clean_row.items():
            assert row[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key
    assert _note_line(answer.stderr).startswith(f"skipped {malformed} malformed lines")

    as_csv = runner.invoke(cli, ["analyze", str(dirty), "--experiment", "EXP", "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout.startswith("metric,control,treatment") and "skipped" not in as_csv.stdout


def test_json_output_writes_null_for_what_is_not_a_number(tmp_path: Path) -> None:
    """A control listening 0 s has no relative effect (NaN): written as null, and still a win."""
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
    answer = CliRunner().invoke(cli, ["analyze", str(flat), "--experiment", "F", "--format", "json"])
    assert answer.exit_code == 0, answer.output
    assert "NaN" not in answer.stdout and "Infinity" not in answer.stdout
    time_row = next(row for row in _strict(answer.stdout)["comparisons"] if row["metric"] == "time")
    assert time_row["effect"] is None and time_row["verdict"] == "win" and time_row["p_value"] < 1e-6


def test_logs_of_only_garbage_give_one_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    (log / "events-0-0001.jsonl").write_bytes(_RANDOM + b"\n" + bytes(range(256)) * 3)
    (log / "events-1-0001.jsonl").write_bytes(b"")
    answer = CliRunner().invoke(cli, ["analyze", str(log), "--experiment", "EXP"])
    assert answer.exit_code == 1
    message = answer.stderr.strip()
    assert "\n" not in message and "Traceback" not in answer.output
    assert message == ("error: no finished sessions with experiment 'EXP' in 2 file(s) (5 lines; skipped 5 "
                       "malformed lines (not JSON, invalid UTF-8, over 2 MiB or cut off) and 0 events with "
                       "missing or invalid fields); the logs name no experiments")
    empty = CliRunner().invoke(cli, ["analyze", str(log / "events-1-0001.jsonl"), "--experiment", "EXP"])
    assert empty.exit_code == 1
    assert empty.stderr.strip() == "error: no finished sessions with experiment 'EXP' in 1 file(s); the logs name no experiments"
