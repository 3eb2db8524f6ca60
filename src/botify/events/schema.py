"""The event log's schema, in one place: field names, types, the schema version, and the event
the service writes.

The service writes one JSON line per answered request; the analysis, the training dataset, the
Parquet compaction and both engines read the same fields. Naming them once here is what keeps a
renamed or added field from silently reading as missing in one reader and not in another.
"""

from __future__ import annotations

# 2: `next` events carry propensity and candidates, people's events carry agent; 3: and deterministic
SCHEMA_VERSION = 3

# The parsed relational view of one event: field → (DuckDB type, Spark type). The compacted
# Parquet files hold exactly these columns (plus where each line came from), in this order.
FIELDS: dict[str, tuple[str, str]] = {
    "message": ("VARCHAR", "string"),
    "timestamp": ("BIGINT", "bigint"),  # ms since the epoch
    "user": ("BIGINT", "bigint"),
    "track": ("BIGINT", "bigint"),  # the track just played
    "time": ("DOUBLE", "double"),  # the share of it played, 0..1
    "latency": ("DOUBLE", "double"),  # seconds the service took to answer
    "recommendation": ("BIGINT", "bigint"),  # `next` only
    "experiments": ("MAP(VARCHAR, VARCHAR)", "map<string,string>"),  # experiment → treatment
    "recommender": ("VARCHAR", "string"),  # `next` only: who answered
    "fallback": ("BOOLEAN", "boolean"),  # `next` only: a fallback answered
    "propensity": ("DOUBLE", "double"),  # `next` only: the recommendation's probability under the serving step
    "candidates": ("BIGINT", "bigint"),  # `next` only: how many tracks the serving step chose among
    "deterministic": ("BOOLEAN", "boolean"),  # `next` only: a ranked pick (propensity 1 by construction)
    "agent": ("VARCHAR", "string"),  # "person" for botify studio's listeners; absent for simulated ones
    "request_id": ("VARCHAR", "string"),
    "data_version": ("VARCHAR", "string"),
    "schema": ("INTEGER", "int"),
}
NUMBERS = ("time", "latency")  # NaN and ±Infinity in these are missing values, not numbers
MESSAGES = ("next", "last")  # a `last` event ends its session

# Where a compacted row came from: its source file (an index into the directory's
# _sources.jsonl) and its line there (file order breaks time ties).
ORIGIN = {"source_id": ("INTEGER", "int"), "line": ("BIGINT", "bigint")}

# A line longer than this is not an event (the reader skips it; it is counted as malformed).
MAX_LINE_BYTES = 2 << 20


def event(message: str, timestamp: int, user: int, track: int, time: float, latency: float,
          experiments: dict[str, str], request_id: str, data_version: str, *,
          recommendation: int | None = None, recommender: str | None = None, fallback: bool | None = None,
          propensity: float | None = None, candidates: int | None = None, deterministic: bool | None = None,
          agent: str | None = None) -> dict:
    """One event as the service logs it (a `next` also names the recommendation, who made it and
    its probability under the serving step; `agent` marks a person's events)."""
    if message == "next":  # one literal per message: fields in the logged order, no updates
        record = {"message": message, "timestamp": timestamp, "user": user, "track": track, "time": time,
                  "latency": latency, "recommendation": recommendation, "experiments": experiments,
                  "recommender": recommender, "fallback": fallback, "propensity": propensity,
                  "candidates": candidates, "deterministic": deterministic, "request_id": request_id,
                  "data_version": data_version, "schema": SCHEMA_VERSION}
    else:
        record = {"message": message, "timestamp": timestamp, "user": user, "track": track, "time": time,
                  "latency": latency, "experiments": experiments, "request_id": request_id,
                  "data_version": data_version, "schema": SCHEMA_VERSION}
    if agent is not None:
        record["agent"] = agent
    return record
