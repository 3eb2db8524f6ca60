"""The DuckDB engine: the logs as a streaming `events` view, never a table held in memory.

JSON lines are read raw (so that malformed ones can be counted), each parsed once into the
fields used; compacted Parquet is read column by column. The view feeds one query that numbers
sessions, aggregates per user and counts what was read in the same pass, so the memory used is
what DuckDB's operators need under `memory_limit` (the window's sort spills to
`temp_directory`), not the size of the logs.

The JSON reader skips what it cannot take as a line of text (invalid UTF-8, a line over
MAX_LINE_BYTES, an unterminated huge tail); then lines are counted from the files' own line
count (`count_lines`), so that every bad line is counted however the reader split or skipped it.
Columns are split at chr(1), which no JSON text holds raw: `rest` (after it) is NULL only for a
line without one (nullstr is a newline, which no value can be), so a bad line is never taken for
the JSON before its first chr(1). The reader also ends a line at a lone CR (no service line holds
a raw one): a bad line with CRs still counts once, unless a piece of it between CRs is itself a
whole JSON event, which is then read as one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import duckdb

from botify.errors import BotifyError
from botify.events.engine import EngineSettings, interaction_columns, split_user_metrics, timeline_columns
from botify.events.files import (SOURCES, LogSummary, compacted_only, count_lines, expand, is_compacted, read_sources,
                                 source_ranks)
from botify.events.relational import (ANALYSED, INTERACTIONS_SQL, SESSIONS_SQL, TIMELINE_SELECT,
                                      USER_METRICS_SELECT, USER_METRICS_SQL)
from botify.events.schema import FIELDS, MAX_LINE_BYTES, NUMBERS, ORIGIN


def literal(value: str) -> str:
    """`value` as a SQL string literal (views take no parameters)."""
    return "'" + value.replace("'", "''") + "'"


def _files_literal(files: list[str]) -> str:
    return "[" + ", ".join(literal(name) for name in files) + "]"


def treatment_path(experiment: str) -> str:
    return '$.experiments."' + experiment.replace('"', '\\"') + '"'


def parsed_lines(files: list[str], fields: dict[str, str]) -> str:
    """A query of the files' raw lines, each parsed once: `position` (file order), `size`,
    `valid`, `text` and each of `fields` (name → JSON path) typed as the schema says; NaN and
    ±Infinity (the JSON reader takes them, and "1e999" casts to infinity) are missing values."""
    names = list(fields)
    typed = []
    for index, name in enumerate(names, start=1):
        kind = FIELDS.get(name, ("VARCHAR",))[0]
        value = f"f[{index}]" if kind == "VARCHAR" else f"TRY_CAST(f[{index}] AS {kind})"
        if name in NUMBERS:
            value = f"CASE WHEN isfinite({value}) THEN {value} END"
        typed.append(f'{value} AS "{name}"')
    paths = "[" + ", ".join(literal(fields[name]) for name in names) + "]"
    return f"""
    SELECT {", ".join(["position", "size", "coalesce(valid, false) AS valid", "text", *typed])}
    FROM (
        SELECT position, strlen(line) AS size, rest IS NULL AND json_valid(line) AS valid, line AS text,
               {f"CASE WHEN rest IS NULL AND json_valid(line) THEN json_extract_string(line, {paths}) END" if names
                else "NULL"} AS f
        FROM (
            SELECT line, rest, row_number() OVER () AS position
            FROM read_csv({_files_literal(files)}, columns = {{'line': 'VARCHAR', 'rest': 'VARCHAR'}}, delim = chr(1),
                          quote = '', escape = '', header = false, auto_detect = false, strict_mode = false,
                          null_padding = true, nullstr = chr(10), ignore_errors = true,
                          max_line_size = {MAX_LINE_BYTES})
        )
    )"""


def _columns(extra: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in (*ANALYSED, *extra))


def json_events_view(files: list[str], experiment: str | None, extra: tuple[str, ...] = ()) -> str:
    """The `events` view over JSON lines; without an experiment every event's treatment is "".
    `extra` fields of the schema are added to the analysed ones (e.g. propensity, for `botify ope`)."""
    fields = {name: f"$.{name}" for name in (*ANALYSED, *extra)}
    if experiment is not None:
        fields["treatment"] = treatment_path(experiment)
    treatment = "treatment" if experiment is not None else "'' AS treatment"
    return (f"CREATE OR REPLACE TEMP VIEW events AS SELECT 0 AS file, position AS line, size, valid, "
            f"{_columns(extra)}, {treatment} FROM ({parsed_lines(files, fields)})")


def parquet_files(directory: str | Path) -> str | None:
    """`read_parquet` of a compacted directory's rows, or None when it has none (every line of
    its sources was malformed)."""
    if not any(Path(directory).glob("*/*.parquet")):
        return None
    return f"read_parquet({literal(str(Path(directory) / '*' / '*.parquet'))})"


def parquet_events_view(directories: list[str], sources: list[list[dict]], experiment: str | None,
                        extra: tuple[str, ...] = ()) -> str:
    """The `events` view over compacted directories: their rows are the valid lines, and a
    row's `file` is its source file's rank among all the sources by path (see `source_ranks`).
    A directory without rows (every line was malformed) adds none."""
    treatment = "''" if experiment is None else f"experiments[{literal(experiment)}]"
    parts = ["SELECT 0 AS file, 0 AS line, 0 AS size, true AS valid, "
             + ", ".join(f'CAST(NULL AS {FIELDS[name][0]}) AS "{name}"' for name in (*ANALYSED, *extra))
             + ", '' AS treatment WHERE false"]
    for directory, ranks in zip(directories, source_ranks(directories, sources)):
        rows = parquet_files(directory)
        if rows is None:
            continue
        # Usually the sources were compacted in path order, and the rank is the id itself.
        file = "source_id" if ranks == list(range(len(ranks))) else f"[{', '.join(map(str, ranks))}][source_id + 1]"
        parts.append(f"SELECT {file} AS file, line, 0 AS size, true AS valid, {_columns(extra)}, {treatment} AS treatment "
                     f"FROM {rows}")
    return "CREATE OR REPLACE TEMP VIEW events AS " + " UNION ALL ".join(parts)


class DuckDBEngine:
    """Logs on this machine (JSON lines or compacted Parquet), with DuckDB under a memory limit."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings

    @contextmanager
    def connect(self):
        spill = self.settings.temp_directory
        scratch = None if spill is not None else tempfile.mkdtemp(prefix="botify-duckdb-")
        config = {"memory_limit": self.settings.memory_limit, "temp_directory": str(spill or scratch)}
        if self.settings.threads:
            config["threads"] = self.settings.threads
        try:
            connection = duckdb.connect(config=config)
            connection.execute("SET enable_progress_bar = false")
        except duckdb.Error as error:
            raise BotifyError(f"cannot start DuckDB: {error}") from error
        try:
            yield connection
        except duckdb.Error as error:
            raise BotifyError(f"cannot read the logs: {error}") from error
        finally:
            connection.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def _view(self, connection, files: list[str], experiment: str | None, extra: tuple[str, ...] = ()
              ) -> list[list[dict]] | None:
        """Define `events`; for compacted directories, return what their sources held (`read_sources`)."""
        if not compacted_only(files, [Path(name).is_dir() for name in files]):
            connection.execute(json_events_view(files, experiment, extra))
            return None
        sources = read_sources(files)
        connection.execute(parquet_events_view(files, sources, experiment, extra))
        return sources

    @contextmanager
    def events(self, paths: list[str | Path], experiment: str | None, extra: tuple[str, ...] = ()):
        """A connection with the `events` view over the logs (for ad-hoc queries: the studio's
        board, `botify.api.read_events`, `botify ope`), with `extra` fields of the schema besides
        the analysed ones; DuckDB's errors become BotifyError."""
        files = expand(paths)
        with self.connect() as connection:
            self._view(connection, files, experiment, extra)
            yield connection

    def experiment_names(self, paths: list[str | Path]) -> list[str]:
        """The experiment names the logs' events carry (for an error that names the ones present)."""
        files = expand(paths)
        if Path(files[0]).is_dir():
            names = " UNION ALL ".join(f"SELECT unnest(map_keys(experiments)) AS name FROM {rows}"
                                       for rows in map(parquet_files, files) if rows is not None)
        else:
            names = (f"SELECT unnest(json_keys(json_extract(text, '$.experiments'))) AS name "
                     f"FROM ({parsed_lines(files, {})}) "
                     f"WHERE valid AND json_type(json_extract(text, '$.experiments')) = 'OBJECT'")
        if not names:
            return []
        with self.connect() as connection:
            rows = connection.execute(f"SELECT DISTINCT name FROM ({names}) ORDER BY name").fetchall()
        return [name for (name,) in rows]

    def user_metrics(self, paths, experiment, timeline=False):
        files = expand(paths)
        with self.connect() as connection:
            sources = self._view(connection, files, experiment)
            return self._user_metrics(connection, files, sources, timeline)

    @contextmanager
    def read_once(self, paths: list[str | Path], experiment: str | None):
        """The per-user metrics and log summary (as `user_metrics`) and a connection whose `events`
        holds the logs as read then: for a reader that asks the same logs several things (the
        studio's board), one pass over the files instead of one per query (`events` is a view,
        read again by every query over it)."""
        files = expand(paths)
        with self.connect() as connection:
            sources = self._view(connection, files, experiment)
            connection.execute("CREATE TEMP TABLE events_read AS SELECT * FROM events")
            connection.execute("CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM events_read")
            yield self._user_metrics(connection, files, sources, False), connection

    def _user_metrics(self, connection, files: list[str], sources: list[list[dict]] | None, timeline: bool):
        sessions = None
        if timeline:  # the sessions once (spilling beyond the memory limit), then both results
            connection.execute(f"CREATE TEMP TABLE sessions AS {SESSIONS_SQL}")
            users, counts = split_user_metrics(connection.execute(USER_METRICS_SELECT).fetchnumpy())
            sessions = timeline_columns(connection.execute(TIMELINE_SELECT).fetchnumpy())
        else:
            users, counts = split_user_metrics(connection.execute(USER_METRICS_SQL).fetchnumpy())
        if sources is not None:
            return users, LogSummary.of_sources(sources, counts["unusable"], sessions)
        valid, rows = counts["valid_rows"], counts["rows_read"]
        # If every byte of the files is in a row of valid JSON or its newline, the reader skipped
        # nothing and its rows are the lines. Otherwise (a bad line, CRLF, a cut last line, gzip) the
        # files' own line count says how many lines there were.
        whole = valid == rows and not any(name.endswith(".gz") for name in files) and (
            counts["bytes"] + rows == sum(os.path.getsize(name) for name in files))
        lines = rows if whole else count_lines(files)
        return users, LogSummary(len(files), lines, max(lines - valid, 0), counts["unusable"], sessions)

    def interactions(self, paths):
        with self.events(paths, None) as connection:
            return interaction_columns(connection.execute(INTERACTIONS_SQL).fetchnumpy())

    def compact(self, paths: list[str | Path], out: Path) -> list[dict]:
        """JSON-lines logs → Parquet (zstd) under `out`, partitioned by day; per source file, a
        record of its lines and malformed lines in `out/_sources.jsonl`, and the malformed rows
        the reader could decode in `out/_malformed/`. A source already compacted there is refused."""
        files = expand(paths)
        if Path(files[0]).is_dir():
            raise BotifyError(f"{files[0]} is compacted already")
        out.mkdir(parents=True, exist_ok=True)
        done = [record["source"] for record in read_sources([str(out)])[0]] if is_compacted(out) else []
        again = [name for name in files if str(Path(name).resolve()) in done]
        if again:
            raise BotifyError(f"already compacted into {out}: {', '.join(again)}")
        columns = {name: f"$.{name}" for name in FIELDS if name != "experiments"}
        day = ("CASE WHEN \"timestamp\" BETWEEN 0 AND 253402300799999 THEN strftime(epoch_ms(\"timestamp\"), "
               "'%Y-%m-%d') ELSE 'unknown' END")
        records = []
        with self.connect() as connection:
            for source_id, name in enumerate(files, start=len(done)):
                source = str(Path(name).resolve())
                tag = hashlib.sha256(source.encode()).hexdigest()[:16]
                parsed = parsed_lines([name], columns)
                select = ", ".join(
                    'TRY_CAST(json_extract(text, \'$.experiments\') AS MAP(VARCHAR, VARCHAR)) AS experiments'
                    if field == "experiments" else f'"{field}"' for field in FIELDS)
                valid = connection.execute(
                    f"COPY (SELECT CAST({source_id} AS {ORIGIN['source_id'][0]}) AS source_id, "
                    f"CAST(position AS {ORIGIN['line'][0]}) AS line, {select}, {day} AS day "
                    f"FROM ({parsed}) WHERE valid) TO {literal(str(out))} (FORMAT parquet, COMPRESSION zstd, "
                    f"PARTITION_BY (day), FILENAME_PATTERN {literal('events-' + tag + '-{i}')}, "
                    f"OVERWRITE_OR_IGNORE true)").fetchone()[0]
                lines = count_lines([name])
                if valid < lines:
                    (out / "_malformed").mkdir(exist_ok=True)
                    connection.execute(
                        f"COPY (SELECT {literal(source)} AS source, position AS line, text FROM ({parsed}) "
                        f"WHERE NOT valid) TO {literal(str(out / '_malformed' / (tag + '.jsonl')))} (FORMAT json)")
                records.append({"source": source, "lines": lines, "malformed": max(lines - valid, 0),
                                "events": valid, "bytes": os.path.getsize(name)})
        with open(out / SOURCES, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in records)
        return records


def events_view(paths: list[str | Path], experiment: str | None = None, extra: tuple[str, ...] = ()):
    """`DuckDBEngine.events` with the default settings: the one way ad-hoc readers of the logs
    (the studio, `botify.api.read_events`, `botify ope`) get the `events` view."""
    return DuckDBEngine(EngineSettings()).events(paths, experiment, extra)


def metrics_and_events(paths: list[str | Path], experiment: str | None = None):
    """`DuckDBEngine.read_once` with the default settings: the studio's board, from one read."""
    return DuckDBEngine(EngineSettings()).read_once(paths, experiment)
