"""Logs to per-user metrics with DuckDB: relational expressions, no Python loops over events.

The SQL here is the whole of sessionization and aggregation, kept portable (window
functions and GROUP BY only) so that the same logic can run on Spark later.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from botify.errors import BotifyError

METRICS = ("time", "sessions", "mean_request_latency", "mean_tracks_per_session", "mean_time_per_session")

# Raw lines (so that malformed ones can be counted), each parsed once into the fields used. The
# reader skips what it cannot take as a line of text (invalid UTF-8, a line over
# MAX_LINE_BYTES, an unterminated huge tail); then lines are counted from the files' own line
# count (`count_lines`), so that every bad line is counted however the reader split or skipped it.
# Columns are split at chr(1), which no JSON text holds raw: `rest` (after it) is NULL only for
# a line without one (nullstr is a newline, which no value can be), so a bad line is never taken
# for the JSON before its first chr(1). The reader also ends a line at a lone CR (no service line
# holds a raw one): a bad line with CRs still counts once, unless a piece of it between CRs is
# itself a whole JSON event, which is then read as one.
MAX_LINE_BYTES = 2 << 20
EVENTS_SQL = """
CREATE TEMP TABLE events AS
WITH lines AS (
    SELECT line, rest, row_number() OVER () AS position
    FROM read_csv($files, columns = {'line': 'VARCHAR', 'rest': 'VARCHAR'}, delim = chr(1), quote = '', escape = '',
                  header = false, auto_detect = false, strict_mode = false, null_padding = true,
                  nullstr = chr(10), ignore_errors = true, max_line_size = """ + str(MAX_LINE_BYTES) + """)
),
fields AS (
    SELECT position, strlen(line) AS size, rest IS NULL AND json_valid(line) AS valid,
           CASE WHEN rest IS NULL AND json_valid(line) THEN json_extract_string(
               line, ['$.message', '$.timestamp', '$.user', '$.time', '$.latency', $path, '$.track',
                      '$.recommendation', '$.propensity']) END AS f
    FROM lines
),
typed AS (
    SELECT position, size, coalesce(valid, false) AS valid, f[1] AS message, TRY_CAST(f[2] AS BIGINT) AS "timestamp",
           TRY_CAST(f[3] AS BIGINT) AS "user", TRY_CAST(f[4] AS DOUBLE) AS "time",
           TRY_CAST(f[5] AS DOUBLE) AS latency, f[6] AS treatment, TRY_CAST(f[7] AS BIGINT) AS track,
           TRY_CAST(f[8] AS BIGINT) AS recommendation, TRY_CAST(f[9] AS DOUBLE) AS propensity
    FROM fields
)
-- The JSON reader takes NaN and Infinity, and "1e999" casts to infinity: such a number is no
-- value (one would make its treatment's means NaN), so the field counts as missing.
SELECT * REPLACE (CASE WHEN isfinite("time") THEN "time" END AS "time",
                  CASE WHEN isfinite(latency) THEN latency END AS latency)
FROM typed
"""

# An event the analysis can use: JSON with every field it needs (an event without a `message`
# is not usable either, hence the coalesce: NULL is not false, and NOT NULL is NULL).
USABLE = """coalesce(valid AND message IN ('next', 'last') AND "user" IS NOT NULL AND "timestamp" IS NOT NULL
                  AND "time" IS NOT NULL AND latency IS NOT NULL, false)"""

# Valid lines, those of them the analysis cannot use, all rows read and their bytes (newlines aside).
COUNTS_SQL = """
SELECT count(*) FILTER (WHERE valid), count(*) FILTER (WHERE valid AND NOT """ + USABLE + """), count(*),
       coalesce(sum(size), 0)
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
    SELECT * FROM events WHERE """ + USABLE + """
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


LOG_NAMES = ("events-*.jsonl*", "data.json", "data-*.json")  # the service's names, and the course's


def expand(paths: list[str | Path]) -> list[str]:
    """Files from paths, directories and globs; a pattern matching nothing is an error. A
    directory gives its *.jsonl* files and, in its sub-folders at any depth, the event logs
    the service or the course's services wrote (`<dir>/<container>/data.json`)."""
    files: list[str] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            nested = {str(p) for pattern in LOG_NAMES for p in path.rglob(pattern) if p.is_file()}
            found = sorted(nested | {str(p) for p in path.glob("*.jsonl*")})
        elif path.is_file():
            found = [str(path)]
        else:
            found = sorted(glob.glob(str(item)))
        if not found:
            raise BotifyError(f"{item}: no log files there")
        files.extend(found)
    return files


def count_lines(files: list[str]) -> int:
    """Lines in the files as bytes (an unterminated last line counts): NumPy over large blocks."""
    import gzip
    import zlib

    block = bytearray(1 << 24)
    data, newline = np.frombuffer(block, dtype=np.uint8), np.empty(len(block), dtype=bool)
    total = 0
    for name in files:
        try:
            with gzip.open(name, "rb") if name.endswith(".gz") else open(name, "rb", buffering=0) as handle:
                last = None  # the file's last byte
                while size := handle.readinto(block):
                    total += int(np.count_nonzero(np.equal(data[:size], 10, out=newline[:size])))
                    last = block[size - 1]
                if last is not None and last != 10:
                    total += 1
        except (OSError, EOFError, zlib.error) as error:  # unreadable, or a cut or corrupt gzip file
            raise BotifyError(f"cannot read the logs: {name}: {error}") from error
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


def experiment_names(paths: list[str | Path]) -> list[str]:
    """The experiment names the logs' events carry (for an error that names the ones present)."""
    files = expand(paths)
    connection = duckdb.connect()
    try:
        rows = connection.execute("""
            SELECT DISTINCT unnest(json_keys(json_extract(line, '$.experiments'))) AS name
            FROM read_csv($files, columns = {'line': 'VARCHAR'}, delim = chr(1), quote = '', escape = '', header = false,
                          auto_detect = false, strict_mode = false, null_padding = true, ignore_errors = true,
                          max_line_size = """ + str(MAX_LINE_BYTES) + """)
            WHERE json_valid(line) AND json_type(json_extract(line, '$.experiments')) = 'OBJECT'
            ORDER BY name""", {"files": files}).fetchall()
    except duckdb.Error:
        return []
    finally:
        connection.close()
    return [name for (name,) in rows]


def user_metrics(
    paths: list[str | Path], experiment: str | None, timeline: bool = False
) -> tuple[dict[str, np.ndarray], LogSummary]:
    """Per-user metrics as columns, with each user's treatment in `experiment` (users outside it
    are left out); with `experiment=None` every user counts, under treatment "". Also what the
    logs held and, if asked, finished sessions per second and treatment."""
    files = expand(paths)
    connection = duckdb.connect()
    try:
        load_events(connection, files, experiment)
        valid, incomplete, rows, size = connection.execute(COUNTS_SQL).fetchone()
        table = connection.execute(USER_METRICS_SQL).fetchnumpy()
        sessions = connection.execute(TIMELINE_SQL).fetchnumpy() if timeline else None
    except duckdb.Error as error:
        raise BotifyError(f"cannot read the logs: {error}") from error
    finally:
        connection.close()
    # If every byte of the files is in a row of valid JSON or its newline, the reader skipped
    # nothing and its rows are the lines. Otherwise (a bad line, CRLF, a cut last line, gzip) the
    # files' own line count says how many lines there were.
    whole = valid == rows and not any(name.endswith(".gz") for name in files) and (
        size + rows == sum(os.path.getsize(name) for name in files))
    lines = rows if whole else count_lines(files)
    malformed = max(lines - valid, 0)
    summary = LogSummary(len(files), lines, malformed, incomplete, sessions)
    columns = {name: np.asarray(table[name]) for name in ("user", "treatment", *METRICS)}
    columns["treatment"] = columns["treatment"].astype(str)
    return columns, summary
