"""The in-process store: plain dicts, nothing to install, one worker."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from botify.service.artifacts import Artifact
from botify.service.stores.base import Listen, Store, artist_tracks_of, data_version
from botify.world.model import Catalog


class EmbeddedStore(Store):
    kind = "embedded"

    def __init__(self, history_length: int) -> None:
        super().__init__(history_length)
        self._records: list[dict] = []
        self._artist_tracks: dict[str, list[int]] = {}
        self._histories: dict[int, deque[Listen]] = {}
        self._artifacts: dict[str, dict[int, list[int]]] = {}
        self._liked: dict[int, dict[int, None]] = {}
        self._likers: dict[int, dict[int, None]] = {}
        self.version = ""

    async def load(self, catalog: Catalog, catalog_digest: str, artifacts: dict[str, Artifact]) -> None:
        self._records = catalog.records
        self._artist_tracks = artist_tracks_of(catalog)
        self._artifacts = {name: artifact.lists for name, artifact in artifacts.items()}
        self.version = data_version(catalog_digest, artifacts)

    async def track(self, track: int) -> dict | None:
        return self._records[track] if 0 <= track < len(self._records) else None

    async def artist_tracks(self, artist: str) -> list[int]:
        return self._artist_tracks.get(artist, [])

    async def listen(self, user: int, track: int, time: float) -> list[Listen]:
        history = self._histories.get(user)
        if history is None:
            history = self._histories[user] = deque(maxlen=self.history_length)
        history.appendleft(Listen(track, time))
        return list(history)

    async def history(self, user: int) -> list[Listen]:
        return list(self._histories.get(user, ()))

    async def recommendations(self, artifact: str, keys: Sequence[int]) -> list[list[int] | None]:
        lists = self._artifacts.get(artifact, {})
        return [lists.get(key) for key in keys]

    async def like(self, user: int, track: int) -> None:
        self._liked.setdefault(user, {})[track] = None
        self._likers.setdefault(track, {})[user] = None

    async def liked_tracks(self, user: int) -> list[int]:
        return list(self._liked.get(user, ()))

    async def random_likers(self, track: int, count: int, rng) -> list[int]:
        likers = list(self._likers.get(track, ()))
        return rng.sample(likers, min(count, len(likers)))

    async def status(self) -> dict:
        return {"store": self.kind, "version": self.version, "users": len(self._histories)}
