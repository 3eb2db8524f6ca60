"""Baseline recommenders, artifacts in the course's formats, and fallbacks that never crash."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import itertools
from pathlib import Path

import numpy as np
import pytest

from botify.errors import BotifyError
from botify.service import Query, Recommender, RecommenderSpec, ServiceSettings
from botify.service.app import ServiceData
from botify.artifacts import ArtifactError, Ranked, read_artifact
from botify.service.recommenders import I2I, Chain, Resources, request_seed
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


_REQUESTS = itertools.count(1)


def chain(world: World, spec: dict, artifacts_dir: Path) -> Chain:
    spec_model = RecommenderSpec.model_validate(spec)
    names = {item.artifact for item in spec_model.chain() if item.artifact}
    artifacts = {name: read_artifact(artifacts_dir / name, world.catalog.size) for name in names}
    store = EmbeddedStore(50)
    asyncio.run(store.load(world.catalog, "d", artifacts))
    return Chain(spec_model, Resources(world.catalog, store))


def ask(recommender: Chain, user: int, track: int, session: list[tuple[int, float]] = ()):
    """Ask as the service does: `session` is the open session so far, oldest first (by default
    just `track`, played in full)."""
    artists = recommender.members[0].artist_of
    listens = [Listen(t, played, int(artists[t])) for t, played in session] or [Listen(track, 1.0, int(artists[track]))]
    seed = request_seed(0, user, next(_REQUESTS))  # a new request each time, as the service numbers them
    return asyncio.run(recommender.recommend(Query(user, track, listens[-1].time, listens, seed=seed)))


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
    assert ask(recommender, 2, 0)[:3] == (43, "indexed(als.jsonl)", False)
    assert ask(recommender, 2, 43, [(43, 1.0)])[:3] == (30, "top_pop(top.json)", True)  # heard everything
    assert ask(recommender, 99, 0)[:3] == (30, "top_pop(top.json)", True)  # no list for this user
    ranked = chain(small_world, {"kind": "indexed", "artifact": "als.jsonl", "ranked": True}, tmp_path)
    assert ask(ranked, 1, 40, [(40, 1.0)]).track == 41


def test_contextual_follows_the_previous_track(small_world: World, tmp_path: Path) -> None:
    recommender = chain(small_world, {"kind": "contextual", "artifact": "ctx.jsonl"}, write_artifacts(tmp_path))
    assert ask(recommender, 1, 0).track in (50, 51)
    unknown = ask(recommender, 1, 5)  # no list for track 5
    assert unknown.fallback and unknown.recommender == "random"


def _by_artist(world: World, tracks_needed: int = 3) -> tuple[list[int], list[int]]:
    """Tracks of one artist with at least `tracks_needed` tracks, and tracks of another artist."""
    by_artist: dict[int, list[int]] = {}
    for track, code in enumerate(world.catalog.artist_codes.tolist()):
        by_artist.setdefault(code, []).append(track)
    big = [tracks for tracks in by_artist.values() if len(tracks) >= tracks_needed]
    return big[0], big[1]


def test_i2i_anchors_on_the_session(small_world: World, tmp_path: Path) -> None:
    """first: the session's first track; last: its latest play of at least min_time; mix: the
    time-weighted mean of the scores of its recent good plays."""
    a, b = 1, 2
    (tmp_path / "scored.jsonl").write_text(
        f'{{"track": {a}, "recommendations": [60, 61, 62], "scores": [0.9, 0.8, 0.5]}}\n'
        f'{{"track": {b}, "recommendations": [63, 62], "scores": [0.95, 0.9]}}\n'
    )
    spec = {"kind": "i2i", "artifact": "scored.jsonl", "ranked": True}
    first = chain(small_world, {**spec, "anchor": "first"}, tmp_path)
    last = chain(small_world, {**spec, "anchor": "last"}, tmp_path)
    mix = chain(small_world, {**spec, "anchor": "mix"}, tmp_path)
    assert ask(first, 1, b, [(a, 1.0), (b, 0.8)]).track == 60
    assert ask(last, 1, b, [(a, 1.0), (b, 0.8)]).track == 63
    assert ask(last, 1, b, [(a, 1.0), (b, 0.1)]).track == 60  # b was skipped: not an anchor
    # mix: 62 scores (1.0 * 0.5 + 0.8 * 0.9) / 1.8 = 0.68, above 60's 0.9 / 1.8 = 0.5
    assert ask(mix, 1, b, [(a, 1.0), (b, 0.8)]).track == 62
    assert ask(first, 1, 60, [(a, 1.0), (60, 1.0)]).track == 61  # heard in this session
    answer = ask(first, 1, 5, [(5, 1.0)])  # no list for the anchor
    assert answer.fallback and answer.recommender == "random"
    sampled = chain(small_world, {"kind": "i2i", "artifact": "scored.jsonl"}, tmp_path)
    assert {ask(sampled, 1, a, [(a, 1.0)]).track for _ in range(60)} == {60, 61, 62}
    # The course's 2026 lines, {"item_id", "recommendations"}, are the same kind without scores.
    course = chain(small_world, {"kind": "i2i", "artifact": "i2i.jsonl", "anchor": "mix", "ranked": True},
                   write_artifacts(tmp_path))
    # ranks as scores: 62 gets (1.0 / 3 + 0.9 / 1) / 1.9, above 60's (1.0 / 1) / 1.9
    assert ask(course, 1, 1, [(0, 1.0), (1, 0.9)]).track == 62
    # With min_time 0 a session of skips still anchors, equally: 62 scores (0.5 + 0.9) / 2.
    skips = chain(small_world, {**spec, "anchor": "mix", "min_time": 0.0}, tmp_path)
    assert ask(skips, 1, b, [(a, 0.0), (b, 0.0)]) == (62, "i2i(scored.jsonl)", False, 1.0, 4, True)


def test_the_ranked_mix_found_from_the_lists_heads_is_the_merged_lists_pick(small_world: World,
                                                                           tmp_path: Path) -> None:
    """I2I's ranked pick over a mix reads the lists from their heads instead of merging them
    whole: on 3,000 random sessions over lists that overlap, tie and repeat artists (some
    without scores, some not ordered, some anchors without a list), with fatigue, caps and
    every heard scope, it serves the track, propensity and candidate count that the shared
    serving step serves over the merged lists."""
    rng = np.random.default_rng(7)
    pool = rng.choice(small_world.catalog.size, 40, replace=False).tolist()  # few tracks: lists overlap
    lines = []
    for track in pool[:30]:
        tracks = rng.choice(pool, int(rng.integers(0, 12)), replace=False).tolist()
        line = {"track": track, "recommendations": tracks}
        if rng.random() < 0.8:
            scores = np.sort(rng.integers(0, 5, len(tracks)) / 4)[::-1]  # coarse: ties
            if rng.random() < 0.1 and len(tracks) > 1:
                scores = scores[::-1]  # rising: not ordered, merged whole
            line["scores"] = scores.tolist()
        lines.append(json.dumps(line))
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    specs = [{"heard": heard, "artist_discount": discount, "artist_cap": cap, "anchors": anchors, "min_time": min_time}
             for heard in ("session", "none") for discount in (None, 0.5, 1.0) for cap in (None, 1, 2)
             for anchors, min_time in ((None, None), (3, 0.0))]
    members = [chain(small_world, {"kind": "i2i", "artifact": "mixed.jsonl", "anchor": "mix", "ranked": True,
                                   **{key: value for key, value in spec.items() if value is not None}},
                     tmp_path).members[0] for spec in specs]
    artists = small_world.catalog.artist_codes
    served = set()
    for number in range(3000):
        spec, member = specs[number % len(specs)], members[number % len(specs)]
        session = [Listen(int(track), float(rng.choice([0.0, 0.3, 0.6, 1.0])), int(artists[track]))
                   for track in rng.choice(pool, int(rng.integers(1, 9)))]
        answers = []
        for serve in (member.recommend, lambda query: Recommender.recommend(member, query)):
            query = Query(1, session[-1].track, session[-1].time, session, seed=number)
            track = asyncio.run(serve(query))
            answers.append((track, query.propensity, query.candidates, query.deterministic))
        assert answers[0] == answers[1], (spec, session)
        served.add(answers[0][0])
    assert len(served) > 20 and None in served


def test_a_subclass_of_i2i_serves_its_own_candidates_and_says_if_it_is_replayable(small_world: World,
                                                                                  tmp_path: Path) -> None:
    """The heads shortcut is I2I's own: a subclass with its own candidates is served them, and
    one with its own recommend is not replayable (as any recommender deciding alone)."""
    (tmp_path / "i2i.jsonl").write_text('{"track": 1, "recommendations": [5, 6]}\n{"track": 2, "recommendations": [7, 8]}\n')
    member = chain(small_world, {"kind": "i2i", "artifact": "i2i.jsonl", "anchor": "mix", "ranked": True},
                   tmp_path).members[0]

    class OwnCandidates(I2I):
        async def candidates(self, query):
            return [9], None

    class OwnRecommend(I2I):
        async def recommend(self, query):
            return 9

    session = [Listen(1, 1.0, 0), Listen(2, 1.0, 0)]
    own = OwnCandidates(member.spec, member.resources)
    assert asyncio.run(own.recommend(Query(1, 2, 1.0, session))) == 9 and own.replayable
    assert member.replayable and not OwnRecommend(member.spec, member.resources).replayable
    assert asyncio.run(member.recommend(Query(1, 2, 1.0, session))) == 7


def test_artist_fatigue_reranks_and_caps(small_world: World, tmp_path: Path) -> None:
    """The re-ranking step reads only the session and the catalog: score × discount ** plays of
    the candidate's artist in this session, and an optional cap per artist."""
    (x1, x2, x3), (y1, *_) = [tracks[:3] for tracks in _by_artist(small_world)]
    (tmp_path / "i2i.jsonl").write_text(
        f'{{"track": {x1}, "recommendations": [{x2}, {y1}], "scores": [0.9, 0.6]}}\n'
    )
    base = {"kind": "i2i", "artifact": "i2i.jsonl", "ranked": True}
    assert ask(chain(small_world, base, tmp_path), 1, x1).track == x2
    assert ask(chain(small_world, {**base, "artist_discount": 0.8}, tmp_path), 1, x1).track == x2  # 0.72 > 0.6
    assert ask(chain(small_world, {**base, "artist_discount": 0.5}, tmp_path), 1, x1).track == y1  # 0.45 < 0.6
    assert ask(chain(small_world, {**base, "artist_cap": 2}, tmp_path), 1, x1).track == x2
    assert ask(chain(small_world, {**base, "artist_cap": 1}, tmp_path), 1, x1).track == y1
    # Two plays of x's artist so far: 0.9 × 0.8² = 0.576 < 0.6.
    session = [(x1, 1.0), (x3, 1.0)]
    assert ask(chain(small_world, {**base, "artist_discount": 0.8}, tmp_path), 1, x3, session).track == y1
    # Any recommender can use it: sticky_artist with a cap of one play per artist has nothing left.
    capped = chain(small_world, {"kind": "sticky_artist", "artist_cap": 1}, tmp_path)
    assert ask(capped, 1, x1).recommender == "random"


def test_softmax_and_top_k_sampling(small_world: World, tmp_path: Path) -> None:
    (tmp_path / "i2i.jsonl").write_text('{"track": 0, "recommendations": [60, 61, 62], "scores": [0.9, 0.6, 0.1]}\n')
    base = {"kind": "i2i", "artifact": "i2i.jsonl", "pick": "softmax"}
    cold = chain(small_world, {**base, "temperature": 0.01}, tmp_path)
    assert {ask(cold, 1, 0).track for _ in range(50)} == {60}
    warm = chain(small_world, {**base, "temperature": 5.0}, tmp_path)
    assert {ask(warm, 1, 0).track for _ in range(200)} == {60, 61, 62}
    medium = chain(small_world, {**base, "temperature": 0.3}, tmp_path)
    counts = [ask(medium, 1, 0).track for _ in range(2000)]
    # exp(0.9/0.3) : exp(0.6/0.3) : exp(0.1/0.3) → shares 0.70, 0.26, 0.05
    assert abs(counts.count(60) / 2000 - 0.70) < 0.04 and abs(counts.count(62) / 2000 - 0.05) < 0.02
    top2 = chain(small_world, {"kind": "i2i", "artifact": "i2i.jsonl", "pick": "uniform", "k": 2}, tmp_path)
    assert {ask(top2, 1, 0).track for _ in range(60)} == {60, 61}
    assert {ask(top2, 1, 60, [(0, 1.0), (60, 1.0)]).track for _ in range(60)} == {61, 62}  # first 2 unheard


def test_heard_is_the_session_by_default(small_world: World, tmp_path: Path) -> None:
    """A listener penalises repeats within a session, not across sessions: by default only the
    session's tracks are filtered; `heard = "history"` filters the long history too."""
    (tmp_path / "i2i.jsonl").write_text('{"track": 0, "recommendations": [60, 61]}\n')
    artists = small_world.catalog.artist_codes
    session = [Listen(0, 1.0, int(artists[0]))]
    history = [Listen(0, 1.0, int(artists[0])), Listen(60, 1.0, int(artists[60]))]  # 60: an earlier session
    query = Query(1, 0, 1.0, session, history)
    spec = {"kind": "i2i", "artifact": "i2i.jsonl", "ranked": True}
    assert asyncio.run(chain(small_world, spec, tmp_path).recommend(query)).track == 60
    by_history = chain(small_world, {**spec, "heard": "history"}, tmp_path)
    assert asyncio.run(by_history.recommend(query)).track == 61
    nothing = chain(small_world, {**spec, "heard": "none", "anchor": "first"}, tmp_path)
    assert asyncio.run(nothing.recommend(Query(1, 60, 1.0, [Listen(0, 1.0), Listen(60, 1.0)]))).track == 60


def test_a_chain_says_whether_it_reads_the_history_and_whether_it_may_wait(small_world: World,
                                                                           tmp_path: Path) -> None:
    """The store returns the long history only to chains that read it (the heard filter over
    it, `last_liked`, any plugin), and the server answers in its callback only for built-ins."""
    write_artifacts(tmp_path)
    (tmp_path / "ctx.jsonl").write_text('{"track": 0, "recommendations": [50, 51]}\n')
    cases = [({"kind": "random"}, False, True), ({"kind": "sticky_artist"}, False, True),
             ({"kind": "sticky_artist", "heard": "history"}, True, True),
             ({"kind": "i2i", "artifact": "i2i.jsonl", "fallback": {"kind": "top_pop", "artifact": "top.json",
                                                                   "heard": "history"}}, True, True),
             ({"kind": "last_liked", "artifact": "ctx.jsonl"}, True, True),
             ({"kind": "tests.test_recommenders:Broken", "fallback": "sticky_artist"}, True, False)]
    for spec, reads_history, immediate in cases:
        built = chain(small_world, spec, tmp_path)
        assert (built.reads_history, built.immediate) == (reads_history, immediate), spec


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


def test_out_of_catalog_ids_are_skipped_and_counted_unless_strict(small_world: World, tmp_path: Path) -> None:
    """The course served artifacts naming tracks its catalog lacked: read leniently, those ids
    leave the lists (their scores with them) and are counted; strict reading refuses them."""
    n = small_world.catalog.size
    path = tmp_path / "i2i.jsonl"
    path.write_text(f'{{"item_id": 1, "recommendations": [2, {n + 5}, 3, -1], "scores": [0.9, 0.8, 0.7, 0.6]}}\n'
                    f'{{"item_id": 2, "recommendations": [4, 5]}}\n')
    artifact = read_artifact(path, n, strict=False)
    assert artifact.kind == "track" and artifact.skipped == 2
    assert artifact.ranked(1) == Ranked([2, 3], [0.9, 0.7]) and artifact.ranked(2) == Ranked([4, 5], None)
    with pytest.raises(ArtifactError, match=f"{n + 5} is not a track id in 0..{n - 1}"):
        read_artifact(path, n)
    top = tmp_path / "top.json"
    top.write_text(f"[{n}, 1, 2]")
    assert read_artifact(top, n, strict=False).ranked(0) == Ranked([1, 2], None)


def test_an_artifact_knows_which_lists_can_be_read_from_their_heads(small_world: World, tmp_path: Path) -> None:
    """`Ranked.ordered`: distinct tracks, scores never rising and never negative (without scores,
    ranks); found once at load."""
    path = tmp_path / "i2i.jsonl"
    lines = {1: ([2, 3, 4], [0.9, 0.9, 0.0]), 2: ([2, 3], None), 3: ([], None), 4: ([2, 3], [0.5, 0.6]),
             5: ([2, 2], None), 6: ([2, 3], [0.5, -0.1]), 7: ([2, 3, 4], [0.9, 0.1, 0.2])}
    path.write_text("".join(json.dumps({"track": key, "recommendations": tracks}
                                       | ({"scores": scores} if scores is not None else {})) + "\n"
                            for key, (tracks, scores) in lines.items()))
    artifact = read_artifact(path, small_world.catalog.size)
    assert artifact.unordered == {4, 5, 6, 7}
    assert [artifact.ranked(key).ordered for key in lines] == [True, True, True, False, False, False, False]


def test_an_artifacts_lists_share_one_object_per_track(small_world: World, tmp_path: Path) -> None:
    """The parser makes an int object per occurrence; the lists keep one per track id instead
    (ids above 256, which Python does not share by itself)."""
    path = tmp_path / "i2i.jsonl"
    path.write_text('{"track": 1, "recommendations": [700, 300]}\n{"track": 2, "recommendations": [300, 700]}\n')
    lists = read_artifact(path, small_world.catalog.size).lists
    assert lists[1] == [700, 300] and lists[1][0] is lists[2][1] and lists[1][1] is lists[2][0]


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


def test_a_plugin_in_the_current_directory_gets_the_serving_step(small_world: World, tmp_path: Path,
                                                                 monkeypatch) -> None:
    """`kind = "module:Class"` loads from the current directory; a plugin that only proposes
    candidates gets the shared serving step (heard filter, re-ranking, pick) and its params."""
    (tmp_path / "botify_plugin_here.py").write_text(
        "from botify.service import Recommender\n"
        "class Mine(Recommender):\n"
        "    async def candidates(self, query):\n"
        "        return self.spec.params['tracks'], None\n"
    )
    monkeypatch.chdir(tmp_path)
    spec = {"kind": "botify_plugin_here:Mine", "params": {"tracks": [70, 71, 72]}, "ranked": True}
    recommender = chain(small_world, spec, tmp_path)
    assert ask(recommender, 1, 70, [(70, 1.0)])[:3] == (71, "botify_plugin_here:Mine", False)


def test_a_plugin_validates_its_own_params(small_world_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """A plugin declaring `Params` (a pydantic model) gets them validated at start-up, with a
    one-line error naming it; built-in recommenders refuse params."""
    (tmp_path / "botify_params_plugin.py").write_text(
        "from pydantic import BaseModel, ConfigDict, Field\n"
        "from botify.service import Recommender\n"
        "class Mine(Recommender):\n"
        "    class Params(BaseModel):\n"
        "        model_config = ConfigDict(extra='forbid')\n"
        "        first: int = Field(ge=0)\n"
        "        count: int = 3\n"
        "    async def candidates(self, query):\n"
        "        return list(range(self.params.first, self.params.first + self.params.count)), None\n"
    )
    monkeypatch.chdir(tmp_path)
    experiments = tmp_path / "e.toml"
    cases = {
        '{kind = "botify_params_plugin:Mine", params = {first = -1}}': "recommender 'botify_params_plugin:Mine' "
                                                                       "params: invalid Params: first: Input should be "
                                                                       "greater than or equal to 0",
        '{kind = "botify_params_plugin:Mine", params = {first = 1, colour = "red"}}': "colour: Extra inputs",
        '{kind = "sticky_artist", params = {first = 1}}': "'sticky_artist' takes no params",
    }
    for text, message in cases.items():
        experiments.write_text(f"default = {text}\n")
        with pytest.raises(BotifyError, match=message):
            ServiceData.read(ServiceSettings(catalog=small_world_dir, experiments=experiments))
    experiments.write_text('default = {kind = "botify_params_plugin:Mine", params = {first = 40}, ranked = true}\n')
    data = ServiceData.read(ServiceSettings(catalog=small_world_dir, experiments=experiments))
    resources = Resources(data.catalog, EmbeddedStore(5))
    answer = asyncio.run(Chain(data.experiments.default, resources).recommend(Query(1, 40, 1.0, [Listen(40, 1.0)])))
    assert answer.track == 41 and answer.recommender == "botify_params_plugin:Mine"


def test_request_generators_are_independent_and_uniform() -> None:
    """Each request draws from its own generator, seeded by (seed, user, request number):
    reproducible, and neither consecutive requests nor neighbouring users are correlated."""
    import numpy as np
    from scipy import stats

    from botify.service.recommenders import RequestRandom

    assert RequestRandom(request_seed(42, 7, 3)).random() == RequestRandom(request_seed(42, 7, 3)).random()
    assert RequestRandom(request_seed(42, 7, 3)).random() != RequestRandom(request_seed(43, 7, 3)).random()
    draws = np.array([[RequestRandom(request_seed(42, user, n)).randrange(10) for n in range(200)]
                      for user in range(500)])
    assert stats.chisquare(np.bincount(draws.ravel(), minlength=10)).pvalue > 1e-3
    consecutive = draws[:, :-1].ravel() * 10 + draws[:, 1:].ravel()
    assert stats.chisquare(np.bincount(consecutive, minlength=100)).pvalue > 1e-3
    neighbours = draws[:-1].ravel() * 10 + draws[1:].ravel()
    assert stats.chisquare(np.bincount(neighbours, minlength=100)).pvalue > 1e-3
    one = RequestRandom(5)
    assert sorted(one.sample(range(10), 10)) == list(range(10))
    assert stats.kstest([one.random() for _ in range(20_000)], "uniform").pvalue > 1e-3


def test_every_answer_carries_its_propensity(small_world: World, tmp_path: Path) -> None:
    """The serving step knows how likely the served track was: 1 for a ranked pick, 1/n for a
    uniform draw among n unheard candidates, the softmax weight, 1/catalog for Random."""
    artifacts = write_artifacts(tmp_path)
    (artifacts / "scored.jsonl").write_text('{"track": 5, "recommendations": [70, 71, 72], "scores": [2.0, 1.0, 0.0]}\n')
    ranked = ask(chain(small_world, {"kind": "top_pop", "artifact": "top.json", "ranked": True}, artifacts), 1, 30,
                 [(30, 1.0)])
    assert (ranked.track, ranked.propensity, ranked.candidates) == (31, 1.0, 5)
    uniform = ask(chain(small_world, {"kind": "top_pop", "artifact": "top.json", "k": 4}, artifacts), 1, 30, [(30, 1.0)])
    assert uniform.propensity == pytest.approx(1 / 3) and uniform.candidates == 3  # the top 4, less the one heard
    softmax = chain(small_world, {"kind": "contextual", "artifact": "scored.jsonl", "pick": "softmax",
                                  "temperature": 1.0}, artifacts)
    weights = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    for _ in range(20):
        answer = ask(softmax, 1, 5, [(5, 1.0)])
        assert answer.propensity == pytest.approx(weights[answer.track - 70]) and answer.candidates == 3
    fallback = ask(chain(small_world, {"kind": "indexed", "artifact": "als.jsonl"}, artifacts), 99, 0)
    assert fallback.fallback and fallback.propensity == 1 / small_world.catalog.size


def test_exploration_mixes_a_uniform_draw_into_the_pick(small_world: World, tmp_path: Path) -> None:
    """With explore = 0.2 over a pool of 4, a ranked pick serves its best with 0.8 + 0.2/4 and
    each other pool candidate with 0.05, at those frequencies, and says so in the propensity."""
    spec = {"kind": "top_pop", "artifact": "top.json", "ranked": True, "explore": 0.2, "explore_pool": 4}
    recommender = chain(small_world, spec, write_artifacts(tmp_path))
    answers = [ask(recommender, user, 0) for user in range(4000)]
    counts = {track: sum(answer.track == track for answer in answers) for track in range(30, 36)}
    assert counts[34] == counts[35] == 0
    assert abs(counts[30] / 4000 - 0.85) < 0.03 and all(abs(counts[t] / 4000 - 0.05) < 0.015 for t in (31, 32, 33))
    assert {answer.track: answer.propensity for answer in answers} == pytest.approx(
        {30: 0.85, 31: 0.05, 32: 0.05, 33: 0.05})


def _total(distribution, catalog_size: int) -> float:
    """A distribution's whole mass: its listed chances and the floor on every other allowed track."""
    return sum(distribution.chances) + distribution.floor_mass(catalog_size)


@pytest.mark.parametrize("spec", [
    {"kind": "top_pop", "artifact": "top.json", "ranked": True},
    {"kind": "top_pop", "artifact": "top.json", "k": 4},
    {"kind": "contextual", "artifact": "scored.jsonl", "pick": "softmax", "temperature": 0.5, "artist_discount": 0.5},
    {"kind": "top_pop", "artifact": "top.json", "ranked": True, "explore": 0.2, "explore_pool": 3},
    {"kind": "sticky_artist", "explore": 0.3, "explore_pool": "catalog", "artist_cap": 3},
    {"kind": "contextual", "artifact": "scored.jsonl", "ranked": True, "explore": 0.5, "explore_pool": "catalog"},
    {"kind": "indexed", "artifact": "als.jsonl", "fallback": "sticky_artist"},
])
def test_the_distribution_is_what_the_serving_step_draws_from(small_world: World, tmp_path: Path, spec) -> None:
    """`Chain.distribution` (off-policy evaluation's view of a policy) holds the served track
    with the very propensity the service logs, sums to 1, and names the member that answers."""
    artifacts = write_artifacts(tmp_path)
    (artifacts / "scored.jsonl").write_text('{"track": 5, "recommendations": [70, 71, 72, 5], "scores": [2, 1, 0, -1]}\n')
    recommender = chain(small_world, spec, artifacts)
    artists = recommender.members[0].artist_of
    size = small_world.catalog.size
    for user in range(60):
        session = [(5, 1.0), (71, 0.5)] if user % 2 else [(5, 1.0)]
        listens = [Listen(t, played, int(artists[t])) for t, played in session]
        query = Query(user % 5 + 1, 5, listens[-1].time, listens, seed=request_seed(1, user, 1))
        answer = asyncio.run(recommender.recommend(query))
        distribution, member = asyncio.run(recommender.distribution(dataclasses.replace(query, _rng=None)))
        assert member == answer.recommender
        assert distribution.chance(answer.track) == pytest.approx(answer.propensity)
        assert _total(distribution, size) == pytest.approx(1.0)
        assert answer.deterministic == (spec.get("ranked", False) and not spec.get("explore"))


def test_exploring_the_catalog_serves_any_unheard_track(small_world: World, tmp_path: Path) -> None:
    """explore_pool = "catalog": with probability explore a uniform draw among the unheard
    tracks of the whole catalog, at the frequencies the propensities state."""
    spec = {"kind": "top_pop", "artifact": "top.json", "ranked": True, "explore": 0.4, "explore_pool": "catalog"}
    recommender = chain(small_world, spec, write_artifacts(tmp_path))
    answers = [ask(recommender, user, 30) for user in range(3000)]  # 30, the best, is heard: 31 is the pick
    size = small_world.catalog.size
    assert all(answer.track != 30 for answer in answers)
    share = sum(answer.track == 31 for answer in answers) / len(answers)
    assert abs(share - (0.6 + 0.4 / (size - 1))) < 0.03
    others = [answer for answer in answers if answer.track != 31]
    assert len({answer.track for answer in others}) > 200 and not any(answer.track < 0 for answer in others)
    assert [answer.propensity for answer in others] == pytest.approx([0.4 / (size - 1)] * len(others))


def test_a_recommender_deciding_alone_is_not_replayable(small_world: World, tmp_path: Path) -> None:
    recommender = chain(small_world, {"kind": "last_liked", "artifact": "ctx.jsonl"}, write_artifacts(tmp_path))
    assert recommender.unreplayable() == ["last_liked(ctx.jsonl)"]
    assert chain(small_world, {"kind": "sticky_artist"}, write_artifacts(tmp_path)).unreplayable() == []
