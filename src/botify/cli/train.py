"""`botify train MODEL`: offline pipelines from the service's logs to artifacts it serves.

The models and their help come from the registry (`botify.train.base`): each model's
docstring and typed parameters; there is no second list here. `botify train module:Class`
trains a user's own `botify.train.Model` subclass the same way.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import click

from botify.cli.engine import engine_options, engine_settings
from botify.errors import BotifyError


def _parse_params(pairs: tuple[str, ...]) -> dict:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BotifyError(f"--param {pair!r}: expected key=value")
        try:
            params[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            params[key.replace("-", "_")] = value
    return params


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _help(model_class) -> str:
    lines = [model_class.summary(), "", "\b", "Parameters (--param name=value):"]
    for param in model_class.params():
        entry = f"{param.name} ({_type_name(param.annotation)}, default {param.default!r}): {param.help}"
        lines.append(textwrap.fill(entry, width=76, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


def _command(name: str, model_class=None) -> click.Command:
    @click.option("--logs", multiple=True, required=True, help="Log files, directories or globs; repeatable.")
    @click.option("--catalog", type=click.Path(path_type=Path), required=True,
                  help="The world's tracks.json (or its directory).")
    @click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
                  help="Artifact directory: the course-format artifacts and manifest.json go there.")
    @click.option("--param", "params", multiple=True, help="Model parameter as key=value (JSON values); repeatable.")
    @click.option("--test-share", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
                  help="Also fit a twin on the earlier sessions and record its offline metrics on this latest "
                       "share in the manifest (the served artifact is always fitted on all the logs).")
    @click.option("--projector", is_flag=True,
                  help="Also export item embeddings + metadata for TensorBoard's projector (embedding models).")
    @click.option("--item-key", type=click.Choice(["track", "item_id"]), default="track", show_default=True,
                  help="Key of item-to-item lines: botify's `track`, or `item_id` as the course's 2026 files.")
    @engine_options()
    def command(logs, catalog, out, params, test_share, projector, item_key, **options) -> None:
        from botify.artifacts import read_manifest
        from botify.train.pipeline import train_model

        from botify.cli.progress import work_progress
        from botify.train.base import reporting

        with reporting(work_progress):
            _, metrics = train_model(name, list(logs), catalog, out, _parse_params(params), test_share,
                                     projector=projector, item_key=item_key, settings=engine_settings(**options))
        shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items())
        files = ", ".join(read_manifest(out)["artifacts"])
        click.echo(f"{name}: {files} written to {out} ({shown})")

    return click.command(name=name, help=_help(model_class) if model_class else None)(command)


class ModelGroup(click.Group):
    """Subcommands from the model registry, loaded only when `botify train` is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from botify.train.base import load_models

        return sorted(load_models())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from botify.train.base import load_models, model_class

        if name in load_models() or ":" in name:
            return _command(name, model_class(name))
        return None


@click.group(cls=ModelGroup)
def train() -> None:
    """Learn recommenders from the catalog and the service's logs (never the hidden world).

    MODEL is a registered model (below) or module:Class, a botify.train.Model subclass of
    your own (the current directory is importable).
    """
