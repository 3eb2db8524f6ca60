"""`botify train`: offline pipelines from the service's logs to artifacts it serves."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def train() -> None:
    """Learn recommenders from the catalog and the service's logs (never the hidden world)."""


@train.command()
@click.option("--logs", multiple=True, required=True, help="Log files, directories or globs; repeatable.")
@click.option("--catalog", type=click.Path(path_type=Path), required=True, help="The world's tracks.json.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Artifact file to write (a JSON list of track ids), e.g. artifacts/toppop.json.")
@click.option("--size", type=click.IntRange(min=1), default=1000, show_default=True, help="Tracks to keep.")
def toppop(logs, catalog, out, size) -> None:
    """The most listened tracks (total time played), for the `top_pop` recommender."""
    from botify.train.toppop import train_toppop

    top = train_toppop(list(logs), catalog, out, size)
    click.echo(f"wrote the top {len(top)} tracks to {out}")
