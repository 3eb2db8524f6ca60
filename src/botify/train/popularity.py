"""TopPop: tracks by total time played (course week 2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from botify.train.base import Model
from botify.train.dataset import Interactions
from botify.world.model import Catalog


def popularity(interactions: Interactions, n_tracks: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Catalog track ids by total time played (each play times its weight, if given), most
    played first (ties by id), played ones only."""
    played = np.bincount(interactions.track, weights=interactions.time if weights is None else
                         interactions.time * weights, minlength=n_tracks)[:n_tracks]
    order = np.lexsort((np.arange(n_tracks), -np.round(played, 9)))
    return order[played[order] > 0]


@dataclass(kw_only=True)
class TopPop(Model):
    """Tracks by total time played (course week 2): one list for `top_pop`.

    Parameters
    ----------
    size : int
        How many of the most played tracks the list keeps.
    """

    name = "toppop"
    artifact_kind = "top"
    size: int = 1000

    def fit(self, train: Interactions, catalog: Catalog) -> TopPop:
        self.top = popularity(train, catalog.size)[: self.size].tolist()
        return self

    def lists(self) -> dict[int, list[int]]:
        return {0: self.top}
