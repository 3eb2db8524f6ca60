"""User-based collaborative filtering (course week 3, part 1).

Users are rows of mean-centred time played; a user's neighbours are the `neighbours` most
cosine-similar users, and a track scores the similarity-weighted sum of their centred times.
Computed in blocks of users, so memory stays bounded by block × catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from botify.train.base import Model
from botify.train.dataset import Interactions
from botify.train.matrix import top_k_unseen, user_track_matrix
from botify.world.model import Catalog


@dataclass(kw_only=True)
class UserBased(Model):
    """User-based CF: cosine similarity of users over mean-centred time played (for `indexed`).

    Parameters
    ----------
    neighbours : int
        Most similar users whose plays score a user's tracks.
    size : int
        Length of each user's list.
    block : int
        Users scored at once (memory is block × catalog floats).
    """

    name = "user-based"
    artifact_kind = "user"
    neighbours: int = 50
    size: int = 100
    block: int = 1024

    def fit(self, train: Interactions, catalog: Catalog) -> UserBased:
        played, users = user_track_matrix(train, catalog.size)
        counts = np.diff(played.indptr)
        means = np.asarray(played.sum(axis=1)).ravel() / np.maximum(counts, 1)
        centred = played.copy()
        centred.data -= np.repeat(means, counts).astype(np.float32)
        norms = np.sqrt(np.asarray(centred.multiply(centred).sum(axis=1)).ravel())
        unit = sparse.diags(1.0 / np.maximum(norms, 1e-9)) @ centred
        unit = unit.tocsr().astype(np.float32)
        n_users, neighbours = len(users), min(self.neighbours, len(users) - 1)
        self.recommendations: dict[int, list[int]] = {}
        for start in range(0, n_users, self.block):
            stop = min(n_users, start + self.block)
            similarity = (unit[start:stop] @ unit.T).toarray()
            similarity[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not oneself
            if neighbours < 1:
                continue
            keep = np.argpartition(-similarity, neighbours - 1, axis=1)[:, :neighbours]
            weights = np.take_along_axis(similarity, keep, axis=1)
            weights = np.where(np.isfinite(weights) & (weights > 0), weights, 0.0)
            nearest = sparse.csr_matrix(
                (weights.ravel(), (np.repeat(np.arange(stop - start), neighbours), keep.ravel())),
                shape=(stop - start, n_users),
            )
            scores = np.asarray((nearest @ centred).todense())
            scores[scores <= 0] = -np.inf  # only tracks neighbours liked more than usual
            ranked = top_k_unseen(scores, played[start:stop], self.size)
            for row, user in enumerate(users[start:stop].tolist()):
                tracks = ranked[row][ranked[row] >= 0].tolist()
                if tracks:
                    self.recommendations[user] = tracks
        return self

    def lists(self) -> dict[int, list[int]]:
        return self.recommendations
