"""One store suite, run against the embedded store and a real Redis server."""

from __future__ import annotations

import asyncio
import time

import pytest

from botify.artifacts import Artifact
from botify.service.stores import EmbeddedStore, InFlight, Listen, Ranked, StoreUnavailable
from botify.service.stores.redis import COOL_DOWN, RedisStore
from botify.world import World

ARTIFACTS = {
    "users.jsonl": Artifact("users.jsonl", "user", {1: [5, 6, 7], 2: []}, digest="d1"),
    "top.json": Artifact("top.json", "top", {0: [9, 8, 7]}, digest="d2"),
    "i2i.jsonl": Artifact("i2i.jsonl", "track", {4: [3, 2], 5: [1]}, {4: [0.9, 0.25]}, digest="d3"),
}


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture(params=["embedded", "redis"])
def make_store(request, small_world: World):
    def build(history_length: int = 3, session_length: int = 500, session_ttl: float = 3600.0):
        if request.param == "embedded":
            return EmbeddedStore(history_length, session_length, session_ttl)
        return RedisStore(request.getfixturevalue("redis_url"), history_length, timeout=0.3,
                          session_length=session_length, session_ttl=session_ttl)

    return build


async def _loaded(store, world: World):
    await store.load(world.catalog, "catalog-digest", ARTIFACTS)
    return store


def test_catalog_and_artists(make_store, small_world: World) -> None:
    async def scenario():
        store = await _loaded(make_store(), small_world)
        record = small_world.catalog.records[5]
        assert await store.track(5) == record
        assert await store.track(small_world.catalog.size) is None
        tracks = await store.artist_tracks(record["artist"])
        assert 5 in tracks and tracks == sorted(tracks)
        assert all(small_world.catalog.records[t]["artist"] == record["artist"] for t in tracks)
        assert await store.artist_tracks("nobody at all") == []
        await store.close()

    run(scenario())


def test_histories_keep_the_last_n_newest_first(make_store, small_world: World) -> None:
    async def scenario():
        store = await _loaded(make_store(history_length=3), small_world)
        assert await store.history(1) == []
        for track, time_played in [(10, 1.0), (11, 0.5), (12, 0.0), (13, 0.25)]:
            _, history, *_ = await store.listen(1, Listen(track, time_played, 7))
        assert history == [Listen(13, 0.25, 7), Listen(12, 0.0, 7), Listen(11, 0.5, 7)]
        assert await store.history(1) == history
        assert await store.history(2) == []
        await store.close()

    run(scenario())


def test_a_play_without_its_history_still_records_it(make_store, small_world: World) -> None:
    """`with_history=False` (no recommender of the request reads the history): the play is
    recorded as ever, the session returned, the history not."""
    async def scenario():
        store = await _loaded(make_store(history_length=3), small_world)
        await store.listen(1, Listen(10, 1.0, 7))
        session, history, number, _ = await store.listen(1, Listen(11, 0.5, 7), with_history=False)
        assert list(history) == [] and session == [Listen(10, 1.0, 7), Listen(11, 0.5, 7)] and number == 2
        assert await store.history(1) == [Listen(11, 0.5, 7), Listen(10, 1.0, 7)]
        await store.close()

    run(scenario())


def test_sessions_open_at_next_and_close_at_last(make_store, small_world: World) -> None:
    """The open session is kept apart from the long history: it opens with the first /next
    after a /last (or the first ever), grows in order, and closes at /last."""

    async def scenario():
        store = await _loaded(make_store(history_length=3), small_world)
        assert await store.session(1) == []
        session, _, *_ = await store.listen(1, Listen(10, 1.0, 4))
        assert session == [Listen(10, 1.0, 4)]
        session, history, *_ = await store.listen(1, Listen(11, 0.5, 5))
        assert session == [Listen(10, 1.0, 4), Listen(11, 0.5, 5)]
        assert history == [Listen(11, 0.5, 5), Listen(10, 1.0, 4)]
        await store.listen(2, Listen(20, 1.0, 9))  # another user's session is their own
        session, _, *_ = await store.listen(1, Listen(12, 0.0, 5), close=True)
        assert [listen.track for listen in session] == [10, 11, 12]
        assert await store.session(1) == []
        assert await store.session(2) == [Listen(20, 1.0, 9)]
        session, history, *_ = await store.listen(1, Listen(30, 1.0, 6))  # a new session
        assert session == [Listen(30, 1.0, 6)]
        assert [listen.track for listen in history] == [30, 12, 11]  # the history goes on across sessions
        await store.close()

    run(scenario())


def test_sessions_are_bounded_and_expire(make_store, small_world: World) -> None:
    async def scenario():
        store = await _loaded(make_store(session_length=4, session_ttl=1.0), small_world)
        for track in range(6):
            session, _, *_ = await store.listen(1, Listen(track, 1.0, 0))
        assert [listen.track for listen in session] == [2, 3, 4, 5]  # the latest four
        await asyncio.sleep(1.2)
        assert await store.session(1) == []  # abandoned without a /last: expired
        session, _, *_ = await store.listen(1, Listen(9, 1.0, 0))
        assert session == [Listen(9, 1.0, 0)]
        await store.close()

    run(scenario())


def test_artifacts(make_store, small_world: World) -> None:
    async def scenario():
        store = await _loaded(make_store(), small_world)
        assert await store.ranked("users.jsonl", [1, 2, 3]) == [Ranked([5, 6, 7], None), Ranked([], None), None]
        assert await store.ranked("top.json", [0]) == [Ranked([9, 8, 7], None)]
        assert await store.ranked("missing.jsonl", [1]) == [None]
        assert await store.ranked("i2i.jsonl", [4, 5, 6]) == [Ranked([3, 2], [0.9, 0.25]), Ranked([1], None), None]
        assert await store.ranked("users.jsonl", [1]) == [Ranked([5, 6, 7], None)]
        assert (await store.status())["store"] == store.kind
        await store.close()

    run(scenario())


def test_redis_keeps_no_copy_of_the_catalog_or_artifacts(redis_server, redis_url: str, small_world: World) -> None:
    """Workers answer catalog and artifact reads from memory: loading writes only the version's
    `ready` key, and a read costs no command."""
    async def scenario():
        stores = [RedisStore(redis_url, 5) for _ in range(4)]
        await asyncio.gather(*(_loaded(store, small_world) for store in stores))
        before = redis_server.command("INFO", "stats").split("total_commands_processed:")[1].split()[0]
        assert all([await store.track(3) == small_world.catalog.records[3] for store in stores])
        assert all([await store.ranked("users.jsonl", [1]) == [Ranked([5, 6, 7], None)] for store in stores])
        after = redis_server.command("INFO", "stats").split("total_commands_processed:")[1].split()[0]
        assert int(after) == int(before) + 1  # the INFO itself
        assert len({store.version for store in stores}) == 1
        version = stores[0].version
        assert redis_server.command("KEYS", f"botify:{version}:*").split() == [f"botify:{version}:ready"]
        for store in stores:
            await store.close()

    run(scenario())


def test_redis_pause_gives_fast_503_and_recovers(redis_server, redis_url: str, small_world: World) -> None:
    async def scenario():
        store = await _loaded(RedisStore(redis_url, 5, timeout=0.3), small_world)
        await store.listen(1, Listen(10, 1.0))
        redis_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="unavailable"):
                await store.listen(1, Listen(11, 1.0))
            assert time.monotonic() - started < 3  # the 0.3 s command time-out, not a freeze
            started = time.monotonic()
            for _ in range(20):
                with pytest.raises(StoreUnavailable):
                    await store.history(1)
            assert time.monotonic() - started < 0.3  # during the cool-down: at once, not 0.3 s each
            assert await store.track(1) == small_world.catalog.records[1]  # the catalog needs no Redis
        finally:
            redis_server.resume()
        await asyncio.sleep(COOL_DOWN + 0.1)
        assert await store.track(1) == small_world.catalog.records[1]
        assert (await store.listen(1, Listen(12, 0.5)))[1][0] == Listen(12, 0.5)
        # The play sent during the pause ran in Redis after its deadline: it left nothing behind.
        assert [listen.track for listen in await store.history(1)] == [12, 10]
        await store.close()

    run(scenario())


def test_redis_restarted_empty_is_reloaded_without_restart(redis_server, redis_url: str, small_world: World) -> None:
    async def scenario():
        store = await _loaded(RedisStore(redis_url, 5, timeout=0.3), small_world)
        await store.listen(2, Listen(3, 1.0))
        redis_server.stop()
        with pytest.raises(StoreUnavailable):
            await store.listen(2, Listen(4, 1.0))
        redis_server.start()  # same port, empty
        await asyncio.sleep(COOL_DOWN + 0.1)
        assert (await store.listen(2, Listen(5, 1.0))).history == [Listen(5, 1.0)]  # the history went with Redis
        assert redis_server.command("EXISTS", f"botify:{store.version}:ready").strip() == "1"
        assert await store.ranked("users.jsonl", [1]) == [Ranked([5, 6, 7], None)]
        await store.close()

    run(scenario())


def test_redis_flushed_while_connected_is_reloaded(redis_server, redis_url: str, small_world: World) -> None:
    async def scenario():
        store = await _loaded(RedisStore(redis_url, 5), small_world)
        redis_server.command("FLUSHALL")
        await store.listen(4, Listen(1, 1.0))  # notices that Redis lost everything, marks the version again
        assert redis_server.command("EXISTS", f"botify:{store.version}:ready").strip() == "1"
        assert (await store.listen(4, Listen(2, 1.0))).history == [Listen(2, 1.0), Listen(1, 1.0)]
        await store.close()

    run(scenario())


def test_redis_down_at_start_is_a_clear_error(small_world: World) -> None:
    from tests.servers import free_port

    async def scenario():
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", 5, timeout=0.2)
        with pytest.raises(StoreUnavailable, match="cannot connect"):
            await _loaded(store, small_world)
        await store.close()

    run(scenario())


def test_likes(make_store, small_world: World) -> None:
    import random

    async def scenario():
        store = await _loaded(make_store(), small_world)
        for user, track in [(1, 10), (1, 11), (2, 10), (3, 10), (1, 10)]:
            await store.like(user, track)
        assert await store.liked_tracks(1) == [10, 11]
        assert await store.liked_tracks(9) == []
        likers = await store.random_likers(10, 5, random.Random(0))
        assert sorted(likers) == [1, 2, 3]
        # The same draw in every store: a sample of the likers in id order.
        assert await store.random_likers(10, 2, random.Random(7)) == random.Random(7).sample([1, 2, 3], 2)
        assert await store.random_likers(99, 3, random.Random(0)) == []
        await store.close()

    run(scenario())


def test_requests_are_numbered_per_user_and_undo_takes_a_play_back(make_store, small_world: World) -> None:
    async def scenario():
        store = await _loaded(make_store(history_length=5), small_world)
        numbers = [(await store.listen(user, Listen(track, 1.0, 1))).number for user, track in
                   [(1, 10), (1, 11), (2, 10), (1, 12)]]
        assert numbers == [1, 2, 1, 3]
        played = Listen(13, 0.5, 1)
        recorded = await store.listen(1, played)
        await store.undo(1, played, recorded, False, None)
        assert [listen.track for listen in await store.history(1)] == [12, 11, 10]
        assert [listen.track for listen in await store.session(1)] == [10, 11, 12]
        assert (await store.listen(1, Listen(14, 1.0, 1))).number == 4  # the undone request is not counted
        last = Listen(15, 1.0, 1)
        recorded = await store.listen(1, last, close=True)
        assert await store.session(1) == []
        await store.undo(1, last, recorded, True, None)  # the /last failed: the session is open again
        assert [listen.track for listen in await store.session(1)] == [10, 11, 12, 14]
        await store.close()

    run(scenario())


def test_idempotency_keys_replay_the_answer_and_record_nothing(make_store, small_world: World) -> None:
    async def scenario():
        store = await _loaded(make_store(history_length=5), small_world)
        first = await store.listen(1, Listen(10, 1.0, 1), key="k1")
        assert first.replay is None and first.number == 1
        with pytest.raises(InFlight):
            await store.listen(1, Listen(10, 1.0, 1), key="k1")  # still being handled
        await store.answered(1, "k1", b'{"user":1,"track":7}')
        again = await store.listen(1, Listen(10, 1.0, 1), key="k1")
        assert again.replay == b'{"user":1,"track":7}'
        assert [listen.track for listen in await store.history(1)] == [10]
        other = await store.listen(2, Listen(10, 1.0, 1), key="k1")  # keys are per user
        assert other.replay is None
        failed = await store.listen(1, Listen(11, 1.0, 1), key="k2")
        await store.undo(1, Listen(11, 1.0, 1), failed, False, "k2")  # its request failed: a retry is new
        retry = await store.listen(1, Listen(11, 1.0, 1), key="k2")
        assert retry.replay is None and retry.number == 2
        assert [listen.track for listen in await store.history(1)] == [11, 10]
        await store.close()

    run(scenario())


def test_the_embedded_store_keeps_the_most_recent_users() -> None:
    async def scenario():
        store = EmbeddedStore(5, max_users=100)
        await store.like(0, 3)
        for user in range(250):
            await store.listen(user, Listen(1, 1.0, 0))
            await store.listen(0, Listen(2, 1.0, 0))  # user 0 stays recent
        status = await store.status()
        assert status["users"] == 100 and status["evicted_users"] == 150
        assert await store.history(5) == [] and len(await store.history(249)) == 1
        assert await store.liked_tracks(0) == [3] and len(await store.history(0)) == 5

    run(scenario())


def test_a_bad_redis_key_is_its_users_problem_only(redis_server, redis_url: str, small_world: World) -> None:
    async def scenario():
        store = await _loaded(RedisStore(redis_url, 5, timeout=0.3), small_world)
        await store.listen(100, Listen(1, 1.0, 0))
        redis_server.command("DEL", "botify:history:100")
        redis_server.command("SET", "botify:history:100", "x")  # a wrong type
        redis_server.command("HSET", "botify:session:200", "a", "b")
        redis_server.command("SET", "botify:requests:300", "junk")
        for user in (100, 200, 300, 400):
            recorded = await store.listen(user, Listen(5, 0.5, 2))
            assert recorded.history[0] == Listen(5, 0.5, 2)
        assert store.repaired == 3 and store._ready  # no outage
        redis_server.command("RPUSH", "botify:history:400", "not json")
        redis_server.command("LPUSH", "botify:history:400", "[1, 2]")
        assert (await store.listen(400, Listen(6, 1.0, 2))).history == [Listen(6, 1.0, 2), Listen(5, 0.5, 2)]
        redis_server.command("LPUSH", "botify:history:500", "[7, 1.0, 2], [8, 1.0, 2]")  # two in one entry: junk
        assert (await store.listen(500, Listen(9, 1.0, 2))).history == [Listen(9, 1.0, 2)]
        # Catalog and artifacts are served from memory: Redis holds only the version's marker.
        assert redis_server.command("KEYS", f"botify:{store.version}:*").split() == [f"botify:{store.version}:ready"]
        assert await store.track(3) == small_world.catalog.records[3]
        artist = small_world.catalog.records[3]["artist"]
        assert 3 in await store.artist_tracks(artist)
        await store.close()

    run(scenario())


def test_the_embedded_store_keeps_a_user_in_the_stated_bytes_and_out_of_the_collector() -> None:
    """Per-user state is one bytes record: within `bytes_per_user` at 50 listens, and no objects
    the garbage collector would scan however many users it holds."""
    import gc
    import tracemalloc

    store = EmbeddedStore(50, max_users=10_000)
    gc.collect()
    tracked = len(gc.get_objects())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]

    async def fill():
        for user in range(4000):
            for step in range(50):
                await store.listen(user, Listen(step, 0.5, 1), close=step == 49)

    run(fill())
    used = (tracemalloc.get_traced_memory()[0] - before) / 4000
    tracemalloc.stop()
    gc.collect()
    assert used <= EmbeddedStore.bytes_per_user(50), (used, EmbeddedStore.bytes_per_user(50))
    assert EmbeddedStore.bytes_per_user(50) < 1100
    assert len(gc.get_objects()) - tracked < 100  # not one tracked object per user
    assert run(store.history(7))[0] == Listen(49, 0.5, 1) and len(run(store.history(7))) == 50


@pytest.mark.parametrize("entries", [
    [b"[1,0.5,2]", b"[3,1,4]", b"[5,0.0,6]"],  # sound: read as columns
    [],
    [b"[1,0.5,2]", b"junk", b"[3,1.0,4]"],  # not JSON
    [b"[1,0.5,2,9]", b"[3,1.0,4]"],  # too many fields
    [b"[1,0.5]", b"[3,1.0,4]"],  # too few
    [b'["1",0.5,2]', b"[3.0,1.0,4]", b"[true,0.5,2]", b'{"a":1,"b":2,"c":3}', b'"abc"', b"7"],  # not ints
])
def test_lazily_parsed_listens_read_columns_as_a_whole_parse_would(entries: list[bytes]) -> None:
    """The Redis store's session and history are parsed only as far as read: the tracks and
    artists columns come from whole-list steps, equal to the full parse's whatever the junk."""
    from botify.service.stores.base import ParsedLater, artists_of, parse_listens, tracks_of

    whole = parse_listens(entries, "k")
    assert tracks_of(ParsedLater(entries, "k")) == [listen.track for listen in whole]
    assert artists_of(ParsedLater(entries, "k")) == [listen.artist for listen in whole]
    both = ParsedLater(entries, "k")
    assert list(both) == whole and tracks_of(both) == [listen.track for listen in whole]
    columns_first = ParsedLater(entries, "k")  # whole listens after the columns: from them, the same
    assert tracks_of(columns_first) == [listen.track for listen in whole] and list(columns_first) == whole
