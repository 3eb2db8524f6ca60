"""The user × track matrix of time played that collaborative models learn from."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from botify.train.dataset import Interactions


def user_track_matrix(interactions: Interactions, n_tracks: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Summed time played per (user, track) as CSR rows over the users present; and those users."""
    users, rows = np.unique(interactions.user, return_inverse=True)
    matrix = sparse.csr_matrix(
        (interactions.time.astype(np.float32), (rows, interactions.track)), shape=(len(users), n_tracks)
    )
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix, users


def top_k_unseen(scores: np.ndarray, seen: sparse.csr_matrix, k: int) -> np.ndarray:
    """Per row, the k highest-scoring columns not in `seen` (a row-aligned sparse mask), best first."""
    scores = scores.copy()
    rows, cols = seen.nonzero()
    scores[rows, cols] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    ranked = np.take_along_axis(top, order, axis=1)
    valid = np.isfinite(np.take_along_axis(scores, ranked, axis=1))
    return np.where(valid, ranked, -1)


def top_k_others(scores: np.ndarray, anchors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Item-to-item scoring in blocks: `scores` is (anchors, tracks); per row, the k best tracks
    other than the row's own anchor, best first with ties by track id, and their scores."""
    scores[np.arange(len(anchors)), anchors] = -np.inf  # not the anchor itself
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -values), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
