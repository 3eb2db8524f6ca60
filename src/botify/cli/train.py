"""`botify train MODEL`: offline pipelines from the service's logs to artifacts it serves."""

from __future__ import annotations

import json
from pathlib import Path

import click

from botify.errors import BotifyError

MODEL_HELP = {
    "toppop": "Tracks by total time played (a JSON list for `top_pop`).",
    "user-based": "User-based CF: cosine similarity of users over mean-centred time played (for `indexed`).",
    "mf": "Matrix factorisation with implicit (ALS or BPR), tuned with Optuna (for `indexed`).",
    "contextual": "PyTorch: time played given the session's first track; per-track lists (for `contextual`).",
    "contextual-user": "PyTorch: the contextual model plus a user embedding; per-user lists (for `indexed`).",
    "dssm": "PyTorch two-tower network on catalog metadata and listen history, triplet loss (for `indexed`).",
    "lightgcn": "PyTorch graph collaborative filtering with the BPR loss (for `indexed`).",
    "diverse": "Another model's lists re-ranked: at most 5 tracks per artist in the first 20.",
}


def _parse_params(pairs: tuple[str, ...]) -> dict:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise BotifyError(f"--param {pair!r}: expected key=value")
        try:
            params[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            params[key.replace("-", "_")] = value
    return params


@click.group()
def train() -> None:
    """Learn recommenders from the catalog and the service's logs (never the hidden world)."""


def _command(name: str) -> click.Command:
    @click.command(name=name, help=MODEL_HELP[name])
    @click.option("--logs", multiple=True, required=True, help="Log files, directories or globs; repeatable.")
    @click.option("--catalog", type=click.Path(path_type=Path), required=True, help="The world's tracks.json.")
    @click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
                  help="Artifact directory: the course-format artifact and manifest.json go there.")
    @click.option("--param", "params", multiple=True, help="Model parameter as key=value (JSON values); repeatable.")
    @click.option("--test-share", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
                  show_default=True, help="Latest sessions held out for the manifest's offline metrics.")
    @click.option("--projector", is_flag=True,
                  help="Also export item embeddings + metadata for TensorBoard's projector (embedding models).")
    def command(logs, catalog, out, params, test_share, projector) -> None:
        from botify.train.registry import train_model

        model, metrics = train_model(name, list(logs), catalog, out, _parse_params(params), test_share,
                                     projector=projector)
        shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items())
        click.echo(f"{name}: {len(model.lists()):,} list(s) written to {out} ({shown})")

    return command


for _name in MODEL_HELP:
    train.add_command(_command(_name))
