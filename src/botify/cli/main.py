"""`botify`: the root command; each part of the system adds its own group of sub-commands."""

from __future__ import annotations

import sys

import click

from botify import __version__
from botify.cli.analyze import analyze
from botify.cli.demo import demo
from botify.cli.evaluate import evaluate
from botify.cli.logs import logs
from botify.cli.loop import loop
from botify.cli.ope import ope
from botify.cli.serve import serve
from botify.cli.sim import sim
from botify.cli.studio import studio
from botify.cli.train import train
from botify.cli.world import world
from botify.errors import BotifyError


class BotifyGroup(click.Group):
    """Shows a BotifyError as one line on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BotifyError as error:
            click.secho(f"error: {error}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=BotifyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="botify")
def cli() -> None:
    """botify: a music recommender lab — a generated world, simulated listeners,
    a recommender service and A/B analysis."""


cli.add_command(world)
cli.add_command(sim)
cli.add_command(serve)
cli.add_command(analyze)
cli.add_command(train)
cli.add_command(logs)
cli.add_command(evaluate)
cli.add_command(ope)
cli.add_command(loop)
cli.add_command(demo)
cli.add_command(studio)
