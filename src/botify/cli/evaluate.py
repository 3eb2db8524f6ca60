"""`botify evaluate`: one offline table for trained artifacts, with popularity baselines."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from botify.cli.progress import console
from botify.errors import BotifyError


def _read_lists(directory: Path, n_tracks: int) -> list[tuple[str, str, dict[int, list[int]]]]:
    """(row name, kind, lists) for every artifact a `botify train` directory holds."""
    from botify.artifacts import ArtifactError, read_artifact, read_manifest

    try:
        manifest = read_manifest(directory)
        files = manifest.get("artifacts") or {manifest["artifact"]: manifest.get("artifact_kind")}
        rows = []
        for file in files:
            artifact = read_artifact(directory / file, n_tracks)
            suffix = "" if len(files) == 1 else f" {file}"
            rows.append((f"{manifest['model']} ({directory.name}){suffix}", artifact.kind, artifact.lists))
        return rows
    except ArtifactError as error:
        raise BotifyError(str(error)) from error


@click.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--logs", multiple=True, required=True, help="Held-out logs to evaluate on; repeatable.")
@click.option("--catalog", type=click.Path(path_type=Path), required=True,
              help="The world's tracks.json (or its directory).")
@click.option("--train-logs", multiple=True, help="Logs the models trained on: adds the popularity baselines.")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--min-time", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="A track played at least this much is relevant.")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def evaluate(artifacts, logs, catalog, train_logs, k, min_time, output) -> None:
    """Precision@k, recall@k, MRR, NDCG@k and coverage of ARTIFACTS (directories from botify train),
    and next-track metrics for every kind of list: for each later play of a held-out session
    that was played at least --min-time, its rank in the list the service would consult."""
    from botify.train.dataset import read_interactions
    from botify.train.evaluate import evaluate_lists, evaluate_next_track, popularity_baselines
    from botify.world.model import Catalog, catalog_path

    n_tracks = Catalog.load(catalog_path(catalog)).size
    test = read_interactions(list(logs))
    rows = []
    if train_logs:
        trained_on = read_interactions(list(train_logs))
        baselines = popularity_baselines(trained_on, test, n_tracks)
        rows += [(f"[dim]{name}[/]", kind, lists) for name, (kind, lists) in baselines.items()]
        by_track = popularity_baselines(trained_on, test, n_tracks, kind="track")["shuffled top-100"][1]
        rows.append(("[dim]shuffled top-100 per track[/]", "track", by_track))
    rows += [row for directory in artifacts for row in _read_lists(Path(directory), n_tracks)]
    results = []
    for name, kind, lists in rows:
        try:
            metrics = evaluate_lists(kind, lists, test, n_tracks, k, min_time)
            metrics.update(evaluate_next_track(kind, lists, test, n_tracks, k, min_time))
        except ValueError as error:
            raise BotifyError(str(error)) from error
        results.append((name, kind, metrics))
    if output == "json":
        click.echo(json.dumps([{"model": name, "kind": kind, **metrics} for name, kind, metrics in results], indent=2))
        return
    console.print(f"offline evaluation on {test.size:,} held-out interactions (relevant: time >= {min_time})")
    # Two narrow tables rather than one wide one, so that both stay readable at 80 columns.
    per_user = [("prec", f"precision@{k}"), ("recall", f"recall@{k}"), ("mrr", "mrr"), ("ndcg", f"ndcg@{k}"),
                ("cover", "coverage"), ("queries", "queries")]
    next_track = [("hit", f"next_hit@{k}"), ("mrr", "next_mrr"), ("ndcg", f"next_ndcg@{k}"), ("queries", "next_queries")]
    for title, columns in ((f"relevant tracks per list key (the user; for per-track lists, the previous track), @{k}", per_user), (f"next-track (session) queries, @{k}", next_track)):
        table = Table(title=title, title_justify="left")
        table.add_column("model", overflow="fold", ratio=1)
        table.add_column("by", no_wrap=True)
        for header, _ in columns:
            table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
        for name, kind, metrics in results:
            table.add_row(name, kind, *[f"{metrics[key]:,}" if key.endswith("queries") else f"{metrics[key]:.4f}"
                                        for _, key in columns])
        console.print(table)
