"""The remote agents: drive any server that speaks the course's HTTP API (`studio`: one where
people answer).

For each step it posts `{"track", "time"}` to `/next/<user>` and reads `"track"`; when a
session ends it posts to `/last/<user>`, all through `botify.client.BotifyClient` (keep-alive
pool, idempotency keys, retries through outages of up to `outage` seconds). A server that
stays down longer, or answers garbage, stops the run with one clear error.
"""

from __future__ import annotations

import json

import numpy as np

from botify.client import OUTAGE, BotifyClient, RemoteError
from botify.sim.agents import Agent, Observation

STUDIO_WAIT = 600.0  # seconds a request to a studio may wait for a person (its timeouts stay below)
STUDIO_BATCH = 8  # sessions a studio agent steps together: the most a person sees queued at once


def _read_track(body: bytes, n_tracks: int, url: str) -> int:
    try:
        answer = json.loads(body)
        track = answer["track"]
    except (ValueError, TypeError, KeyError):
        raise RemoteError(f"{url} answered {body[:200]!r}; expected JSON with an integer 'track'") from None
    if not isinstance(track, int) or isinstance(track, bool) or not 0 <= track < n_tracks:
        raise RemoteError(f"{url} recommended {track!r}, not a track id in 0..{n_tracks - 1}")
    return track


class RemoteAgent(Agent):
    """Asks a botify-compatible server for every recommendation."""

    name = "remote"

    def __init__(self, url: str, n_tracks: int, connections: int = 32, timeout: float = 5.0,
                 outage: float = OUTAGE) -> None:
        self.client = BotifyClient(url, connections=connections, timeout=timeout, outage=outage)
        self.n_tracks = n_tracks

    def check(self) -> None:
        """Fail early, with the URL in the message, when nothing answers there."""
        status, body = self.client.get("/")
        if status != 200:
            raise RemoteError(f"{self.client.url}/ answered HTTP {status}: {body[:200]!r}")

    def next(self, observation: Observation) -> np.ndarray:
        bodies = self.client.post_batch("next", observation.user, observation.track, observation.time)
        return np.array([_read_track(body, self.n_tracks, self.client.url) for body in bodies], dtype=np.int64)

    def last(self, observation: Observation) -> None:
        self.client.post_batch("last", observation.user, observation.track, observation.time)

    def _counters(self) -> dict[str, int]:
        stats = self.client.stats
        return {"requests": stats.requests, "retries": stats.retries, "failures": stats.failures,
                "replays": stats.replays}

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self._counted = self._counters()

    def report(self) -> dict[str, int]:
        """Counters since the last `reset`, so that chunks add up."""
        counted = getattr(self, "_counted", {})
        return {key: value - counted.get(key, 0) for key, value in self._counters().items()}

    def close(self) -> None:
        self.client.close()


class StudioAgent(RemoteAgent):
    """The remote agent for botify studio, where people answer some requests by hand: a few
    sessions at a time (`STUDIO_BATCH`, so the page's queue stays short) and time-outs long
    enough for a person (`STUDIO_WAIT`; the studio's own time-out hands a request to a
    recommender well before)."""

    name = "studio"
    max_batch = STUDIO_BATCH

    def __init__(self, url: str, n_tracks: int, outage: float = OUTAGE) -> None:
        super().__init__(url, n_tracks, connections=STUDIO_BATCH, timeout=STUDIO_WAIT, outage=outage)
