"""Catalog features every model may use: the public metadata of `tracks.json` as arrays.

ID-only embeddings learn nothing from logs where each listener met a few random tracks of
thousands; what generalises is the catalog: artist, genres, mood, decade, country. Here they
are as codes and one-/multi-hot columns, and as *match* features between two tracks (same
artist, shared genres, same mood, decade, country), which a model weighs by what the logs say
listeners reward.
"""

from __future__ import annotations

import numpy as np

from botify.world.model import Catalog

MATCHES = ("same_artist", "shared_genres", "same_main_genre", "same_mood", "same_decade", "same_country")


def _codes(values: list) -> np.ndarray:
    _, codes = np.unique(np.asarray([str(value) for value in values]), return_inverse=True)
    return codes.astype(np.int64)


class CatalogFeatures:
    """The public catalog as arrays: artist, main genre, mood, decade and country codes, a
    genres multi-hot, their dense one-/multi-hot concatenation, and pairwise match features."""

    def __init__(self, catalog: Catalog) -> None:
        records = catalog.records
        genre_index: dict[str, int] = {}
        rows, cols = [], []
        for record in records:
            for genre in record.get("genres") or []:
                rows.append(record["track"])
                cols.append(genre_index.setdefault(str(genre), len(genre_index)))
        self.size = catalog.size
        self.genres = np.zeros((catalog.size, max(1, len(genre_index))), dtype=np.float32)
        self.genres[rows, cols] = 1.0
        self.artist = catalog.artist_codes.astype(np.int64)
        self.codes = np.stack([
            _codes([record.get("artist_genre") for record in records]),
            _codes([record.get("mood") for record in records]),
            _codes([int(record.get("year") or 0) // 10 for record in records]),
            _codes([record.get("artist_country") for record in records]),
        ])
        blocks = [self.genres]
        for codes in self.codes:
            block = np.zeros((self.size, int(codes.max()) + 1), dtype=np.float32)
            block[np.arange(self.size), codes] = 1.0
            blocks.append(block)
        self.dense = np.hstack(blocks)

    def pairs(self, anchors: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Match features (`MATCHES`) of aligned pairs, broadcasting: shape (..., 6)."""
        overlap = np.einsum("...g,...g->...", self.genres[anchors], self.genres[candidates])
        same = [self.artist[anchors] == self.artist[candidates], overlap]
        same += [codes[anchors] == codes[candidates] for codes in self.codes]
        return np.stack(same, axis=-1).astype(np.float32)

    def scored(self, anchors: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """`weights` · match features of each anchor with every track, (anchors, tracks): one
        matrix product over the one-/multi-hot columns plus the same-artist comparison."""
        scale = np.concatenate([np.full(self.genres.shape[1], weights[1], dtype=np.float32)]
                               + [np.full(int(codes.max()) + 1, w, dtype=np.float32)
                                  for codes, w in zip(self.codes, weights[2:])])
        found = (self.dense[anchors] * scale) @ self.dense.T
        found += weights[0] * (self.artist[anchors][:, None] == self.artist[None, :])
        return found
