"""`botify demo`: the main job on embedded defaults, nothing to install by hand."""

from __future__ import annotations

from pathlib import Path

import click

from botify.cli.progress import console, session_progress, summary_table
from botify.sim.runner import AgentSpec, SimSettings, Simulation
from botify.world import WorldSpec, generate_world, world_exists


@click.command()
@click.option("--dir", "run_dir", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Where the demo keeps its world and results.")
@click.option("--episodes", type=click.IntRange(min=1), default=10_000, show_default=True, help="Sessions per day.")
@click.option("--seed", type=int, default=42, show_default=True)
def demo(run_dir: Path, episodes: int, seed: int) -> None:
    """Generate the default world if absent, then simulate a day of listeners against Random."""
    world_dir = run_dir / "world"
    if world_exists(world_dir):
        console.print(f"using the world in {world_dir}")
    else:
        with console.status("generating the default world"):
            generate_world(WorldSpec(seed=seed)).save(world_dir)
        console.print(f"generated the default world in {world_dir}")
    simulation = Simulation(world_dir, AgentSpec(kind="random"), SimSettings(episodes=episodes, seed=seed))
    try:
        with session_progress("day 1 (random)", episodes) as advance:
            summary = simulation.run_day(1, advance)
    finally:
        simulation.close()
    console.print(summary_table([summary], title="Day 1: random recommendations"))
    console.print(
        "next: try the upper bound with "
        f"[bold]botify sim run --world {world_dir} --agent oracle[/], or drive your own server with "
        "[bold]--agent remote --url http://localhost:5001[/]"
    )
