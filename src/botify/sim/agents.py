"""Agents choose the next track for a batch of sessions: the one interface every recommender
the simulator drives implements, in-process or remote.

An agent sees what a service would: for each live session its user, the last track and the
share of it played. `Observation.sessions` is the simulator's hidden state; only the oracle,
an upper bound for benchmarks, reads it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from botify.sim.engine import Sessions, expected_time
from botify.world.model import World


@dataclass(frozen=True)
class Observation:
    """One row per live session: who listens, what they just heard and for how long."""

    user: np.ndarray
    track: np.ndarray
    time: np.ndarray
    episode: np.ndarray
    step: int
    sessions: Sessions

    @property
    def size(self) -> int:
        return len(self.user)


class Agent(ABC):
    """Recommends the next track for each session in a batch.

    `reset` hands the agent a generator at the start of every batch of sessions (so its own
    randomness is reproducible), `next` answers a batch, `last` hears how sessions ended.
    """

    name = "agent"
    max_batch: int | None = None

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    @abstractmethod
    def next(self, observation: Observation) -> np.ndarray:
        """Return one track id per row of the observation."""

    def last(self, observation: Observation) -> None:
        """Sessions in `observation` have ended with these tracks and times."""

    def report(self) -> dict[str, int]:
        """Counters since the last `reset` worth showing in the day's summary (failures, retries, ...)."""
        return {}

    def close(self) -> None:
        """Release connections or files."""


class RandomAgent(Agent):
    """Uniformly random tracks: the course's cold-start baseline."""

    name = "random"

    def __init__(self, n_tracks: int) -> None:
        self.n_tracks = n_tracks
        self.rng = np.random.default_rng(0)

    def next(self, observation: Observation) -> np.ndarray:
        return self.rng.integers(0, self.n_tracks, observation.size)


class OracleAgent(Agent):
    """Sees each session's hidden taste and greedily picks the unplayed track of highest
    expected time, artist fatigue included. An upper bound, not a recommender.

    It keeps the `candidates` best tracks by raw score per session; where the best candidate
    could be beaten by a track outside that list it scans the whole catalog, so the greedy
    choice is exact.
    """

    name = "oracle"

    def __init__(self, world: World, candidates: int = 256) -> None:
        self.embeddings = world.embeddings
        self.track_artist = world.track_artist
        self.candidates = min(candidates, world.catalog.size)

    def _open(self, sessions: Sessions) -> None:
        scores = sessions.taste @ np.asarray(self.embeddings, dtype=np.float32).T
        top = np.argpartition(-scores, self.candidates - 1, axis=1)[:, : self.candidates]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        self.cand = np.take_along_axis(top, order, axis=1)
        self.cand_score = np.take_along_axis(scores, self.cand, axis=1).astype(np.float64)
        self.cand_artist = self.track_artist[self.cand]
        self.cand_played = np.zeros(self.cand.shape, dtype=bool)
        self.cand_artist_plays = np.zeros(self.cand.shape, dtype=np.int64)

    def next(self, observation: Observation) -> np.ndarray:
        sessions = observation.sessions
        if observation.step == 0:
            self._open(sessions)
        rows = sessions.slot
        last = observation.track
        self.cand_played[rows] |= self.cand[rows] == last[:, None]
        self.cand_artist_plays[rows] += self.cand_artist[rows] == self.track_artist[last][:, None]

        bias = sessions.consume_bias[:, None]
        sharpness = sessions.consume_sharpness[:, None]
        gamma = sessions.artist_discount_gamma[:, None]
        value = expected_time(self.cand_score[rows], bias, sharpness) * gamma ** self.cand_artist_plays[rows]
        value[self.cand_played[rows]] = -np.inf
        best = value.argmax(axis=1)
        choice = self.cand[rows, best]
        outside_bound = expected_time(self.cand_score[rows, -1], bias[:, 0], sharpness[:, 0])
        unsure = np.flatnonzero(value[np.arange(len(rows)), best] < outside_bound)
        for i in unsure:
            choice[i] = self._scan(sessions, i)
        return choice

    def _scan(self, sessions: Sessions, row: int) -> int:
        """Exact greedy choice over the whole catalog for one session."""
        score = np.asarray(self.embeddings, dtype=np.float32) @ sessions.taste[row]
        plays = np.bincount(sessions.artists[row, : sessions.length], minlength=self.track_artist.max() + 1)
        value = expected_time(score, sessions.consume_bias[row], sessions.consume_sharpness[row])
        value = value * sessions.artist_discount_gamma[row] ** plays[self.track_artist]
        value[sessions.tracks[row, : sessions.length]] = -np.inf
        return int(value.argmax())


class ConsoleAgent(Agent):
    """A person picks each next track, searching the catalog by title or artist."""

    name = "console"
    max_batch = 1

    def __init__(self, world: World, read: Callable[[str], str] = input, write: Callable[[str], None] = print) -> None:
        self.records = world.catalog.records
        self.read = read
        self.write = write

    def _describe(self, track: int) -> str:
        record = self.records[track]
        return f"{track}: {record.get('title', '?')} — {record['artist']}"

    def search(self, query: str, limit: int = 10) -> list[int]:
        """Tracks whose title or artist contains every word of the query."""
        words = query.lower().split()
        found = []
        for record in self.records:
            text = f"{record.get('title', '')} {record['artist']}".lower()
            if all(word in text for word in words):
                found.append(record["track"])
                if len(found) == limit:
                    break
        return found

    def next(self, observation: Observation) -> np.ndarray:
        track, time = int(observation.track[0]), float(observation.time[0])
        self.write(f"user {int(observation.user[0])} played {time:.2f} of {self._describe(track)}")
        while True:
            answer = self.read("next track id, or words to search (empty for random): ").strip()
            if not answer:
                return np.array([self.rng.integers(0, len(self.records))])
            if answer.isdigit() and int(answer) < len(self.records):
                return np.array([int(answer)])
            matches = self.search(answer)
            if not matches:
                self.write(f"nothing matches {answer!r}")
            for match in matches:
                self.write("  " + self._describe(match))

    def last(self, observation: Observation) -> None:
        for track, time in zip(observation.track, observation.time):
            self.write(f"session over: last played {time:.2f} of {self._describe(int(track))}")
