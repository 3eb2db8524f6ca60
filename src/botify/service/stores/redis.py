"""The Redis store: several workers share one real Redis server.

Catalog and artifacts live in hashes under versioned keys (`botify:<version>:...`) and are
uploaded pipelined, once: the first worker takes a lock and uploads, the others wait for
the version's `ready` key. Listen histories are lists under `botify:history:<user>`; the open
session is a list under `botify:session:<user>` with a TTL, written in the same pipelined round
trip as the history and deleted at `/last`. Values are JSON.

An outage never freezes or poisons the service: commands time out quickly, the store then
answers `StoreUnavailable` at once (503) for a short cool-down, and the first request after
it reconnects, checks that this version's data is still there (Redis may have restarted
empty) and re-uploads it if not. No restart of botify is needed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

import orjson

from botify.artifacts import Artifact
from botify.service.stores.base import Listen, Ranked, Store, StoreUnavailable, artist_tracks_of, data_version
from botify.service.stores.resp import RedisReplyError, RedisUnavailable, RespClient
from botify.world.model import Catalog

COOL_DOWN = 1.0
LOAD_WAIT = 60.0
UPLOAD_BATCH = 2000


class RedisStore(Store):
    kind = "redis"

    def __init__(self, url: str, history_length: int, timeout: float = 0.5, session_length: int = 500,
                 session_ttl: float = 3600.0) -> None:
        super().__init__(history_length, session_length, session_ttl)
        self.url = url
        self.client = RespClient(url, timeout)
        self.version = ""
        self._data: tuple[Catalog, dict[str, Artifact]] | None = None
        self._ready = False
        self._retry_at = 0.0
        self._last_error = ""
        self._recovering = asyncio.Lock()

    def _key(self, *parts: str) -> str:
        return ":".join(("botify", self.version, *parts))

    def _fail(self, error: BaseException) -> StoreUnavailable:
        self._ready = False
        self._retry_at = time.monotonic() + COOL_DOWN
        self._last_error = str(error)
        return StoreUnavailable(f"Redis at {self.url} is unavailable ({self._last_error}); retry shortly")

    async def _recover(self) -> None:
        """Reconnect after an outage and make sure this version's data is (again) in Redis."""
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise StoreUnavailable(f"Redis at {self.url} is unavailable ({self._last_error}); retrying in {wait:.1f} s")
        if self._recovering.locked():
            raise StoreUnavailable(f"Redis at {self.url} is reconnecting; retry shortly")
        async with self._recovering:
            try:
                await self._ensure_loaded()
            except (RedisUnavailable, RedisReplyError) as error:
                raise self._fail(error) from None
            self._ready = True

    async def _execute(self, *commands: tuple) -> list:
        if not self._ready:
            await self._recover()
        try:
            return await self.client.execute(*commands)
        except (RedisUnavailable, RedisReplyError) as error:
            raise self._fail(error) from None

    async def load(self, catalog: Catalog, catalog_digest: str, artifacts: dict[str, Artifact]) -> None:
        self._data = (catalog, artifacts)
        self.version = data_version(catalog_digest, artifacts)
        self._retry_at = 0.0
        await self._recover()

    async def _ensure_loaded(self) -> None:
        """Upload this version once across workers: one takes the lock, the rest wait."""
        ready_key, lock_key = self._key("ready"), self._key("loading")
        deadline = time.monotonic() + LOAD_WAIT
        while not (await self.client.execute(("EXISTS", ready_key)))[0]:
            token = uuid.uuid4().hex.encode()
            (locked,) = await self.client.execute(("SET", lock_key, token, "NX", "EX", int(LOAD_WAIT) * 2))
            if locked:
                try:
                    await self._upload()
                    await self.client.execute(("SET", ready_key, b"1"))
                finally:
                    if (await self.client.execute(("GET", lock_key)))[0] == token:
                        await self.client.execute(("DEL", lock_key))
                return
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"another worker has been loading {self.version} for too long")
            await asyncio.sleep(0.05)

    async def _upload(self) -> None:
        catalog, artifacts = self._data
        tables = {
            self._key("tracks"): [(record["track"], orjson.dumps(record)) for record in catalog.records],
            self._key("artists"): [(name, orjson.dumps(tracks)) for name, tracks in artist_tracks_of(catalog).items()],
        }
        for name, artifact in artifacts.items():
            tables[self._key("artifact", name)] = [(key, orjson.dumps((lst, artifact.scores.get(key))))
                                                   for key, lst in artifact.lists.items()]
        commands: list[tuple] = []
        for key, items in tables.items():
            commands.append(("DEL", key))
            for start in range(0, len(items), UPLOAD_BATCH):
                fields = [part for item in items[start : start + UPLOAD_BATCH] for part in item]
                commands.append(("HSET", key, *fields))
        await self.client.execute(*commands)

    async def track(self, track: int) -> dict | None:
        (value,) = await self._execute(("HGET", self._key("tracks"), track))
        return None if value is None else orjson.loads(value)

    async def artist_tracks(self, artist: str) -> list[int]:
        (value,) = await self._execute(("HGET", self._key("artists"), artist))
        return [] if value is None else orjson.loads(value)

    async def listen(self, user: int, listen: Listen, close: bool = False) -> tuple[list[Listen], list[Listen]]:
        key, session_key = f"botify:history:{user}", f"botify:session:{user}"
        entry = orjson.dumps((listen.track, listen.time, listen.artist))
        if close:
            session_commands = [("RPUSH", session_key, entry), ("LRANGE", session_key, -self.session_length, -1),
                                ("DEL", session_key)]
        else:
            session_commands = [("RPUSH", session_key, entry), ("LTRIM", session_key, -self.session_length, -1),
                                ("PEXPIRE", session_key, int(self.session_ttl * 1000)),
                                ("LRANGE", session_key, 0, -1)]
        replies = await self._execute(
            ("LPUSH", key, entry),
            ("LTRIM", key, 0, self.history_length - 1),
            ("LRANGE", key, 0, self.history_length - 1),
            *session_commands,
            ("EXISTS", self._key("ready")),
        )
        if not replies[-1]:  # Redis lost our data (restarted empty): upload it again before going on
            self._ready = False
            await self._recover()
        session = replies[4] if close else replies[-2]
        return [Listen(*orjson.loads(item)) for item in session], [Listen(*orjson.loads(item)) for item in replies[2]]

    async def history(self, user: int) -> list[Listen]:
        (entries,) = await self._execute(("LRANGE", f"botify:history:{user}", 0, self.history_length - 1))
        return [Listen(*orjson.loads(entry)) for entry in entries]

    async def session(self, user: int) -> list[Listen]:
        (entries,) = await self._execute(("LRANGE", f"botify:session:{user}", 0, -1))
        return [Listen(*orjson.loads(entry)) for entry in entries]

    async def ranked(self, artifact: str, keys: Sequence[int]) -> list[Ranked | None]:
        (values,) = await self._execute(("HMGET", self._key("artifact", artifact), *keys))
        return [None if value is None else Ranked(*orjson.loads(value)) for value in values]

    async def like(self, user: int, track: int) -> None:
        await self._execute(("SADD", f"botify:liked:{user}", track), ("SADD", f"botify:likers:{track}", user))

    async def liked_tracks(self, user: int) -> list[int]:
        (members,) = await self._execute(("SMEMBERS", f"botify:liked:{user}"))
        return sorted(int(member) for member in members)

    async def random_likers(self, track: int, count: int, rng) -> list[int]:
        (members,) = await self._execute(("SRANDMEMBER", f"botify:likers:{track}", count))
        return [int(member) for member in members]

    async def status(self) -> dict:
        (ready,) = await self._execute(("EXISTS", self._key("ready")))
        if not ready:
            self._ready = False
            raise StoreUnavailable(f"Redis at {self.url} lost botify's data; reloading")
        return {"store": self.kind, "version": self.version, "url": self.url}

    async def close(self) -> None:
        await self.client.close()
