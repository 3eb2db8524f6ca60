"""The store interface every backend implements, and what they share."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

from botify.errors import BotifyError
from botify.artifacts import Artifact, Ranked
from botify.world.model import Catalog


class StoreUnavailable(BotifyError):
    """The store cannot answer now (e.g. Redis is down); the service answers 503."""


class Listen(NamedTuple):
    """One play: the track, the share of it played, and its artist (a catalog artist code)."""

    track: int
    time: float
    artist: int = -1


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
    """What the service keeps. A user's long history is newest first and holds the last
    `history_length` listens across sessions. The open session (oldest first, at most
    `session_length` listens) is kept apart: it opens with the first `/next` after a `/last`
    (or the first ever) and closes at `/last`."""

    kind = "store"

    def __init__(self, history_length: int, session_length: int = 500, session_ttl: float = 3600.0) -> None:
        self.history_length = history_length
        self.session_length = session_length
        self.session_ttl = session_ttl

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
    async def listen(self, user: int, listen: Listen, close: bool = False) -> tuple[list[Listen], list[Listen]]:
        """Record a play in the user's history and open session (one round trip); with `close`
        (a `/last`) the session ends after it. The session so far, oldest first, and the
        updated history, newest first."""

    @abstractmethod
    async def history(self, user: int) -> list[Listen]:
        """The user's last listens, newest first."""

    @abstractmethod
    async def session(self, user: int) -> list[Listen]:
        """The user's open session, oldest first ([] when none is open)."""

    @abstractmethod
    async def ranked(self, artifact: str, keys: Sequence[int]) -> list[Ranked | None]:
        """The lists (with scores) an artifact holds for keys (users, tracks), None where it has none."""

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
