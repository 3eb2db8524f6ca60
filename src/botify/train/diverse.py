"""Re-rank any per-user or per-track model so a list of 20 holds at most 5 tracks per artist (week 8)."""

from __future__ import annotations

from botify.train.base import Model
from botify.train.dataset import Interactions
from botify.world.model import Catalog


def diversify(tracks: list[int], artist_of: list[str], head: int, per_artist: int) -> list[int]:
    """Greedy: the first `head` places take tracks in order while their artist has room; the
    tracks passed over follow, in their order, only once the head is full (so the cap holds
    within the first `head` places even when too few artists are available)."""
    counts: dict[str, int] = {}
    chosen, passed = [], []
    for track in tracks:
        artist = artist_of[track]
        if len(chosen) < head and counts.get(artist, 0) < per_artist:
            counts[artist] = counts.get(artist, 0) + 1
            chosen.append(track)
        else:
            passed.append(track)
    return chosen + passed if len(chosen) == head else chosen


class Diverse(Model):
    name = "diverse"
    artifact_kind = "user"
    defaults = {"base": "user-based", "head": 20, "per_artist": 5, "base_params": {}}

    def fit(self, train: Interactions, catalog: Catalog) -> Diverse:
        from botify.train.registry import make_model

        base = make_model(self.params["base"], **self.params["base_params"])
        if base.artifact_kind == "top":
            raise ValueError("diverse re-ranks per-user or per-track lists, not a single top list")
        base.fit(train, catalog)
        self.artifact_kind = base.artifact_kind
        artist_of = [record["artist"] for record in catalog.records]
        self.recommendations = {
            key: diversify(tracks, artist_of, self.params["head"], self.params["per_artist"])
            for key, tracks in base.lists().items()
        }
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations
