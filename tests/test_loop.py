"""`botify loop` end to end on a small world: day 1 random, training, hot reload, day 2, analysis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import read_events

PLAN = """
[[train]]
model = "user-based"
name = "ub"
params = {neighbours = 20}

[[train]]
model = "toppop"
name = "top"

[[experiments]]
name = "LOOP"
treatments = [
    "random",
    { recommender = { kind = "indexed", artifact = "ub/recommendations.jsonl", fallback = "random" } },
    { recommender = { kind = "top_pop", artifact = "top/top_tracks.json", k = 20, fallback = "random" } },
]
"""


def test_two_day_loop(small_world_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "plan.toml").write_text(PLAN)
    run = subprocess.run(
        [sys.executable, "-m", "botify", "loop", "--days", "2", "--experiment", "plan.toml", "--world",
         str(small_world_dir), "--dir", "run", "--day1-episodes", "1500", "--episodes", "1500", "--compare", "T1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "160"},
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert "Day 1: random" in run.stdout and "LOOP: treatments vs C (CUPED)" in run.stdout
    # One folder per day: its events, and the artifacts trained before it; no empty files.
    run_dir = tmp_path / "run"
    for name in ("ub", "top"):
        assert json.loads((run_dir / "day2" / "artifacts" / name / "manifest.json").read_text())["data"]
    assert (run_dir / "artifacts").resolve() == (run_dir / "day2" / "artifacts").resolve()
    assert not list((run_dir / "day1" / "artifacts").iterdir())  # day 1 served Random
    assert not list((run_dir / "log").glob("*.jsonl"))
    assert all(path.stat().st_size for path in run_dir.glob("day*/log/*.jsonl"))
    day_one, day_two = read_events(run_dir / "day1" / "log"), read_events(run_dir / "day2" / "log")
    assert len({event["data_version"] for event in day_one}) == len({event["data_version"] for event in day_two}) == 1
    assert day_one[0]["data_version"] != day_two[0]["data_version"]  # day 2 served the trained artifacts
    assert sum(event["message"] == "last" for event in day_one) == 1500
    assert {event["experiments"]["LOOP"] for event in day_two} == {"C", "T1", "T2"}
    served = {event["recommender"] for event in day_two if event["message"] == "next"}
    assert "indexed(ub/recommendations.jsonl)" in served and "top_pop(top/top_tracks.json)" in served
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Day 2: experiment LOOP" in report and report.count("<svg") >= 3

    summary = json.loads((tmp_path / "run" / "summary.json").read_text(),  # strict JSON: no NaN or Infinity
                         parse_constant=lambda name: pytest.fail(f"summary.json holds {name}"))
    assert summary["day1"]["sessions"] == 1500 and summary["day1"]["recommender"] == "random"
    (day,) = summary["days"]
    assert day["day"] == 2 and day["experiment"] == "LOOP" and 0 <= day["srm_p_value"] <= 1
    rows = {row["treatment"]: row for row in day["treatments"]}
    assert rows["C"]["recommender"] == {"kind": "random"} and rows["T1"]["recommender"]["kind"] == "indexed"
    assert 300 < sum(row["users"] for row in rows.values()) <= 400  # the small world has 400 listeners
    for name in ("T1", "T2"):
        versus = rows[name]["vs_control"]
        assert versus["ci_pct"][0] <= versus["effect_pct"] <= versus["ci_pct"][1] and 0 <= versus["p_holm"] <= 1
    assert rows["T2"]["vs_T1"]["effect_pct"] != rows["T2"]["vs_control"]["effect_pct"]
    assert "vs_T1" not in rows["T1"]
    assert [item["name"] for item in summary["training"]] == ["ub", "top"]
    offline = day["offline_online"]["rows"]  # the served artifacts judged on day 2's own logs
    assert [row["treatment"] for row in offline] == ["T1", "T2"] and all(row["next_queries"] > 100 for row in offline)
    assert all(item["seconds"] >= item["fit_seconds"] >= 0 for item in summary["training"])


def test_loop_checks_the_plan_before_day_one(small_world_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "plan.toml").write_text(PLAN.replace("neighbours = 20", "neighbours = 'many'"))
    run = subprocess.run(
        [sys.executable, "-m", "botify", "loop", "--experiment", "plan.toml", "--world", str(small_world_dir),
         "--dir", "run"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1 and "neighbours='many'" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "log").exists()  # nothing was simulated
    (tmp_path / "plan.toml").write_text(PLAN.replace('artifact = "ub/', 'artifact = "u-b/'))
    run = subprocess.run(
        [sys.executable, "-m", "botify", "loop", "--experiment", "plan.toml", "--world", str(small_world_dir),
         "--dir", "run"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1 and "no [[train]] entry is named 'u-b'" in run.stderr and "names: top, ub" in run.stderr
    assert not (tmp_path / "run" / "log").exists()
