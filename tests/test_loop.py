"""`botify loop` end to end on a small world: day 1 random, training, hot reload, day 2, analysis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
         str(small_world_dir), "--dir", "run", "--day1-episodes", "1500", "--episodes", "1500"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "160"},
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert "Day 1: random" in run.stdout and "LOOP: treatments vs C (CUPED)" in run.stdout
    for name in ("ub", "top"):
        assert json.loads((tmp_path / "run" / "artifacts" / name / "manifest.json").read_text())["data"]
    events = read_events(tmp_path / "run" / "log")
    versions = sorted({event["data_version"] for event in events}, key=lambda v: [e["data_version"] for e in events].index(v))
    assert len(versions) == 2  # day 1 served without artifacts, day 2 with them, one process
    day_two = [event for event in events if event["data_version"] == versions[1]]
    assert {event["experiments"]["LOOP"] for event in day_two} == {"C", "T1", "T2"}
    served = {event["recommender"] for event in day_two if event["message"] == "next"}
    assert "indexed(ub/recommendations.jsonl)" in served and "top_pop(top/top_tracks.json)" in served
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Day 2: experiment LOOP" in report and report.count("<svg") >= 3
