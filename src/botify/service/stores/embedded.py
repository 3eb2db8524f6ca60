"""The in-process store: plain dicts, nothing to install, one worker."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from botify.artifacts import Artifact
from botify.service.stores.base import Listen, Ranked, Store, artist_tracks_of, data_version
from botify.world.model import Catalog


class EmbeddedStore(Store):
    kind = "embedded"

    def __init__(self, history_length: int, session_length: int = 500, session_ttl: float = 3600.0) -> None:
        super().__init__(history_length, session_length, session_ttl)
        self._records: list[dict] = []
        self._artist_tracks: dict[str, list[int]] = {}
        self._histories: dict[int, deque[Listen]] = {}
        self._sessions: dict[int, deque[Listen]] = {}
        self._session_seen: dict[int, float] = {}
        self._artifacts: dict[str, Artifact] = {}
        self._liked: dict[int, dict[int, None]] = {}
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

    async def listen(self, user: int, listen: Listen, close: bool = False) -> tuple[list[Listen], list[Listen]]:
        history = self._histories.get(user)
        if history is None:
            history = self._histories[user] = deque(maxlen=self.history_length)
        history.appendleft(listen)
        now = time.monotonic()
        session, seen = self._sessions.pop(user, None), self._session_seen.pop(user, None)
        if session is None or now - seen > self.session_ttl:  # none open, or abandoned: a new one
            session = deque(maxlen=self.session_length)
        session.append(listen)
        if not close:  # /last closes it
            self._sessions[user], self._session_seen[user] = session, now
        return list(session), list(history)

    async def history(self, user: int) -> list[Listen]:
        return list(self._histories.get(user, ()))

    async def session(self, user: int) -> list[Listen]:
        seen = self._session_seen.get(user)
        if seen is None or time.monotonic() - seen > self.session_ttl:
            return []
        return list(self._sessions[user])

    async def ranked(self, artifact: str, keys: Sequence[int]) -> list[Ranked | None]:
        found = self._artifacts.get(artifact)
        if found is None:
            return [None] * len(keys)
        return [found.ranked(key) for key in keys]

    async def like(self, user: int, track: int) -> None:
        self._liked.setdefault(user, {})[track] = None
        self._likers.setdefault(track, {})[user] = None

    async def liked_tracks(self, user: int) -> list[int]:
        return list(self._liked.get(user, ()))

    async def random_likers(self, track: int, count: int, rng) -> list[int]:
        likers = list(self._likers.get(track, ()))
        return rng.sample(likers, min(count, len(likers)))

    async def status(self) -> dict:
        return {"store": self.kind, "version": self.version, "users": len(self._histories),
                "open_sessions": len(self._sessions)}
