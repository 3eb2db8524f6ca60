"""Sessions and per-user metrics as SQL that DuckDB and Spark both run unchanged.

Each engine defines one view, `events`, over its input (JSON lines or compacted Parquet): one
row per line read, with `file` and `line` (their order is the file order that breaks time
ties), `size` (the line's bytes, where known), `valid` (the line is one JSON value) and the
typed fields, `treatment` being the event's treatment in the analysed experiment. Everything
after that view — usable events, session numbering, per-session and per-user aggregation —
is written once here, in the subset of SQL the two dialects share (window functions, FILTER,
GROUPING SETS, double-quoted identifiers, NULLIF instead of engine-specific division by zero).
"""

from __future__ import annotations

# The typed fields of the `events` view (besides file, line, size, valid and treatment).
ANALYSED = ("message", "timestamp", "user", "track", "time", "latency")

# Times and latencies are summed exactly, as decimals with 15 places, so that a user's figures do
# not depend on the order an engine's threads add them in (floats do: 0.1 + 0.2 + 0.3 is not
# 0.3 + 0.2 + 0.1), and the analysis of the same logs gives the same bits every run (on one
# engine: DuckDB's cast of a double to a decimal is not correctly rounded, Spark's is, so the two
# agree to about 1e-15 of a value). A value as far out as a billion (seconds, or shares of a
# track) is not a measurement; such an event is unusable (and not trained on), which also keeps
# every sum inside the decimal's 23 integer digits.
BOUND = 1e9


def exact(column: str) -> str:
    """`column` (a double of a usable event) as the exact decimal the sums add."""
    return f'CAST("{column}" AS DECIMAL(38, 15))'


# An event the analysis can use: JSON with every field it needs (an event without a `message`
# is not usable either, hence the coalesce: NULL is not false, and NOT NULL is NULL).
USABLE = f"""coalesce(valid AND message IN ('next', 'last') AND "user" IS NOT NULL AND "timestamp" IS NOT NULL
                  AND abs("time") < {BOUND:.0f} AND abs(latency) < {BOUND:.0f}, false)"""

# An event training can use: it needs the track, not the latency.
TRAINABLE = f"""coalesce(valid AND message IN ('next', 'last') AND "user" IS NOT NULL AND "timestamp" IS NOT NULL
                     AND abs("time") < {BOUND:.0f} AND track IS NOT NULL, false)"""

ORDER = '"timestamp", file, line'  # a user's events in time order, file order breaking ties


def session_number(condition: str, last: str = "message = 'last'") -> str:
    """The session an event belongs to: how many `last` events (meeting `condition`) its user
    sent before it. The analysis and the training dataset both number sessions so."""
    return f"""CAST(coalesce(sum(CASE WHEN {condition} AND {last} THEN 1 ELSE 0 END) OVER (
        PARTITION BY "user" ORDER BY {ORDER} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT)"""


# Every line is numbered and grouped by (user, session) in one pass, so that the counts of what
# was read come out of the same scan as the metrics: a row with `total` = 1 (the empty grouping
# set) holds them. Only sessions that end with their `last` and have a treatment count; per user,
# the course's notebook metrics. A session's treatment is the least of its events' (they agree
# unless an experiment changed mid-session).
SESSIONS = """
WITH flagged AS (
    SELECT "user", "timestamp", file, line, size, valid, "time", latency, treatment,
           """ + USABLE + """ AS usable, message = 'last' AS is_last
    FROM events
),
numbered AS (
    SELECT *, """ + session_number("usable", "is_last") + """ AS session
    FROM flagged
),
sessions AS (
    SELECT "user", session, count(*) AS rows_read, count(*) FILTER (WHERE valid) AS valid_rows,
           count(*) FILTER (WHERE valid AND NOT usable) AS unusable, sum(size) AS bytes,
           min(treatment) FILTER (WHERE usable) AS treatment, count(*) FILTER (WHERE usable) AS tracks,
           sum(CASE WHEN usable THEN """ + exact("time") + """ END) AS session_time,
           sum(CASE WHEN usable THEN """ + exact("latency") + """ END) AS latency_sum,
           coalesce(bool_or(is_last) FILTER (WHERE usable), false) AS complete,
           min("timestamp") FILTER (WHERE usable) AS started
    FROM numbered GROUP BY "user", session
)
"""

# Per user (and the read counts' row), over `sessions`: the CTE above, or a table of it.
USER_METRICS_SELECT = """
SELECT grouping("user") AS total, "user", treatment, counted,
       CAST(sum(session_time) AS DOUBLE) AS time,
       count(*) AS sessions,
       1000 * CAST(sum(latency_sum) AS DOUBLE) / nullif(sum(tracks), 0) AS mean_request_latency,
       sum(tracks) / nullif(count(*), 0) AS mean_tracks_per_session,
       CAST(sum(session_time) AS DOUBLE) / nullif(count(*), 0) AS mean_time_per_session,
       sum(rows_read) AS rows_read, sum(valid_rows) AS valid_rows, sum(unusable) AS unusable, sum(bytes) AS bytes
FROM (SELECT *, complete AND treatment IS NOT NULL AS counted FROM sessions) s
GROUP BY GROUPING SETS (("user", treatment, counted), ())
HAVING grouping("user") = 1 OR counted
ORDER BY total, "user", treatment
"""
USER_METRICS_SQL = SESSIONS + USER_METRICS_SELECT  # in one streaming pass over the events

# Finished sessions started per second, per treatment (for the report's timeline), over a
# table of `sessions` (SESSIONS_SQL): with the per-user metrics, the events are read once.
TIMELINE_SELECT = """
SELECT treatment, CAST(floor(started / 1000) AS BIGINT) AS second, count(*) AS sessions
FROM sessions WHERE complete AND treatment IS NOT NULL
GROUP BY treatment, CAST(floor(started / 1000) AS BIGINT) ORDER BY treatment, second
"""
SESSIONS_SQL = SESSIONS + "SELECT * FROM sessions"

# One row per track played: its session and position in it, and when the session started.
INTERACTIONS_SQL = """
WITH numbered AS (
    SELECT *, """ + session_number("true") + """ AS session
    FROM events WHERE """ + TRAINABLE + """
)
SELECT "user", track, "time", session,
       row_number() OVER (PARTITION BY "user", session ORDER BY """ + ORDER + """) - 1 AS position,
       "timestamp",
       min("timestamp") OVER (PARTITION BY "user", session) AS session_start
FROM numbered
ORDER BY "user", session, position
"""
