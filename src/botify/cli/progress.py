"""Progress bars and the day's summary table, shared by the commands that simulate."""

from __future__ import annotations

import time
from contextlib import contextmanager
from collections.abc import Iterator, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from botify.sim.runner import DaySummary

console = Console()


@contextmanager
def session_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over sessions; yields the callback that advances it."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("sessions"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda count: progress.advance(task, count)


@contextmanager
def work_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar for a fit's epochs or trials (botify.train's reporter); on a console
    that is not a terminal (a pipe, CI), plain lines at each tenth instead."""
    if console.is_terminal:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console, transient=True) as bar:
            task = bar.add_task(label, total=total)
            yield lambda done: bar.advance(task, done)
        return
    state = {"done": 0, "shown": 0}
    started = time.monotonic()

    def advance(done: int) -> None:
        state["done"] += done
        if state["done"] * 10 // max(total, 1) > state["shown"] * 10 // max(total, 1) or state["done"] == total:
            state["shown"] = state["done"]
            console.print(f"{label} {state['done']}/{total} ({time.monotonic() - started:.0f} s)", soft_wrap=True)

    yield advance


def summary_table(days: list[DaySummary], title: str = "Simulation summary") -> Table:
    """The course's per-day summary: sessions, mean session time and tracks with standard errors,
    and the agent's own counters; counters that stayed 0 on every day are named in the caption
    instead of taking a column, so that the table fits 80 columns."""
    from rich import box

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("day", "sessions", "time/session", "tracks/session", "truncated", "steps/s"):
        table.add_column(column, justify="right", no_wrap=True)
    counters = sorted({key for day in days for key in day.result.agent_report})
    shown = [key for key in counters if any(day.result.agent_report.get(key, 0) for day in days)]
    for key in shown:
        table.add_column(key, justify="right", no_wrap=True)
    zero = [key for key in counters if key not in shown]
    if zero:
        table.caption = f"{', '.join(zero)}: 0"
    for day in days:
        (time_mean, time_sem), (tracks_mean, tracks_sem) = day.time, day.tracks
        table.add_row(
            str(day.day), f"{day.sessions:,}", f"{time_mean:.3f} ±{time_sem:.3f}", f"{tracks_mean:.3f} ±{tracks_sem:.3f}",
            f"{int(day.result.truncated.sum()):,}", f"{day.steps_per_second:,.0f}",
            *(f"{day.result.agent_report.get(key, 0):,}" for key in shown),
        )
    return table


def text_table(headers: list[str], rows: list[list[str]], title: str) -> Table:
    """Plain rows under headers, left-aligned first column (e.g. the loop's retention table)."""
    from rich import box

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for position, column in enumerate(headers):
        table.add_column(column, justify="left" if position == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table
