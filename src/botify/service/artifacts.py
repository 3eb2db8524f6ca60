"""Recommendation artifacts in the course's formats, read once and handed to a store.

- JSON lines `{"user": u, "tracks": [...]}`: per-user lists (e.g. from a trained model);
- JSON lines `{"track": t, "recommendations": [...]}`: per-track lists (contextual);
- JSON lines `{"item_id": t, "recommendations": [...]}`: item-to-item lists (i2i);
- a JSON list `[t1, t2, ...]`: top tracks, stored under key 0.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from botify.errors import BotifyError
from botify.world.model import iter_json_lines

FORMATS = {"user": ("user", "tracks"), "track": ("track", "recommendations"), "item": ("item_id", "recommendations")}


class ArtifactError(BotifyError):
    """An artifact file is missing or not in one of the course's formats."""


@dataclass(frozen=True)
class Artifact:
    """One artifact: lists of track ids by key (user, track, item id, or 0 for a top list)."""

    name: str
    kind: str
    lists: dict[int, list[int]]
    digest: str


def _check_tracks(values: object, n_tracks: int, where: str) -> list[int]:
    if not isinstance(values, list):
        raise ArtifactError(f"{where}: expected a list of track ids")
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n_tracks:
            raise ArtifactError(f"{where}: {value!r} is not a track id in 0..{n_tracks - 1}")
    return values


def read_artifact(path: Path, n_tracks: int) -> Artifact:
    """Read one artifact file, detecting its format; errors name the file and line."""
    if not path.is_file():
        raise ArtifactError(f"{path}: artifact file not found")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    stripped = data.lstrip()
    if stripped.startswith(b"["):
        try:
            top = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise ArtifactError(f"{path}: not valid JSON ({error})") from error
        return Artifact(path.name, "top", {0: _check_tracks(top, n_tracks, str(path))}, digest)

    kind, lists = None, {}
    for number, record in iter_json_lines(path, ArtifactError):
        where = f"{path}:{number}"
        if kind is None:
            kind = next((name for name, (key, _) in FORMATS.items() if key in record), None)
            if kind is None:
                raise ArtifactError(f"{where}: expected a 'user', 'track' or 'item_id' field")
        key_field, list_field = FORMATS[kind]
        key = record.get(key_field)
        if not isinstance(key, int) or isinstance(key, bool):
            raise ArtifactError(f"{where}: expected an integer {key_field!r}")
        lists[key] = _check_tracks(record.get(list_field), n_tracks, f"{where} {list_field!r}")
    if kind is None:
        raise ArtifactError(f"{path}: the file holds no records")
    return Artifact(path.name, kind, lists, digest)


def read_artifacts(directory: Path | None, names: set[str], n_tracks: int) -> dict[str, Artifact]:
    """Read the named artifacts from `directory` (where the config's artifact names point)."""
    if not names:
        return {}
    if directory is None:
        raise ArtifactError(f"the experiments use artifacts {sorted(names)}; pass --artifacts DIR")
    return {name: read_artifact(Path(directory) / name, n_tracks) for name in sorted(names)}
