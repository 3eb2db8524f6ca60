"""The store interface every backend implements, and what they share."""

from __future__ import annotations

import hashlib
import logging
import struct
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

import orjson

from botify.artifacts import Artifact, Ranked
from botify.errors import BotifyError, Unavailable
from botify.service.settings import ServiceSettings
from botify.world.model import Catalog

logger = logging.getLogger("botify.service")


class StoreUnavailable(Unavailable):
    """The store cannot answer now (e.g. Redis is down); the service answers 503."""


class Listen(NamedTuple):
    """One play: the track, the share of it played, and its artist (a catalog artist code)."""

    track: int
    time: float
    artist: int = -1


PACKED = struct.Struct("<idi")  # a Listen in 16 bytes: track, time (exact), artist
WORDS = struct.Struct("<4i")  # the same 16 bytes as 32-bit words: track first, artist last


class Listens(Sequence):
    """Listens packed in `bytes` (16 each), decoded only when read: how the embedded store keeps
    them, so that no per-listen objects outlive a request (and the garbage collector has nothing
    to scan). Compares equal to a list of the same Listens."""

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data) >> 4

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("listen index out of range")
        return Listen(*PACKED.unpack_from(self.data, index << 4))

    def __iter__(self):
        return map(Listen._make, PACKED.iter_unpack(self.data))

    def __reversed__(self):
        data, unpack = self.data, PACKED.unpack_from
        for offset in range(len(data) - 16, -1, -16):
            yield Listen(*unpack(data, offset))

    def tracks(self) -> list[int]:
        """The listens' tracks, read in one step as the first of each record's four 32-bit words."""
        return self._words(0)

    def artists(self) -> list[int]:
        return self._words(3)

    if sys.byteorder == "little":  # PACKED is little-endian: the native words are its words
        def _words(self, column: int) -> list[int]:
            return memoryview(self.data).cast("i")[column::4].tolist()
    else:
        def _words(self, column: int) -> list[int]:
            return [words[column] for words in WORDS.iter_unpack(self.data)]

    def __eq__(self, other) -> bool:
        if isinstance(other, (Listens, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Listens({list(self)!r})"


def tracks_of(listens: Sequence[Listen]) -> list[int]:
    """The tracks of a session or history, whichever sequence of Listens holds them."""
    return listens.tracks() if type(listens) in COLUMNAR else [listen.track for listen in listens]


def artists_of(listens: Sequence[Listen]) -> list[int]:
    return listens.artists() if type(listens) in COLUMNAR else [listen.artist for listen in listens]


def data_version(catalog_digest: str, artifacts: dict[str, Artifact]) -> str:
    """A short id of the catalog and artifacts loaded: a changed file is a new version."""
    parts = [catalog_digest] + [f"{name}={artifact.digest}" for name, artifact in sorted(artifacts.items())]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def artist_tracks_of(catalog: Catalog) -> dict[str, list[int]]:
    tracks: dict[str, list[int]] = {}
    for record in catalog.records:
        tracks.setdefault(record["artist"], []).append(record["track"])
    return tracks


def default(name: str):
    """A service setting's default (one place for the stores' keyword defaults too)."""
    return ServiceSettings.model_fields[name].default


def _all_values(entries: Sequence[bytes]) -> list | None:
    """Every stored entry parsed in one orjson call, or None unless each is one JSON value."""
    try:
        values = orjson.loads(b"[" + b",".join(entries) + b"]")
    except (orjson.JSONDecodeError, TypeError):
        return None
    return values if len(values) == len(entries) else None


def _listens_of(values) -> list[Listen]:
    return [Listen(int(track), float(played), int(artist)) for track, played, artist in values]


def parse_listens(entries: Sequence[bytes], where: str) -> list[Listen]:
    """Stored listens (JSON `[track, time, artist]`); junk entries are skipped and logged, so a
    damaged key costs its user nothing but the damaged entries."""
    values = _all_values(entries)  # the common case, every entry sound: one parse for all
    if values is not None:
        try:
            return _listens_of(values)
        except (TypeError, ValueError):
            pass
    listens = []
    for entry in entries:
        try:
            track, played, artist = orjson.loads(entry)
            listens.append(Listen(int(track), float(played), int(artist)))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            logger.warning("skipped a junk entry in %s: %.80r", where, entry)
    return listens


class ParsedLater(Sequence):
    """Stored listens as the Redis store receives them (JSON entries), parsed on first read,
    and only as far as read: most recommenders read no listen whole, only the session's tracks
    and artists (`tracks`, `artists`: a few whole-list steps in C, the entries checked as
    `parse_listens` would, which takes over at the first doubt). Parsing each entry into a
    `Listen` on every request made throughput fall as sessions and histories grew."""

    __slots__ = ("_entries", "_where", "_listens", "_columns")

    def __init__(self, entries: Sequence[bytes], where: str) -> None:
        self._entries, self._where, self._listens, self._columns = entries, where, None, None

    def tracks(self) -> list[int]:
        columns = self._sound_columns()
        return list(columns[0]) if columns else [listen.track for listen in self._parsed()]

    def artists(self) -> list[int]:
        columns = self._sound_columns()
        return list(columns[2]) if columns else [listen.artist for listen in self._parsed()]

    def _sound_columns(self) -> list[tuple] | None:
        """The entries' track, time and artist columns when every entry is a sound
        `[int, number, int]` (else None: `parse_listens` skips and logs the junk)."""
        if self._columns is None and self._listens is None:
            self._columns = []  # tried: not sound, unless found so below
            values = _all_values(self._entries)
            try:
                if values is not None and (not values or set(map(len, values)) == {3}):
                    columns = list(zip(*values)) or [(), (), ()]
                    if (set(map(type, columns[0])) <= {int} and set(map(type, columns[2])) <= {int}
                            and set(map(type, columns[1])) <= {float, int}):
                        self._columns = columns
            except TypeError:  # an entry without a length
                pass
        return self._columns or None

    def _parsed(self) -> list[Listen]:
        if self._listens is None:  # from the sound columns if read already: the entries are parsed once
            self._listens = (_listens_of(zip(*self._columns)) if self._columns
                             else parse_listens(self._entries, self._where))
        return self._listens

    def __len__(self) -> int:
        return len(self._parsed())

    def __getitem__(self, index):
        return self._parsed()[index]

    def __iter__(self):
        return iter(self._parsed())

    def __eq__(self, other) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return self._parsed() == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"ParsedLater({self._parsed()!r})"


COLUMNAR = (Listens, ParsedLater)  # sequences of Listens that read a column without a Listen per entry


class InFlight(BotifyError):
    """A request with this idempotency key is being handled right now; retry in a moment (409)."""


class Recorded(NamedTuple):
    """What recording a play returns: the open session (oldest first), the long history
    (newest first) and the user's request number (1 for the first, seeding the request's
    randomness). For a retry of an answered request (same idempotency key) nothing is
    recorded and `replay` holds the answer already given."""

    session: Sequence[Listen]
    history: Sequence[Listen]
    number: int
    replay: bytes | None = None


class Store(ABC):
    """What the service keeps. A user's long history is newest first and holds the last
    `history_length` listens across sessions. The open session (oldest first, at most
    `session_length` listens) is kept apart: it opens with the first `/next` after a `/last`
    (or the first ever) and closes at `/last`. Each user's requests are numbered. Idempotency
    keys are remembered per user for `idempotency_window` seconds."""

    kind = "store"
    # True when no method ever waits (answers from this process's memory): a request's
    # coroutines then run to their end at once, and the server answers without a task.
    immediate = False
    PENDING_TTL = 30.0  # seconds a key stays "in flight" if its request never finishes

    def __init__(self, history_length: int, session_length: int = default("session_length"),
                 session_ttl: float = default("session_ttl"),
                 idempotency_window: float = default("idempotency_window")) -> None:
        self.history_length = history_length
        self.session_length = session_length
        self.session_ttl = session_ttl
        self.idempotency_window = idempotency_window
        self._records: list[dict] = []
        self._artist_tracks: dict[str, list[int]] = {}
        self._artifacts: dict[str, Artifact] = {}
        self.version = ""

    async def load(self, catalog: Catalog, catalog_digest: str, artifacts: dict[str, Artifact]) -> None:
        """Serve this catalog and these artifacts (once per data version). They never change
        while a version is served and every worker has read them, so each store answers
        `track`, `artist_tracks` and `ranked` from memory: no round trip per request."""
        self._records = catalog.records
        self._artist_tracks = artist_tracks_of(catalog)
        self._artifacts = dict(artifacts)
        self.version = data_version(catalog_digest, artifacts)

    async def track(self, track: int) -> dict | None:
        """A track's metadata, or None if the catalog has no such track."""
        return self._records[track] if 0 <= track < len(self._records) else None

    async def artist_tracks(self, artist: str) -> list[int]:
        """All tracks of an artist, in id order."""
        return self._artist_tracks.get(artist, [])

    @abstractmethod
    async def listen(self, user: int, listen: Listen, close: bool = False, key: str | None = None,
                     with_history: bool = True) -> Recorded:
        """Record a play in the user's history and open session and count the request (one
        round trip); with `close` (a `/last`) the session ends after it. With an idempotency
        `key` already answered, record nothing and return the answer; raises InFlight while
        that key's request is still being handled. Without `with_history` the history is
        recorded but not returned (empty): no recommender of the request reads it, and on
        Redis it is most of what a play's round trip carries back."""

    @abstractmethod
    async def answered(self, user: int, key: str, answer: bytes) -> None:
        """Remember the answer to the request with idempotency `key` (for its retries)."""

    @abstractmethod
    async def undo(self, user: int, listen: Listen, recorded: Recorded, close: bool, key: str | None) -> None:
        """Take back a play recorded by `listen` whose request then failed (503): the request
        leaves nothing behind, and its retry is handled as new."""

    @abstractmethod
    async def history(self, user: int) -> Sequence[Listen]:
        """The user's last listens, newest first."""

    @abstractmethod
    async def session(self, user: int) -> Sequence[Listen]:
        """The user's open session, oldest first ([] when none is open)."""

    async def ranked(self, artifact: str, keys: Sequence[int]) -> list[Ranked | None]:
        """The lists (with scores) an artifact holds for keys (users, tracks), None where it has none."""
        found = self._artifacts.get(artifact)
        if found is None:
            return [None] * len(keys)
        return [found.ranked(key) for key in keys]

    @abstractmethod
    async def like(self, user: int, track: int) -> None:
        """Remember that `user` liked `track` (per-user liked tracks, per-track likers)."""

    @abstractmethod
    async def liked_tracks(self, user: int) -> list[int]:
        """The tracks `user` liked, in id order."""

    async def random_likers(self, track: int, count: int, rng) -> list[int]:
        """Up to `count` distinct users who liked `track`, drawn with `rng` (the same draw in every store)."""
        likers = sorted(await self.likers(track))
        return rng.sample(likers, min(count, len(likers)))

    @abstractmethod
    async def likers(self, track: int) -> list[int]:
        """Every user who liked `track`, in any order."""

    @abstractmethod
    async def status(self) -> dict:
        """Readiness: raises StoreUnavailable when the store cannot serve."""

    async def close(self) -> None:
        """Release connections."""
