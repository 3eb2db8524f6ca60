"""Session-kNN: the well-known strong baseline of session-based recommendation, from the logs.

Session-kNN scores a candidate by how often it was played in past sessions similar to the
current one. Served as item-to-item lists, the neighbours of a session of one track t are the
past sessions that contain t, so a candidate c scores the cosine-normalised co-occurrence of
t and c over past sessions, each play weighted by the time it was played (a skipped track
counts for nothing, a track played in full for 1):

    score(t, c) = sum_s time(s, t) · time(s, c) / sqrt(sum_s time(s, t)² · sum_s time(s, c)²)

The service's `i2i` recommender with `anchor = "mix"` then sums these lists over the
session's recent plays, weighted by time played: session-kNN over the whole session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from botify.train.base import Lists, Model
from botify.train.dataset import Interactions
from botify.world.model import Catalog


@dataclass(kw_only=True)
class SessionKNN(Model):
    """Session-kNN: tracks played in the same past sessions, weighted by time played; scored
    item-to-item lists (for `i2i`).

    Parameters
    ----------
    size : int
        Length of each track's list.
    shrink : float
        Added to the cosine's denominator, so pairs seen in few sessions count less.
    """

    name = "session-knn"
    artifact_kind = "track"
    size: int = 100
    shrink: float = 1.0

    def fit(self, train: Interactions, catalog: Catalog) -> SessionKNN:
        session = np.cumsum(train.position == 0) - 1
        plays = sparse.csr_matrix((train.time.astype(np.float32), (session, train.track)),
                                  shape=(int(session.max()) + 1, catalog.size))
        plays.sum_duplicates()
        plays.eliminate_zeros()
        together = (plays.T @ plays).tocsr()
        norms = np.sqrt(together.diagonal())
        together.setdiag(0)
        together.eliminate_zeros()
        coo = together.tocoo()
        coo.data = coo.data / (norms[coo.row] * norms[coo.col] + self.shrink)
        scored = coo.tocsr()
        self.recommendations, self.scores = {}, {}
        for track in np.flatnonzero(np.diff(scored.indptr)).tolist():
            start, stop = scored.indptr[track], scored.indptr[track + 1]
            values, columns = scored.data[start:stop], scored.indices[start:stop]
            order = np.lexsort((columns, -values))[: self.size]
            self.recommendations[track] = columns[order].tolist()
            self.scores[track] = values[order].astype(float).tolist()
        if not self.recommendations:
            raise ValueError("no two tracks were played in one session")
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations

    def artifacts(self) -> dict[str, Lists]:
        return {"item2item.jsonl": Lists("track", self.recommendations, self.scores)}
