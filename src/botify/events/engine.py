"""The seam between the relational work and the engine that runs it: DuckDB on one machine,
Spark on a cluster.

An engine answers two questions about a set of logs (JSON lines or compacted Parquet): the
per-user table of an experiment, and the interactions table training learns from. Both
engines run the SQL of `botify.events.relational` over their own `events` view, so they give
the same answers; `EngineSettings` is the one place their options and defaults live.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from botify.events.files import LogSummary

METRICS = ("time", "sessions", "mean_request_latency", "mean_tracks_per_session", "mean_time_per_session")
INTERACTION_COLUMNS = ("user", "track", "time", "session", "position", "timestamp", "session_start")


class EngineSettings(BaseModel):
    """Which engine reads the logs, and its resources."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["duckdb", "spark"] = Field("duckdb", description="duckdb (one machine) or spark (any cluster)")
    memory_limit: str = Field("768MB", description="DuckDB's memory limit; beyond it, it spills to temp_directory")
    temp_directory: Path | None = Field(None, description="where DuckDB spills (default: a fresh temporary directory)")
    threads: int | None = Field(None, ge=1, description="DuckDB's threads (default: all cores)")
    spark_master: str = Field(default_factory=lambda: os.environ.get("SPARK_MASTER") or "local[*]",
                              description="Spark master URL (default: $SPARK_MASTER, else local[*])")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings")

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, value: str) -> str:
        if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B|B)", value.strip(), re.IGNORECASE):
            raise ValueError(f"{value!r} is not a size such as 512MB or 2GiB")
        return value.strip()


    @field_validator("spark_master")
    @classmethod
    def _master(cls, value: str) -> str:
        return check_master(value)


def check_master(value: str) -> str:
    """A Spark master URL, checked before Spark sees it: one it cannot parse makes its JVM die
    with a page of stack trace."""
    if not re.fullmatch(r"local(\[(\d+|\*)(,\s*\d+)?\])?|(spark|k8s|mesos)://\S+|yarn", value.strip()):
        raise ValueError(f"{value!r} is not a Spark master (local[*], local[N], spark://host:port, yarn, k8s://...)")
    return value.strip()


class Engine(Protocol):
    def user_metrics(self, paths: list[str | Path], experiment: str | None,
                     timeline: bool = False) -> tuple[dict[str, np.ndarray], LogSummary]: ...

    def interactions(self, paths: list[str | Path]) -> dict[str, np.ndarray]: ...


def open_engine(settings: EngineSettings | None = None) -> Engine:
    settings = settings or EngineSettings()
    if settings.engine == "spark":
        from botify.events.spark import SparkEngine

        return SparkEngine(settings)
    from botify.events.duck import DuckDBEngine

    return DuckDBEngine(settings)


def split_user_metrics(table: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The per-user columns of USER_METRICS_SQL's result, and the counts of its `total` row."""
    total = np.asarray(table["total"]).astype(bool)
    counts = {name: int(np.asarray(table[name])[total][0] or 0) if total.any() else 0
              for name in ("rows_read", "valid_rows", "unusable", "bytes")}
    columns = {name: np.asarray(table[name])[~total] for name in ("user", "treatment", *METRICS)}
    columns["user"] = columns["user"].astype(np.int64)
    columns["sessions"] = columns["sessions"].astype(np.int64)
    columns["treatment"] = columns["treatment"].astype(str)
    for name in METRICS[2:] + ("time",):
        columns[name] = columns[name].astype(np.float64)
    return columns, counts


def timeline_columns(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"treatment": np.asarray(table["treatment"]).astype(str),
            "second": np.asarray(table["second"]).astype(np.int64),
            "sessions": np.asarray(table["sessions"]).astype(np.int64)}


def interaction_columns(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    types = {"user": np.int64, "track": np.int64, "time": np.float64, "session": np.int64, "position": np.int64,
             "timestamp": np.int64, "session_start": np.int64}
    return {name: np.asarray(table[name]).astype(types[name]) for name in INTERACTION_COLUMNS}
