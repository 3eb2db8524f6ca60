"""Training pipelines learn from the service's logs; one offline evaluation judges them all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from botify.service import ServiceSettings
from botify.artifacts import read_artifact
from botify.train.dataset import read_interactions
from botify.train.diverse import diversify
from botify.train.evaluate import evaluate_lists, popularity_baselines
from botify.train.pipeline import train_model
from tests.servers import ServiceThread, read_events
from tests.test_service import Client



def test_interactions_follow_the_logs(logged) -> None:
    log_dir, world, _ = logged
    events = read_events(log_dir)
    interactions = read_interactions([log_dir])
    assert interactions.size == len(events)
    first_user = events[0]["user"]
    mine = [e for e in events if e["user"] == first_user]
    rows = interactions.user == first_user
    assert interactions.track[rows].tolist() == [e["track"] for e in mine]  # one worker: file order is time order
    assert interactions.session[rows].max() + 1 == sum(e["message"] == "last" for e in mine)
    starts = interactions.position == 0
    assert starts.sum() == sum(e["message"] == "last" for e in events)
    train, test = interactions.split_by_time(0.2)
    assert train.size + test.size == interactions.size
    assert train.session_start.max() < test.session_start.min()
    assert 0.15 < test.size / interactions.size < 0.25


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("toppop", {}),
        ("user-based", {"neighbours": 20}),
        ("mf", {"algorithm": "als", "trials": 3, "max_rounds": 3}),
        ("mf", {"algorithm": "bpr", "trials": 3, "max_rounds": 3}),
        ("diverse", {"base": "user-based", "base_params": {"neighbours": 20}}),
        ("contextual", {}),
        ("contextual-user", {"dim": 32, "lr": 0.02}),
        ("dssm", {}),
        ("lightgcn", {}),
    ],
)
def test_models_learn_and_beat_shuffled_popularity(logged, tmp_path: Path, model: str, params: dict) -> None:
    log_dir, world, root = logged
    out = tmp_path / model
    trained, metrics = train_model(model, [log_dir], root / "world" / "tracks.json", out, params, test_share=0.2)
    manifest = json.loads((out / "manifest.json").read_text())
    interactions = read_interactions([log_dir])
    assert manifest["model"] == model and manifest["data"]["evaluation"]["train"]["interactions"] > 0
    # The served artifact is fitted on every interaction, the latest sessions included.
    assert manifest["data"]["served"]["interactions"] == interactions.size and manifest["data"]["served_share"] == 1
    assert manifest["offline_metrics"]["ndcg@10"] == pytest.approx(metrics["ndcg@10"])
    assert manifest["parameters"] == trained.get_params() and "next_ndcg@10" in str(metrics)
    train, test = interactions.split_by_time(0.2)
    kind, shuffled = popularity_baselines(train, test, world.catalog.size, kind=trained.artifact_kind)[
        "shuffled top-100"]
    baseline = evaluate_lists(kind, shuffled, test, world.catalog.size)
    assert metrics["ndcg@10"] > baseline["ndcg@10"], (metrics, baseline)
    artifact = read_artifact(out / manifest["artifact"], world.catalog.size)
    assert artifact.kind == trained.artifact_kind
    if getattr(trained, "item_vectors", None) is not None and trained.artifact_kind == "user":
        # Models that learn item vectors also write scored item-to-item lists for i2i.
        item2item = read_artifact(out / "item2item.jsonl", world.catalog.size)
        assert item2item.kind == "track" and len(item2item.lists) == world.catalog.size
        scores = item2item.scores[0]
        assert len(scores) == len(item2item.lists[0]) and scores == sorted(scores, reverse=True)
        assert 0 not in item2item.lists[0]


@pytest.mark.parametrize(
    ("model", "params", "recommender"),
    [("user-based", {"neighbours": 20}, "indexed"), ("contextual", {"epochs": 3}, "contextual")],
)
def test_a_trained_artifact_is_served(logged, tmp_path: Path, model: str, params: dict, recommender: str) -> None:
    log_dir, world, root = logged
    trained, _ = train_model(model, [log_dir], root / "world" / "tracks.json", tmp_path / "art" / "m", params)
    file = next(iter(trained.artifacts()))
    (tmp_path / "e.toml").write_text(f'default = {{kind = "{recommender}", artifact = "m/{file}"}}\n')
    settings = ServiceSettings(catalog=root / "world", experiments=tmp_path / "e.toml", artifacts=tmp_path / "art",
                               log_dir=tmp_path / "log")
    key = int(next(iter(trained.lists())))
    user, track = (key, 0) if recommender == "indexed" else (1, key)
    with ServiceThread(settings) as running:
        status, answer = Client(running.url).post(f"/next/{user}", {"track": track, "time": 1.0})
    assert status == 200 and answer["track"] in trained.lists()[key]
    (event,) = read_events(tmp_path / "log")
    assert event["recommender"] == f"{recommender}(m/{file})" and not event["fallback"]


def test_diversify_caps_artists_in_the_head() -> None:
    artist_of = ["a"] * 10 + ["b"] * 10 + ["c"] * 10 + ["d"] * 10
    ranked = diversify(list(range(40)), artist_of, head=20, per_artist=5)
    assert sorted(ranked) == list(range(40))
    head = [artist_of[t] for t in ranked[:20]]
    assert all(head.count(a) == 5 for a in "abcd")
    assert ranked[:5] == [0, 1, 2, 3, 4] and ranked[20:25] == [5, 6, 7, 8, 9]
    short = diversify(list(range(30)), artist_of[:30], head=20, per_artist=5)  # only 3 artists
    assert len(short) == 15 and all([artist_of[t] for t in short].count(a) == 5 for a in "abc")


def test_metrics_on_a_hand_made_case() -> None:
    from botify.train.dataset import Interactions

    test = Interactions(user=np.array([1, 1, 2]), track=np.array([5, 6, 7]), time=np.array([1.0, 0.2, 0.9]),
                        session=np.zeros(3, int), position=np.array([0, 1, 0]), timestamp=np.arange(3),
                        session_start=np.zeros(3, int))
    metrics = evaluate_lists("user", {1: [9, 5, 8], 2: [1, 2, 3]}, test, n_tracks=10, k=3)
    # user 1: relevant {5} at rank 2; user 2: relevant {7}, missed.
    assert metrics["precision@3"] == pytest.approx((1 / 3) / 2)
    assert metrics["recall@3"] == pytest.approx(0.5)
    assert metrics["mrr"] == pytest.approx(0.25)
    assert metrics["ndcg@3"] == pytest.approx((1 / np.log2(3)) / 2)
    assert metrics["coverage"] == pytest.approx(0.6)


def test_train_and_evaluate_cli(logged, tmp_path: Path) -> None:
    log_dir, _, root = logged
    catalog = str(root / "world" / "tracks.json")
    run = subprocess.run([sys.executable, "-m", "botify", "train", "toppop", "--logs", str(log_dir), "--catalog",
                          catalog, "--out", str(tmp_path / "top"), "--param", "size=50"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(json.loads((tmp_path / "top" / "top_tracks.json").read_text())) == 50
    table = subprocess.run([sys.executable, "-m", "botify", "evaluate", str(tmp_path / "top"), "--logs", str(log_dir),
                            "--train-logs", str(log_dir), "--catalog", str(root / "world"), "--format", "json"],
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    rows = json.loads(table.stdout)
    assert [row["model"] for row in rows][-1] == "toppop (top)" and len(rows) == 4
    assert all("next_ndcg@10" in row for row in rows)
    narrow = subprocess.run([sys.executable, "-m", "botify", "evaluate", str(tmp_path / "top"), "--logs", str(log_dir),
                             "--train-logs", str(log_dir), "--catalog", catalog],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and any("next-track (session) queries" in line for line in lines)
    assert any(line.startswith("│ toppop (top)") and "…" not in line for line in lines)  # nothing cut at 80 columns
    bad = subprocess.run([sys.executable, "-m", "botify", "train", "mf", "--logs", str(log_dir), "--catalog", catalog,
                          "--out", str(tmp_path / "x"), "--param", "flavour=1"], capture_output=True, text=True)
    assert bad.returncode == 1 and "mf has no parameter 'flavour'" in bad.stderr
    typo = subprocess.run([sys.executable, "-m", "botify", "train", "user-based", "--logs", str(log_dir), "--catalog",
                           str(root / "world"), "--out", str(tmp_path / "x"), "--param", "neighbours=abc"],
                          capture_output=True, text=True)
    assert typo.returncode == 1 and len(typo.stderr.strip().splitlines()) == 1, typo.stderr
    assert "neighbours='abc'" in typo.stderr and "integer" in typo.stderr


def _train(logged, out: Path, model: str, *options: str) -> subprocess.CompletedProcess:
    """`botify train MODEL` on the fixture's logs into `out`, checked to succeed."""
    log_dir, _, root = logged
    run = subprocess.run([sys.executable, "-m", "botify", "train", model, "--logs", str(log_dir), "--catalog",
                          str(root / "world"), "--out", str(out), *options], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run


def test_the_courses_2026_item_to_item_format_is_written_and_served(logged, tmp_path: Path) -> None:
    """`--item-key item_id` writes the course's 2026 lines, which botify reads as track lists."""
    from botify.artifacts import read_artifact

    root = logged[2]
    _train(logged, tmp_path / "sknn", "session-knn", "--item-key", "item_id")
    first = json.loads((tmp_path / "sknn" / "item2item.jsonl").read_text().splitlines()[0])
    assert set(first) >= {"item_id", "recommendations"} and "track" not in first
    n_tracks = sum(1 for _ in (root / "world" / "tracks.json").open())
    artifact = read_artifact(tmp_path / "sknn" / "item2item.jsonl", n_tracks)
    assert artifact.kind == "track" and artifact.ranked(first["item_id"]).tracks == first["recommendations"]


def test_long_fits_report_their_progress(logged, tmp_path: Path) -> None:
    """Epochs (and trials) show as a bar on a terminal and as plain lines in a pipe."""
    run = _train(logged, tmp_path / "seq", "sequential", "--param", "epochs=3")
    lines = [line for line in run.stdout.splitlines() if line.startswith("sequential: epochs")]
    assert [line.split(" (")[0] for line in lines] == [f"sequential: epochs {n}/3" for n in (1, 2, 3)], run.stdout


def test_projector_export(logged, tmp_path: Path) -> None:
    log_dir, world, root = logged
    train_model("lightgcn", [log_dir], root / "world" / "tracks.json", tmp_path / "g", {"epochs": 2}, projector=True)
    vectors = np.loadtxt(tmp_path / "g" / "projector" / "tensors.tsv", delimiter="\t")
    metadata = (tmp_path / "g" / "projector" / "metadata.tsv").read_text().splitlines()
    assert vectors.shape == (world.catalog.size, 32) and len(metadata) == world.catalog.size + 1
    assert metadata[1].split("\t")[2] == world.catalog.records[0]["artist"]
    assert "tensors.tsv" in (tmp_path / "g" / "projector" / "projector_config.pbtxt").read_text()


def test_sequential_learns_fatigue(logged, tmp_path: Path) -> None:
    log_dir, world, root = logged
    trained, _ = train_model("sequential", [log_dir], root / "world", tmp_path / "a", {"epochs": 4})
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    # The world's listeners tire of an artist (gamma 0.72): the learned per-play discount is below 1.
    assert 0.3 < manifest["learned"]["discount"] < 0.95
    assert manifest["learned"]["match_weights"]["first:same_artist"] > 0
    assert trained.get_params() == manifest["parameters"]


def test_a_session_model_is_served_anchored_on_the_session(logged, tmp_path: Path) -> None:
    log_dir, world, root = logged
    trained, _ = train_model("sequential", [log_dir], root / "world", tmp_path / "art" / "seq", {"epochs": 2})
    (tmp_path / "e.toml").write_text('default = {kind = "i2i", artifact = "seq/item2item.jsonl", anchor = "first", '
                                     'pick = "ranked", artist_discount = 0.7}\n')
    settings = ServiceSettings(catalog=root / "world", experiments=tmp_path / "e.toml", artifacts=tmp_path / "art",
                               log_dir=tmp_path / "log")
    with ServiceThread(settings) as running:
        client = Client(running.url)
        answers = [client.post("/next/3", {"track": 11, "time": 1.0})[1]["track"]]
        for _ in range(4):
            answers.append(client.post("/next/3", {"track": answers[-1], "time": 0.9})[1]["track"])
    assert len(set(answers)) == 5 and 11 not in answers  # nothing heard in the session comes back
    assert all(track in trained.lists()[11] for track in answers)  # all from the first track's list
    events = read_events(tmp_path / "log")
    assert {event["recommender"] for event in events} == {"i2i(seq/item2item.jsonl)"}
