"""Recommenders the service runs: one interface, composable with fallbacks.

A recommender gets a `Query` (user, the track just played and its time, the user's recent
history) and returns a track id, or None when it has nothing to say (an unknown track, a
user without a precomputed list, everything already heard). Its `Chain` then asks the
fallback; `Random` always answers last. A recommender that raises is treated as having no
answer (and logged), so it never crashes a request; the recommender that finally answered
is written to the event log.
"""

from __future__ import annotations

import importlib
import logging
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple

from botify.errors import BotifyError
from botify.service.artifacts import Artifact
from botify.service.experiments import RecommenderSpec
from botify.service.stores import Listen, Store, StoreUnavailable
from botify.world.model import Catalog

logger = logging.getLogger("botify.service")


@dataclass(slots=True)
class Query:
    """What a recommender sees: who asks, what they just heard, and their recent listens."""

    user: int
    track: int
    time: float
    history: list[Listen]

    def heard(self) -> set[int]:
        return {listen.track for listen in self.history}


@dataclass(frozen=True)
class Resources:
    """What recommenders may use: the public catalog, the store and a seeded generator."""

    catalog: Catalog
    store: Store
    rng: random.Random


class Recommender(ABC):
    """Picks the next track; `spec` carries its parameters, `artifact_kind` what it reads."""

    artifact_kind: str | None = None

    def __init__(self, spec: RecommenderSpec, resources: Resources) -> None:
        self.spec = spec
        self.resources = resources
        self.store = resources.store
        self.rng = resources.rng

    @property
    def name(self) -> str:
        return self.spec.kind if self.spec.artifact is None else f"{self.spec.kind}({self.spec.artifact})"

    @abstractmethod
    async def recommend(self, query: Query) -> int | None:
        """A track id, or None to let the fallback answer."""

    def _pick(self, candidates: list[int] | None, heard: set[int]) -> int | None:
        """A random unheard candidate (or the first one when `ranked`)."""
        if not candidates:
            return None
        fresh = [track for track in candidates if track not in heard]
        if not fresh:
            return None
        return fresh[0] if self.spec.ranked else fresh[self.rng.randrange(len(fresh))]


class Random(Recommender):
    """A uniformly random track: the course's baseline, and the last fallback of every chain."""

    async def recommend(self, query: Query) -> int | None:
        return self.rng.randrange(self.resources.catalog.size)


class TopPop(Recommender):
    """A random unheard track among the k most popular (a JSON list artifact)."""

    artifact_kind = "top"

    async def recommend(self, query: Query) -> int | None:
        (top,) = await self.store.recommendations(self.spec.artifact, [0])
        return self._pick(top[: self.spec.k or 100] if top else None, query.heard())


class StickyArtist(Recommender):
    """Another unheard track by the artist of the track just played."""

    async def recommend(self, query: Query) -> int | None:
        artist = self.resources.catalog.records[query.track]["artist"]
        return self._pick(await self.store.artist_tracks(artist), query.heard())


class Indexed(Recommender):
    """From the user's precomputed list (`{"user", "tracks"}` lines, e.g. a trained model)."""

    artifact_kind = "user"

    async def recommend(self, query: Query) -> int | None:
        (tracks,) = await self.store.recommendations(self.spec.artifact, [query.user])
        return self._pick(tracks, query.heard())


class Contextual(Recommender):
    """From the precomputed neighbours of the track just played (`{"track", "recommendations"}`)."""

    artifact_kind = "track"

    async def recommend(self, query: Query) -> int | None:
        (tracks,) = await self.store.recommendations(self.spec.artifact, [query.track])
        return self._pick(tracks, query.heard())


class I2I(Recommender):
    """Item-to-item from the user's recent listens (`{"item_id", "recommendations"}` lines).

    Anchors are the last `anchors` listens played at least `min_time`; a candidate scores the
    sum over anchors of time played / (1 + its rank in the anchor's list). Heard tracks are
    skipped; the best candidate wins (`ranked`) or one is drawn in proportion to its score.
    """

    artifact_kind = "item"

    async def recommend(self, query: Query) -> int | None:
        min_time = 0.5 if self.spec.min_time is None else self.spec.min_time
        anchors = [listen for listen in query.history[: self.spec.anchors or 10] if listen.time >= min_time]
        if not anchors:
            return None
        lists = await self.store.recommendations(self.spec.artifact, [anchor.track for anchor in anchors])
        heard = query.heard()
        scores: dict[int, float] = {}
        for anchor, tracks in zip(anchors, lists):
            for rank, track in enumerate(tracks or ()):
                if track not in heard:
                    scores[track] = scores.get(track, 0.0) + anchor.time / (1 + rank)
        if not scores:
            return None
        if self.spec.ranked:
            return max(scores, key=scores.__getitem__)
        candidates = list(scores)
        return self.rng.choices(candidates, weights=[scores[track] for track in candidates])[0]


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
        anchor = next((listen.track for listen in query.history if listen.time >= threshold), None)
        if anchor is None:
            return None
        heard = query.heard()
        (neighbours,) = await self.store.recommendations(self.spec.artifact, [anchor])
        track = self._pick(neighbours, heard)
        if track is not None:
            return track
        for other in await self.store.random_likers(anchor, 5, self.rng):
            if other != query.user:
                track = self._pick(await self.store.liked_tracks(other), heard)
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
        module_name, _, attribute = kind.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise BotifyError(f"cannot load recommender {kind!r}: {error}") from error
        if isinstance(found, type) and issubclass(found, Recommender):
            return found
        raise BotifyError(f"{kind} is not a botify.service.Recommender subclass")
    raise BotifyError(f"unknown recommender {kind!r}: use one of {', '.join(BUILTIN)} or module:Class")


def check_spec(spec: RecommenderSpec, artifacts: dict[str, Artifact]) -> None:
    """Fail at start-up, not per request, when a spec's artifact is missing or of the wrong kind."""
    for item in spec.chain():
        cls = _recommender_class(item.kind)
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
            except StoreUnavailable:
                raise
            except Exception:  # noqa: BLE001 - a broken recommender must not fail the request
                logger.exception("recommender %s failed for user %d; using its fallback", member.name, query.user)
                continue
            if track is None:
                continue
            if isinstance(track, int) and 0 <= track < self.n_tracks:
                return Answer(track, member.name, position > 0)
            logger.error("recommender %s returned %r, not a track id; using its fallback", member.name, track)
        raise AssertionError("Random always answers")
