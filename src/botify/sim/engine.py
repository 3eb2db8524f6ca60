"""The course's listener model, vectorised: one implementation steps many sessions at once.

All sessions of a batch start together and take one step per call, so every live session in
a batch has the same length; finished sessions are dropped with `Sessions.keep`. The batch
runner and the single-session Gymnasium env both drive this class.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import faiss
import numpy as np

from botify.sim.days import open_on_hype
from botify.world.model import World

DEFAULT_MAX_STEPS = 250


@dataclass
class Sessions:
    """Hidden state of a batch of sessions; row i of every array is session i.

    `slot` is a session's row when the batch opened, kept as finished rows are dropped, so
    agents can hold per-session state in arrays.
    """

    slot: np.ndarray
    episode: np.ndarray
    user: np.ndarray
    taste: np.ndarray
    consume_bias: np.ndarray
    consume_sharpness: np.ndarray
    artist_discount_gamma: np.ndarray
    budget: np.ndarray
    tracks: np.ndarray
    artists: np.ndarray
    total_time: np.ndarray
    length: int = 1

    @property
    def size(self) -> int:
        return len(self.user)

    @property
    def steps(self) -> int:
        """Recommendations consumed so far (the first track is not a step)."""
        return self.length - 1

    @property
    def last_track(self) -> np.ndarray:
        return self.tracks[:, self.length - 1]

    def played(self) -> np.ndarray:
        return self.tracks[:, : self.length]

    def keep(self, mask: np.ndarray) -> Sessions:
        """The sessions where `mask` is true, as a new batch."""
        taken = {}
        for field in fields(self):
            value = getattr(self, field.name)
            taken[field.name] = value[mask] if isinstance(value, np.ndarray) else value
        return Sessions(**taken)

    def _append(self, tracks: np.ndarray, artists: np.ndarray) -> None:
        if self.length == self.tracks.shape[1]:
            grown = max(8, self.tracks.shape[1] * 2)
            self.tracks = np.pad(self.tracks, ((0, 0), (0, grown - self.length)))
            self.artists = np.pad(self.artists, ((0, 0), (0, grown - self.length)))
        self.tracks[:, self.length] = tracks
        self.artists[:, self.length] = artists
        self.length += 1


@dataclass(frozen=True)
class StepResult:
    """What one step of a batch gives: time played and how each session ended, if it did."""

    time: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


def expected_time(score: np.ndarray, bias: np.ndarray, sharpness: np.ndarray) -> np.ndarray:
    """The share of a track a listener plays before discounts: sigmoid((score - bias) * sharpness)."""
    return 1.0 / (1.0 + np.exp(-(score - bias) * sharpness))


class ListenerModel:
    """The course's user model over a world, for batches of sessions."""

    def __init__(self, world: World, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.world = world
        self.max_steps = max_steps
        self.embeddings = np.asarray(world.embeddings)  # a plain view: memmap indexing is slow per step
        self.track_artist = world.track_artist
        self.n_tracks = world.catalog.size
        users = world.users
        self._neighbour_count = int(users.interest_neighbours.max())
        self._nearest = np.full((self.n_tracks, self._neighbour_count), -1, dtype=np.int64)
        self._has_nearest = np.zeros(self.n_tracks, dtype=bool)
        self._index: faiss.Index | None = None
        # The day's trending bonus per track (`botify.sim.days`), set by the runner; None: no trends.
        self.hype: np.ndarray | None = None
        self.hype_start_share = 0.0

    def nearest(self, tracks: np.ndarray) -> np.ndarray:
        """The tracks nearest to each given track by inner product, itself included.

        Searches are batched over the tracks not seen before and cached, because tastes are
        always interest tracks and the same interests come back session after session.
        """
        missing = np.unique(tracks[~self._has_nearest[tracks]])
        if missing.size:
            if self._index is None:
                self._index = faiss.IndexFlatIP(self.embeddings.shape[1])
                self._index.add(np.ascontiguousarray(self.embeddings, dtype=np.float32))
            queries = np.ascontiguousarray(self.embeddings[missing], dtype=np.float32)
            _, found = self._index.search(queries, min(self._neighbour_count, self.n_tracks))
            self._nearest[missing, : found.shape[1]] = found
            self._has_nearest[missing] = True
        return self._nearest[tracks]

    def start(self, users: np.ndarray, rng: np.random.Generator, episodes: np.ndarray | None = None) -> Sessions:
        """Open one session per user: pick an interest, then a first track near it, played in full."""
        users = np.asarray(users, dtype=np.int64)
        population = self.world.users
        size = len(users)
        first_interest = population.interest_offsets[users]
        n_interests = population.interest_offsets[users + 1] - first_interest
        interest = population.interest_tracks[
            first_interest + (rng.random(size) * n_interests).astype(np.int64)
        ]
        neighbours = self.nearest(interest)
        available = np.minimum(population.interest_neighbours[users], (neighbours >= 0).sum(axis=1))
        first = neighbours[np.arange(size), (rng.random(size) * available).astype(np.int64)]
        if self.hype is not None:
            first = open_on_hype(self.hype, first, self.hype_start_share, rng)

        history = np.zeros((size, 8), dtype=np.int64)
        artists = np.zeros((size, 8), dtype=np.int64)
        history[:, 0] = first
        artists[:, 0] = self.track_artist[first]
        return Sessions(
            slot=np.arange(size),
            episode=np.arange(size, dtype=np.int64) if episodes is None else np.asarray(episodes, dtype=np.int64),
            user=users,
            taste=np.asarray(self.embeddings[interest], dtype=np.float32),
            consume_bias=population.consume_bias[users],
            consume_sharpness=population.consume_sharpness[users],
            artist_discount_gamma=population.artist_discount_gamma[users],
            budget=population.session_budget[users].astype(np.int64),
            tracks=history,
            artists=artists,
            total_time=np.ones(size),
        )

    def step(self, sessions: Sessions, actions: np.ndarray, rng: np.random.Generator) -> StepResult:
        """Every session in the batch listens to its recommended track."""
        actions = np.asarray(actions)
        if actions.shape != (sessions.size,):
            raise ValueError(f"expected {sessions.size} actions, got shape {actions.shape}")
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be integer track ids, got {actions.dtype}")
        if actions.size and (actions.min() < 0 or actions.max() >= self.n_tracks):
            raise ValueError(f"actions must be track ids in 0..{self.n_tracks - 1}")
        actions = actions.astype(np.int64)
        artist = self.track_artist[actions]

        repeat = (sessions.played() == actions[:, None]).any(axis=1)
        artist_plays = (sessions.artists[:, : sessions.length] == artist[:, None]).sum(axis=1)
        score = np.einsum("ij,ij->i", np.asarray(self.embeddings[actions], dtype=np.float32), sessions.taste)
        if self.hype is not None:
            score = score + self.hype[actions]
        raw = expected_time(score, sessions.consume_bias, sessions.consume_sharpness)
        time = np.round(raw * sessions.artist_discount_gamma**artist_plays, 2)
        time[repeat] = 0.0

        sessions.budget -= rng.random(sessions.size) > time
        sessions.total_time += time
        sessions._append(actions, artist)
        terminated = sessions.budget <= 0
        truncated = ~terminated & (sessions.steps >= self.max_steps)
        return StepResult(time, terminated, truncated)
