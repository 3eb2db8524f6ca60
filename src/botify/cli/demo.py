"""`botify demo`: the whole loop on embedded defaults, as the course ran it by hand.

world → service in the background → day 1 against Random → TopPop trained from day 1's logs
→ day 2: Random (C) vs StickyArtist (T1) vs TopPop (T2) → graceful stop → analysis of day 2
with day 1 as the CUPED pre-period → table and HTML report. Everything stays under --dir.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from botify.cli.progress import console, session_progress, summary_table
from botify.service.process import ServiceProcess
from botify.sim.runner import AgentSpec, DaySummary, SimSettings, Simulation
from botify.world import WorldSpec, generate_world, world_exists

EXPERIMENT = "DEMO"

DAY_TWO_EXPERIMENTS = f"""# Day 2 of botify demo: the control against two baselines.
default = "random"

[[experiments]]
name = "{EXPERIMENT}"
treatments = [
    "random",
    {{ recommender = {{ kind = "sticky_artist", fallback = "random" }} }},
    {{ recommender = {{ kind = "top_pop", artifact = "toppop/top_tracks.json", k = 100, fallback = "random" }} }},
]
"""


def _day(world_dir: Path, day: int, day_dir: Path, experiments: Path, episodes: int, seed: int,
         artifacts: Path | None, label: str) -> DaySummary:
    """Serve with `experiments`, send a day of simulated listeners, stop gracefully."""
    shutil.rmtree(day_dir / "log", ignore_errors=True)
    args = ["--catalog", world_dir / "tracks.json", "--log-dir", day_dir / "log", "--experiments", experiments,
            "--seed", str(seed + day)]
    if artifacts is not None:
        args += ["--artifacts", artifacts]
    with ServiceProcess(*args, log_file=day_dir / "service.log") as service:
        console.print(f"day {day}: service on {service.url} (ready in {service.startup_seconds:.2f} s), {label}")
        simulation = Simulation(world_dir, AgentSpec(kind="remote", url=service.url),
                                SimSettings(episodes=episodes, seed=seed), world=None)
        try:
            with session_progress(f"day {day} ({label})", episodes) as advance:
                summary = simulation.run_day(day, advance)
        finally:
            simulation.close()
    return summary


@click.command()
@click.option("--dir", "run_dir", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Where the demo keeps its world, logs, artifacts and report.")
@click.option("--day1-episodes", type=click.IntRange(min=100), default=10_000, show_default=True,
              help="Sessions on day 1 (cold start, Random).")
@click.option("--episodes", type=click.IntRange(min=100), default=20_000, show_default=True,
              help="Sessions on day 2 (the experiment).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=Path("reports/demo.html"),
              show_default=True, help="Where the report is copied.")
def demo(run_dir: Path, day1_episodes: int, episodes: int, seed: int, report: Path) -> None:
    """Run the whole loop: world, service, two simulated days, a trained TopPop, an A/B verdict."""
    from botify.analysis.engine import user_metrics
    from botify.analysis.report import write_report
    from botify.analysis.stats import analyze
    from botify.cli.analyze import print_analysis
    from botify.train.registry import train_model

    started = time.monotonic()
    world_dir = run_dir / "world"
    if world_exists(world_dir):
        console.print(f"using the world in {world_dir}")
    else:
        with console.status("generating the default world"):
            generate_world(WorldSpec(seed=seed)).save(world_dir)
        console.print(f"generated the default world in {world_dir}")

    day1 = run_dir / "day1"
    day1.mkdir(parents=True, exist_ok=True)
    (day1 / "experiments.toml").write_text('# Day 1 of botify demo: cold start, everyone gets Random.\ndefault = "random"\n')
    summary = _day(world_dir, 1, day1, day1 / "experiments.toml", day1_episodes, seed, None, "random")
    console.print(summary_table([summary], title="Day 1: random recommendations"))

    artifacts = run_dir / "artifacts"
    model, _ = train_model("toppop", [day1 / "log"], world_dir / "tracks.json", artifacts / "toppop")
    console.print(f"trained TopPop from day 1's logs: {len(model.lists()[0])} tracks in {artifacts / 'toppop'}")

    day2 = run_dir / "day2"
    day2.mkdir(parents=True, exist_ok=True)
    (day2 / "experiments.toml").write_text(DAY_TWO_EXPERIMENTS)
    summary = _day(world_dir, 2, day2, day2 / "experiments.toml", episodes, seed, artifacts,
                   f"{EXPERIMENT}: C random, T1 sticky_artist, T2 top_pop")

    users, log_summary = user_metrics([day2 / "log"], EXPERIMENT, timeline=True)
    pre, _ = user_metrics([day1 / "log"], None)
    result = analyze(users, EXPERIMENT, "C", pre, treatments=["C", "T1", "T2"])
    print_analysis(result, log_summary)
    written = write_report(run_dir / "report.html", result, users, log_summary)
    report.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(written, report)
    console.print(f"\nreport: [bold]{report}[/] (also {written}); finished in {time.monotonic() - started:.0f} s")
    console.print(
        "next: open the report; re-run the analysis with [bold]botify analyze "
        f"{day2 / 'log'} --experiment {EXPERIMENT} --pre {day1 / 'log'}[/]; serve your own recommender "
        "with [bold]botify serve --experiments my.toml[/] (see README)"
    )
