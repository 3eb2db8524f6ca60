"""Retention over days: does a recommender make its listeners come back?

Session metrics judge one day; with returning listeners (`botify.sim.days`) a recommender
also keeps or loses its audience, which only shows across days. This module turns the
per-user tables the engine already produces, one per experiment day, into one row per user
over the run so far, and those go through the same statistics as every other metric
(`stats.analyze`: Welch intervals, Holm across the retention metrics, CUPED):

- `days_active`: experiment days with at least one finished session;
- `return_rate`: of the user's active days that have a next day in the run, the share
  followed by a session the next day (NaN, so left out, for a user first seen on the last day);
- `run_sessions`: finished sessions over the run.

The pre-period covariate for CUPED is the user's own activity before the experiment (the days
before its first day): days active and sessions then, 0 for users who were not there.
Only days' tables and NumPy: no event is read twice, and no Python loop runs per user.
"""

from __future__ import annotations

import html

import numpy as np

from botify.analysis.report import _table
from botify.analysis.verdict import SHORT_NAMES, format_p, label

RETENTION_METRICS = ("days_active", "return_rate", "run_sessions")


def _stack(days: dict[int, dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user, day, sessions, treatment) of every user-day with a finished session."""
    parts = [(table["user"].astype(np.int64), np.full(len(table["user"]), day, dtype=np.int64),
              table["sessions"].astype(np.int64), table["treatment"].astype(str))
             for day, table in sorted(days.items())]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0, dtype=str)
    return tuple(np.concatenate(column) for column in zip(*parts))  # type: ignore[return-value]


def retention_users(days: dict[int, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One row per user over the given days (day → the engine's per-user table of that day,
    with `user`, `treatment` and `sessions`): `user`, `treatment` (the first one seen: the
    hash assigns a user once) and the `RETENTION_METRICS`."""
    user, day, sessions, treatment = _stack(days)
    last = max(days) if days else 0
    ids, first, row = np.unique(user, return_index=True, return_inverse=True)
    key = user * (last + 2) + day  # one per active user-day
    eligible = day < last
    returned = np.isin(key + 1, key) & eligible
    chances = np.bincount(row, weights=eligible, minlength=len(ids))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(chances > 0, np.bincount(row, weights=returned, minlength=len(ids)) / chances, np.nan)
    return {
        "user": ids,
        "treatment": treatment[first],
        "days_active": np.bincount(row, minlength=len(ids)).astype(np.float64),
        "return_rate": rate,
        "run_sessions": np.bincount(row, weights=sessions, minlength=len(ids)),
    }


def retention_pre(users: dict[str, np.ndarray], before: dict[int, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The CUPED covariates of `users` (a `retention_users` table) from the days before the
    experiment: active days and sessions then (0 for users absent), under the metrics' names."""
    earlier = retention_users(before)
    if not len(earlier["user"]):
        zeros = np.zeros(len(users["user"]))
        return {"user": users["user"], **{metric: zeros for metric in RETENTION_METRICS}}
    index = np.minimum(np.searchsorted(earlier["user"], users["user"]), len(earlier["user"]) - 1)
    found = earlier["user"][index] == users["user"]
    days = np.where(found, earlier["days_active"][index], 0.0)
    return {"user": users["user"], "days_active": days, "return_rate": np.minimum(days, 1.0),
            "run_sessions": np.where(found, earlier["run_sessions"][index], 0.0)}


def retention_table(result, labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows, one per treatment: users, then each retention metric's mean with its
    effect against the control (95% interval, Holm p)."""
    means = {(item.treatment, item.metric): item for item in result.stats}
    versus = {(item.treatment, item.metric): item for item in result.comparisons}
    headers = ["treatment", "users"] + [SHORT_NAMES[metric] for metric in RETENTION_METRICS]
    rows = []
    for name in result.treatments:
        cells = [label(name, labels), f"{result.users.get(name, 0):,}"]
        for metric in RETENTION_METRICS:
            stat, item = means.get((name, metric)), versus.get((name, metric))
            text = f"{stat.mean:.3f}" if stat is not None and np.isfinite(stat.mean) else "n/a"
            if item is not None:
                text += f" ({item.effect:+.1f}% [{item.lower:+.1f}, {item.upper:+.1f}], p {format_p(item.p_holm)})"
            cells.append(text)
        rows.append(cells)
    return headers, rows


def render_retention(result, labels: dict[str, str], title: str) -> str:
    """An HTML section for the loop's report: the retention table of one day."""
    headers, rows = retention_table(result, labels)
    cuped = " (CUPED with the days before the experiment)" if any(item.cuped for item in result.comparisons) else ""
    return (f"<section><h2>{html.escape(title)}</h2><p>Means per user over the experiment days so far; in brackets "
            f"the effect against the control{cuped}, its 95% interval and the Holm-adjusted p.</p>"
            f"{_table(headers, rows)}</section>")
