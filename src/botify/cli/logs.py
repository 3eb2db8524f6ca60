"""`botify logs`: the event log's life after the service closed a file — compacted to Parquet,
pushed to shared storage (HDFS, S3) for the Spark engine, as the course did before its analysis."""

from __future__ import annotations

from pathlib import Path

import click

from botify.cli.engine import engine_options, engine_settings


@click.group()
def logs() -> None:
    """Compact the service's logs and push them to shared storage."""


@logs.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The compacted directory: day=YYYY-MM-DD/*.parquet, _sources.jsonl, _malformed/.")
@engine_options(spark=False)
def compact(paths, out, **options) -> None:
    """JSON-lines logs (PATHS: files, directories or globs) → Parquet (zstd) partitioned by day.

    Malformed lines are counted in _sources.jsonl and the ones that can be read kept in
    _malformed/; `botify analyze` and `botify train` read the directory with the same results."""
    from botify.events.duck import DuckDBEngine
    from botify.events.files import source_totals

    records = DuckDBEngine(engine_settings(**options)).compact(list(paths), out)
    lines, malformed = source_totals(records)
    click.echo(f"{len(records)} file(s), {lines:,} lines ({malformed:,} malformed) compacted into {out}")


@logs.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--to", "uri", required=True,
              help="Destination: a path, file://, hdfs://host/dir, s3://bucket/dir?endpoint_override=...")
def push(paths, uri) -> None:
    """Copy closed log files or compacted directories (PATHS) under URI; files already there
    with the same size and checksum are skipped."""
    from botify.events.push import push as push_logs

    result = push_logs(list(paths), uri)
    click.echo(f"{len(result.copied)} file(s) copied ({result.bytes:,} bytes), "
               f"{len(result.skipped)} already there, to {uri}")
