"""Logs to interactions, the one dataset every training pipeline and the offline evaluation use.

An interaction is one track a user played: (user, track, time played, session, position in
the session, timestamp). Sessions are numbered per user exactly as the analysis numbers them
(a session ends with its `last` event). The default split is by time: the latest sessions
(by their start) are the test part.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from botify.events.engine import EngineSettings, open_engine
from botify.errors import BotifyError


@dataclass(frozen=True)
class Interactions:
    """Columns of equal length, ordered by user, session and position."""

    user: np.ndarray
    track: np.ndarray
    time: np.ndarray
    session: np.ndarray
    position: np.ndarray
    timestamp: np.ndarray
    session_start: np.ndarray

    @property
    def size(self) -> int:
        return len(self.user)

    def take(self, mask: np.ndarray) -> Interactions:
        return Interactions(*(getattr(self, name)[mask] for name in self.__dataclass_fields__))

    @property
    def window(self) -> dict:
        """The time span the interactions cover (ms timestamps), for manifests."""
        if not self.size:
            return {"interactions": 0}
        return {"from": int(self.timestamp.min()), "to": int(self.timestamp.max()), "interactions": self.size,
                "users": int(np.unique(self.user).size), "tracks": int(np.unique(self.track).size)}

    def split_by_time(self, test_share: float = 0.2) -> tuple[Interactions, Interactions]:
        """Sessions that started last (a `test_share` of them) are the test part."""
        if not 0 < test_share < 1:
            raise ValueError("test_share must be in (0, 1)")
        keys = self.user.astype(np.int64) * (1 << 32) + self.session
        _, first = np.unique(keys, return_index=True)
        starts = np.sort(self.session_start[first])
        cut = starts[min(len(starts) - 1, int(len(starts) * (1 - test_share)))]
        test = self.session_start >= cut
        return self.take(~test), self.take(test)


def read_interactions(paths: list[str | Path], settings: EngineSettings | None = None) -> Interactions:
    """Interactions from service logs (files, directories or globs; JSON lines or compacted)."""
    columns = open_engine(settings).interactions(paths)
    if not len(columns["user"]):
        raise BotifyError("the logs hold no interactions")
    return Interactions(**columns)
