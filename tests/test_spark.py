"""The Spark engine against the DuckDB engine on the same logs, on a real local Spark: identical
per-user tables, summaries and interactions, equal effects, CIs and p-values, from JSON lines
(with malformed lines, unfinished sessions and equal timestamps) and from compacted Parquet;
training on Spark (the interactions, and mf as MLlib's ALS) writes the usual artifacts."""

from __future__ import annotations

import dataclasses

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from botify.analysis import analyze, user_metrics
from botify.artifacts import read_manifest
from botify.cli.main import cli
from botify.events.engine import METRICS, open_engine
from tests.test_analysis_faults import _dirty_logs


def _same_tables(found: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert found.keys() == expected.keys()
    for name, column in expected.items():
        if name in METRICS and name != "sessions":  # float sums in each engine's order: equal to rounding
            np.testing.assert_allclose(found[name], column, rtol=1e-12, atol=0)
        else:
            np.testing.assert_array_equal(found[name], column)


def _same_analysis(found, expected) -> None:
    assert found.users == expected.users and found.srm_p_value == pytest.approx(expected.srm_p_value, rel=1e-9)
    for row, reference in zip(found.comparisons, expected.comparisons, strict=True):
        for key, value in reference.as_dict().items():
            assert row.as_dict()[key] == (pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True)
                                          if isinstance(value, float) else value), key


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Logs with every kind of bad line and a cut last line, their compacted directory, and the
    logs of a pre-period (for CUPED)."""
    from tests.test_analysis import write_logs

    root = tmp_path_factory.mktemp("dirty")
    _, logs, _, _ = _dirty_logs(root, "a crash's cut line", users=150)
    assert CliRunner().invoke(cli, ["logs", "compact", str(logs), "--out", str(root / "compacted")]).exit_code == 0
    write_logs(root / "pre", seed=5, users=150)
    return logs, root / "compacted", root / "pre"


@pytest.mark.parametrize("source", ["json", "parquet"])
def test_both_engines_give_the_same_tables_and_verdicts(spark_settings, dirty, source: str) -> None:
    path = dirty[0] if source == "json" else dirty[1]
    expected, expected_summary = user_metrics([path], "EXP", timeline=True)
    found, summary = user_metrics([path], "EXP", timeline=True, settings=spark_settings)
    _same_tables(found, expected)
    streamed, streamed_summary = user_metrics([path], "EXP")  # without the timeline: one streaming query
    _same_tables(streamed, expected)
    assert streamed_summary == dataclasses.replace(expected_summary, timeline=None)
    assert (summary.files, summary.lines, summary.malformed, summary.incomplete_fields) == (
        expected_summary.files, expected_summary.lines, expected_summary.malformed, expected_summary.incomplete_fields)
    assert summary.malformed > 0 and summary.incomplete_fields > 0
    for name, column in expected_summary.timeline.items():
        np.testing.assert_array_equal(summary.timeline[name], column)
    pre = user_metrics([dirty[2]], None)[0]
    spark_pre = user_metrics([dirty[2]], None, settings=spark_settings)[0]
    _same_tables(spark_pre, pre)
    _same_analysis(analyze(found, "EXP", pre=spark_pre), analyze(expected, "EXP", pre=pre))
    local, distributed = open_engine().interactions([path]), open_engine(spark_settings).interactions([path])
    _same_tables(distributed, local)


def test_files_read_in_many_splits_keep_their_order(spark_settings, tmp_path: Path) -> None:
    """Equal timestamps break by file order even when Spark reads each file as many partitions."""
    from tests.test_analysis import write_logs

    write_logs(tmp_path / "log", users=400)
    engine = open_engine(spark_settings)
    engine.spark.conf.set("spark.sql.files.maxPartitionBytes", "16k")
    try:
        assert engine.spark.read.text(str(tmp_path / "log")).rdd.getNumPartitions() > 20
        _same_tables(engine.interactions([tmp_path / "log"]), open_engine().interactions([tmp_path / "log"]))
    finally:
        engine.spark.conf.unset("spark.sql.files.maxPartitionBytes")


def test_both_engines_find_the_same_logs_in_a_directory_tree(spark_settings, tmp_path: Path) -> None:
    """*.jsonl* at the top; deeper, the service's and the course's names (`<container>/data.json`),
    nothing else: one rule (`files.is_log_file`) for both engines."""
    from botify.events.files import expand

    for name in ("events-1-0001.jsonl", "old.jsonl.gz", "notes.txt", "c1/data.json", "c1/data-0002.json",
                 "c2/deep/events-7-0001.jsonl", "c2/other.jsonl", "c2/data.json.bak"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    expected = [str(tmp_path / name) for name in ("c1/data-0002.json", "c1/data.json", "c2/deep/events-7-0001.jsonl",
                                                   "events-1-0001.jsonl", "old.jsonl.gz")]
    assert expand([tmp_path]) == expected
    files, compacted = open_engine(spark_settings).expand([tmp_path])
    assert [name.removeprefix("file:") for name in files] == expected and not compacted


def test_the_cli_on_spark_reads_uris_and_globs_and_answers_the_same(spark_settings, dirty) -> None:
    logs = dirty[0]
    base = CliRunner().invoke(cli, ["analyze", str(logs), "--experiment", "EXP", "--format", "json"])
    answer = CliRunner().invoke(cli, ["analyze", f"file://{logs}/events-*.jsonl", "--experiment", "EXP",
                                      "--format", "json", "--engine", "spark", "--spark-conf",
                                      "spark.sql.shuffle.partitions=4"])
    assert base.exit_code == 0 and answer.exit_code == 0, answer.output
    document, reference = json.loads(answer.stdout), json.loads(base.stdout)
    for key in ("users", "lines", "malformed_lines", "events_missing_fields", "srm"):
        assert document[key] == reference[key], key
    for row, clean_row in zip(document["comparisons"], reference["comparisons"], strict=True):
        for key, value in clean_row.items():
            assert row[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key
    missing = CliRunner().invoke(cli, ["analyze", f"file://{logs}/nothing-*.jsonl", "--experiment", "EXP",
                                       "--engine", "spark"])
    assert missing.exit_code == 1 and missing.stderr == f"error: file://{logs}/nothing-*.jsonl: no log files there\n"


@pytest.mark.parametrize("model", ["toppop", "user-based"])
def test_training_on_spark_writes_the_same_artifacts(spark_settings, logged, tmp_path: Path, model: str) -> None:
    log_dir, _, root = logged
    for engine in ("duckdb", "spark"):
        answer = CliRunner().invoke(cli, ["train", model, "--logs", str(log_dir), "--catalog", str(root / "world"),
                                          "--out", str(tmp_path / engine), "--engine", engine])
        assert answer.exit_code == 0, answer.output
    local, distributed = read_manifest(tmp_path / "duckdb"), read_manifest(tmp_path / "spark")
    assert distributed["data"]["engine"] == "spark" and local["data"]["engine"] == "duckdb"
    assert distributed["data"]["served"] == local["data"]["served"]
    for file in local["artifacts"]:
        assert (tmp_path / "spark" / file).read_bytes() == (tmp_path / "duckdb" / file).read_bytes(), file


def test_mf_on_spark_trains_mllib_als_into_the_usual_artifacts(spark_settings, logged, tmp_path: Path) -> None:
    from botify.artifacts import read_artifact
    from botify.train.dataset import read_interactions

    log_dir, world, root = logged
    answer = CliRunner().invoke(cli, ["train", "mf", "--logs", str(log_dir), "--catalog", str(root / "world"),
                                      "--out", str(tmp_path), "--engine", "spark", "--param", "factors=8",
                                      "--param", "max_rounds=1", "--param", "size=20"])
    assert answer.exit_code == 0, answer.output
    manifest = read_manifest(tmp_path)
    assert manifest["model"] == "mf" and manifest["data"]["engine"] == "spark"
    assert manifest["artifacts"] == {"recommendations.jsonl": "user", "item2item.jsonl": "track"}
    lists = read_artifact(tmp_path / "recommendations.jsonl", world.catalog.size)
    interactions = read_interactions([log_dir])
    listened = interactions.time > 0  # as for local ALS, a track skipped at once is not "already liked"
    played = set(zip(interactions.user[listened].tolist(), interactions.track[listened].tolist()))
    users = np.unique(interactions.user)
    assert len(lists.lists) == len(users)
    for user, tracks in lists.lists.items():
        assert len(tracks) == 20 and not any((user, track) in played for track in tracks)
    bpr = CliRunner().invoke(cli, ["train", "mf", "--logs", str(log_dir), "--catalog", str(root / "world"),
                                   "--out", str(tmp_path / "bpr"), "--engine", "spark", "--param", "algorithm=bpr"])
    assert bpr.exit_code == 1 and "Spark MLlib has no BPR" in bpr.stderr and bpr.stderr.count("\n") == 1


@pytest.mark.parametrize("java", [None, 'openjdk version "11.0.2" 2019-01-15'])
def test_without_java_17_the_spark_engine_says_so_in_one_line(tmp_path: Path, java: str | None) -> None:
    pytest.importorskip("pyspark")
    env = {key: value for key, value in os.environ.items() if key != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)
    if java is not None:  # a JAVA_HOME whose java is too old
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "java").write_text(f"#!/bin/sh\necho '{java}' >&2\n")
        (tmp_path / "bin" / "java").chmod(0o755)
        env["JAVA_HOME"] = str(tmp_path)
    answer = subprocess.run([sys.executable, "-m", "botify", "analyze", str(tmp_path), "--experiment", "EXP",
                             "--engine", "spark"], capture_output=True, text=True, env=env, timeout=120)
    assert answer.returncode == 1 and "Traceback" not in answer.stderr
    line = answer.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the Spark engine needs Java 17 or later: ")
    assert ("none on PATH" in line) if java is None else ("is version 11.0.2" in line)


@pytest.mark.parametrize("options, env, message", [
    (["--spark-master", "nonsense"], {}, "error: options: invalid EngineSettings: spark_master: Value error, "
                                         "'nonsense' is not a Spark master"),
    ([], {"SPARK_MASTER": "bogus"}, "error: SPARK_MASTER: 'bogus' is not a Spark master"),
    (["--spark-conf", "no-equals-sign"], {}, "error: --spark-conf 'no-equals-sign': expected key=value"),
])
def test_bad_spark_options_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options, env,
                                               message: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    answer = CliRunner().invoke(cli, ["analyze", str(tmp_path), "--experiment", "EXP", "--engine", "spark", *options])
    assert answer.exit_code == 1 and answer.stderr.startswith(message) and answer.stderr.count("\n") == 1


def test_a_compacted_directory_of_only_garbage_reads_the_same_on_spark(spark_settings, tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    (log / "events-0-0001.jsonl").write_bytes(b"not json\n\x00\x01\n{\"cut\": \n")
    assert CliRunner().invoke(cli, ["logs", "compact", str(log), "--out", str(tmp_path / "pq")]).exit_code == 0
    expected = user_metrics([log], "EXP")[1]
    for path in (log, tmp_path / "pq"):
        assert user_metrics([path], "EXP", settings=spark_settings)[1] == expected


def test_a_cut_gzip_file_is_one_line_naming_it_on_both_engines(spark_settings, tmp_path: Path) -> None:
    import gzip

    from tests.test_analysis import write_logs

    write_logs(tmp_path / "log", users=30)
    plain = sorted((tmp_path / "log").glob("*.jsonl"))[0]
    data = gzip.compress(plain.read_bytes())
    (tmp_path / "log" / (plain.name + ".gz")).write_bytes(data[:-20])  # a copy cut before its end
    plain.unlink()
    for engine in ("duckdb", "spark"):
        answer = CliRunner().invoke(cli, ["analyze", str(tmp_path / "log"), "--experiment", "EXP", "--engine", engine])
        assert answer.exit_code == 1 and answer.stderr.count("\n") == 1, answer.output
        assert plain.name + ".gz" in answer.stderr and "Traceback" not in answer.stderr, answer.stderr
