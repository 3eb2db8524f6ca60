"""botify from Python (a notebook, a script): the same parts as the CLI, as functions.

    import botify
    days = botify.simulate("data/world", agent="remote", url="http://127.0.0.1:5001", episodes=2000)
    verdict = botify.analyze("log/", "STICKY_ARTIST")
    frame = pandas.DataFrame(botify.read_events("log/"))  # or polars.DataFrame(...)

`import botify` stays light: these load the simulator, DuckDB and SciPy only when called.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _paths(logs: str | Path | list[str | Path]) -> list[str | Path]:
    return list(logs) if isinstance(logs, (list, tuple)) else [logs]


def simulate(world: str | Path, agent: str = "random", *, url: str | None = None, episodes: int = 10_000,
             seed: int = 42, days: int = 1):
    """Simulate `days` days of `episodes` sessions of the world's listeners against `agent`
    ("random", "oracle", "remote" with `url`, or "module:Class"); one `DaySummary` per day, with
    each session's outcome in `.result` and the course's summary in `.time` and `.tracks`."""
    from botify.sim.runner import AgentSpec, SimSettings, Simulation

    simulation = Simulation(Path(world), AgentSpec(kind=agent, url=url), SimSettings(episodes=episodes, seed=seed))
    try:
        return [simulation.run_day(day) for day in range(1, days + 1)]
    finally:
        simulation.close()


def user_metrics(logs: str | Path | list[str | Path], experiment: str | None = None) -> dict[str, np.ndarray]:
    """Per-user metrics (the course's notebook metrics) as NumPy columns, with each user's
    treatment in `experiment` (every user, under "", without one)."""
    from botify.analysis.engine import user_metrics as read

    return read(_paths(logs), experiment)[0]


def analyze(logs: str | Path | list[str | Path], experiment: str, *, control: str = "C",
            pre: str | Path | list[str | Path] | None = None):
    """The A/B analysis `botify analyze` prints: an `Analysis` with per-treatment `stats` and
    `comparisons` (effect %, 95% CI, p and Holm p per metric and treatment); `pre` logs give
    CUPED. `botify.analysis.verdict.headlines(result, {})` says who won."""
    from botify.analysis.engine import user_metrics as read
    from botify.analysis.stats import analyze as compare

    users = read(_paths(logs), experiment)[0]
    before = read(_paths(pre), None)[0] if pre is not None else None
    return compare(users, experiment, control, before)


def read_events(logs: str | Path | list[str | Path], experiment: str | None = None) -> dict[str, np.ndarray]:
    """The usable events of the logs as NumPy columns (message, timestamp, user, track, time,
    latency, and `treatment` in `experiment`), in file order: `pandas.DataFrame(read_events(...))`
    or `polars.DataFrame(...)` makes a frame of them."""
    from botify.events.duck import events_view
    from botify.events.relational import USABLE

    with events_view(_paths(logs), experiment) as connection:
        table = connection.execute(f"""SELECT message, "timestamp", "user", track, "time", latency, treatment
                                        FROM events WHERE {USABLE} ORDER BY file, line""").fetchnumpy()
    return {name: np.asarray(values) for name, values in table.items()}
