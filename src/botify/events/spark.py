"""The Spark engine: the same `events` view and the same SQL, on any Spark cluster.

This is the course's path for logs that outgrow one machine: the logs sit on HDFS or S3 (any
URI Hadoop reads, globs and directories included), Spark parses and sessionizes them where they
are, and only the per-user table (or the interactions) comes back to the driver. The only
Spark-specific code is this view: JSON lines are read as text split at "\\n" only, and a line
counts as an event exactly when DuckDB's reader would take it (one JSON value, valid UTF-8, at
most MAX_LINE_BYTES, no chr(1)); compacted Parquet is read as it is.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from botify.errors import BotifyError
from botify.events.engine import (EngineSettings, check_master, interaction_columns, split_user_metrics,
                                  timeline_columns)
from botify.events.files import SOURCES, LogSummary, compacted_only, is_log_file, source_ranks
from botify.events.relational import (ANALYSED, INTERACTIONS_SQL, SESSIONS_SQL, TIMELINE_SELECT,
                                      USER_METRICS_SELECT, USER_METRICS_SQL)
from botify.events.schema import FIELDS, MAX_LINE_BYTES, NUMBERS

# Settings every botify session needs: the shared SQL quotes identifiers with double quotes
# (which Spark allows in ANSI mode), and times are UTC, as in the compacted day partitions.
REQUIRED = {"spark.sql.ansi.enabled": "true", "spark.sql.ansi.doubleQuotedIdentifiers": "true",
            "spark.sql.session.timeZone": "UTC"}
DEFAULTS = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}


@functools.cache  # once per process (a failed check raises, and is not cached)
def check_java() -> None:
    """Spark 4 runs on Java 17 or later; without it PySpark fails with a page of the JVM's output."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home and (Path(java_home) / "bin" / "java").is_file() \
        else shutil.which("java")
    advice = "(e.g. apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
    if java is None:
        raise BotifyError(f"the Spark engine needs Java 17 or later: none on PATH or in JAVA_HOME {advice}")
    try:
        banner = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError) as error:
        raise BotifyError(f"the Spark engine needs Java 17 or later: {java} does not run ({error})") from None
    found = re.search(r'version "((?:1\.)?(\d+)[^"]*)"', banner)
    if found is None or int(found.group(2)) < 17:
        version = found.group(1) if found else "unknown"
        raise BotifyError(f"the Spark engine needs Java 17 or later: {java} is version {version} {advice}")


def spark_session(settings: EngineSettings):
    """The Spark session (one per process: a running one is reused, with botify's settings)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise BotifyError("the Spark engine needs PySpark: pip install 'botify[spark]'") from None
    check_java()
    try:  # $SPARK_MASTER reaches here unchecked (a default is not validated)
        master = check_master(settings.spark_master)
    except ValueError as error:
        raise BotifyError(f"SPARK_MASTER: {error}") from None
    builder = SparkSession.builder.master(master).appName("botify")
    for key, value in {**DEFAULTS, **settings.spark_conf, **REQUIRED}.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as error:  # Py4J and JVM start-up errors have no common base class
        raise BotifyError(f"cannot start Spark ({settings.spark_master}): {str(error).splitlines()[0]}") from None
    session.sparkContext.setLogLevel("FATAL")  # failures reach the user as one line
    return session


def spark_reason(text: str) -> str:
    """One line out of a JVM error: the root cause's message, with the file the failed read was
    on ("...events-0-0001.jsonl.gz: Unexpected end of input stream"), else the first line."""
    causes = [line.split("Caused by: ", 1)[1] for line in text.splitlines() if "Caused by: " in line]
    if not causes:
        return text.strip().splitlines()[0]
    root = causes[-1].split(": ", 1)[-1].strip()
    failed = next((re.search(r"reading file (\S+?)\.?\s", cause) for cause in causes
                   if "reading file " in cause), None)
    return f"{failed.group(1)}: {root}" if failed else root


class SparkEngine:
    """Logs anywhere Hadoop reads them (JSON lines or compacted Parquet), with Spark."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.spark = spark_session(settings)

    def _hadoop(self, uri: str):
        jvm = self.spark.sparkContext._jvm
        path = jvm.org.apache.hadoop.fs.Path(uri)
        return path, path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())

    def expand(self, paths: list[str | Path]) -> tuple[list[str], bool]:
        """The files (or compacted directories) behind paths, directories and globs, sorted, and
        whether they are compacted; a pattern matching nothing is an error."""
        compacted: dict[str, bool] = {}  # each file or directory found: whether it is a compacted directory
        for item in paths:
            path, filesystem = self._hadoop(str(item))
            found = {}
            for status in filesystem.globStatus(path) or []:
                name = status.getPath()
                if not status.isDirectory():
                    found[name.toString()] = False
                elif filesystem.exists(self._hadoop(f"{name.toString()}/{SOURCES}")[0]):
                    found[name.toString()] = True
                else:
                    found.update(dict.fromkeys(self._logs_below(name, filesystem), False))
            if not found:
                raise BotifyError(f"{item}: no log files there")
            compacted.update(found)
        files = sorted(compacted)  # as the listing said: no second call per file to the filesystem
        return files, compacted_only(files, [compacted[name] for name in files])

    @staticmethod
    def _logs_below(directory, filesystem) -> list[str]:
        """The event logs in a directory and, at any depth, its sub-folders (`files.is_log_file`)."""
        root = directory.toUri().getPath().rstrip("/") + "/"
        found, children = [], filesystem.listFiles(directory, True)
        while children.hasNext():
            child = children.next().getPath()
            if is_log_file(tuple(child.toUri().getPath()[len(root):].split("/"))):
                found.append(child.toString())
        return found

    def read_sources(self, directories: list[str]) -> list[list[dict]]:
        """As `files.read_sources`, through Hadoop's filesystems."""
        found = []
        for directory in directories:
            path, filesystem = self._hadoop(f"{directory}/{SOURCES}")
            stream = filesystem.open(path)
            try:
                text = self.spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
            finally:
                stream.close()
            found.append([json.loads(line) for line in text.splitlines() if line])
        return found

    def _view(self, files: list[str], compacted: bool, experiment: str | None) -> list[list[dict]] | None:
        """Define `events`; for compacted directories, return what their sources held."""
        from pyspark.sql import functions as F

        if compacted:
            sources = self.read_sources(files)
            columns = ", ".join(f"`{name}` {FIELDS[name][1]}" for name in ANALYSED)
            frames = [self.spark.createDataFrame(  # no rows, in case no directory has any
                [], f"file bigint, line bigint, size bigint, valid boolean, {columns}, treatment string")]
            for directory, ranks in zip(files, source_ranks(files, sources)):
                path, filesystem = self._hadoop(f"{directory}/*/*.parquet")
                if not filesystem.globStatus(path):  # every line of its sources was malformed
                    continue
                frame = self.spark.read.parquet(directory)
                treatment = F.lit("") if experiment is None else F.try_element_at("experiments", F.lit(experiment))
                frames.append(frame.select(
                    F.element_at(F.array(*map(F.lit, ranks)), F.col("source_id") + 1).alias("file"), "line",
                    F.lit(0).cast("bigint").alias("size"), F.lit(True).alias("valid"),
                    *ANALYSED, treatment.alias("treatment")))
            events = frames[0]
            for frame in frames[1:]:
                events = events.unionByName(frame)
            events.createOrReplaceTempView("events")
            return sources
        # A row's place in its file: the split it was read in (by its start, zero-padded so that
        # the strings sort as numbers), then its order within the split's partition.
        block = F.lpad(F.col("_metadata.file_block_start").cast("string"), 20, "0")
        lines = self.spark.read.option("lineSep", "\n").text(files).select(
            "value", F.concat_ws(" ", F.col("_metadata.file_path"), block).alias("file"),
            F.monotonically_increasing_id().alias("line"))
        # One parse of "[" + line + "]" checks that the line is exactly one JSON value (trailing
        # junk breaks the array) and reads the fields; only a line whose value is not an object
        # needs a second look to tell it from broken JSON.
        value, options = F.col("value"), {"allowNonNumericNumbers": "true"}
        wrapped = F.concat(F.lit("["), value, F.lit("]"))
        schema = ", ".join(f"`{name}`: string" for name in (*ANALYSED, "experiments"))
        plain = (F.octet_length(value) <= MAX_LINE_BYTES) & F.expr("is_valid_utf8(value)") & (F.instr(value, "\x01") == 0)
        parsed = lines.select("file", "line", F.octet_length(value).cast("bigint").alias("size"), plain.alias("plain"),
                              wrapped.alias("wrapped"), F.from_json(wrapped, f"array<struct<{schema}>>", options).alias("w"))
        one_value = F.when(F.col("w").isNotNull(), F.size("w") == 1).otherwise(
            F.size(F.from_json("wrapped", "array<string>", options)) == 1)
        parsed = parsed.select("file", "line", "size", F.coalesce(F.col("plain") & one_value, F.lit(False)).alias("valid"),
                               "w").select("file", "line", "size", "valid",
                                           F.when(F.col("valid"), F.try_element_at("w", F.lit(1))).alias("f"))
        columns = []
        for name in ANALYSED:
            raw = F.col(f"f.{name}")
            kind = FIELDS[name][1]
            if kind == "bigint":  # as DuckDB casts a JSON number's text: 5.5 rounds to 6, 1e20 is no BIGINT
                typed = F.expr(f"try_cast(round(try_cast(f.`{name}` AS DECIMAL(38, 9))) AS BIGINT)")
            elif kind == "double":
                typed = F.expr(f"try_cast(f.`{name}` AS DOUBLE)")
            else:
                typed = raw
            if name in NUMBERS:
                typed = F.when(~F.isnan(typed) & (F.abs(typed) != float("inf")), typed)
            columns.append(typed.alias(name))
        treatment = F.lit("") if experiment is None else F.try_element_at(
            F.from_json(F.col("f.experiments"), "map<string,string>"), F.lit(experiment))
        parsed.select("file", "line", "size", "valid", *columns, treatment.alias("treatment")) \
            .createOrReplaceTempView("events")
        return None

    def _collect(self, sql: str) -> dict[str, np.ndarray]:
        table = self.spark.sql(sql).toArrow()
        return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}

    def _run(self, work):
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        try:
            return work()
        except (PySparkException, Py4JError) as error:
            raise BotifyError(f"Spark cannot read the logs: {spark_reason(str(error))}") from None

    def user_metrics(self, paths, experiment, timeline=False):
        files, compacted = self._run(lambda: self.expand(paths))
        sources = self._run(lambda: self._view(files, compacted, experiment))
        if not timeline:
            users, counts = split_user_metrics(self._run(lambda: self._collect(USER_METRICS_SQL)))
            sessions = None
        else:  # the sessions once (cached), then both results
            table = self._run(lambda: self.spark.sql(SESSIONS_SQL).cache())
            try:
                table.createOrReplaceTempView("sessions")
                users, counts = split_user_metrics(self._run(lambda: self._collect(USER_METRICS_SELECT)))
                sessions = timeline_columns(self._run(lambda: self._collect(TIMELINE_SELECT)))
            finally:
                table.unpersist()
        if sources is not None:
            return users, LogSummary.of_sources(sources, counts["unusable"], sessions)
        lines = counts["rows_read"]
        return users, LogSummary(len(files), lines, lines - counts["valid_rows"], counts["unusable"], sessions)

    def interactions(self, paths):
        files, compacted = self._run(lambda: self.expand(paths))
        self._run(lambda: self._view(files, compacted, None))
        return interaction_columns(self._run(lambda: self._collect(INTERACTIONS_SQL)))
