"""The in-process store: nothing to install, one worker, and nothing for the garbage collector.

Each user's state is one `bytes` record — request count, last seen, the long history (newest
first) and the open session (oldest first), 16 bytes a listen — in one dict keyed by user id.
Bytes, ints and floats are not tracked by Python's garbage collector, so however many users
the store holds, collections never scan it (per-listen objects made full collections take
hundreds of milliseconds). Recommenders read the listens through `Listens`, a sequence that
decodes on access. The dict keeps the `max_users` users seen most recently: the least recently
seen go first (an `OrderedDict`: a plain dict's `next(iter(...))` rescans the deleted slots at
its front on every eviction), so memory stays bounded (`bytes_per_user`). Idempotency keys live
`idempotency_window` seconds, at most `4 * max_users` of them.
"""

from __future__ import annotations

import struct
import sys
import time
from collections import OrderedDict

from botify.service.stores.base import PACKED, InFlight, Listen, Listens, Recorded, Store, default

HEADER = struct.Struct("<dIH")  # last seen (monotonic s), requests, listens in the history; then the session


class EmbeddedStore(Store):
    kind = "embedded"
    immediate = True

    def __init__(self, history_length: int, session_length: int = default("session_length"),
                 session_ttl: float = default("session_ttl"), idempotency_window: float = default("idempotency_window"),
                 max_users: int = default("max_users")) -> None:
        super().__init__(history_length, session_length, session_ttl, idempotency_window)
        self.max_users = max_users
        self._history_bytes, self._session_bytes = PACKED.size * history_length, PACKED.size * session_length
        self.evicted = 0
        self._users: OrderedDict[int, bytes] = OrderedDict()
        # Idempotency keys ("<user>:<key>") → expiry and answer (b"" while in flight): only strings,
        # floats and bytes, so that the garbage collector never scans them.
        self._expiry: dict[str, float] = {}
        self._answers: dict[str, bytes] = {}
        self._liked: dict[int, dict[int, None]] = {}
        self._likers: dict[int, dict[int, None]] = {}

    @staticmethod
    def bytes_per_user(listens: int) -> int:
        """The most memory one user takes with `listens` in the history and no open session: the
        record, 16 bytes of allocator header, the int key (32), its dict slot (up to 64 with the
        table's growth slack) and its place in the recency order (a 32-byte node and up to 24 bytes
        of the node index)."""
        return sys.getsizeof(b"x" * (HEADER.size + PACKED.size * listens)) + 16 + 32 + 64 + 32 + 24

    def _split(self, record: bytes | None, now: float) -> tuple[int, bytes, bytes]:
        """Requests so far, history and open session (empty if none or expired) of a record."""
        if record is None:
            return 0, b"", b""
        seen, requests, count = HEADER.unpack_from(record)
        end = HEADER.size + PACKED.size * count
        session = record[end:] if now - seen <= self.session_ttl else b""
        return requests, record[HEADER.size:end], session

    def _store(self, user: int, requests: int, history: bytes, session: bytes, now: float) -> None:
        users = self._users
        if user in users:
            users.move_to_end(user)
        else:
            while len(users) >= self.max_users:
                self._forget(users.popitem(last=False)[0])
        users[user] = HEADER.pack(now, requests, len(history) // PACKED.size) + history + session

    def _forget(self, user: int) -> None:
        """An evicted user's likes go with them."""
        for track in self._liked.pop(user, ()):
            likers = self._likers.get(track)
            if likers is not None:
                likers.pop(user, None)
        self.evicted += 1

    async def listen(self, user: int, listen: Listen, close: bool = False, key: str | None = None,
                     with_history: bool = True) -> Recorded:
        now = time.monotonic()
        if key is not None and self.idempotency_window:
            name = f"{user}:{key}"
            if self._expiry.get(name, 0.0) > now:
                answer = self._answers[name]
                if not answer:
                    raise InFlight(f"a request with Idempotency-Key {key!r} is being handled; retry in a moment")
                return Recorded(Listens(b""), Listens(b""), 0, answer)
            self._expiry[name], self._answers[name] = now + self.PENDING_TTL, b""
            if len(self._expiry) & 0x3FF == 0:
                self._trim_keys()
        requests, history, session = self._split(self._users.get(user), now)
        entry = PACKED.pack(*listen)
        history = (entry + history)[: self._history_bytes]
        session = (session + entry)[-self._session_bytes:]
        self._store(user, requests + 1, history, b"" if close else session, now)  # /last closes the session
        return Recorded(Listens(session), Listens(history if with_history else b""), requests + 1)

    def _trim_keys(self) -> None:
        """Drop expired keys (oldest first), and the oldest beyond the bound."""
        expiry, now = self._expiry, time.monotonic()
        excess = len(expiry) - 4 * self.max_users
        stale = []  # collected in one pass: each next(iter(...)) would rescan the deleted front
        for name, expires in expiry.items():
            if expires > now and len(stale) >= excess:
                break
            stale.append(name)
        for name in stale:
            del expiry[name], self._answers[name]

    async def answered(self, user: int, key: str, answer: bytes) -> None:
        if self.idempotency_window:  # in place: keys stay in the order they arrived
            name = f"{user}:{key}"
            self._expiry[name], self._answers[name] = time.monotonic() + self.idempotency_window, answer

    async def undo(self, user: int, listen: Listen, recorded: Recorded, close: bool, key: str | None) -> None:
        if key is not None:
            self._expiry.pop(f"{user}:{key}", None)
            self._answers.pop(f"{user}:{key}", None)
        record = self._users.get(user)
        if record is None:
            return
        now = time.monotonic()
        requests, history, session = self._split(record, now)
        entry = PACKED.pack(*listen)
        if not history.startswith(entry):
            return
        if close:
            session = recorded.session.data[: -PACKED.size]  # the session the /last closed, open again
        elif session.endswith(entry):
            session = session[: -PACKED.size]
        self._store(user, requests - 1, history[PACKED.size:], session, now)

    async def history(self, user: int) -> Listens:
        return Listens(self._split(self._users.get(user), time.monotonic())[1])

    async def session(self, user: int) -> Listens:
        return Listens(self._split(self._users.get(user), time.monotonic())[2])

    async def like(self, user: int, track: int) -> None:
        if user not in self._users:
            self._store(user, 0, b"", b"", time.monotonic())
        self._liked.setdefault(user, {})[track] = None
        self._likers.setdefault(track, {})[user] = None

    async def liked_tracks(self, user: int) -> list[int]:
        return sorted(self._liked.get(user, ()))

    async def likers(self, track: int) -> list[int]:
        return list(self._likers.get(track, ()))

    async def status(self) -> dict:
        return {"store": self.kind, "version": self.version, "users": len(self._users), "max_users": self.max_users,
                "evicted_users": self.evicted, "bytes_per_user_at_50_listens": self.bytes_per_user(50)}
