"""The one pipeline that trains, evaluates and saves any registered model.

The served artifact is fitted on all the logs given; the offline metrics in its manifest come
from a second fit on the earliest sessions, judged on the latest `test_share` of them (the
time split is for evaluation only, so the most recent sessions reach production). With the
Spark engine the interactions are built on Spark, and a model with a Spark path (`fit_spark`:
mf's ALS in MLlib) is fitted there too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from botify.errors import BotifyError
from botify.events.engine import EngineSettings
from botify.train.base import Model, make_model
from botify.train.dataset import read_interactions
from botify.train.evaluate import evaluate_model
from botify.world.model import Catalog, catalog_path


def _fit(model: Model, train, catalog: Catalog, name: str, spark=None) -> float:
    """Fit (on Spark when given a session and the model has a Spark path); the seconds it took."""
    started = time.perf_counter()
    try:
        if spark is not None and hasattr(model, "fit_spark"):
            model.fit_spark(spark, train, catalog)
        else:
            model.fit(train, catalog)
    except ValueError as error:
        raise BotifyError(f"{name}: {error}") from error
    return time.perf_counter() - started


def train_model(
    name: str, logs: list[str | Path], catalog: Path, out: Path, params: dict[str, Any] | None = None,
    test_share: float | None = None, k: int = 10, projector: bool = False, item_key: str = "track",
    settings: EngineSettings | None = None,
) -> tuple[Model, dict]:
    """Fit `name` on all of `logs` and save it to `out`; with a `test_share`, also fit a twin on
    the earlier sessions and record its offline metrics on the held-out latest ones. With
    `projector`, export the item embeddings for TensorBoard's projector. `settings` choose the engine
    that reads the logs."""
    catalog = Catalog.load(catalog_path(catalog))
    interactions = read_interactions(logs, settings)
    spark = None
    if settings is not None and settings.engine == "spark":
        from botify.events.spark import spark_session

        spark = spark_session(settings)
    model = make_model(name, params)
    metrics: dict[str, float] = {}
    data: dict[str, Any] = {"served": interactions.window, "served_share": 1.0,
                            "engine": (settings or EngineSettings()).engine}
    if test_share:
        train, test = interactions.split_by_time(test_share)
        twin = make_model(name, params)
        _fit(twin, train, catalog, name, spark)
        metrics = evaluate_model(twin, test, catalog.size, k)
        data["evaluation"] = {"train": train.window, "test": test.window, "test_share": test_share}
    metrics["train_seconds"] = round(_fit(model, interactions, catalog, name, spark), 3)
    model.save(out, {"data": data, "offline_metrics": metrics}, item_key)
    if projector:
        vectors = getattr(model, "item_vectors", None)
        if vectors is None:
            raise BotifyError(f"{name} learns no item embeddings to export; --projector needs an embedding model")
        from botify.train.neural import export_projector

        export_projector(Path(out) / "projector", vectors, catalog)
    return model, metrics
