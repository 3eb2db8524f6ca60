"""Recommendation artifacts: the one module that knows their formats, reads and writes them.

Training writes artifacts, the service serves them, `botify evaluate` judges them; all three
go through here, so a format lives once. The formats are the course's, plus optional scores:

- `user` lists, JSON lines `{"user": u, "tracks": [...]}` (e.g. a trained per-user model);
- `track` lists, JSON lines `{"track": t, "recommendations": [...], "scores": [...]}`:
  what to play after track t (contextual and item-to-item models). The course's 2026
  item-to-item lines `{"item_id": t, "recommendations": [...]}` are read as the same kind;
- `top`, a JSON list `[t1, t2, ...]`, stored under key 0.

`scores` is optional and, where present, as long as the list and non-increasing: a model's
own estimate of how good each candidate is (for item-to-item models, the expected share of
the track played). The service samples or re-ranks by it. Beside each artifact directory,
`manifest.json` says which model wrote it, with what parameters, from which data.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import orjson

from botify.errors import BotifyError
from botify.world.model import iter_json_lines

KINDS = ("user", "track", "top")
#: key field and list field of each line-based kind; the second key is an accepted alias
LINE_FORMATS = {"user": (("user",), "tracks"), "track": (("track", "item_id"), "recommendations")}
DEFAULT_FILES = {"user": "recommendations.jsonl", "track": "item2item.jsonl", "top": "top_tracks.json"}
MANIFEST_FILE = "manifest.json"


class ArtifactError(BotifyError):
    """An artifact file is missing or not in one of the formats above."""


class Ranked(NamedTuple):
    """An artifact's list for one key: tracks best first, and their scores if it has any.
    `ordered` (not a field: a Ranked is still the pair): its tracks are distinct and its scores
    (without scores, its ranks) never rise and are never negative, so that the best of a mix
    of such lists can be found from their heads (see `I2I`) instead of by merging them whole."""

    tracks: list[int]
    scores: list[float] | None
    ordered = False


class OrderedRanked(Ranked):
    """A `Ranked` list known to be ordered (see there)."""

    __slots__ = ()
    ordered = True


def is_ordered(tracks: list[int], scores: list[float] | None) -> bool:
    """Whether a list is `Ranked.ordered`."""
    if len(set(tracks)) != len(tracks):
        return False
    return scores is None or not scores or (all(map(operator.ge, scores, islice(scores, 1, None))) and scores[-1] >= 0)


@dataclass(frozen=True)
class Artifact:
    """One artifact: ranked track ids by key (user, track, or 0 for a top list), with optional
    scores per list (same length, best first)."""

    name: str
    kind: str
    lists: dict[int, list[int]]
    scores: dict[int, list[float]] = field(default_factory=dict)
    digest: str = ""
    skipped: int = 0  # track ids outside the catalog, left out of the lists (see read_artifact)
    # the keys whose lists are not `Ranked.ordered` (usually none), found once at load
    unordered: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unordered = frozenset(key for key, tracks in self.lists.items() if not is_ordered(tracks, self.scores.get(key)))
        object.__setattr__(self, "unordered", unordered)

    def ranked(self, key: int) -> Ranked | None:
        tracks = self.lists.get(key)
        if tracks is None:
            return None
        return (Ranked if key in self.unordered else OrderedRanked)(tracks, self.scores.get(key))


def _check_tracks(values: object, n_tracks: int, where: str, strict: bool = True) -> list[int]:
    """The list's track ids; with `strict` False, ids outside the catalog are left out (the
    caller counts them) where the course served them; anything but an int is an error."""
    if not isinstance(values, list):
        raise ArtifactError(f"{where}: expected a list of track ids")
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ArtifactError(f"{where}: {value!r} is not a track id")
        if not 0 <= value < n_tracks and strict:
            raise ArtifactError(f"{where}: {value!r} is not a track id in 0..{n_tracks - 1} "
                                "(without --strict such ids are skipped)")
    return values


def _check_scores(values: object, length: int, where: str) -> list[float]:
    if not isinstance(values, list) or len(values) != length:
        raise ArtifactError(f"{where}: expected a list of {length} numbers, one per track")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ArtifactError(f"{where}: {value!r} is not a finite number")
    return [float(value) for value in values]


def read_artifact(path: Path, n_tracks: int, strict: bool = True) -> Artifact:
    """Read one artifact file, detecting its format; errors name the file and line. With
    `strict` False, track ids outside the catalog are dropped from the lists (with their
    scores) and counted in `skipped`, as the course's service served such files."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: artifact file not found")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    if data.lstrip().startswith(b"["):
        try:
            top = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise ArtifactError(f"{path}: not valid JSON ({error})") from error
        top = _check_tracks(top, n_tracks, str(path), strict)
        kept = [track for track in top if 0 <= track < n_tracks]
        return Artifact(path.name, "top", {0: kept}, {}, digest, len(top) - len(kept))

    # Every list holds the same int objects, one per track id, instead of its own copies from
    # the parser: tens of MB fewer, and the ones a request reads (hashing a list's tracks to
    # count candidates, to filter heard ones) lie together in memory instead of all over it.
    ids = list(range(n_tracks))
    kind, key_field, lists, scores, skipped = None, "", {}, {}, 0
    for number, record in iter_json_lines(path, ArtifactError):
        where = f"{path}:{number}"
        if kind is None:
            for name, (keys, _) in LINE_FORMATS.items():
                key_field = next((key for key in keys if key in record), "")
                if key_field:
                    kind = name
                    break
            else:
                raise ArtifactError(f"{where}: expected a 'user', 'track' or 'item_id' field")
        list_field = LINE_FORMATS[kind][1]
        key = record.get(key_field)
        if not isinstance(key, int) or isinstance(key, bool):
            raise ArtifactError(f"{where}: expected an integer {key_field!r}")
        tracks = _check_tracks(record.get(list_field), n_tracks, f"{where} {list_field!r}", strict)
        values = None
        if record.get("scores") is not None:
            values = _check_scores(record["scores"], len(tracks), f"{where} 'scores'")
        kept = [i for i, track in enumerate(tracks) if 0 <= track < n_tracks]
        if len(kept) < len(tracks):
            skipped += len(tracks) - len(kept)
            tracks = [tracks[i] for i in kept]
            values = None if values is None else [values[i] for i in kept]
        lists[key] = list(map(ids.__getitem__, tracks))
        if values is not None:
            scores[key] = values
    if kind is None:
        raise ArtifactError(f"{path}: the file holds no records")
    return Artifact(path.name, kind, lists, scores, digest, skipped)


def read_artifacts(directory: Path | None, names: set[str], n_tracks: int, strict: bool = True) -> dict[str, Artifact]:
    """Read the named artifacts from `directory` (where the config's artifact names point)."""
    if not names:
        return {}
    if directory is None:
        raise ArtifactError(f"the experiments use artifacts {sorted(names)}; pass --artifacts DIR")
    return {name: read_artifact(Path(directory) / name, n_tracks, strict) for name in sorted(names)}


def write_artifact(
    path: Path, kind: str, lists: Mapping[int, list[int]], scores: Mapping[int, list[float]] | None = None,
    key_field: str | None = None,
) -> Path:
    """Write lists (and scores, if any) in the course's format for `kind`; the path. `key_field`
    picks one of the kind's accepted keys, e.g. "item_id" for the course's 2026 item-to-item lines."""
    if kind not in KINDS:
        raise ValueError(f"artifact kind must be one of {KINDS}, got {kind!r}")
    if key_field is not None and key_field not in LINE_FORMATS.get(kind, ((),))[0]:
        raise ValueError(f"a {kind} artifact is keyed by one of {LINE_FORMATS.get(kind, ((),))[0]}, not {key_field!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "top":
        path.write_bytes(orjson.dumps([int(track) for track in lists[0]]))
        return path
    (default_key, *_), list_field = LINE_FORMATS[kind]
    key_field = key_field or default_key
    with path.open("wb") as handle:
        for key in sorted(lists):
            record: dict = {key_field: int(key), list_field: [int(track) for track in lists[key]]}
            if scores and key in scores:
                record["scores"] = [round(float(score), 5) for score in scores[key]]
            handle.write(orjson.dumps(record) + b"\n")
    return path


def write_manifest(directory: Path, manifest: dict) -> Path:
    """`manifest.json` beside the artifacts, stamped with the time it was written."""
    path = Path(directory) / MANIFEST_FILE
    stamped = {**manifest, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.write_text(json.dumps(stamped, indent=2, default=str) + "\n")
    return path


def read_manifest(directory: Path) -> dict:
    """The manifest of an artifact directory; a clear error when there is none."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory}: no {MANIFEST_FILE} (train it with botify train MODEL --out {directory})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path}: not valid JSON ({error})") from error
