"""The Redis store: several workers share one real Redis server.

Redis holds what workers share and change: listen histories are lists under
`botify:history:<user>`; the open session is a list under `botify:session:<user>` with a TTL,
deleted at `/last`; a user's requests are counted under `botify:requests:<user>`; idempotency
keys under `botify:idem:<user>:<key>`; likes in sets. Values are JSON. The catalog and
artifacts never change while a data version is served and every worker has read them: they
are answered from the worker's memory (see `Store.load`), not fetched per request. A play is
recorded by one Lua script (one round trip, atomic), which refuses to write once the
request's deadline has passed: a request that timed out during a Redis pause (and was
answered 503) leaves nothing behind when Redis resumes.

A bad key (wrong type, junk value) is one request's problem, never an outage: the script
reports it, the key is deleted and logged, the play recorded again; junk list entries are
skipped. Only connection-level failures and server states (loading, out of memory, auth) are
outages.

An outage never freezes or poisons the service: commands time out quickly, the store then
answers `StoreUnavailable` at once (503) for a short cool-down, and the first request after
it reconnects, reloads the scripts and notices (by the version's `ready` key) when Redis came
back empty — users' histories were lost with it, which is logged. No restart of botify is
needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import orjson

from botify.artifacts import Artifact
from botify.errors import BotifyError
from botify.service.settings import redact
from botify.service.stores.base import (
    InFlight,
    Listen,
    ParsedLater,
    Recorded,
    Store,
    StoreUnavailable,
    default,
    logger,
    parse_listens,
)
from botify.service.stores.resp import RedisReplyError, RedisUnavailable, RespClient
from botify.world.model import Catalog

COOL_DOWN = 1.0


# Replies that mean the server, not a key, is in trouble: those are outages.
SERVER_ERRORS = ("LOADING", "MISCONF", "NOAUTH", "WRONGPASS", "OOM", "READONLY", "BUSY", "MASTERDOWN", "NOPERM",
                 "CLUSTERDOWN", "TRYAGAIN")

# KEYS: history, session, request counter, this version's ready key[, idempotency key]
# ARGV: entry, history length, session length, session TTL (ms), close (1/0), deadline (ms, Redis clock; 0: none),
#       in-flight TTL of the idempotency key (ms), return the history (1/0)
LISTEN = b"""
local t = redis.call('TIME')
local deadline = tonumber(ARGV[6])
if deadline > 0 and tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline then return {'late'} end
if redis.call('EXISTS', KEYS[4]) == 0 then return {'lost'} end
if #KEYS == 5 then
  local seen = redis.pcall('GET', KEYS[5])
  if type(seen) == 'table' and seen['err'] then return {'bad', KEYS[5], 'a non-string'} end
  if seen then return {'seen', seen} end
end
local length = redis.pcall('LPUSH', KEYS[1], ARGV[1])
if type(length) == 'table' then return {'bad', KEYS[1], 'a non-list'} end
local open = redis.pcall('RPUSH', KEYS[2], ARGV[1])
if type(open) == 'table' then
  redis.call('LPOP', KEYS[1])
  return {'bad', KEYS[2], 'a non-list'}
end
local n = redis.pcall('INCR', KEYS[3])
if type(n) == 'table' then
  redis.call('LPOP', KEYS[1])
  redis.call('RPOP', KEYS[2])
  return {'bad', KEYS[3], 'a non-counter'}
end
if #KEYS == 5 then redis.call('SET', KEYS[5], '', 'PX', ARGV[7]) end
local keep = tonumber(ARGV[2])
if length > keep then redis.call('LTRIM', KEYS[1], 0, keep - 1) end
local history = {}
if ARGV[8] == '1' then history = redis.call('LRANGE', KEYS[1], 0, keep - 1) end
local most = tonumber(ARGV[3])
local session
if ARGV[5] == '1' then
  session = redis.call('LRANGE', KEYS[2], -most, -1)
  redis.call('DEL', KEYS[2])
else
  if open > most then redis.call('LTRIM', KEYS[2], -most, -1) end
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  session = redis.call('LRANGE', KEYS[2], 0, -1)
end
return {'ok', n, history, session}
"""

# KEYS: history, session, request counter[, idempotency key]
# ARGV: entry, close (1/0), session TTL (ms), the session's earlier entries (to reopen it after a close)
UNDO = b"""
if #KEYS == 4 then redis.call('DEL', KEYS[4]) end
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LPOP', KEYS[1])
redis.call('DECR', KEYS[3])
if ARGV[2] == '1' then
  if #ARGV > 3 then
    redis.call('DEL', KEYS[2])
    redis.call('RPUSH', KEYS[2], unpack(ARGV, 4))
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
  end
elseif redis.call('LINDEX', KEYS[2], -1) == ARGV[1] then
  redis.call('RPOP', KEYS[2])
end
return 1
"""

SCRIPTS = {name: (body, hashlib.sha1(body).hexdigest()) for name, body in (("listen", LISTEN), ("undo", UNDO))}


class KeyProblem(BotifyError):
    """Redis refused a command because of one key (wrong type, bad value): that request's problem."""


def _entry(listen: Listen) -> bytes:
    return orjson.dumps((listen.track, listen.time, listen.artist))


class RedisStore(Store):
    kind = "redis"

    def __init__(self, url: str, history_length: int, timeout: float = default("redis_timeout"),
                 session_length: int = default("session_length"), session_ttl: float = default("session_ttl"),
                 idempotency_window: float = default("idempotency_window")) -> None:
        super().__init__(history_length, session_length, session_ttl, idempotency_window)
        self.url = url
        self.shown_url = redact(url)
        self.client = RespClient(url, timeout)
        self.repaired = 0
        self._marked = False
        self._ready = False
        self._retry_at = 0.0
        self._last_error = ""
        self._clock_offset = 0.0  # Redis's clock minus ours, seconds
        self._recovering = asyncio.Lock()

    def _key(self, *parts: str) -> str:
        return ":".join(("botify", self.version, *parts))

    def _fail(self, error: BaseException) -> StoreUnavailable:
        self._ready = False
        self._retry_at = time.monotonic() + COOL_DOWN
        self._last_error = str(error)
        return StoreUnavailable(f"Redis at {self.shown_url} is unavailable ({self._last_error}); retry shortly")

    async def _recover(self) -> None:
        """Reconnect after an outage: this version's `ready` key, our scripts, the clock offset."""
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise StoreUnavailable(f"Redis at {self.shown_url} is unavailable ({self._last_error}); "
                                   f"retrying in {wait:.1f} s")
        if self._recovering.locked():
            raise StoreUnavailable(f"Redis at {self.shown_url} is reconnecting; retry shortly")
        async with self._recovering:
            try:
                await self._mark_version()
                before = time.time()
                replies = await self.client.execute(("TIME",), *(("SCRIPT", "LOAD", body) for body, _ in SCRIPTS.values()))
                after = time.time()
            except (RedisUnavailable, RedisReplyError) as error:
                raise self._fail(error) from None
            seconds, micros = replies[0]
            self._clock_offset = int(seconds) + int(micros) / 1e6 - (before + after) / 2
            self._ready = True

    async def _execute(self, *commands: tuple) -> list:
        if not self._ready:
            await self._recover()
        try:
            return await self.client.execute(*commands)
        except RedisUnavailable as error:
            raise self._fail(error) from None
        except RedisReplyError as error:
            message = str(error)
            if message.startswith(SERVER_ERRORS):
                raise self._fail(error) from None
            if message.startswith("NOSCRIPT"):  # Redis restarted under us: load everything again
                self._ready = False
                raise StoreUnavailable(f"Redis at {self.shown_url} lost botify's scripts; reloading") from None
            raise KeyProblem(message) from None

    async def _script(self, name: str, keys: list, args: list) -> list:
        """Run one of SCRIPTS (loaded at recovery; reloaded once if Redis forgot it)."""
        command = ("EVALSHA", SCRIPTS[name][1], len(keys), *keys, *args)
        try:
            (reply,) = await self._execute(command)
        except StoreUnavailable:
            if self._ready or time.monotonic() < self._retry_at:
                raise
            (reply,) = await self._execute(command)  # scripts were reloaded by the recovery
        return reply

    async def _repair(self, key: bytes, problem: bytes) -> None:
        self.repaired += 1
        logger.warning("Redis key %s held %s, not botify's data; deleted it", key.decode(errors="replace"),
                       problem.decode(errors="replace"))
        await self._execute(("DEL", key))

    async def load(self, catalog: Catalog, catalog_digest: str, artifacts: dict[str, Artifact]) -> None:
        await super().load(catalog, catalog_digest, artifacts)
        self._retry_at = 0.0
        await self._recover()

    async def _mark_version(self) -> None:
        """Set this version's `ready` key; its absence later means Redis came back empty."""
        ready_key = self._key("ready")
        if not (await self.client.execute(("EXISTS", ready_key)))[0]:
            await self.client.execute(("SET", ready_key, b"1"))
            if self._marked:
                logger.warning("Redis at %s came back without botify's keys (restarted empty?): users' "
                               "histories and sessions start again", self.shown_url)
        self._marked = True

    def _keys_of(self, user: int) -> list[str]:
        return [f"botify:history:{user}", f"botify:session:{user}", f"botify:requests:{user}"]

    async def listen(self, user: int, listen: Listen, close: bool = False, key: str | None = None,
                     with_history: bool = True) -> Recorded:
        keys = [*self._keys_of(user), self._key("ready")]
        if key is not None and self.idempotency_window:
            keys.append(f"botify:idem:{user}:{key}")
        for _ in range(3):
            deadline = 0
            if self._ready:
                deadline = int((time.time() + self._clock_offset + 0.8 * self.client.timeout) * 1000)
            reply = await self._script("listen", keys, [
                _entry(listen), self.history_length, self.session_length, int(self.session_ttl * 1000),
                int(close), deadline, int(self.PENDING_TTL * 1000), int(with_history)])
            tag = reply[0]
            if tag == b"ok":
                return Recorded(ParsedLater(reply[3], keys[1]), ParsedLater(reply[2], keys[0]), int(reply[1]))
            if tag == b"seen":
                if not reply[1]:
                    raise InFlight(f"a request with Idempotency-Key {key!r} is being handled; retry in a moment")
                return Recorded([], [], 0, reply[1])
            if tag == b"late":
                raise StoreUnavailable(f"Redis at {self.shown_url} answered too late; nothing was recorded, retry")
            if tag == b"lost":  # Redis lost our data (restarted empty): upload it again before going on
                self._ready = False
                await self._recover()
            elif tag == b"bad":
                await self._repair(reply[1], reply[2])
        raise StoreUnavailable(f"Redis at {self.shown_url} could not record the play; retry")

    async def answered(self, user: int, key: str, answer: bytes) -> None:
        """Written without waiting for Redis's reply: it is on the connection before the answer
        leaves, so a retry (which comes after a lost answer) finds it."""
        if self.idempotency_window:
            command = ("SET", f"botify:idem:{user}:{key}", answer, "PX", int(self.idempotency_window * 1000))
            if not self.client.send_nowait(command, on_error=self._unremembered):
                await self._execute(command)

    @staticmethod
    def _unremembered(error: BaseException) -> None:
        logger.warning("Redis did not keep an idempotent answer (%s); a retry of it will be handled again", error)

    async def undo(self, user: int, listen: Listen, recorded: Recorded, close: bool, key: str | None) -> None:
        keys = self._keys_of(user)
        if key is not None and self.idempotency_window:
            keys.append(f"botify:idem:{user}:{key}")
        before = [_entry(item) for item in recorded.session[:-1]] if close else []
        await self._script("undo", keys, [_entry(listen), int(close), int(self.session_ttl * 1000), *before])

    async def history(self, user: int) -> list[Listen]:
        key = f"botify:history:{user}"
        (entries,) = await self._execute(("LRANGE", key, 0, self.history_length - 1))
        return parse_listens(entries, key)

    async def session(self, user: int) -> list[Listen]:
        key = f"botify:session:{user}"
        (entries,) = await self._execute(("LRANGE", key, 0, -1))
        return parse_listens(entries, key)

    async def like(self, user: int, track: int) -> None:
        await self._execute(("SADD", f"botify:liked:{user}", track), ("SADD", f"botify:likers:{track}", user))

    async def liked_tracks(self, user: int) -> list[int]:
        (members,) = await self._execute(("SMEMBERS", f"botify:liked:{user}"))
        return sorted(int(member) for member in members if member.isdigit())

    async def likers(self, track: int) -> list[int]:
        (members,) = await self._execute(("SMEMBERS", f"botify:likers:{track}"))
        return [int(member) for member in members if member.isdigit()]

    async def status(self) -> dict:
        (ready,) = await self._execute(("EXISTS", self._key("ready")))
        if not ready:
            self._ready = False
            raise StoreUnavailable(f"Redis at {self.shown_url} came back without botify's keys; reconnecting")
        return {"store": self.kind, "version": self.version, "url": self.shown_url, "repaired_keys": self.repaired}

    async def close(self) -> None:
        await self.client.close()
