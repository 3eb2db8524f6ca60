"""Logs to per-user metrics with DuckDB: relational expressions, no Python loops over events.

The SQL here is the whole of sessionization and aggregation, kept portable (window
functions and GROUP BY only) so that the same logic can run on Spark later.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from botify.errors import BotifyError

METRICS = ("time", "sessions", "mean_request_latency", "mean_tracks_per_session", "mean_time_per_session")

# Raw lines (so that malformed ones can be counted), each parsed once into the fields used. The
# reader skips what it cannot take as a line of text (invalid UTF-8, a line over
# MAX_LINE_BYTES, an unterminated huge tail); such lines are counted from the files' own line
# count (`count_lines`), so that every bad line is counted however the reader split or skipped it.
MAX_LINE_BYTES = 2 << 20
EVENTS_SQL = """
CREATE TEMP TABLE events AS
WITH lines AS (
    SELECT line, row_number() OVER () AS position
    FROM read_csv($files, columns = {'line': 'VARCHAR'}, delim = chr(1), quote = '', escape = '',
                  header = false, auto_detect = false, strict_mode = false, ignore_errors = true,
                  max_line_size = """ + str(MAX_LINE_BYTES) + """)
),
fields AS (
    SELECT position, json_valid(line) AS valid,
           CASE WHEN json_valid(line) THEN json_extract_string(
               line, ['$.message', '$.timestamp', '$.user', '$.time', '$.latency', $path, '$.track']) END AS f
    FROM lines
)
SELECT position, valid, f[1] AS message, TRY_CAST(f[2] AS BIGINT) AS "timestamp", TRY_CAST(f[3] AS BIGINT) AS "user",
       TRY_CAST(f[4] AS DOUBLE) AS "time", TRY_CAST(f[5] AS DOUBLE) AS latency, f[6] AS treatment,
       TRY_CAST(f[7] AS BIGINT) AS track
FROM fields
"""

COUNTS_SQL = """
SELECT count(*) FILTER (WHERE valid),
       count(*) FILTER (WHERE valid AND NOT (message IN ('next', 'last') AND "user" IS NOT NULL
                        AND "timestamp" IS NOT NULL AND "time" IS NOT NULL AND latency IS NOT NULL))
FROM events
"""

# The session an event belongs to: how many `last` events its user sent before it, in time
# order (file order breaks ties). The analysis and the training dataset both number sessions so.
SESSION_NUMBER = """CAST(coalesce(sum(CASE WHEN message = 'last' THEN 1 ELSE 0 END) OVER (
        PARTITION BY "user" ORDER BY "timestamp", position
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT)"""

# A user's events in time order (file order breaks ties); an event belongs to the session
# numbered by how many `last` events the user sent before it; only sessions that end with
# their `last` count. Per user, the course's notebook metrics.
USER_METRICS_SQL = """
WITH usable AS (
    SELECT * FROM events
    WHERE valid AND message IN ('next', 'last') AND "user" IS NOT NULL AND "timestamp" IS NOT NULL
      AND "time" IS NOT NULL AND latency IS NOT NULL
),
numbered AS (
    SELECT *, """ + SESSION_NUMBER + """ AS session
    FROM usable
),
sessions AS (
    SELECT "user", session, any_value(treatment) AS treatment, count(*) AS tracks, sum("time") AS session_time,
           sum(latency) AS latency_sum, bool_or(message = 'last') AS complete
    FROM numbered GROUP BY "user", session
)
SELECT "user", treatment,
       sum(session_time) AS time,
       count(*) AS sessions,
       1000 * sum(latency_sum) / sum(tracks) AS mean_request_latency,
       sum(tracks) / count(*) AS mean_tracks_per_session,
       sum(session_time) / count(*) AS mean_time_per_session
FROM sessions WHERE complete AND treatment IS NOT NULL
GROUP BY "user", treatment
ORDER BY "user"
"""

# Finished sessions started per second, per treatment (for the report's timeline).
TIMELINE_SQL = USER_METRICS_SQL.split("SELECT \"user\", treatment,\n       sum(session_time)")[0] + """
SELECT treatment, min_timestamp // 1000 AS second, count(*) AS sessions
FROM (SELECT s.treatment, s.complete, min(n."timestamp") AS min_timestamp
      FROM sessions s JOIN numbered n USING ("user", session) GROUP BY s."user", s.session, s.treatment, s.complete)
WHERE complete AND treatment IS NOT NULL
GROUP BY treatment, second ORDER BY treatment, second
"""


@dataclass(frozen=True)
class LogSummary:
    """How many lines were read, how many could not be used, and (on request) sessions over time."""

    files: int
    lines: int
    malformed: int
    incomplete_fields: int
    timeline: dict[str, np.ndarray] | None = None


def expand(paths: list[str | Path]) -> list[str]:
    """Files from paths, directories (their *.jsonl*) and globs; a pattern matching nothing is an error."""
    files: list[str] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.jsonl*"))
        elif path.is_file():
            found = [str(path)]
        else:
            found = sorted(glob.glob(str(item)))
        if not found:
            raise BotifyError(f"{item}: no log files there")
        files.extend(found)
    return files


def count_lines(files: list[str]) -> int:
    """Lines in the files as bytes (an unterminated last line counts), read in large blocks."""
    import gzip

    total = 0
    for name in files:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(name, "rb") as handle:
            last = b""
            while block := handle.read(1 << 24):
                total += block.count(b"\n")
                last = block
            if last and not last.endswith(b"\n"):
                total += 1
    return total


def load_events(connection: duckdb.DuckDBPyConnection, paths: list[str | Path], experiment: str | None) -> int:
    """Parse the logs into the temp table `events` of `connection`; the number of files read.

    Without an experiment every event gets treatment "" (the path below matches nothing)."""
    files = expand(paths)
    path = "$.__none__" if experiment is None else '$.experiments."' + experiment.replace('"', '\\"') + '"'
    try:
        connection.execute(EVENTS_SQL, {"files": files, "path": path})
        if experiment is None:
            connection.execute("UPDATE events SET treatment = ''")
    except duckdb.Error as error:
        raise BotifyError(f"cannot read the logs: {error}") from error
    return len(files)


def user_metrics(
    paths: list[str | Path], experiment: str | None, timeline: bool = False
) -> tuple[dict[str, np.ndarray], LogSummary]:
    """Per-user metrics as columns, with each user's treatment in `experiment` (users outside it
    are left out); with `experiment=None` every user counts, under treatment "". Also what the
    logs held and, if asked, finished sessions per second and treatment."""
    connection = duckdb.connect()
    try:
        files = load_events(connection, paths, experiment)
        valid, incomplete = connection.execute(COUNTS_SQL).fetchone()
        lines = count_lines(expand(paths))
        malformed = max(lines - valid, 0)
        table = connection.execute(USER_METRICS_SQL).fetchnumpy()
        sessions = connection.execute(TIMELINE_SQL).fetchnumpy() if timeline else None
    except duckdb.Error as error:
        raise BotifyError(f"cannot read the logs: {error}") from error
    finally:
        connection.close()
    summary = LogSummary(files, lines, malformed, incomplete, sessions)
    columns = {name: np.asarray(table[name]) for name in ("user", "treatment", *METRICS)}
    columns["treatment"] = columns["treatment"].astype(str)
    return columns, summary
