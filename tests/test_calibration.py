"""The default world is calibrated like the course's published online table: through the
service, Random gives about 2 time and 7 tracks per session, StickyArtist wins by +35..60%
(the course: +45.6%), TopPop stays small. A reduced world of the default spec (3,000 tracks)
keeps the same per-artist structure, so the ranges hold there too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from botify.world import WorldSpec, generate_world

PLAN = """
[[train]]
model = "toppop"
name = "toppop"

[[experiments]]
name = "CALIBRATION"
treatments = [
    "random",
    { recommender = { kind = "sticky_artist", fallback = "random" } },
    { recommender = { kind = "top_pop", artifact = "toppop/top_tracks.json", k = 100, fallback = "random" } },
]
"""


def test_calibration_day_through_the_service(tmp_path: Path) -> None:
    generate_world(WorldSpec(seed=5, tracks=3000, users=1500)).save(tmp_path / "world")
    (tmp_path / "plan.toml").write_text(PLAN)
    run = subprocess.run(
        [sys.executable, "-m", "botify", "loop", "--days", "2", "--experiment", "plan.toml", "--world", "world",
         "--dir", "run", "--day1-episodes", "3000", "--episodes", "6000"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # Day 1: Random alone, through the service.
    assert 1.8 <= summary["day1"]["mean_time_per_session"] <= 2.3
    (day,) = summary["days"]
    rows = {row["treatment"]: row for row in day["treatments"]}
    assert 1.8 <= rows["C"]["mean_time_per_session"] <= 2.3
    day_one = [json.loads(line) for path in sorted((tmp_path / "run" / "day1" / "log").glob("*.jsonl"))
               for line in path.read_text().splitlines()]
    tracks_per_session = len(day_one) / sum(event["message"] == "last" for event in day_one)
    assert 6 <= tracks_per_session <= 8
    # StickyArtist: within the course's band, with an interval narrow enough (about ±3%) that
    # a world outside the band (gamma 0.8 gives about +80%, 0.65 about +23%) cannot pass.
    sticky = rows["T1"]["vs_control"]
    assert 35 <= sticky["effect_pct"] <= 60, sticky
    assert sticky["ci_pct"][1] - sticky["ci_pct"][0] < 8
    top = rows["T2"]["vs_control"]
    assert abs(top["effect_pct"]) < 8, top
