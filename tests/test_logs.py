"""Logs beyond one file: `botify logs compact` to Parquet gives the same analysis and training
data as the JSON lines (malformed lines counted and kept aside), the DuckDB engine runs under a
small memory limit, and `botify logs push` copies logs idempotently to a directory and to a
real S3-compatible server (moto's, started on a free port)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from botify.analysis import user_metrics
from botify.cli.main import cli
from botify.events.engine import EngineSettings
from botify.service.process import free_port
from botify.train.dataset import read_interactions
from tests.servers import wait_for_port
from tests.test_analysis_faults import _assert_same_metrics, _dirty_logs


def _same_interactions(found, expected) -> None:
    for name in ("user", "track", "session", "position", "timestamp", "session_start", "time"):
        np.testing.assert_array_equal(getattr(found, name), getattr(expected, name))


def test_compacted_logs_give_the_same_analysis_and_interactions(tmp_path: Path) -> None:
    _, dirty, malformed, invalid = _dirty_logs(tmp_path, "a crash's cut line", users=120)
    out = tmp_path / "compacted"
    answer = CliRunner().invoke(cli, ["logs", "compact", str(dirty), "--out", str(out)])
    assert answer.exit_code == 0, answer.output
    assert answer.stdout.startswith("3 file(s), ") and f"({malformed} malformed)" in answer.stdout
    assert sorted(path.name for path in out.iterdir()) == ["_malformed", "_sources.jsonl", "day=2023-11-14",
                                                            "day=unknown"]  # "not an object" has no day
    sources = [json.loads(line) for line in (out / "_sources.jsonl").read_text().splitlines()]
    assert sum(record["malformed"] for record in sources) == malformed
    kept = [json.loads(line) for file in (out / "_malformed").iterdir() for line in file.read_text().splitlines()]
    assert kept and all(set(row) == {"source", "line", "text"} for row in kept)
    cut = [row for row in kept if row["text"].startswith('{"message": "last", "timestamp"')
           and row["text"].endswith('"latenc')]  # "an event cut in the middle", in both files it went into
    assert len(cut) == 2 and {Path(row["source"]).name for row in cut} == {"events-0-0001.jsonl", "events-1-0001.jsonl"}

    for experiment in ("EXP", None):
        expected, expected_summary = user_metrics([dirty], experiment, timeline=True)
        found, summary = user_metrics([out], experiment, timeline=True)
        _assert_same_metrics(found, expected)
        assert summary.files == expected_summary.files == 3
        assert (summary.lines, summary.malformed, summary.incomplete_fields) == (
            expected_summary.lines, expected_summary.malformed, expected_summary.incomplete_fields)
        for name, column in expected_summary.timeline.items():
            np.testing.assert_array_equal(summary.timeline[name], column)
    _same_interactions(read_interactions([out]), read_interactions([dirty]))

    again = CliRunner().invoke(cli, ["logs", "compact", str(dirty), "--out", str(out)])
    assert again.exit_code == 1 and again.stderr.startswith("error: already compacted into") and \
        again.stderr.count("\n") == 1


def test_a_second_compaction_into_the_same_directory_keeps_file_order(tmp_path: Path) -> None:
    """Sources compacted in two runs are ordered by path, as the JSON lines are read."""
    from tests.test_analysis import write_logs

    write_logs(tmp_path / "log", users=150)
    files = sorted((tmp_path / "log").glob("*.jsonl"))
    out = tmp_path / "compacted"
    for batch in ([files[2]], files[:2]):  # the last file first
        assert CliRunner().invoke(cli, ["logs", "compact", *map(str, batch), "--out", str(out)]).exit_code == 0
    expected, _ = user_metrics([tmp_path / "log"], "EXP")
    _assert_same_metrics(user_metrics([out], "EXP")[0], expected)
    _same_interactions(read_interactions([out]), read_interactions([tmp_path / "log"]))


def test_a_small_memory_limit_changes_nothing(tmp_path: Path) -> None:
    from tests.test_analysis import write_logs

    write_logs(tmp_path / "log", users=2000)
    expected, _ = user_metrics([tmp_path / "log"], "EXP")
    spill = tmp_path / "spill"
    found, _ = user_metrics([tmp_path / "log"], "EXP",
                            settings=EngineSettings(memory_limit="24MB", temp_directory=spill, threads=1))
    _assert_same_metrics(found, expected)
    answer = CliRunner().invoke(cli, ["analyze", str(tmp_path / "log"), "--experiment", "EXP", "--memory-limit",
                                      "32MB", "--format", "csv"])
    assert answer.exit_code == 0, answer.output
    bad = CliRunner().invoke(cli, ["analyze", str(tmp_path / "log"), "--experiment", "EXP", "--memory-limit", "lots"])
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1 and "is not a size" in bad.stderr


def test_mixing_json_lines_and_compacted_directories_is_one_clear_error(tmp_path: Path) -> None:
    from tests.test_analysis import write_logs

    write_logs(tmp_path / "log", users=20)
    assert CliRunner().invoke(cli, ["logs", "compact", str(tmp_path / "log"), "--out",
                                    str(tmp_path / "pq")]).exit_code == 0
    answer = CliRunner().invoke(cli, ["analyze", str(tmp_path / "log"), str(tmp_path / "pq"), "--experiment", "EXP"])
    assert answer.exit_code == 1 and answer.stderr.startswith("error: mix of JSON-lines logs and compacted")


def _push(paths: list[Path], uri: str) -> str:
    answer = CliRunner().invoke(cli, ["logs", "push", *map(str, paths), "--to", uri])
    assert answer.exit_code == 0, answer.output
    return answer.stdout


def test_push_to_a_directory_copies_once_and_again_only_what_changed(tmp_path: Path) -> None:
    from tests.test_analysis import write_logs

    write_logs(tmp_path / "log", users=60)
    CliRunner().invoke(cli, ["logs", "compact", str(tmp_path / "log"), "--out", str(tmp_path / "compacted")])
    remote = tmp_path / "remote"
    first = _push([tmp_path / "log", tmp_path / "compacted"], f"file://{remote}")
    assert first.startswith("7 file(s) copied") and "0 already there" in first  # 3 logs, 3 Parquet, _sources
    assert _push([tmp_path / "log", tmp_path / "compacted"], str(remote)).startswith("0 file(s) copied")
    with open(tmp_path / "log" / "events-1-0001.jsonl", "a") as handle:  # the log grew since
        handle.write('{"message": "next"}\n')
    assert _push([tmp_path / "log"], str(remote)).startswith("1 file(s) copied (")
    assert not list(remote.rglob(".*.part"))
    expected, _ = user_metrics([tmp_path / "log"], "EXP")
    _assert_same_metrics(user_metrics([remote / "compacted"], "EXP")[0], expected)
    _assert_same_metrics(user_metrics([remote / "events-*.jsonl"], "EXP")[0], expected)
    bad = CliRunner().invoke(cli, ["logs", "push", str(tmp_path / "log"), "--to", "nosuchscheme://x/y"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: nosuchscheme://x/y") and bad.stderr.count("\n") == 1


@pytest.fixture()
def s3_server(monkeypatch: pytest.MonkeyPatch):
    """moto's S3 server in its own process on a free port, with a bucket `logs`."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (it is in botify[test])")
    from pyarrow import fs

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        for key, value in {"AWS_ACCESS_KEY_ID": "moto", "AWS_SECRET_ACCESS_KEY": "moto",
                           "AWS_EC2_METADATA_DISABLED": "true"}.items():
            monkeypatch.setenv(key, value)
        fs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                        allow_bucket_creation=True).create_dir("logs")
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def test_push_to_an_s3_server_is_idempotent(tmp_path: Path, s3_server: str) -> None:
    from pyarrow import fs

    from tests.test_analysis import write_logs

    write_logs(tmp_path / "log", users=40)
    uri = f"s3://logs/day1?endpoint_override={s3_server}&scheme=http&region=us-east-1"
    assert _push([tmp_path / "log"], uri).startswith("3 file(s) copied")
    assert _push([tmp_path / "log"], uri).startswith("0 file(s) copied (0 bytes), 3 already there")
    bucket = fs.S3FileSystem(endpoint_override=s3_server, scheme="http", region="us-east-1")
    listed = bucket.get_file_info(fs.FileSelector("logs/day1"))
    local = {path.name: path.stat().st_size for path in (tmp_path / "log").iterdir()}
    assert {info.base_name: info.size for info in listed} == local


def test_a_compacted_directory_of_only_garbage_is_read_like_the_garbage(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    (log / "events-0-0001.jsonl").write_bytes(b"not json\n\x00\x01\n{\"cut\": \n")
    assert CliRunner().invoke(cli, ["logs", "compact", str(log), "--out", str(tmp_path / "pq")]).exit_code == 0
    answers = [CliRunner().invoke(cli, ["analyze", str(path), "--experiment", "EXP"]) for path in (log, tmp_path / "pq")]
    assert answers[0].exit_code == answers[1].exit_code == 1
    assert answers[0].stderr == answers[1].stderr and "(3 lines; skipped 3 malformed lines" in answers[1].stderr


def test_compaction_keeps_every_schema_field_and_names_the_experiments(tmp_path: Path) -> None:
    """Every field of the schema (propensity, candidates and agent included) survives
    compaction with its type, and a wrong experiment names the ones present, in either format."""
    import pyarrow.dataset as ds

    from botify.events.duck import DuckDBEngine
    from botify.events.schema import FIELDS, event

    logs = tmp_path / "log"
    logs.mkdir()
    events = [event("next", 1_700_000_000_000 + i, i % 3, 5, 0.5, 0.001, {"EXP": "T1", "OTHER": "C"}, f"0-{i}", "v1",
                    recommendation=7, recommender="random", fallback=False, propensity=0.25, candidates=4,
                    agent="person" if i % 3 == 2 else None) for i in range(6)]
    events += [event("last", 1_700_000_001_000 + user, user, 6, 1.0, 0.001, {"EXP": "T1", "OTHER": "C"},
                     f"0-{6 + user}", "v1") for user in range(3)]
    (logs / "events-0-0001.jsonl").write_text("".join(json.dumps(item) + "\n" for item in events))
    out = tmp_path / "compacted"
    assert CliRunner().invoke(cli, ["logs", "compact", str(logs), "--out", str(out)]).exit_code == 0
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table().sort_by("line")
    assert set(FIELDS) <= set(table.column_names)
    assert table.column("propensity").to_pylist() == [0.25] * 6 + [None] * 3
    assert table.column("candidates").to_pylist() == [4] * 6 + [None] * 3
    assert table.column("agent").to_pylist() == [None, None, "person"] * 2 + [None] * 3
    for source in (logs, out):
        assert DuckDBEngine(EngineSettings()).experiment_names([source]) == ["EXP", "OTHER"]
        wrong = CliRunner().invoke(cli, ["analyze", str(source), "--experiment", "NOPE"])
        assert wrong.exit_code == 1 and "the logs have experiments EXP, OTHER" in wrong.stderr
