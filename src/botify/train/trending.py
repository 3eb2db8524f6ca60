"""Trending: popularity with a time decay, an item bias by day in the spirit of timeSVD's b_i(t).

TopPop counts every play the same, however old; when tastes move day by day (the
simulator's trending tracks, `botify sim run --trending`) yesterday's hits and last week's
weigh alike, and today's list lags. By default only sessions' first tracks count: served
plays would feed a top list back to itself, and in `botify loop` they drown the trend. Here each play counts `0.5 ** (age / half_life)`, its age
being how many sessions started after its session: traffic time rather than seconds, so
that a day the simulator compresses into a minute and a real day decay alike. With
`half_life = 0` nothing decays: the time-unaware twin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from botify.train.base import Model
from botify.train.dataset import Interactions
from botify.train.popularity import popularity
from botify.world.model import Catalog


def session_age(interactions: Interactions) -> np.ndarray:
    """Per interaction, how many sessions started after its session did (0 for the latest)."""
    keys = interactions.user.astype(np.int64) * (1 << 32) + interactions.session
    _, first = np.unique(keys, return_index=True)
    starts = np.sort(interactions.session_start[first])
    return len(starts) - np.searchsorted(starts, interactions.session_start, side="right")


@dataclass(kw_only=True)
class Trending(Model):
    """Tracks by time played with a time decay (recent plays weigh more): one list for `top_pop`.

    Parameters
    ----------
    size : int
        How many tracks the list keeps.
    half_life : float
        Sessions (of traffic) after which a play counts half; 0 counts every play fully: the
        time-unaware twin (with `plays = "all"` it is `toppop`).
    plays : str
        Only each session's "first" track counts (the listener's own choice, which what the
        service served cannot inflate: a top list learned from the plays of its own
        recommendations keeps recommending them), or "all" plays.
    """

    name = "trending"
    artifact_kind = "top"
    size: int = 1000
    half_life: float = 10_000.0
    plays: Literal["all", "first"] = "first"

    def fit(self, train: Interactions, catalog: Catalog) -> Trending:
        if self.half_life < 0:
            raise ValueError("half_life must be at least 0")
        weights = 0.5 ** (session_age(train) / self.half_life) if self.half_life > 0 else np.ones(train.size)
        if self.plays == "first":
            weights = weights * (train.position == 0)
        self.top = popularity(train, catalog.size, weights)[: self.size].tolist()
        return self

    def lists(self) -> dict[int, list[int]]:
        return {0: self.top}

    def learned(self) -> dict:
        return {"decay": "none (toppop)" if self.half_life == 0 else f"half-life {self.half_life:g} sessions"}
