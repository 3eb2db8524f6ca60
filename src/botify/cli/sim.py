"""`botify sim`: simulated listeners against an agent, day by day."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from botify.cli.progress import console, session_progress, summary_table
from botify.errors import BotifyError
from botify.sim.runner import AgentSpec, DayInterrupted, DaySummary, SimSettings, Simulation


@click.group()
def sim() -> None:
    """Run simulated listeners."""


def _write_sessions(path: Path, days: list[DaySummary]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["day", "episode", "user", "time", "tracks", "truncated"])
        for day in days:
            result = day.result
            for row in zip(result.episode, result.user, result.time, result.tracks, result.truncated):
                writer.writerow([day.day, int(row[0]), int(row[1]), round(float(row[2]), 2), int(row[3]), int(row[4])])


def _default(name: str):
    return SimSettings.model_fields[name].default


def days_options(command):
    """`--returning`, `--trending` and `--sim-config`: listeners over days (`botify.sim.days`)."""
    for option in reversed((
        click.option("--returning", is_flag=True,
                     help="Listeners come back on later days depending on how their sessions went; EPISODES is then "
                          "each day's first-time listeners."),
        click.option("--trending", is_flag=True, help="A few tracks trend each day (an item bias by day)."),
        click.option("--sim-config", type=click.Path(path_type=Path, dir_okay=False),
                     help="A TOML/JSON/YAML file with [returning] and [trending] tables (any of their fields)."),
    )):
        command = option(command)
    return command


@sim.command()
@click.option("--world", "world_dir", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True,
              help="World directory (botify world generate).")
@click.option("--episodes", type=click.IntRange(min=1), default=_default("episodes"), show_default=True, help="Sessions per day.")
@click.option("--agent", default="random", show_default=True,
              help="random, remote, studio (people answer some requests: botify studio), console, oracle, "
                   "or module:Class for your own botify.sim.Agent.")
@click.option("--url", help="Server for the remote or studio agent, e.g. http://localhost:5001.")
@click.option("--seed", type=int, default=_default("seed"), show_default=True)
@click.option("--processes", type=click.IntRange(min=1), default=_default("processes"), show_default=True,
              help="Worker processes; results do not depend on it.")
@click.option("--days", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--no-pause", is_flag=True, help="Do not ask before starting the next day.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=_default("chunk_size"), show_default=True,
              help="Sessions stepped together (part of what a seed means).")
@click.option("--max-steps", type=click.IntRange(min=1), default=_default("max_steps"), show_default=True,
              help="Truncate sessions longer than this many recommendations.")
@click.option("--replace-users", is_flag=True,
              help="Draw each day's users with replacement, as the course's simulator did.")
@click.option("--connections", type=click.IntRange(min=1), default=AgentSpec.model_fields["connections"].default, show_default=True,
              help="Keep-alive connections of the remote agent.")
@click.option("--outage", type=click.FloatRange(min=0), default=AgentSpec.model_fields["outage"].default,
              show_default=True, help="Seconds the remote agent keeps retrying a failing service before giving up.")
@click.option("--sessions-csv", type=click.Path(path_type=Path, dir_okay=False),
              help="Write each session's outcome (day, episode, user, time, tracks) to this CSV.")
@days_options
def run(world_dir, episodes, agent, url, seed, processes, days, no_pause, chunk_size, max_steps, replace_users,
        connections, outage, sessions_csv, returning, trending, sim_config) -> None:
    """Simulate DAYS days of EPISODES sessions and print the course's summary per day."""
    from botify.sim.days import listener_days

    dynamics = listener_days(sim_config, returning, trending)
    settings = SimSettings(episodes=episodes, seed=seed, processes=processes, chunk_size=chunk_size,
                           max_steps=max_steps, replace_users=replace_users, returning=dynamics.returning,
                           trending=dynamics.trending)
    simulation = Simulation(world_dir, AgentSpec(kind=agent, url=url, connections=connections, outage=outage),
                            settings)
    summaries: list[DaySummary] = []
    stopped: DayInterrupted | None = None
    try:
        for day in range(1, days + 1):
            with session_progress(f"day {day} ({agent})", simulation.sessions_on(day)) as advance:
                summaries.append(simulation.run_day(day, advance))
            console.print(summary_table(summaries[-1:], title=f"Day {day}"))
            if day < days and not no_pause and sys.stdin.isatty():
                if not click.confirm(f"End of day {day}. Start day {day + 1}?", default=True):
                    break
    except DayInterrupted as error:  # write what finished before saying what went wrong
        stopped = error
        if error.partial is not None:
            summaries.append(error.partial)
            console.print(summary_table(summaries[-1:], title=f"Day {error.partial.day} (interrupted)"))
    finally:
        simulation.close()
    if len(summaries) > 1:
        console.print(summary_table(summaries))
    if sessions_csv and summaries:
        _write_sessions(sessions_csv, summaries)
        console.print(f"sessions written to {sessions_csv}")
    if stopped is not None:
        finished = sum(summary.sessions for summary in summaries)
        where = ""
        if sessions_csv:
            where = f", written to {sessions_csv}" if summaries else f"; nothing written to {sessions_csv}"
        counters = ", ".join(f"{value:,} {key}" for key, value in stopped.agent_report.items())
        counters = f" ({agent} agent that day: {counters})" if counters else ""
        raise BotifyError(f"{stopped} — stopped after {finished:,} finished sessions{where}{counters}")
