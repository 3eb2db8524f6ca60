"""Which files a list of log paths means, how many lines they hold, and what reading them found.

Both engines and both formats answer with the same `LogSummary`, so the CLI reports JSON lines
and compacted Parquet, DuckDB and Spark alike. A compacted directory (written by
`botify logs compact`) is recognised by its `_sources.jsonl`, which records every source file's
lines and malformed lines: the Parquet rows hold only the valid ones.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from botify.errors import BotifyError

SOURCES = "_sources.jsonl"  # in a compacted directory: one line per source log file
LOG_PATTERN = "*.jsonl*"  # the service's files in a log directory (rotated, gzipped or not)
# In a log directory's sub-folders at any depth: the service's logs and the course's
# (`<dir>/<container>/data.json`, as its docker-compose services wrote them).
NESTED_LOGS = ("events-*.jsonl*", "data.json", "data-*.json")


@dataclass(frozen=True)
class LogSummary:
    """How many lines were read, how many could not be used, and (on request) sessions over time."""

    files: int
    lines: int
    malformed: int
    incomplete_fields: int
    timeline: dict[str, np.ndarray] | None = None

    @classmethod
    def of_sources(cls, sources: list[list[dict]], incomplete_fields: int,
                   timeline: dict[str, np.ndarray] | None = None) -> LogSummary:
        """The summary of compacted directories, from what their `_sources.jsonl` recorded."""
        records = [record for records in sources for record in records]
        return cls(len(records), *source_totals(records), incomplete_fields, timeline)


def source_totals(records: list[dict]) -> tuple[int, int]:
    """Lines and malformed lines of compacted source files, from their `_sources.jsonl` records."""
    return sum(record["lines"] for record in records), sum(record["malformed"] for record in records)


def is_log_file(parts: tuple[str, ...]) -> bool:
    """Whether a file at `parts` below a log directory is an event log: *.jsonl* at the top, the
    service's or the course's names deeper (the one rule both engines list directories by)."""
    return fnmatch.fnmatch(parts[-1], LOG_PATTERN) if len(parts) == 1 else any(
        fnmatch.fnmatch(parts[-1], pattern) for pattern in NESTED_LOGS)


def is_compacted(path: str | Path) -> bool:
    return (Path(path) / SOURCES).is_file()


def expand(paths: list[str | Path]) -> list[str]:
    """Files from paths, directories and globs, sorted (the order that breaks time ties) and
    without repeats; a pattern matching nothing is an error. A directory gives its *.jsonl*
    files and, in its sub-folders at any depth, the event logs the service or the course's
    services wrote; compacted directories are returned as they are."""
    files: list[str] = []
    for item in paths:
        path = Path(item)
        if path.is_dir() and is_compacted(path):
            found = [str(path)]
        elif path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if is_log_file(p.relative_to(path).parts) and p.is_file())
        elif path.is_file():
            found = [str(path)]
        else:
            found = sorted(glob.glob(str(item)))
        if not found:
            raise BotifyError(f"{item}: no log files there")
        files.extend(found)
    return sorted(set(files))


def compacted_only(files: list[str], compacted: list[bool]) -> bool:
    """Whether `files` are compacted directories (True) or JSON-lines files (False): a query
    reads one kind at a time."""
    if any(compacted) and not all(compacted):
        raise BotifyError("mix of JSON-lines logs and compacted directories: read one kind at a time (compacted: "
                          + ", ".join(name for name, flag in zip(files, compacted) if flag) + ")")
    return bool(compacted) and compacted[0]


def count_lines(files: list[str]) -> int:
    """Lines in the files as bytes (an unterminated last line counts): NumPy over large blocks."""
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


def read_sources(directories: list[str]) -> list[list[dict]]:
    """What `botify logs compact` recorded about each source file, per directory (a row's
    `source_id` is its source's index in its directory's list)."""
    found = []
    for directory in directories:
        try:
            text = (Path(directory) / SOURCES).read_text(encoding="utf-8")
            found.append([json.loads(line) for line in text.splitlines() if line])
        except (OSError, ValueError) as error:
            raise BotifyError(f"{directory}: cannot read {SOURCES}: {error}") from error
    return found


def source_ranks(directories: list[str], sources: list[list[dict]] | None = None) -> list[list[int]]:
    """Per directory, each source's rank by path among every directory's sources: the order in
    which the JSON lines would be read, so that ties in time break the same way. An integer,
    because sorting by it costs a fraction of sorting by the path."""
    sources = read_sources(directories) if sources is None else sources
    order = sorted({record["source"] for records in sources for record in records})
    rank = {source: index for index, source in enumerate(order)}
    return [[rank[record["source"]] for record in records] for records in sources]
