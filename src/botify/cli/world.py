"""`botify world`: generate a world, or check one made elsewhere."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from botify.config import load_config
from botify.errors import BotifyError
from botify.world import World, WorldSpec, generate_world, world_exists


@click.group()
def world() -> None:
    """Generate or inspect a music world (tracks.json, embeddings.npy, users.json)."""


@world.command()
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True,
              help="Directory to write the world into.")
@click.option("--config", "config", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A TOML/JSON file with WorldSpec fields; options given here win.")
@click.option("--seed", type=int, help="Random seed [default: 42].")
@click.option("--tracks", type=int, help="Number of tracks [default: 15000].")
@click.option("--users", type=int, help="Number of users [default: 10000].")
@click.option("--dim", type=int, help="Embedding dimension [default: 32].")
@click.option("--force", is_flag=True, help="Overwrite an existing world.")
def generate(out: Path, config: Path | None, seed, tracks, users, dim, force: bool) -> None:
    """Generate a world deterministically from a seed."""
    if world_exists(out) and not force:
        raise BotifyError(f"{out} already holds a world; pass --force to overwrite it")
    spec = load_config(config, WorldSpec, seed=seed, tracks=tracks, users=users, dim=dim)
    started = time.perf_counter()
    generated = generate_world(spec)
    generated.save(out)
    click.echo(
        f"wrote {generated.catalog.size} tracks, {len(generated.catalog.artist_names)} artists and "
        f"{generated.users.size} users (dim {spec.dim}, seed {spec.seed}) to {out} "
        f"in {time.perf_counter() - started:.2f} s"
    )


@world.command()
@click.argument("directory", type=click.Path(path_type=Path))
def info(directory: Path) -> None:
    """Check a world directory and summarise it (works on worlds made elsewhere)."""
    loaded = World.load(directory)
    norms = np.linalg.norm(np.asarray(loaded.embeddings[: min(10_000, loaded.catalog.size)]), axis=1)
    interests = np.diff(loaded.users.interest_offsets)
    table = Table(title=f"world {directory}", show_header=False)
    table.add_row("tracks", str(loaded.catalog.size))
    table.add_row("artists", str(len(loaded.catalog.artist_names)))
    table.add_row("embedding dim", str(loaded.embeddings.shape[1]))
    table.add_row("embedding norm (min..max)", f"{norms.min():.3f}..{norms.max():.3f}")
    table.add_row("users", str(loaded.users.size))
    table.add_row("interests per user (mean)", f"{interests.mean():.2f}")
    table.add_row("consume_bias (mean)", f"{loaded.users.consume_bias.mean():.3f}")
    table.add_row("consume_sharpness (mean)", f"{loaded.users.consume_sharpness.mean():.3f}")
    Console().print(table)
