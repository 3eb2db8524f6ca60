"""Re-rank any per-user or per-track model so a list of 20 holds at most 5 tracks per artist (week 8)."""

from __future__ import annotations

from dataclasses import dataclass, field

from botify.train.base import Model, make_model
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


@dataclass(kw_only=True)
class Diverse(Model):
    """Another model's lists re-ranked: at most `per_artist` tracks per artist in the first `head`.

    Parameters
    ----------
    base : str
        The model whose lists are re-ranked (per-user or per-track lists).
    base_params : dict
        That model's parameters.
    head : int
        Places at the top of each list where the cap holds.
    per_artist : int
        Most tracks of one artist among the first `head`.
    """

    name = "diverse"
    artifact_kind = "user"
    base: str = "user-based"
    base_params: dict = field(default_factory=dict)
    head: int = 20
    per_artist: int = 5

    def fit(self, train: Interactions, catalog: Catalog) -> Diverse:
        base = make_model(self.base, self.base_params)
        if base.artifact_kind == "top":
            raise ValueError("diverse re-ranks per-user or per-track lists, not a single top list")
        base.fit(train, catalog)
        self.artifact_kind = base.artifact_kind
        artist_of = [record["artist"] for record in catalog.records]
        self.recommendations = {
            key: diversify(tracks, artist_of, self.head, self.per_artist)
            for key, tracks in base.lists().items()
        }
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations
