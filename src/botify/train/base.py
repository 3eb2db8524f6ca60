"""One estimator-like interface for every training pipeline: `fit`, `lists`, `save`.

A model learns from `Interactions` (the service's logs) and the public catalog, then gives
ranked track lists keyed the way its artifact is: by user (`user`), by previous track
(`track`), or one list for everybody (`top`). `save` writes the artifact in the course's
format beside a manifest (model, parameters, data window, offline metrics, created at).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import orjson

from botify.train.dataset import Interactions
from botify.world.model import Catalog

ARTIFACT_FILES = {"user": "recommendations.jsonl", "track": "recommendations.jsonl", "top": "top_tracks.json"}
MANIFEST_FILE = "manifest.json"


class Model(ABC):
    """A training pipeline; parameters are keyword arguments with defaults in `defaults`."""

    name: ClassVar[str]
    artifact_kind: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"{self.name} has no parameter(s) {', '.join(sorted(unknown))}; "
                             f"it takes {', '.join(sorted(self.defaults)) or 'none'}")
        self.params = {**self.defaults, **params}

    @abstractmethod
    def fit(self, train: Interactions, catalog: Catalog) -> Model:
        """Learn from the training interactions; returns self."""

    @abstractmethod
    def lists(self) -> dict[int, list[int]]:
        """Ranked track ids per key (user, previous track, or 0 for a top list)."""

    def save(self, out: Path, window: dict, metrics: dict[str, float]) -> Path:
        """Write the artifact and its manifest into directory `out`; the artifact's path."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / ARTIFACT_FILES[self.artifact_kind]
        lists = self.lists()
        if self.artifact_kind == "top":
            path.write_bytes(orjson.dumps(lists[0]))
        else:
            key, field = ("user", "tracks") if self.artifact_kind == "user" else ("track", "recommendations")
            with path.open("wb") as handle:
                for item, tracks in sorted(lists.items()):
                    handle.write(orjson.dumps({key: int(item), field: [int(t) for t in tracks]}) + b"\n")
        manifest = {
            "model": self.name,
            "parameters": self.params,
            "artifact": path.name,
            "artifact_kind": self.artifact_kind,
            "data": window,
            "offline_metrics": metrics,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        return path
