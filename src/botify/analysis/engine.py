"""Logs to per-user metrics: the experiment's view of the event log, on the engine asked for.

The relational work (sessions, per-user metrics) lives in `botify.events`; this module is the
analysis' entry to it, so that callers name an experiment and logs, not an engine's internals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from botify.events.engine import METRICS, EngineSettings, open_engine
from botify.events.files import LogSummary

__all__ = ["METRICS", "LogSummary", "experiment_names", "user_metrics"]


def user_metrics(
    paths: list[str | Path], experiment: str | None, timeline: bool = False, settings: EngineSettings | None = None
) -> tuple[dict[str, np.ndarray], LogSummary]:
    """Per-user metrics as columns, with each user's treatment in `experiment` (users outside it
    are left out); with `experiment=None` every user counts, under treatment "". Also what the
    logs held and, if asked, finished sessions per second and treatment."""
    return open_engine(settings).user_metrics(paths, experiment, timeline)


def experiment_names(paths: list[str | Path], settings: EngineSettings | None = None) -> list[str] | None:
    """The experiment names the logs' events carry, for an error that names the ones present;
    None where only Spark reads the logs (the hint is not worth a Spark job)."""
    if settings is not None and settings.engine != "duckdb":
        return None
    from botify.events.duck import DuckDBEngine

    return DuckDBEngine(settings or EngineSettings()).experiment_names(paths)
