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


def _next_track_queries(test: Interactions, min_time: float):
    """(row, user, session's first track, tracks heard earlier in the session) for every
    test play after the first of its session that was played at least `min_time`."""
    first_row = np.maximum.accumulate(np.where(test.position == 0, np.arange(test.size), 0))
    for row in np.flatnonzero((test.position > 0) & (test.time >= min_time)).tolist():
        start = int(first_row[row])
        yield row, int(test.user[row]), int(test.track[start]), set(test.track[start:row].tolist())


def evaluate_next_track(
    kind: str, lists: dict[int, list[int]], test: Interactions, n_tracks: int, k: int = 10, min_time: float = 0.5
) -> dict[str, float]:
    """Next-track (session) queries for any kind of list: for each test play after a
    session's first track that was played at least `min_time`, is it in the top k of the
    list the service would consult (the user's, the session's first track's, or the top
    list), after the session's earlier tracks are removed as the service removes them?
    hit rate@k, MRR@k and NDCG@k (one relevant track per query)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    hits = mrr = ndcg = 0.0
    count = 0
    for row, user, first, heard in _next_track_queries(test, min_time):
        key = {"user": user, "track": first}.get(kind, 0)
        ranked = [track for track in lists.get(key, []) if track not in heard][:k]
        target = int(test.track[row])
        count += 1
        if target in ranked:
            place = ranked.index(target)
            hits += 1
            mrr += 1.0 / (place + 1)
            ndcg += discounts[place]
    if not count:
        raise ValueError(f"no next-track test queries with time >= {min_time}")
    return {f"next_hit@{k}": hits / count, "next_mrr": mrr / count, f"next_ndcg@{k}": ndcg / count,
            "next_queries": count}


def evaluate_model(model, test: Interactions, n_tracks: int, k: int = 10, min_time: float = 0.5) -> dict[str, float]:
    """Offline metrics of a fitted model's main lists, plus next-track metrics of each of its
    artifacts (prefixed by the artifact's kind when it has several)."""
    metrics: dict[str, float] = {}
    artifacts = model.artifacts()
    main = next(iter(artifacts.values()))
    try:
        metrics.update(evaluate_lists(main.kind, main.lists, test, n_tracks, k, min_time))
    except ValueError:
        pass
    for file, item in artifacts.items():
        prefix = "" if len(artifacts) == 1 or item is main else f"{item.kind}:"
        try:
            found = evaluate_next_track(item.kind, item.lists, test, n_tracks, k, min_time)
        except ValueError:
            continue
        metrics.update({prefix + key: value for key, value in found.items()})
    return metrics
