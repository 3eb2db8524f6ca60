"""The command line, run for real: help everywhere, the main jobs, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from botify.cli.main import cli
from tests.servers import PATIENCE


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, prefix + (name,))
        else:
            found.append(prefix + (name,))
    return found


@pytest.mark.parametrize("command", _commands(cli), ids=lambda c: " ".join(c) or "botify")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def _botify(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("botify")
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=10 * PATIENCE, env=env)


def test_generate_info_and_simulate(tmp_path: Path) -> None:
    out = _botify("world", "generate", "--out", "w", "--tracks", "500", "--users", "200", "--dim", "8", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "wrote 500 tracks" in out.stdout
    again = _botify("world", "generate", "--out", "w", cwd=tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr and "Traceback" not in again.stderr
    info = _botify("world", "info", "w", cwd=tmp_path)
    assert info.returncode == 0 and "500" in info.stdout
    run = _botify("sim", "run", "--world", "w", "--episodes", "300", "--days", "2", "--agent", "oracle",
                  "--sessions-csv", "s.csv", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Day 1" in run.stdout and "Day 2" in run.stdout and "time/session" in run.stdout
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "day,episode,user,time,tracks,truncated" and len(lines) == 601


def test_config_file_for_world_generation(tmp_path: Path) -> None:
    (tmp_path / "world.toml").write_text("tracks = 300\nusers = 50\ndim = 4\nseed = 9\n")
    out = _botify("world", "generate", "--out", "w", "--config", "world.toml", "--users", "60", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "300 tracks" in out.stdout and "60 users" in out.stdout
    (tmp_path / "bad.toml").write_text("tracks = 'many'\n")
    bad = _botify("world", "generate", "--out", "w2", "--config", "bad.toml", cwd=tmp_path)
    assert bad.returncode == 1 and "tracks" in bad.stderr and "Traceback" not in bad.stderr


def test_missing_world_is_one_clear_line(tmp_path: Path) -> None:
    run = _botify("sim", "run", "--world", "nowhere", cwd=tmp_path)
    assert run.returncode == 1
    assert "nowhere: world directory not found" in run.stderr and "Traceback" not in run.stderr


def test_remote_agent_without_server_is_one_clear_line(small_world_dir: Path, tmp_path: Path) -> None:
    run = _botify("sim", "run", "--world", str(small_world_dir), "--agent", "remote", "--url",
                  "http://127.0.0.1:9", cwd=tmp_path)
    assert run.returncode == 1 and "cannot connect to http://127.0.0.1:9" in run.stderr
    assert "Traceback" not in run.stderr


def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    run = _botify("demo", "--dir", "d", "--day1-episodes", "3000", "--episodes", "3000", "--report", "out/demo.html",
                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # Day 1 is a calibrated day of random traffic through the real service.
    match = re.search(r"3,000\s+([\d.]+) ±[\d.]+\s+([\d.]+) ±", run.stdout)
    assert match, run.stdout
    mean_time, mean_tracks = map(float, match.groups())
    assert 1.7 <= mean_time <= 2.5 and 5.5 <= mean_tracks <= 8.5
    assert "DEMO: mean_time_per_session vs C random" in run.stdout and "T1 sticky_artist" in run.stdout
    assert (tmp_path / "d" / "day1" / "log").is_dir() and (tmp_path / "d" / "day2" / "artifacts").is_dir()
    assert json.loads((tmp_path / "d" / "artifacts" / "toppop" / "top_tracks.json").read_text())
    assert json.loads((tmp_path / "d" / "artifacts" / "user-based" / "manifest.json").read_text())["model"] == "user-based"
    assert "DEMO: treatments vs C (CUPED)" in run.stdout and "T4" in run.stdout
    assert (tmp_path / "d" / "artifacts" / "sequential" / "item2item.jsonl").is_file()
    report = (tmp_path / "out" / "demo.html").read_text()
    assert report.count("<svg") >= 3 and "Day 2: experiment DEMO" in report and "src=\"http" not in report
    assert (tmp_path / "d" / "report.html").is_file()
