"""`botify train toppop`: the most listened tracks from the logs, served by `top_pop`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from botify.service.artifacts import read_artifact
from botify.train.toppop import top_tracks
from tests.test_analysis import write_logs


def test_top_tracks_equal_a_plain_count(tmp_path: Path) -> None:
    events = write_logs(tmp_path / "log", users=200)
    with open(tmp_path / "log" / "events-0-0001.jsonl", "a") as handle:
        handle.write('{"message": "next", "track": 5, "ti')  # a line cut by a crash is skipped
    listened = Counter()
    for event in events:
        listened[event["track"]] += event["time"]
    expected = sorted((track for track, total in listened.items() if total > 0 and track < 50),
                      key=lambda track: (-round(listened[track], 9), track))
    assert top_tracks([tmp_path / "log"], n_tracks=50, size=1000) == expected
    assert top_tracks([tmp_path / "log"], n_tracks=50, size=3) == expected[:3]


def test_cli_writes_an_artifact_the_service_reads(tmp_path: Path, small_world_dir: Path) -> None:
    write_logs(tmp_path / "log", users=100)
    out = tmp_path / "artifacts" / "toppop.json"
    run = subprocess.run([sys.executable, "-m", "botify", "train", "toppop", "--logs", str(tmp_path / "log"),
                          "--catalog", str(small_world_dir / "tracks.json"), "--out", str(out), "--size", "20"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(json.loads(out.read_text())) == 20
    artifact = read_artifact(out, n_tracks=800)
    assert artifact.kind == "top" and len(artifact.lists[0]) == 20
