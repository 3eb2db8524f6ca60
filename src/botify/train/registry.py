"""The models `botify train` knows, and the one pipeline that trains and saves any of them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from botify.errors import BotifyError
from botify.train.base import Model
from botify.train.contextual import Contextual, ContextualUser
from botify.train.dataset import read_interactions
from botify.train.diverse import Diverse
from botify.train.dssm import DSSM
from botify.train.evaluate import evaluate_lists
from botify.train.lightgcn import LightGCN
from botify.train.mf import MatrixFactorization
from botify.train.popularity import TopPop
from botify.train.user_based import UserBased
from botify.world.model import Catalog

MODELS: dict[str, type[Model]] = {
    model.name: model
    for model in (TopPop, UserBased, MatrixFactorization, Contextual, ContextualUser, DSSM, Diverse, LightGCN)
}


def make_model(name: str, **params: Any) -> Model:
    if name not in MODELS:
        raise BotifyError(f"unknown model {name!r}: use one of {', '.join(MODELS)}")
    try:
        return MODELS[name](**params)
    except ValueError as error:
        raise BotifyError(str(error)) from error


def train_model(
    name: str, logs: list[str | Path], catalog_path: Path, out: Path, params: dict[str, Any] | None = None,
    test_share: float = 0.2, k: int = 10, projector: bool = False,
) -> tuple[Model, dict]:
    """Read the logs, split by time, fit on the train part, evaluate on the test part, save;
    with `projector`, also export the item embeddings for TensorBoard's projector."""
    catalog = Catalog.load(catalog_path)
    interactions = read_interactions(logs)
    train, test = interactions.split_by_time(test_share)
    model = make_model(name, **(params or {}))
    started = time.perf_counter()
    try:
        model.fit(train, catalog)
    except ValueError as error:
        raise BotifyError(f"{name}: {error}") from error
    seconds = time.perf_counter() - started
    try:
        metrics = evaluate_lists(model.artifact_kind, model.lists(), test, catalog.size, k)
    except ValueError:
        metrics = {}
    metrics["train_seconds"] = round(seconds, 3)
    window = {"train": train.window, "test": test.window, "test_share": test_share}
    model.save(out, window, metrics)
    if projector:
        vectors = getattr(model, "item_vectors", None)
        if vectors is None:
            raise BotifyError(f"{name} learns no item embeddings to export; --projector needs an embedding model")
        from botify.train.neural import export_projector

        export_projector(Path(out) / "projector", vectors, catalog)
    return model, metrics
