"""`botify demo`: the whole loop on embedded defaults, as the course ran it by hand.

world → service in the background → day 1 against Random → TopPop, user-based CF and the
SASRec-style session model trained from day 1's logs and hot-reloaded → day 2: Random (C) vs
StickyArtist (T1) vs TopPop (T2) vs user-based (T3) vs the session model served anchored on
each listener's session (T4) → graceful stop → analysis of day 2 with day 1 as the CUPED
pre-period → table and HTML report. Everything stays under --dir.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click

from botify.cli.loop import DailyLoop, LoopPlan
from botify.sim.runner import SimSettings
from botify.cli.progress import console

EXPERIMENT = "DEMO"

PLAN = {
    "train": [
        {"model": "toppop", "name": "toppop"},
        {"model": "user-based", "name": "user-based"},
        {"model": "sequential", "name": "sequential"},
    ],
    "default": "random",
    "experiments": [{
        "name": EXPERIMENT,
        "treatments": [
            "random",
            {"recommender": {"kind": "sticky_artist", "fallback": "random"}},
            {"recommender": {"kind": "top_pop", "artifact": "toppop/top_tracks.json", "k": 100, "fallback": "random"}},
            {"recommender": {"kind": "indexed", "artifact": "user-based/recommendations.jsonl", "fallback": "random"}},
            {"recommender": {"kind": "i2i", "artifact": "sequential/item2item.jsonl", "pick": "ranked",
                             "artist_discount": 0.7, "fallback": "random"}},
        ],
    }],
}


@click.command()
@click.option("--dir", "run_dir", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Where the demo keeps its world, logs, artifacts and report.")
@click.option("--day1-episodes", type=click.IntRange(min=100), default=10_000, show_default=True,
              help="Sessions on day 1 (cold start, Random).")
@click.option("--episodes", type=click.IntRange(min=100), default=20_000, show_default=True,
              help="Sessions on day 2 (the experiment).")
@click.option("--seed", type=int, default=SimSettings.model_fields["seed"].default, show_default=True)
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=Path("reports/demo.html"),
              show_default=True, help="Where the report is copied.")
@click.option("--studio", is_flag=True,
              help="Serve botify studio with the service: watch the days live, listen along (see README).")
def demo(run_dir: Path, day1_episodes: int, episodes: int, seed: int, report: Path, studio: bool) -> None:
    """Run the whole loop: world, service, two simulated days, learned recommenders, an A/B verdict."""
    from botify.analysis.report import write_report

    started = time.monotonic()
    sections = DailyLoop(run_dir, LoopPlan.load(PLAN, "botify demo"), seed, studio=studio).run(
        2, day1_episodes, episodes)
    written = write_report(run_dir / "report.html", sections, "botify demo")
    report.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(written, report)
    console.print(f"\nreport: [bold]{report}[/] (also {written}); finished in {time.monotonic() - started:.0f} s",
                  soft_wrap=True)
    console.print(
        "next: open the report; automate more days and your own models with [bold]botify loop --days 3 "
        "--experiment my.toml[/]; serve them by hand with [bold]botify serve --experiments my.toml[/] (see README)",
        soft_wrap=True,
    )
    here = Path(sys.executable).parent
    if shutil.which("botify") != str(here / "botify"):  # e.g. after `make demo`, outside the venv
        console.print(f"botify is not on your PATH: run [bold]source {here / 'activate'}[/] first (or call "
                      f"{here / 'botify'})", soft_wrap=True)
