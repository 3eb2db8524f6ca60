"""Offline evaluation of ranked lists on held-out interactions, the same way for every model.

Relevant tracks are those played for at least `min_time`. Per-user and top lists are judged
against each test user's relevant tracks; per-track lists against the next track of each
test session (the previous track is the query). Metrics are means over queries.
"""

from __future__ import annotations

import numpy as np

from botify.train.dataset import Interactions


def _queries(kind: str, test: Interactions, min_time: float) -> list[tuple[int, set[int]]]:
    liked = test.time >= min_time
    if kind == "track":
        same_session = (test.user[1:] == test.user[:-1]) & (test.session[1:] == test.session[:-1])
        rows = np.flatnonzero(same_session & liked[1:])
        return [(int(test.track[i]), {int(test.track[i + 1])}) for i in rows]
    relevant: dict[int, set[int]] = {}
    for user, track in zip(test.user[liked].tolist(), test.track[liked].tolist()):
        relevant.setdefault(user, set()).add(track)
    return sorted(relevant.items())


def evaluate_lists(
    kind: str, lists: dict[int, list[int]], test: Interactions, n_tracks: int, k: int = 10, min_time: float = 0.5
) -> dict[str, float]:
    """precision@k, recall@k, MRR, NDCG@k and catalog coverage of the lists on `test`."""
    queries = _queries(kind, test, min_time)
    if not queries:
        raise ValueError(f"no test queries with time >= {min_time}")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision = recall = mrr = ndcg = 0.0
    shown: set[int] = set()
    for key, relevant in queries:
        ranked = lists.get(0 if kind == "top" else key, [])[:k]
        shown.update(ranked)
        hits = np.array([track in relevant for track in ranked], dtype=bool)
        found = int(hits.sum())
        precision += found / k
        recall += found / len(relevant)
        if found:
            mrr += 1.0 / (int(np.argmax(hits)) + 1)
            ndcg += float(discounts[: len(hits)][hits].sum() / discounts[: min(len(relevant), k)].sum())
    count = len(queries)
    return {
        f"precision@{k}": precision / count,
        f"recall@{k}": recall / count,
        "mrr": mrr / count,
        f"ndcg@{k}": ndcg / count,
        "coverage": len(shown) / n_tracks,
        "queries": count,
    }


def popularity_baselines(
    train: Interactions, test: Interactions, n_tracks: int, seed: int = 0, kind: str = "user"
) -> dict[str, tuple[str, dict]]:
    """The course's reference rows: the top-10 for everybody, and a shuffled top-100 per test
    user (or, with kind="track", per previous track, to compare with per-track models)."""
    from botify.train.popularity import popularity

    top = popularity(train, n_tracks)
    rng = np.random.default_rng(seed)
    keys = np.unique(test.user if kind == "user" else test.track).tolist()
    shuffled = {key: rng.permutation(top[:100]).tolist() for key in keys}
    return {"top-10": ("top", {0: top[:10].tolist()}), "shuffled top-100": (kind, shuffled)}
