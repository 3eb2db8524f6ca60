"""The store interface every backend implements, and what they share."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

from botify.errors import BotifyError
from botify.service.artifacts import Artifact
from botify.world.model import Catalog


class StoreUnavailable(BotifyError):
    """The store cannot answer now (e.g. Redis is down); the service answers 503."""


class Listen(NamedTuple):
    track: int
    time: float


def data_version(catalog_digest: str, artifacts: dict[str, Artifact]) -> str:
    """A short id of the catalog and artifacts loaded: a changed file is a new version."""
    parts = [catalog_digest] + [f"{name}={artifact.digest}" for name, artifact in sorted(artifacts.items())]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def artist_tracks_of(catalog: Catalog) -> dict[str, list[int]]:
    tracks: dict[str, list[int]] = {}
    for record in catalog.records:
        tracks.setdefault(record["artist"], []).append(record["track"])
    return tracks


class Store(ABC):
    """What the service keeps. Histories are newest first and hold the last N listens."""

    kind = "store"

    def __init__(self, history_length: int) -> None:
        self.history_length = history_length

    @abstractmethod
    async def load(self, catalog: Catalog, catalog_digest: str, artifacts: dict[str, Artifact]) -> None:
        """Make the catalog and artifacts available (once per data version)."""

    @abstractmethod
    async def track(self, track: int) -> dict | None:
        """A track's metadata, or None if the catalog has no such track."""

    @abstractmethod
    async def artist_tracks(self, artist: str) -> list[int]:
        """All tracks of an artist, in id order."""

    @abstractmethod
    async def listen(self, user: int, track: int, time: float) -> list[Listen]:
        """Record that `user` played `time` of `track`; return the updated history."""

    @abstractmethod
    async def history(self, user: int) -> list[Listen]:
        """The user's last listens, newest first."""

    @abstractmethod
    async def recommendations(self, artifact: str, keys: Sequence[int]) -> list[list[int] | None]:
        """The lists an artifact holds for keys (users, tracks, items), None where it has none."""

    @abstractmethod
    async def like(self, user: int, track: int) -> None:
        """Remember that `user` liked `track` (per-user liked tracks, per-track likers)."""

    @abstractmethod
    async def liked_tracks(self, user: int) -> list[int]:
        """The tracks `user` liked, oldest first."""

    @abstractmethod
    async def random_likers(self, track: int, count: int, rng) -> list[int]:
        """Up to `count` distinct users who liked `track`, drawn at random."""

    @abstractmethod
    async def status(self) -> dict:
        """Readiness: raises StoreUnavailable when the store cannot serve."""

    async def close(self) -> None:
        """Release connections."""
