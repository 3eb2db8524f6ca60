"""The Watch view's figures, computed from the event log the service writes and nothing else.

The verdict is `botify analyze`'s own code (its per-user metrics, then `analyze` against the
control), so the page shows the numbers the command prints on the same files. Traffic
(requests per second, latency) and the recent sessions come from the same `events`, with the
same session numbering; the files are read once per snapshot (`metrics_and_events`), not once
per query. A snapshot is recomputed only when the log files have changed, at most every
`interval` seconds, in a thread, so a page polling every second costs the service little.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

from botify.analysis.stats import analyze
from botify.errors import BotifyError
from botify.events.duck import metrics_and_events
from botify.events.files import expand
from botify.events.relational import ORDER, USABLE, session_number
from botify.service.models import PEOPLE_FIRST

PRIMARY = "mean_time_per_session"  # the metric the verdict is about, as in `botify loop`
WINDOW = 60  # seconds of traffic shown
RECENT = 20  # sessions listed
STALE = 5.0  # seconds after which an unchanged log's traffic window is recomputed anyway

TRAFFIC_SQL = f"""
SELECT "timestamp" // 1000 AS second, count(*) AS requests, 1000 * avg(latency) AS mean_ms,
       1000 * quantile_cont(latency, 0.99) AS p99_ms
FROM events WHERE {USABLE} AND "timestamp" >= $since
GROUP BY second ORDER BY second
"""

RECENT_SQL = f"""
WITH numbered AS (
    SELECT *, {session_number("true")} AS session FROM events WHERE {USABLE}
)
SELECT "user", session, any_value(treatment) AS treatment, min("timestamp") AS started, max("timestamp") AS ended,
       bool_or(message = 'last') AS finished, sum("time") AS total,
       list(track ORDER BY {ORDER}) AS tracks, list("time" ORDER BY {ORDER}) AS times
FROM numbered GROUP BY "user", session
ORDER BY ended DESC, "user" LIMIT {RECENT}
"""


def _number(value: Any) -> float | None:
    """A float for JSON: None for NaN and infinities."""
    value = float(value)
    return value if math.isfinite(value) else None


def log_files(log_dir: Path) -> list[str]:
    """The files `botify analyze LOG_DIR` reads (none yet is not an error here)."""
    try:
        return expand([log_dir])
    except BotifyError:
        return []


def snapshot(log_dir: Path, experiment: str | None, control: str = "C", now: float | None = None) -> dict[str, Any]:
    """Everything the Watch view shows, from the logs in `log_dir` as they are now."""
    files = log_files(log_dir)
    now = time.time() if now is None else now
    board: dict[str, Any] = {"experiment": experiment, "control": control, "files": len(files), "lines": 0,
                             "skipped": 0, "traffic": [], "treatments": [], "comparisons": [], "srm_p_value": None,
                             "srm": False, "recent": [], "note": None}
    if not files:
        board["note"] = f"no event log in {log_dir} yet"
        return board
    with metrics_and_events(files, experiment) as ((users, summary), connection):  # the files read once
        traffic = connection.execute(TRAFFIC_SQL, {"since": int((now - WINDOW) * 1000)}).fetchall()
        recent = connection.execute(RECENT_SQL).fetchall()
    board.update(lines=summary.lines, skipped=summary.malformed + summary.incomplete_fields)
    if experiment is not None and len(users["user"]):
        for name in sorted(set(users["treatment"].tolist())):  # the treatments `analyze` compares
            chosen = users["treatment"] == name
            board["treatments"].append({"treatment": name, "users": int(chosen.sum()),
                                        "sessions": int(users["sessions"][chosen].sum()),
                                        "mean": _number(users[PRIMARY][chosen].mean())})
        try:
            result = analyze(users, experiment, control)
        except ValueError as error:  # no control users yet
            board["note"] = str(error)
        else:
            board.update(srm_p_value=_number(result.srm_p_value), srm=result.srm, comparisons=[
                {key: (_number(value) if isinstance(value, float) else value)
                 for key, value in item.as_dict().items()}
                for item in result.comparisons if item.metric == PRIMARY])
    elif experiment is not None:
        board["note"] = f"no finished sessions in experiment {experiment} yet"
    board["traffic"] = [{"second": second, "requests": count, "mean_ms": _number(mean), "p99_ms": _number(p99)}
                        for second, count, mean, p99 in traffic]
    board["recent"] = [
        {"user": user, "session": session, "treatment": treatment or None, "started": started, "ended": ended,
         "finished": finished, "time": _number(total), "agent": "person" if user >= PEOPLE_FIRST else None,
         "tracks": [{"track": track, "time": played} for track, played in zip(tracks, times)]}
        for user, session, treatment, started, ended, finished, total, tracks, times in recent]
    return board


class Board:
    """Snapshots of one log directory, cached until the files change (at most every `interval` s)."""

    def __init__(self, log_dir: Path, interval: float = 1.0) -> None:
        self.log_dir = Path(log_dir)
        self.interval = interval
        self._lock = asyncio.Lock()
        self._cached: dict[tuple, tuple[float, dict]] = {}

    def _signature(self) -> tuple:
        found = []
        for name in log_files(self.log_dir):
            try:
                found.append((name, Path(name).stat().st_size))
            except FileNotFoundError:  # rotated away between the listing and the look
                continue
        return tuple(found)

    async def get(self, experiment: str | None, control: str = "C") -> dict[str, Any]:
        async with self._lock:
            key = (experiment, control)
            signature = self._signature()
            cached = self._cached.get(key)
            now = time.monotonic()
            if cached is not None and (now - cached[0] < self.interval
                                       or (cached[1]["signature"] == signature and now - cached[0] < STALE)):
                return cached[1]["board"]
            board = await asyncio.to_thread(snapshot, self.log_dir, experiment, control)
            self._cached[key] = (now, {"signature": signature, "board": board})
            return board
