"""The verdict at a glance: the terminal at 80 columns and the HTML report as a person sees it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from botify.analysis.engine import METRICS
from botify.analysis.stats import GUARDRAILS, Comparison
from botify.analysis.verdict import format_p, outcome, recommender_label
from botify.cli.analyze import METRIC_CHOICES
from botify.service.experiments import RecommenderSpec
from tests.test_analysis import write_logs

EXPERIMENTS = {"default": "random", "experiments": [{"name": "EXP", "treatments": [
    "random", {"recommender": {"kind": "sticky_artist"}},
    {"recommender": {"kind": "indexed", "artifact": "user-based/recommendations.jsonl"}}]}]}


def _analyze(logs: Path, *options: str, columns: int = 80) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "botify", "analyze", str(logs), "--experiment", "EXP", *options],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": str(columns)})


def test_the_terminal_verdict_names_the_recommenders_and_fits_80_columns(tmp_path: Path) -> None:
    write_logs(tmp_path / "run" / "day2" / "log", users=600, effect=0.3)
    (tmp_path / "run" / "experiments.json").write_text(json.dumps(EXPERIMENTS))  # as botify loop records it
    done = _analyze(tmp_path / "run" / "day2" / "log")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines if not line.startswith(("latency", "6"))) <= 80, done.stdout
    headline = next(i for i, line in enumerate(lines) if line.startswith("EXP: mean_time_per_session vs C random"))
    assert re.match(r"\s+T1 sticky_artist\s+WIN\s+\+\d", lines[headline + 1]), lines[headline + 1]
    assert re.match(r"\s+T2 indexed\(user-based\)\s+no diff", lines[headline + 2]), lines[headline + 2]
    assert lines[headline + 3].startswith("latency guardrail (mean under 10 ms): ok")
    assert "…" not in done.stdout and "mean_request_latency" not in done.stdout  # nothing cut; latency apart
    wide = _analyze(tmp_path / "run" / "day2" / "log", "--wide", columns=200)
    assert "mean_request_latency" in wide.stdout and "T1 sticky_artist" in wide.stdout
    plain = _analyze(tmp_path / "run" / "day2" / "log", "--metric", "time")
    assert "EXP: time vs C random" in plain.stdout


def test_without_a_recorded_config_treatments_keep_their_names(tmp_path: Path) -> None:
    write_logs(tmp_path / "log", users=300)
    done = _analyze(tmp_path / "log")
    assert done.returncode == 0 and re.search(r"^\s+T1\s+(WIN|LOSS|no diff)", done.stdout, re.MULTILINE), done.stdout


def test_p_values_and_labels_read_as_words() -> None:
    assert format_p(0.0) == "< 1e-300" and format_p(3.79e-7) == "3.8e-07" and format_p(0.4481) == "0.448"
    assert recommender_label(RecommenderSpec(kind="i2i", artifact="sequential/item2item.jsonl")) == "i2i(sequential)"
    assert recommender_label(RecommenderSpec(kind="top_pop", artifact="top.json")) == "top_pop(top)"
    assert set(METRIC_CHOICES) == set(METRICS) - GUARDRAILS and METRIC_CHOICES[-1] == "mean_time_per_session"


def test_the_report_as_chromium_renders_it(tmp_path: Path) -> None:
    """The report renders in a real headless browser, leads with the verdict, and loads nothing
    from elsewhere (every plot inline)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here (apt-get install chromium; .ci/run installs it)")
    write_logs(tmp_path / "run" / "log", users=600, effect=0.3)
    (tmp_path / "run" / "experiments.json").write_text(json.dumps(EXPERIMENTS))
    report = tmp_path / "report.html"
    assert _analyze(tmp_path / "run" / "log", "--report", str(report)).returncode == 0
    page = report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "@import" not in page
    assert page.index('class="headline"') < page.index("<svg")  # the verdict comes first
    common = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*common, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert "T1 sticky_artist" in dom.stdout and "WIN" in dom.stdout and dom.stdout.count("<svg") >= 3
    shot = tmp_path / "report.png"
    subprocess.run([*common, "--window-size=1200,1600", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, text=True, timeout=120)
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one


def test_one_definition_of_win_and_loss_by_the_holm_adjusted_p() -> None:
    """Raw p below 0.05 but not after Holm's adjustment is no win anywhere: the JSON/CSV, the
    loop's summary and the studio read `Comparison.verdict`, the terminal and report `outcome`."""
    def comparison(metric: str, treatment_mean: float, significant_holm: bool) -> Comparison:
        return Comparison(metric, "C", "T1", 10.0, treatment_mean, 10 * (treatment_mean - 10), 1.0, 3.0, 0.01,
                          0.01 if significant_holm else 0.2, True, significant_holm, 1.0, False)

    assert comparison("mean_time_per_session", 12.0, False).verdict == ""
    assert outcome(comparison("mean_time_per_session", 12.0, False)) == "no difference"
    assert comparison("mean_time_per_session", 12.0, True).verdict == "win" == outcome(
        comparison("mean_time_per_session", 12.0, True))
    assert comparison("mean_request_latency", 12.0, True).verdict == "loss"  # lower latency is better
    assert comparison("mean_time_per_session", 8.0, True).as_dict()["verdict"] == "loss"
