"""Session models learn from Random-served logs what a session rewards: `sequential` (SASRec-style,
trained on time played) and `session-knn` beat shuffled popularity on held-out next tracks, serve
scored item-to-item lists, and are reproducible; `contextual` with catalog features still trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from botify.artifacts import read_artifact
from botify.train.base import make_model
from botify.train.dataset import read_interactions
from botify.train.evaluate import evaluate_next_track, popularity_baselines
from botify.train.pipeline import train_model

FAST = {"sequential": {"epochs": 6, "dim": 32}, "session-knn": {}}


@pytest.mark.parametrize("model", ["sequential", "session-knn"])
def test_session_models_beat_shuffled_popularity_on_next_tracks(logged, tmp_path: Path, model: str) -> None:
    log_dir, world, root = logged
    out = tmp_path / model
    trained, metrics = train_model(model, [log_dir], root / "world" / "tracks.json", out, FAST[model], test_share=0.2)
    train, test = read_interactions([log_dir]).split_by_time(0.2)
    _, shuffled = popularity_baselines(train, test, world.catalog.size, kind="track")["shuffled top-100"]
    baseline = evaluate_next_track("track", shuffled, test, world.catalog.size)
    assert metrics["next_hit@10"] > baseline["next_hit@10"]
    assert metrics["next_ndcg@10"] > baseline["next_ndcg@10"]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == model and manifest["artifact_kind"] == "track"
    assert manifest["artifacts"] == {"item2item.jsonl": "track"}
    (served,) = trained.artifacts().values()
    assert served.kind == "track" and served.scores is not None
    for track, ranked in served.lists.items():
        scores = served.scores[track]
        assert len(scores) == len(ranked) and track not in ranked and len(set(ranked)) == len(ranked)
        assert all(a >= b for a, b in zip(scores, scores[1:]))
    written = read_artifact(out / "item2item.jsonl", world.catalog.size)
    assert written.kind == "track" and written.lists == served.lists and written.scores.keys() == served.lists.keys()


def test_sequential_lists_every_track_with_predicted_times(logged) -> None:
    log_dir, world, _ = logged
    interactions = read_interactions([log_dir])
    model = make_model("sequential", {**FAST["sequential"], "size": 30}).fit(interactions, world.catalog)
    (served,) = model.artifacts().values()
    assert sorted(served.lists) == list(range(world.catalog.size))
    assert all(len(ranked) == 30 for ranked in served.lists.values())
    assert all(0.0 <= score <= 1.0 for scores in served.scores.values() for score in scores)
    assert 0.0 < model.learned()["discount"] < 1.0


@pytest.mark.parametrize("model", ["sequential", "session-knn"])
def test_same_seed_same_lists(logged, model: str) -> None:
    log_dir, world, _ = logged
    train, _ = read_interactions([log_dir]).split_by_time(0.5)
    params = {**FAST[model], "epochs": 2} if model == "sequential" else {}
    first = make_model(model, params).fit(train, world.catalog).artifacts()
    second = make_model(model, params).fit(train, world.catalog).artifacts()
    assert first["item2item.jsonl"].lists == second["item2item.jsonl"].lists
    assert np.allclose(np.concatenate(list(first["item2item.jsonl"].scores.values())),
                       np.concatenate(list(second["item2item.jsonl"].scores.values())))


def test_session_knn_without_artists_lists_only_co_played_tracks(logged) -> None:
    log_dir, world, _ = logged
    interactions = read_interactions([log_dir])
    tracks_only = make_model("session-knn", {"similarity": "cosine", "artist_weight": 0.0}).fit(interactions, world.catalog)
    with_artists = make_model("session-knn", {"similarity": "cosine", "size": 40}).fit(interactions, world.catalog)
    (plain,) = tracks_only.artifacts().values()
    (backed,) = with_artists.artifacts().values()
    assert set(plain.lists) <= set(np.unique(interactions.track).tolist())
    assert all(score > 0 for scores in plain.scores.values() for score in scores)
    # the artist cosine lists tracks never played with the anchor
    assert any(set(ranked) - set(plain.lists.get(track, [])) for track, ranked in backed.lists.items())
    assert all(len(ranked) == len(backed.scores[track]) <= 40 for track, ranked in backed.lists.items())
    mean_time = make_model("session-knn", {"size": 40}).fit(interactions, world.catalog)  # the default
    (scored,) = mean_time.artifacts().values()
    assert sorted(scored.lists) == list(range(world.catalog.size))  # the artists' prior lists every track
    assert all(0.0 <= score <= 1.0 for scores in scored.scores.values() for score in scores)


def test_contextual_with_catalog_features_trains(logged, tmp_path: Path) -> None:
    log_dir, world, root = logged
    model, metrics = train_model("contextual", [log_dir], root / "world" / "tracks.json", tmp_path / "contextual",
                                 {"epochs": 5}, test_share=0.2)
    assert model.features and "next_hit@10" in metrics
    assert sorted(model.lists()) == list(range(world.catalog.size))  # features give unplayed tracks lists too
    (served,) = model.artifacts().values()  # scored by predicted time played, for `i2i` re-ranking
    assert served.kind == "track" and served.lists == model.lists()
    for track, ranked in served.lists.items():
        scores = served.scores[track]
        assert len(scores) == len(ranked) and track not in ranked
        assert all(0.0 <= b <= a <= 1.0 for a, b in zip(scores, scores[1:]))
