"""Recommenders the service runs: one interface, composable with fallbacks.

A recommender gets a `Query` (user, the track just played and its time, the open session and
the long history) and returns a track id, or None when it has nothing to say (an unknown
track, a user without a precomputed list, everything already heard). Most recommenders only
propose ranked candidates; one shared serving step (`Recommender.choose`) removes heard tracks,
re-ranks for artist fatigue within the session and picks (best, uniform, softmax), as each
treatment's config says. Its `Chain` then asks the
fallback; `Random` always answers last. A recommender that raises (a bug, a store outage,
a damaged key) is treated as having no answer (and logged), so it never fails a request whose
play is already recorded; the recommender that finally answered is written to the event log.

Randomness comes from `query.rng`, the request's own generator seeded by (seed, user, the
user's request number): the same traffic gives the same answers whatever the order in which
concurrent requests arrive.
"""

from __future__ import annotations

import logging
import math
import random
from abc import ABC
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from botify.errors import BotifyError, Unavailable
from botify.artifacts import Artifact
from botify.service.experiments import RecommenderSpec
from botify.plugins import load_object
from botify.service.stores import Listen, Store
from botify.world.model import Catalog

logger = logging.getLogger("botify.service")


@dataclass(slots=True)
class Query:
    """What a recommender sees: who asks, what they just played and for how long, the open
    session (oldest first: `session[0]` is the session's first track, `session[-1]` the track
    just played) and the user's long history across sessions (newest first)."""

    user: int
    track: int
    time: float
    session: Sequence[Listen]
    history: Sequence[Listen] = field(default_factory=list)
    seed: int = 0
    _rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        """This request's random generator (made on first use: most requests draw nothing)."""
        if self._rng is None:
            self._rng = RequestRandom(self.seed)
        return self._rng

    @property
    def first(self) -> int:
        """The session's first track (the listener's choice, the best clue to this session's taste)."""
        return self.session[0].track if self.session else self.track

    def heard(self, scope: str = "session") -> set[int]:
        """Tracks not to recommend again: this session's ("session"), the long history's
        ("history"), or none ("none")."""
        if scope == "session":
            return {listen.track for listen in self.session}
        if scope == "history":
            return {listen.track for listen in self.history} | {listen.track for listen in self.session}
        return set()

    def artist_plays(self) -> dict[int, int]:
        """Plays of each artist (catalog artist code) in this session so far."""
        plays: dict[int, int] = {}
        for listen in self.session:
            plays[listen.artist] = plays.get(listen.artist, 0) + 1
        return plays


_MASK = (1 << 64) - 1


def request_seed(seed: int, user: int, number: int) -> int:
    """The seed of a request's generator: distinct for every (seed, user, request number)."""
    return ((seed & _MASK) << 96) | (user << 64) | (number & _MASK)


def _mix(z: int) -> int:
    """SplitMix64's finaliser: a bijection of 64-bit words with full avalanche."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class RequestRandom(random.Random):
    """`random.Random`'s whole API (randrange, choices, sample, ...) on SplitMix64 seeded by a
    big integer: made per request, so it must be cheap to seed (0.5 µs; the Mersenne Twister
    takes 4 µs), and one request's draws are short."""

    def __init__(self, seed: int) -> None:  # noqa: D107 - no super().__init__: it would seed a Twister
        self.seed(seed)
        self.gauss_next = None

    def seed(self, a: int | None = None, version: int = 2) -> None:
        a, state = a or 0, 0
        while True:  # hash every 64-bit word of the seed in: nearby seeds give unrelated streams
            state = _mix((state + (a & _MASK) + 0x9E3779B97F4A7C15) & _MASK)
            a >>= 64
            if not a:
                break
        self._state = state

    def _next(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK
        return _mix(self._state)

    def random(self) -> float:
        return (self._next() >> 11) * (1.0 / 9007199254740992.0)

    def getrandbits(self, k: int) -> int:
        if k <= 64:
            return self._next() >> (64 - k)
        value, bits = 0, 0
        while bits < k:
            value, bits = (value << 64) | self._next(), bits + 64
        return value >> (bits - k)

    def getstate(self):
        return self._state

    def setstate(self, state) -> None:
        self._state = state


@dataclass(frozen=True)
class Resources:
    """What recommenders may use: the public catalog and the store."""

    catalog: Catalog
    store: Store


class Recommender(ABC):
    """Picks the next track; `spec` carries its parameters, `artifact_kind` what it reads.

    Most recommenders only propose candidates (`candidates`: tracks best first, with scores
    if they have them) and leave serving to the shared step in `choose`: drop heard tracks,
    re-rank for artist fatigue, pick. A recommender may instead override `recommend`.
    """

    artifact_kind: str | None = None

    def __init__(self, spec: RecommenderSpec, resources: Resources) -> None:
        self.spec = spec
        self.resources = resources
        self.store = resources.store
        self.artist_of = resources.catalog.artist_codes

    @classmethod
    def check(cls, spec: RecommenderSpec) -> None:
        """Raise BotifyError if `spec` cannot work (e.g. a plugin's `params`): called at start-up
        and on reload, before any request."""

    @property
    def name(self) -> str:
        return self.spec.kind if self.spec.artifact is None else f"{self.spec.kind}({self.spec.artifact})"

    async def candidates(self, query: Query) -> tuple[list[int], list[float] | None] | None:
        """Candidate tracks, best first, and their scores if any; None when there are none."""
        raise NotImplementedError(f"{type(self).__name__} implements neither candidates nor recommend")

    async def recommend(self, query: Query) -> int | None:
        """A track id, or None to let the fallback answer."""
        found = await self.candidates(query)
        return None if found is None else self.choose(query, *found)

    def choose(self, query: Query, tracks: list[int], scores: list[float] | None = None) -> int | None:
        """The serving step: unheard candidates (the first `k`), re-ranked by artist fatigue in
        this session, then the best one, a uniform draw, or a softmax draw over scores."""
        spec = self.spec
        heard = query.heard(spec.heard)
        fresh = [i for i, track in enumerate(tracks) if track not in heard]
        if spec.k is not None:
            fresh = fresh[: spec.k]
        if not fresh:
            return None
        values = [scores[i] for i in fresh] if scores is not None else [1.0] * len(fresh)
        if spec.artist_discount is not None or spec.artist_cap is not None:
            plays = query.artist_plays()
            kept, kept_values = [], []
            for i, value in zip(fresh, values):
                count = plays.get(int(self.artist_of[tracks[i]]), 0)
                if spec.artist_cap is not None and count >= spec.artist_cap:
                    continue
                if spec.artist_discount is not None and count:
                    value = value * spec.artist_discount**count
                kept.append(i)
                kept_values.append(value)
            if not kept:
                return None
            fresh, values = kept, kept_values
        policy = spec.policy
        if policy == "ranked":
            best = max(range(len(fresh)), key=values.__getitem__)  # the first of equals: list order
            return tracks[fresh[best]]
        if policy == "softmax":
            top = max(values)
            weights = [math.exp((value - top) / spec.temperature) for value in values]
            return tracks[fresh[query.rng.choices(range(len(fresh)), weights=weights)[0]]]
        return tracks[fresh[query.rng.randrange(len(fresh))]]


class Random(Recommender):
    """A uniformly random track: the course's baseline, and the last fallback of every chain."""

    async def recommend(self, query: Query) -> int | None:
        return query.rng.randrange(self.resources.catalog.size)


class TopPop(Recommender):
    """Among the k (default 100) most popular tracks (a JSON list artifact)."""

    artifact_kind = "top"

    async def candidates(self, query: Query):
        (top,) = await self.store.ranked(self.spec.artifact, [0])
        return None if not top else (top.tracks[: self.spec.k or 100], None)


class StickyArtist(Recommender):
    """Another track by the artist of the track just played."""

    async def candidates(self, query: Query):
        artist = self.resources.catalog.records[query.track]["artist"]
        return await self.store.artist_tracks(artist), None


class Indexed(Recommender):
    """From the user's precomputed list (`{"user", "tracks"}` lines, e.g. a trained model)."""

    artifact_kind = "user"

    async def candidates(self, query: Query):
        (found,) = await self.store.ranked(self.spec.artifact, [query.user])
        return found


class Contextual(Recommender):
    """From the precomputed list of the track just played (`{"track", "recommendations"}`)."""

    artifact_kind = "track"

    async def candidates(self, query: Query):
        (found,) = await self.store.ranked(self.spec.artifact, [query.track])
        return found


class I2I(Recommender):
    """Item-to-item lists (`{"track"|"item_id", "recommendations", "scores"}` lines) anchored on
    the session: its first track (`anchor = "first"`), its latest track played at least
    `min_time` (`"last"`, the first track if none), or a mix of its latest `anchors` (default 5)
    plays of at least `min_time` weighted by time played (`"mix"`). A candidate's score is the
    anchors' weighted mean of its scores (1 / (1 + rank) where a list has none)."""

    artifact_kind = "track"

    def _anchors(self, query: Query) -> list[tuple[int, float]]:
        min_time = 0.5 if self.spec.min_time is None else self.spec.min_time
        if self.spec.anchor == "first":
            return [(query.first, 1.0)]
        liked = [listen for listen in reversed(query.session) if listen.time >= min_time]
        if self.spec.anchor == "last":
            return [(liked[0].track if liked else query.first, 1.0)]
        chosen = liked[: self.spec.anchors or 5]
        return [(listen.track, listen.time) for listen in chosen] or [(query.first, 1.0)]

    async def candidates(self, query: Query):
        anchors = self._anchors(query)
        lists = await self.store.ranked(self.spec.artifact, [track for track, _ in anchors])
        if len(anchors) == 1:
            return lists[0]
        scores: dict[int, float] = {}
        total = sum(weight for _, weight in anchors)
        for (_, weight), found in zip(anchors, lists):
            if found is None:
                continue
            values = found.scores or [1.0 / (1 + rank) for rank in range(len(found.tracks))]
            for track, value in zip(found.tracks, values):
                scores[track] = scores.get(track, 0.0) + weight * value / total
        if not scores:
            return None
        ranked = sorted(scores, key=scores.__getitem__, reverse=True)
        return ranked, [scores[track] for track in ranked]


class LastLiked(Recommender):
    """The homework hybrid: from the neighbours of the last track the user played for at least
    `min_time` (never from a skipped one); failing that, a track liked by a random user who
    also liked it. Likes are remembered in the store as requests arrive. Per-track lists
    (`{"track", "recommendations"}` lines, e.g. from `botify train contextual`)."""

    artifact_kind = "track"

    async def recommend(self, query: Query) -> int | None:
        threshold = 0.5 if self.spec.min_time is None else self.spec.min_time
        if query.time >= threshold:
            await self.store.like(query.user, query.track)
        anchor = next((listen.track for listen in reversed(query.session) if listen.time >= threshold), None)
        if anchor is None:
            anchor = next((listen.track for listen in query.history if listen.time >= threshold), None)
        if anchor is None:
            return None
        (neighbours,) = await self.store.ranked(self.spec.artifact, [anchor])
        track = None if neighbours is None else self.choose(query, *neighbours)
        if track is not None:
            return track
        for other in await self.store.random_likers(anchor, 5, query.rng):
            if other != query.user:
                track = self.choose(query, await self.store.liked_tracks(other))
                if track is not None:
                    return track
        return None


BUILTIN = {
    "random": Random,
    "top_pop": TopPop,
    "sticky_artist": StickyArtist,
    "indexed": Indexed,
    "contextual": Contextual,
    "i2i": I2I,
    "last_liked": LastLiked,
}


def _recommender_class(kind: str) -> type[Recommender]:
    if kind in BUILTIN:
        return BUILTIN[kind]
    if ":" in kind:
        found = load_object(kind, "recommender")
        if isinstance(found, type) and issubclass(found, Recommender):
            return found
        raise BotifyError(f"{kind} is not a botify.service.Recommender subclass")
    raise BotifyError(f"unknown recommender {kind!r}: use one of {', '.join(BUILTIN)} or module:Class")


def check_spec(spec: RecommenderSpec, artifacts: dict[str, Artifact]) -> None:
    """Fail at start-up, not per request, when a spec's artifact is missing or of the wrong kind."""
    for item in spec.chain():
        cls = _recommender_class(item.kind)
        cls.check(item)
        if cls.artifact_kind is None:
            continue
        if item.artifact is None:
            raise BotifyError(f"recommender {item.kind!r} needs an 'artifact' file name")
        artifact = artifacts[item.artifact]
        if artifact.kind != cls.artifact_kind:
            raise BotifyError(
                f"{item.artifact}: holds {artifact.kind} lists but {item.kind} reads {cls.artifact_kind} lists"
            )


class Answer(NamedTuple):
    track: int
    recommender: str
    fallback: bool


class Chain:
    """A recommender and its fallbacks, ending in Random."""

    def __init__(self, spec: RecommenderSpec, resources: Resources) -> None:
        self.members = [_recommender_class(item.kind)(item, resources) for item in spec.chain()]
        if not isinstance(self.members[-1], Random):
            self.members.append(Random(RecommenderSpec(kind="random"), resources))
        self.name = self.members[0].name
        self.n_tracks = resources.catalog.size

    async def recommend(self, query: Query) -> Answer:
        for position, member in enumerate(self.members):
            try:
                track = await member.recommend(query)
            except Unavailable as error:  # the store went away after the play was recorded
                logger.warning("recommender %s: %s; using its fallback", member.name, error)
                continue
            except Exception:  # noqa: BLE001 - a broken recommender must not fail the request
                logger.exception("recommender %s failed for user %d; using its fallback", member.name, query.user)
                continue
            if track is None:
                continue
            if isinstance(track, int) and 0 <= track < self.n_tracks:
                return Answer(track, member.name, position > 0)
            logger.error("recommender %s returned %r, not a track id; using its fallback", member.name, track)
        raise AssertionError("Random always answers")
