"""The world's files in the course's formats, and the one reader and writer for them.

A world directory holds `tracks.json` (catalog metadata, JSON lines), `embeddings.npy`
(row i is track i) and `users.json` (JSON lines). The catalog is public: the service and
the training pipelines read it. Embeddings and users are the world's hidden truth: only the
simulator and its oracle read them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from botify.errors import BotifyError, WorldError

TRACKS_FILE = "tracks.json"
EMBEDDINGS_FILE = "embeddings.npy"
COURSE_EMBEDDINGS_FILE = "tracks.npy"
USERS_FILE = "users.json"

DEFAULT_CONSUME_BIAS = 5.0
DEFAULT_CONSUME_SHARPNESS = 1.0
DEFAULT_SESSION_BUDGET = 5
DEFAULT_ARTIST_DISCOUNT_GAMMA = 0.8
DEFAULT_INTEREST_NEIGHBOURS = 10


def iter_json_lines(path: Path, error: type[BotifyError] = WorldError) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON-lines file; a missing file, bad
    JSON or a non-object raises `error` naming the file and line."""
    if not path.is_file():
        raise error(f"{path}: file not found")
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as problem:
                raise error(f"{path}:{number}: not valid JSON ({problem.msg})") from problem
            except UnicodeDecodeError as problem:
                raise error(f"{path}:{number}: not valid UTF-8 ({problem.reason} at byte {problem.start})") from None
            except RecursionError:
                raise error(f"{path}:{number}: JSON nested too deeply") from None
            if not isinstance(record, dict):
                raise error(f"{path}:{number}: expected a JSON object per line")
            yield number, record


def _read_json_lines(path: Path) -> list[dict]:
    records = [record for _, record in iter_json_lines(path)]
    if not records:
        raise WorldError(f"{path}: the file holds no records")
    return records


def _write_json_lines(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            handle.write("\n")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Catalog:
    """Track metadata as the service sees it: records in id order plus column arrays."""

    records: list[dict]
    artist_codes: np.ndarray
    artist_names: list[str]

    @property
    def size(self) -> int:
        return len(self.records)

    @classmethod
    def from_records(cls, records: list[dict], source: str = "tracks") -> Catalog:
        """Validate records (ids 0..n-1 in any order, an `artist` each) and index them."""
        ids = []
        for position, record in enumerate(records, start=1):
            track = record.get("track")
            if not _is_int(track):
                raise WorldError(f"{source}: record {position} has no integer 'track' field")
            if not isinstance(record.get("artist"), str):
                raise WorldError(f"{source}: track {track} has no string 'artist' field")
            ids.append(track)
        order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
        ordered = [records[i] for i in order]
        sorted_ids = np.asarray(ids, dtype=np.int64)[order]
        if not np.array_equal(sorted_ids, np.arange(len(ordered))):
            missing = np.setdiff1d(np.arange(len(ordered)), sorted_ids)
            detail = f"first missing id {missing[0]}" if missing.size else "duplicate ids"
            raise WorldError(f"{source}: track ids must be 0..{len(ordered) - 1} ({detail})")
        names, codes = np.unique([record["artist"] for record in ordered], return_inverse=True)
        return cls(ordered, codes.astype(np.int32), [str(name) for name in names])

    @classmethod
    def load(cls, path: Path) -> Catalog:
        return cls.from_records(_read_json_lines(path), source=str(path))

    def write(self, path: Path) -> None:
        _write_json_lines(path, self.records)


@dataclass(frozen=True)
class Users:
    """Hidden listener parameters, one row per user; interests are stored flat (CSR)."""

    interest_offsets: np.ndarray
    interest_tracks: np.ndarray
    consume_bias: np.ndarray
    consume_sharpness: np.ndarray
    openness: np.ndarray
    session_budget: np.ndarray
    artist_discount_gamma: np.ndarray
    interest_neighbours: np.ndarray

    @property
    def size(self) -> int:
        return len(self.consume_bias)

    def interests(self, user: int) -> np.ndarray:
        return self.interest_tracks[self.interest_offsets[user] : self.interest_offsets[user + 1]]

    @classmethod
    def from_records(cls, records: list[dict], n_tracks: int, source: str = "users") -> Users:
        """Validate user records against a catalog of `n_tracks`; fill the course's defaults."""
        by_id: dict[int, dict] = {}
        for position, record in enumerate(records, start=1):
            user = record.get("user")
            if not _is_int(user):
                raise WorldError(f"{source}: record {position} has no integer 'user' field")
            if user in by_id:
                raise WorldError(f"{source}: user {user} appears twice")
            by_id[user] = record
        if sorted(by_id) != list(range(len(by_id))):
            raise WorldError(f"{source}: user ids must be 0..{len(by_id) - 1}")
        ordered = [by_id[user] for user in range(len(by_id))]

        lengths, flat = [], []
        for record in ordered:
            interests = record.get("interests")
            if not isinstance(interests, list) or not interests:
                raise WorldError(f"{source}: user {record['user']} needs a non-empty 'interests' list")
            for track in interests:
                if not _is_int(track) or not 0 <= track < n_tracks:
                    raise WorldError(
                        f"{source}: user {record['user']} has interest {track!r}, "
                        f"not a track id in 0..{n_tracks - 1}"
                    )
            lengths.append(len(interests))
            flat.extend(interests)

        def column(name: str, default: float, dtype: type, low: float, high: float) -> np.ndarray:
            values = []
            for record in ordered:
                value = record.get(name, default)
                if value is None:
                    value = default
                if not _is_number(value) or not low <= value <= high:
                    raise WorldError(
                        f"{source}: user {record['user']} has {name}={value!r}, "
                        f"expected a number in [{low}, {high}]"
                    )
                values.append(value)
            return np.asarray(values, dtype=dtype)

        return cls(
            interest_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            interest_tracks=np.asarray(flat, dtype=np.int32),
            consume_bias=column("consume_bias", DEFAULT_CONSUME_BIAS, np.float64, -1e6, 1e6),
            consume_sharpness=column(
                "consume_sharpness", DEFAULT_CONSUME_SHARPNESS, np.float64, 0.0, 1e6
            ),
            openness=column("openness", 0.0, np.float64, 0.0, 1.0),
            session_budget=column("session_budget", DEFAULT_SESSION_BUDGET, np.int32, 1, 10_000),
            artist_discount_gamma=column(
                "artist_discount_gamma", DEFAULT_ARTIST_DISCOUNT_GAMMA, np.float64, 0.0, 1.0
            ),
            interest_neighbours=column(
                "interest_neighbours", min(DEFAULT_INTEREST_NEIGHBOURS, n_tracks), np.int32, 1, n_tracks
            ),
        )

    def to_records(self) -> list[dict]:
        return [
            {
                "user": user,
                "interests": self.interests(user).tolist(),
                "consume_bias": round(float(self.consume_bias[user]), 6),
                "consume_sharpness": round(float(self.consume_sharpness[user]), 6),
                "openness": round(float(self.openness[user]), 6),
                "session_budget": int(self.session_budget[user]),
                "artist_discount_gamma": round(float(self.artist_discount_gamma[user]), 6),
                "interest_neighbours": int(self.interest_neighbours[user]),
            }
            for user in range(self.size)
        ]


def _load_embeddings(directory: Path, n_tracks: int) -> np.ndarray:
    path = directory / EMBEDDINGS_FILE
    if not path.is_file() and (directory / COURSE_EMBEDDINGS_FILE).is_file():
        path = directory / COURSE_EMBEDDINGS_FILE
    if not path.is_file():
        raise WorldError(f"{directory / EMBEDDINGS_FILE}: file not found")
    try:
        embeddings = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise WorldError(f"{path}: not a NumPy array file ({error})") from error
    if embeddings.ndim != 2 or not np.issubdtype(embeddings.dtype, np.floating):
        raise WorldError(f"{path}: expected a 2-d float array, found {embeddings.dtype} {embeddings.shape}")
    if embeddings.shape[0] != n_tracks:
        raise WorldError(
            f"{path}: has {embeddings.shape[0]} rows but {TRACKS_FILE} has {n_tracks} tracks"
        )
    if embeddings.dtype != np.float32:
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if not np.isfinite(embeddings).all():
        raise WorldError(f"{path}: holds NaN or infinite values")
    return embeddings


@dataclass(frozen=True)
class World:
    """A whole world: the public catalog plus the hidden embeddings and users."""

    catalog: Catalog
    embeddings: np.ndarray
    users: Users

    @property
    def track_artist(self) -> np.ndarray:
        return self.catalog.artist_codes

    @classmethod
    def load(cls, directory: Path) -> World:
        """Read and cross-check a world directory; every problem names its file."""
        directory = Path(directory)
        if not directory.is_dir():
            raise WorldError(f"{directory}: world directory not found (botify world generate --out {directory})")
        catalog = Catalog.load(directory / TRACKS_FILE)
        embeddings = _load_embeddings(directory, catalog.size)
        users_path = directory / USERS_FILE
        users = Users.from_records(_read_json_lines(users_path), catalog.size, source=str(users_path))
        return cls(catalog, embeddings, users)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.catalog.write(directory / TRACKS_FILE)
        np.save(directory / EMBEDDINGS_FILE, np.ascontiguousarray(self.embeddings, dtype=np.float32))
        _write_json_lines(directory / USERS_FILE, self.users.to_records())


def catalog_path(path: Path) -> Path:
    """`tracks.json` itself, or the one inside a world directory."""
    path = Path(path)
    return path / TRACKS_FILE if path.is_dir() else path


def world_exists(directory: Path) -> bool:
    """True when all three world files are present (they may still be inconsistent)."""
    directory = Path(directory)
    return all((directory / name).is_file() for name in (TRACKS_FILE, EMBEDDINGS_FILE, USERS_FILE))
