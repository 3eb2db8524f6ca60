"""Catalog features every model may use: the public metadata of `tracks.json` as arrays.

ID-only embeddings learn nothing from logs where each listener met a few random tracks of
thousands; what generalises is the catalog: artist, genres, mood, decade, country. Here they
are as codes and one-/multi-hot columns, and as *match* features between two tracks (same
artist, shared genres, same mood, decade, country), which a model weighs by what the logs say
listeners reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from botify.world.model import Catalog

MATCHES = ("same_artist", "shared_genres", "same_main_genre", "same_mood", "same_decade", "same_country")


def _codes(values: list) -> np.ndarray:
    _, codes = np.unique(np.asarray([str(value) for value in values]), return_inverse=True)
    return codes.astype(np.int64)


@dataclass(frozen=True)
class CatalogFeatures:
    """Per track: artist, main genre, mood, decade and country codes, and a genres multi-hot."""

    artist: np.ndarray
    main_genre: np.ndarray
    mood: np.ndarray
    decade: np.ndarray
    country: np.ndarray
    genres: np.ndarray  # (tracks, genres) float32 multi-hot

    @classmethod
    def of(cls, catalog: Catalog) -> CatalogFeatures:
        records = catalog.records
        genre_index: dict[str, int] = {}
        rows, cols = [], []
        for record in records:
            for genre in record.get("genres") or []:
                rows.append(record["track"])
                cols.append(genre_index.setdefault(str(genre), len(genre_index)))
        genres = np.zeros((catalog.size, max(1, len(genre_index))), dtype=np.float32)
        genres[rows, cols] = 1.0
        return cls(
            artist=catalog.artist_codes.astype(np.int64),
            main_genre=_codes([record.get("artist_genre") for record in records]),
            mood=_codes([record.get("mood") for record in records]),
            decade=_codes([int(record.get("year") or 0) // 10 for record in records]),
            country=_codes([record.get("artist_country") for record in records]),
            genres=genres,
        )

    @property
    def size(self) -> int:
        return len(self.artist)

    def dense(self) -> np.ndarray:
        """One-hot main genre, mood, decade and country beside the genres multi-hot (float32)."""
        blocks = [self.genres]
        for codes in (self.main_genre, self.mood, self.decade, self.country):
            block = np.zeros((self.size, int(codes.max()) + 1), dtype=np.float32)
            block[np.arange(self.size), codes] = 1.0
            blocks.append(block)
        return np.hstack(blocks)

    def weighted_matches(self, anchors: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """For each anchor and every catalog track, the match features (`MATCHES` order)
        weighted by `weights` and summed: shape (anchors, tracks), computed without building
        the (anchors, tracks, features) array."""
        a = anchors[:, None]
        total = weights[1] * (self.genres[anchors] @ self.genres.T)
        for weight, codes in zip((weights[0], weights[2], weights[3], weights[4], weights[5]),
                                 (self.artist, self.main_genre, self.mood, self.decade, self.country)):
            total += np.float32(weight) * (codes[a] == codes[None, :])
        return total

    def pair_matches(self, anchors: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Match features of aligned pairs (anchors[i], candidates[i]): shape (..., 6)."""
        overlap = (self.genres[anchors] * self.genres[candidates]).sum(-1)
        return np.stack([
            self.artist[anchors] == self.artist[candidates],
            overlap,
            self.main_genre[anchors] == self.main_genre[candidates],
            self.mood[anchors] == self.mood[candidates],
            self.decade[anchors] == self.decade[candidates],
            self.country[anchors] == self.country[candidates],
        ], axis=-1).astype(np.float32)
