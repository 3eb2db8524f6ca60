"""What the PyTorch models share: the optional import, liked pairs, seeded batches, top-k search."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from botify.errors import BotifyError
from botify.train.dataset import Interactions
from botify.world.model import Catalog


def require_torch():
    """PyTorch, or a clear error: it is the optional `torch` extra."""
    try:
        import torch
    except ImportError as error:
        raise BotifyError(f"this model needs PyTorch: pip install 'botify[torch]' ({error})") from error
    return torch


def session_starts(interactions: Interactions) -> np.ndarray:
    """For each interaction, the first track of its session (rows are ordered by session)."""
    first_row = np.where(interactions.position == 0, np.arange(interactions.size), 0)
    return interactions.track[np.maximum.accumulate(first_row)]


def batches(size: int, batch: int, rng: np.random.Generator):
    """Shuffled index batches for one epoch."""
    order = rng.permutation(size)
    for start in range(0, size, batch):
        yield order[start : start + batch]


def top_k(queries: np.ndarray, items: np.ndarray, k: int, exclude: list[set[int]] | None = None) -> list[list[int]]:
    """For each query vector, the k items of highest inner product (exact faiss search), best
    first, skipping the ids in `exclude[i]`."""
    import faiss

    items = np.ascontiguousarray(items, dtype=np.float32)
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    extra = max((len(e) for e in exclude), default=0) if exclude else 0
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(len(items), k + extra))
    result = []
    for row, ids in enumerate(found):
        skip = exclude[row] if exclude else ()
        result.append([int(i) for i in ids if i >= 0 and int(i) not in skip][:k])
    return result


def top_k_scored(queries: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query vector, the ids and inner products of the k best items (exact faiss
    search), best first; ids are -1 where fewer than k items exist."""
    import faiss

    items = np.ascontiguousarray(items, dtype=np.float32)
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(len(items), k))
    return ids, scores


def heard_by_user(interactions: Interactions) -> dict[int, set[int]]:
    heard: dict[int, set[int]] = {}
    for user, track in zip(interactions.user.tolist(), interactions.track.tolist()):
        heard.setdefault(user, set()).add(track)
    return heard


def export_projector(directory: Path, vectors: np.ndarray, catalog: Catalog) -> Path:
    """Item embeddings with title and artist as TSV files plus a projector config, for
    TensorBoard's embedding projector (or projector.tensorflow.org: load the two TSVs)."""
    directory.mkdir(parents=True, exist_ok=True)
    np.savetxt(directory / "tensors.tsv", vectors, delimiter="\t", fmt="%.6g")
    with (directory / "metadata.tsv").open("w", encoding="utf-8") as handle:
        handle.write("track\ttitle\tartist\n")
        for record in catalog.records:
            clean = [str(record.get(field, "")).replace("\t", " ").replace("\n", " ") for field in ("title", "artist")]
            handle.write(f"{record['track']}\t{clean[0]}\t{clean[1]}\n")
    (directory / "projector_config.pbtxt").write_text(
        'embeddings {\n  tensor_name: "tracks"\n  tensor_path: "tensors.tsv"\n  metadata_path: "metadata.tsv"\n}\n'
    )
    return directory
