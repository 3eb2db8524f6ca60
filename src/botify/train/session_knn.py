"""Session-kNN: the well-known strong baseline of session-based recommendation, from the logs.

Session-kNN scores a candidate by how often it was played in past sessions similar to the
current one. Served as item-to-item lists, the neighbours of a session of one track t are the
past sessions that contain t, so a candidate c scores the cosine-normalised co-occurrence of
t and c over past sessions, each play weighted by the time it was played (a skipped track
counts for nothing, a track played in full for 1):

    score(t, c) = sum_s time(s, t) · time(s, c) / (sqrt(sum_s time(s, t)² · sum_s time(s, c)²) + shrink)

Adapted to logs served at random: there each track met a handful of sessions, so two given
tracks rarely share one. With `artist_weight` > 0 the same cosine is also taken between
*artists* (a session's time played summed per artist), and every track of artist b gets
`artist_weight` · cos(artist(t), b) added to its track-level score: what the logs say about
an artist carries over to all its tracks, and every track gets a full list.

With `similarity = "mean-time"` a pair scores instead what the logs say directly: the mean
time c was played in the sessions where t was played, weighted by t's time, shrunk towards
the same mean between their artists, which is shrunk towards the mean time of all plays:

    artists(a, b) = (sum_s time(s, a) · time(s, b) + prior · mean) / (sum_s time(s, a) · plays(s, b) + prior)
    score(t, c) = (sum_s time(s, t) · time(s, c) + prior · artists(a, b)) / (sum_s time(s, t) · [c in s] + prior)

(a track's plays with itself left out). In logs served at random, every pair of tracks shares
sessions at the same chance rate, so counting them says little; how long c was played says
how much the sessions that liked t liked c, and tracks never played at all get their
artists' estimate. The scores are then expected times, which artist fatigue multiplies.

The service's `i2i` recommender with `anchor = "mix"` then sums these lists over the
session's recent plays, weighted by time played: session-kNN over the whole session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse

from botify.train.base import Lists, Model
from botify.train.dataset import Interactions
from botify.train.matrix import top_k_others
from botify.world.model import Catalog


def _cosine(plays: sparse.csr_matrix, shrink: float) -> sparse.csr_matrix:
    """Column-by-column cosine of a (sessions, items) matrix of times played, zero diagonal,
    shrunk by `shrink` in the denominator: a sparse (items, items) matrix."""
    together = (plays.T @ plays).tocoo()
    norms = np.sqrt(np.asarray(plays.multiply(plays).sum(axis=0)).ravel())
    off = together.row != together.col
    data = together.data[off] / (norms[together.row[off]] * norms[together.col[off]] + shrink)
    return sparse.csr_matrix((data, (together.row[off], together.col[off])), shape=together.shape)


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
    artist_weight : float
        Weight of the same cosine between the tracks' artists (0: tracks only).
    similarity : str
        "cosine" (time-weighted co-occurrence) or "mean-time" (shrunk mean time played).
    prior : float
        Pseudo-plays of the prior in "mean-time".
    block : int
        Anchors scored together against the whole catalog (memory: block × tracks floats).
    """

    name = "session-knn"
    artifact_kind = "track"
    size: int = 100
    shrink: float = 1.0
    artist_weight: float = 0.3
    similarity: Literal["cosine", "mean-time"] = "mean-time"
    prior: float = 2.0
    block: int = 500

    def fit(self, train: Interactions, catalog: Catalog) -> SessionKNN:
        if self.similarity == "mean-time":
            return self._fit_mean_time(train, catalog)
        n = catalog.size
        session = np.cumsum(train.position == 0) - 1
        plays = sparse.csr_matrix((train.time.astype(np.float64), (session, train.track)),
                                  shape=(int(session.max()) + 1, n))
        plays.sum_duplicates()
        plays.eliminate_zeros()
        tracks = _cosine(plays, self.shrink)
        if not tracks.nnz and not self.artist_weight:
            raise ValueError("no two tracks were played in one session")
        artist = catalog.artist_codes.astype(np.int64)
        n_artists = int(artist.max()) + 1
        if self.artist_weight:
            # Self-similarity of an artist is 1 (the zero diagonal is put back).
            by_artist = plays @ sparse.csr_matrix((np.ones(n), (np.arange(n), artist)), shape=(n, n_artists))
            artists = (_cosine(by_artist.tocsr(), self.shrink) + sparse.identity(n_artists)).toarray()
            artists *= self.artist_weight
        size = min(self.size, n - 1)
        self.recommendations, self.scores = {}, {}
        for start in range(0, n, self.block):
            anchors = np.arange(start, min(n, start + self.block))
            scores = tracks[anchors].toarray()
            if self.artist_weight:
                scores += artists[artist[anchors]][:, artist]
            best, values = top_k_others(scores, anchors, size)
            keep = values > 0  # only tracks something in the logs relates to the anchor
            for row, anchor in enumerate(anchors.tolist()):
                if keep[row, 0]:
                    self.recommendations[anchor] = best[row][keep[row]].tolist()
                    self.scores[anchor] = values[row][keep[row]].tolist()
        if not self.recommendations:
            raise ValueError("no two tracks were played in one session")
        return self

    def _fit_mean_time(self, train: Interactions, catalog: Catalog) -> SessionKNN:
        n = catalog.size
        session = np.cumsum(train.position == 0) - 1
        shape = (int(session.max()) + 1, n)
        plays = sparse.csr_matrix((train.time.astype(np.float64), (session, train.track)), shape=shape)
        present = sparse.csr_matrix((np.ones(train.size), (session, train.track)), shape=shape)
        present.data[:] = 1.0  # a track played twice in a session is present once
        artist = catalog.artist_codes.astype(np.int64)
        n_artists = int(artist.max()) + 1
        to_artist = sparse.csr_matrix((np.ones(n), (np.arange(n), artist)), shape=(n, n_artists))
        # Pairs of plays in one session, minus each play with itself.
        own_time = np.asarray(plays.sum(axis=0)).ravel()
        own_square = np.asarray(plays.multiply(plays).sum(axis=0)).ravel()
        together = (plays.T @ plays).tolil()
        together.setdiag(together.diagonal() - own_square)
        together = together.tocsr()
        weighted = (plays.T @ present).tolil()
        weighted.setdiag(weighted.diagonal() - own_time)
        weighted = weighted.tocsr()
        mean = float(train.time.mean())
        a_together = (to_artist.T @ together @ to_artist).toarray()
        a_weighted = (to_artist.T @ weighted @ to_artist).toarray()
        artists = (a_together + self.prior * mean) / (a_weighted + self.prior)
        size = min(self.size, n - 1)
        self.recommendations, self.scores = {}, {}
        for start in range(0, n, self.block):
            anchors = np.arange(start, min(n, start + self.block))
            prior = artists[artist[anchors]][:, artist]
            scores = (together[anchors].toarray() + self.prior * prior) / (weighted[anchors].toarray() + self.prior)
            best, values = top_k_others(scores, anchors, size)
            for row, anchor in enumerate(anchors.tolist()):
                self.recommendations[anchor] = best[row].tolist()
                self.scores[anchor] = values[row].tolist()
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations

    def artifacts(self) -> dict[str, Lists]:
        return {"item2item.jsonl": Lists("track", self.recommendations, self.scores)}
