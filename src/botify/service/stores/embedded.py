"""The in-process store: plain dicts, nothing to install, one worker.

Per-user state (history, open session, request count, likes) is kept for the `max_users`
users seen most recently; the least recently seen go first, so memory stays bounded however
many user ids arrive. Idempotency keys live `idempotency_window` seconds, at most
`4 * max_users` of them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from botify.artifacts import Artifact
from botify.service.stores.base import InFlight, Listen, Ranked, Recorded, Store, artist_tracks_of, data_version, default
from botify.world.model import Catalog


class _User:
    __slots__ = ("history", "session", "seen", "requests", "liked")

    def __init__(self, history_length: int) -> None:
        self.history: deque[Listen] = deque(maxlen=history_length)
        self.session: deque[Listen] | None = None
        self.seen = 0.0
        self.requests = 0
        self.liked: dict[int, None] = {}


class EmbeddedStore(Store):
    kind = "embedded"

    def __init__(self, history_length: int, session_length: int = default("session_length"),
                 session_ttl: float = default("session_ttl"), idempotency_window: float = default("idempotency_window"),
                 max_users: int = default("max_users")) -> None:
        super().__init__(history_length, session_length, session_ttl, idempotency_window)
        self.max_users = max_users
        self.evicted = 0
        self._records: list[dict] = []
        self._artist_tracks: dict[str, list[int]] = {}
        self._users: dict[int, _User] = {}
        # Idempotency keys ("<user>:<key>") → expiry and answer (b"" while in flight): only strings,
        # floats and bytes, so that the garbage collector never scans them.
        self._expiry: dict[str, float] = {}
        self._answers: dict[str, bytes] = {}
        self._artifacts: dict[str, Artifact] = {}
        self._likers: dict[int, dict[int, None]] = {}
        self.version = ""

    async def load(self, catalog: Catalog, catalog_digest: str, artifacts: dict[str, Artifact]) -> None:
        self._records = catalog.records
        self._artist_tracks = artist_tracks_of(catalog)
        self._artifacts = dict(artifacts)
        self.version = data_version(catalog_digest, artifacts)

    async def track(self, track: int) -> dict | None:
        return self._records[track] if 0 <= track < len(self._records) else None

    async def artist_tracks(self, artist: str) -> list[int]:
        return self._artist_tracks.get(artist, [])

    def _user(self, user: int, create: bool = True) -> _User | None:
        """The user's state, now the most recently seen; the least recent are evicted past `max_users`."""
        state = self._users.pop(user, None)
        if state is None:
            if not create:
                return None
            state = _User(self.history_length)
            while len(self._users) >= self.max_users:
                self._evict(next(iter(self._users)))
        self._users[user] = state
        return state

    def _evict(self, user: int) -> None:
        state = self._users.pop(user)
        for track in state.liked:
            likers = self._likers.get(track)
            if likers is not None:
                likers.pop(user, None)
        self.evicted += 1

    def _trim_keys(self) -> None:
        """Drop expired keys (oldest first), and the oldest beyond the bound."""
        expiry, now = self._expiry, time.monotonic()
        while expiry:
            oldest = next(iter(expiry))
            if expiry[oldest] > now and len(expiry) <= 4 * self.max_users:
                break
            del expiry[oldest], self._answers[oldest]

    async def listen(self, user: int, listen: Listen, close: bool = False, key: str | None = None) -> Recorded:
        now = time.monotonic()
        if key is not None and self.idempotency_window:
            name = f"{user}:{key}"
            if self._expiry.get(name, 0.0) > now:
                answer = self._answers[name]
                if not answer:
                    raise InFlight(f"a request with Idempotency-Key {key!r} is being handled; retry in a moment")
                return Recorded([], [], 0, answer)
            self._expiry[name], self._answers[name] = now + self.PENDING_TTL, b""
            if len(self._expiry) & 0x3FF == 0:
                self._trim_keys()
        state = self._user(user)
        state.requests += 1
        state.history.appendleft(listen)
        session = state.session
        if session is None or now - state.seen > self.session_ttl:  # none open, or abandoned: a new one
            session = deque(maxlen=self.session_length)
        session.append(listen)
        recorded = Recorded(list(session), list(state.history), state.requests)
        state.session, state.seen = (None if close else session), now  # /last closes it
        return recorded

    async def answered(self, user: int, key: str, answer: bytes) -> None:
        if self.idempotency_window:  # in place: keys stay in the order they arrived
            name = f"{user}:{key}"
            self._expiry[name], self._answers[name] = time.monotonic() + self.idempotency_window, answer

    async def undo(self, user: int, listen: Listen, recorded: Recorded, close: bool, key: str | None) -> None:
        if key is not None:
            self._expiry.pop(f"{user}:{key}", None)
            self._answers.pop(f"{user}:{key}", None)
        state = self._users.get(user)
        if state is None or not state.history or state.history[0] != listen:
            return
        state.requests -= 1
        state.history.popleft()
        before = recorded.session[:-1]
        if close:
            state.session = deque(before, maxlen=self.session_length) if before else None
        elif state.session is not None and state.session and state.session[-1] == listen:
            state.session.pop()
            if not state.session:
                state.session = None

    async def history(self, user: int) -> list[Listen]:
        state = self._users.get(user)
        return [] if state is None else list(state.history)

    async def session(self, user: int) -> list[Listen]:
        state = self._users.get(user)
        if state is None or state.session is None or time.monotonic() - state.seen > self.session_ttl:
            return []
        return list(state.session)

    async def ranked(self, artifact: str, keys: Sequence[int]) -> list[Ranked | None]:
        found = self._artifacts.get(artifact)
        if found is None:
            return [None] * len(keys)
        return [found.ranked(key) for key in keys]

    async def like(self, user: int, track: int) -> None:
        self._user(user).liked[track] = None
        self._likers.setdefault(track, {})[user] = None

    async def liked_tracks(self, user: int) -> list[int]:
        state = self._users.get(user)
        return [] if state is None else sorted(state.liked)

    async def likers(self, track: int) -> list[int]:
        return list(self._likers.get(track, ()))

    async def status(self) -> dict:
        return {"store": self.kind, "version": self.version, "users": len(self._users), "max_users": self.max_users,
                "evicted_users": self.evicted, "open_sessions": sum(state.session is not None for state in self._users.values())}
