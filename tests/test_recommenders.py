"""Baseline recommenders, artifacts in the course's formats, and fallbacks that never crash."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from botify.errors import BotifyError
from botify.service import Query, Recommender, RecommenderSpec, ServiceSettings
from botify.service.app import ServiceData
from botify.service.artifacts import ArtifactError, read_artifact
from botify.service.recommenders import Chain, Resources
from botify.service.stores import EmbeddedStore, Listen
from botify.world import World
from tests.servers import ServiceThread, read_events


def write_artifacts(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "top.json").write_text(json.dumps([30, 31, 32, 33, 34, 35]))
    (directory / "als.jsonl").write_text('{"user": 1, "tracks": [40, 41, 42]}\n{"user": 2, "tracks": [43]}\n')
    (directory / "ctx.jsonl").write_text('{"track": 0, "recommendations": [50, 51]}\n')
    (directory / "i2i.jsonl").write_text(
        '{"item_id": 0, "recommendations": [60, 61, 62]}\n{"item_id": 1, "recommendations": [62, 63]}\n'
    )
    return directory


def chain(world: World, spec: dict, artifacts_dir: Path, seed: int = 0) -> Chain:
    spec_model = RecommenderSpec.model_validate(spec)
    names = {item.artifact for item in spec_model.chain() if item.artifact}
    artifacts = {name: read_artifact(artifacts_dir / name, world.catalog.size) for name in names}
    store = EmbeddedStore(50)
    asyncio.run(store.load(world.catalog, "d", artifacts))
    return Chain(spec_model, Resources(world.catalog, store, random.Random(seed)))


def ask(recommender: Chain, user: int, track: int, history: list[tuple[int, float]] = ()):
    listens = [Listen(*item) for item in history] or [Listen(track, 1.0)]
    return asyncio.run(recommender.recommend(Query(user, track, listens[0].time, listens)))


def test_top_pop_samples_the_top_k_unheard(small_world: World, tmp_path: Path) -> None:
    recommender = chain(small_world, {"kind": "top_pop", "artifact": "top.json", "k": 3}, write_artifacts(tmp_path))
    picks = {ask(recommender, 1, 0).track for _ in range(100)}
    assert picks == {30, 31, 32}
    assert ask(recommender, 1, 30, [(30, 1.0), (31, 1.0)]).track == 32
    answer = ask(recommender, 1, 30, [(30, 1.0), (31, 1.0), (32, 0.5)])
    assert answer.fallback and answer.recommender == "random"


def test_sticky_artist_stays_with_the_artist_and_skips_heard(small_world: World, tmp_path: Path) -> None:
    recommender = chain(small_world, {"kind": "sticky_artist"}, tmp_path)
    artist = small_world.catalog.records[7]["artist"]
    same = [r["track"] for r in small_world.catalog.records if r["artist"] == artist]
    for _ in range(50):
        answer = ask(recommender, 1, 7)
        assert answer.track in same and answer.track != 7 and answer.recommender == "sticky_artist"
    everything = [(track, 1.0) for track in same]
    assert ask(recommender, 1, 7, everything).fallback


def test_indexed_uses_the_users_list_then_falls_back(small_world: World, tmp_path: Path) -> None:
    spec = {"kind": "indexed", "artifact": "als.jsonl", "fallback": {"kind": "top_pop", "artifact": "top.json", "k": 1}}
    recommender = chain(small_world, spec, write_artifacts(tmp_path))
    assert ask(recommender, 1, 0).track in (40, 41, 42)
    assert ask(recommender, 2, 0) == (43, "indexed(als.jsonl)", False)
    assert ask(recommender, 2, 43, [(43, 1.0)]) == (30, "top_pop(top.json)", True)  # heard everything
    assert ask(recommender, 99, 0) == (30, "top_pop(top.json)", True)  # no list for this user
    ranked = chain(small_world, {"kind": "indexed", "artifact": "als.jsonl", "ranked": True}, tmp_path)
    assert ask(ranked, 1, 40, [(40, 1.0)]).track == 41


def test_contextual_follows_the_previous_track(small_world: World, tmp_path: Path) -> None:
    recommender = chain(small_world, {"kind": "contextual", "artifact": "ctx.jsonl"}, write_artifacts(tmp_path))
    assert ask(recommender, 1, 0).track in (50, 51)
    unknown = ask(recommender, 1, 5)  # no list for track 5
    assert unknown.fallback and unknown.recommender == "random"


def test_i2i_weighs_anchors_by_time_and_skips_heard(small_world: World, tmp_path: Path) -> None:
    spec = {"kind": "i2i", "artifact": "i2i.jsonl", "ranked": True, "min_time": 0.5}
    recommender = chain(small_world, spec, write_artifacts(tmp_path))
    # Anchors 1 (time 1.0) and 0 (0.9): 62 scores 1.0/1 + 0.9/3 = 1.3, best; 60 scores 0.9.
    assert ask(recommender, 1, 1, [(1, 1.0), (0, 0.9)]).track == 62
    assert ask(recommender, 1, 62, [(62, 1.0), (1, 1.0), (0, 0.9)]).track == 60
    # Track 0 played too briefly to be an anchor: only track 1's list counts.
    assert ask(recommender, 1, 1, [(1, 1.0), (62, 1.0), (0, 0.1)]).track == 63
    assert ask(recommender, 1, 5, [(5, 0.2)]).fallback  # no anchor at all
    sampled = chain(small_world, {"kind": "i2i", "artifact": "i2i.jsonl"}, tmp_path)
    assert {ask(sampled, 1, 0, [(0, 1.0)]).track for _ in range(60)} == {60, 61, 62}


class Broken(Recommender):
    async def recommend(self, query: Query) -> int | None:
        raise RuntimeError("a bug in a user's recommender")


class OutOfCatalog(Recommender):
    async def recommend(self, query: Query) -> int | None:
        return 10**9


@pytest.mark.parametrize("kind", ["tests.test_recommenders:Broken", "tests.test_recommenders:OutOfCatalog"])
def test_broken_recommenders_fall_back(small_world: World, tmp_path: Path, kind: str) -> None:
    recommender = chain(small_world, {"kind": kind, "fallback": "sticky_artist"}, tmp_path)
    answer = ask(recommender, 1, 7)
    assert answer.recommender == "sticky_artist" and answer.fallback


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"user": 1, "tracks": [1, "x"]}\n', "'x' is not a track id"),
        ('{"user": 1, "tracks": [1, 99999]}\n', "99999 is not a track id"),
        ('{"user": "a", "tracks": [1]}\n', "integer 'user'"),
        ('{"foo": 1}\n', "expected a 'user', 'track' or 'item_id' field"),
        ('{"user": 1, "tracks": [1]}\n{broken\n', ":2: not valid JSON"),
        ("[1, 2, -3]", "-3 is not a track id"),
        ("", "holds no records"),
    ],
)
def test_bad_artifacts_name_file_and_line(small_world: World, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(content)
    with pytest.raises(ArtifactError, match=message.replace("[", r"\[")):
        read_artifact(path, small_world.catalog.size)


def test_config_problems_are_found_at_start(small_world_dir: Path, tmp_path: Path) -> None:
    write_artifacts(tmp_path / "art")
    cases = {
        'default = {kind = "indexed"}': "needs an 'artifact'",
        'default = {kind = "indexed", artifact = "top.json"}': "holds top lists but indexed reads user lists",
        'default = {kind = "top_pop", artifact = "nope.json"}': "nope.json: artifact file not found",
        'default = "deep_magic"': "unknown recommender 'deep_magic'",
    }
    for text, message in cases.items():
        (tmp_path / "e.toml").write_text(text + "\n")
        settings = ServiceSettings(catalog=small_world_dir, experiments=tmp_path / "e.toml", artifacts=tmp_path / "art")
        with pytest.raises(BotifyError, match=message):
            ServiceData.read(settings)


def test_fallbacks_are_visible_in_the_log(small_world_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "e.toml").write_text(
        'default = {kind = "contextual", artifact = "ctx.jsonl", fallback = {kind = "top_pop", artifact = "top.json"}}\n'
    )
    settings = ServiceSettings(catalog=small_world_dir, experiments=tmp_path / "e.toml",
                               artifacts=write_artifacts(tmp_path / "art"), log_dir=tmp_path / "log")
    from tests.test_service import Client

    with ServiceThread(settings) as running:
        client = Client(running.url)
        assert client.post("/next/1", {"track": 0, "time": 1.0})[1]["track"] in (50, 51)
        assert client.post("/next/1", {"track": 5, "time": 1.0})[1]["track"] in range(30, 36)
    first, second = read_events(tmp_path / "log")
    assert (first["recommender"], first["fallback"]) == ("contextual(ctx.jsonl)", False)
    assert (second["recommender"], second["fallback"]) == ("top_pop(top.json)", True)


def test_last_liked_uses_the_last_liked_track_then_borrows(small_world: World, tmp_path: Path) -> None:
    directory = write_artifacts(tmp_path)
    (directory / "next.jsonl").write_text('{"track": 3, "recommendations": [70, 71]}\n')
    spec = {"kind": "last_liked", "artifact": "next.jsonl", "min_time": 0.6,
            "fallback": {"kind": "contextual", "artifact": "ctx.jsonl"}}
    recommender = chain(small_world, spec, directory)
    # Just skipped 5, liked 3 before: neighbours of 3, never of the skipped 5.
    answer = ask(recommender, 1, 5, [(5, 0.1), (3, 0.9)])
    assert answer.track in (70, 71) and answer.recommender == "last_liked(next.jsonl)"
    # User 2 liked 4 (no list for 4) and 80: user 1 likes 4 now and borrows 80 from user 2.
    ask(recommender, 2, 80, [(80, 1.0)])
    ask(recommender, 2, 4, [(4, 1.0), (80, 1.0)])
    borrowed = ask(recommender, 1, 4, [(4, 0.7)])
    assert borrowed.track == 80 and borrowed.recommender == "last_liked(next.jsonl)"
    # Nothing liked at all: the contextual fallback answers from the previous track.
    fallback = ask(recommender, 3, 0, [(0, 0.2)])
    assert fallback.fallback and fallback.recommender == "contextual(ctx.jsonl)"
