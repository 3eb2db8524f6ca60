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
import operator
import random
from abc import ABC
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, NamedTuple

from pydantic import BaseModel

from botify.artifacts import Artifact, Ranked
from botify.config import validate_config
from botify.errors import BotifyError, Unavailable
from botify.plugins import load_object
from botify.service.experiments import RecommenderSpec
from botify.service.stores import Listen, Store, artists_of, tracks_of
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
    # Set by the serving step of the recommender that answers: the probability with which the
    # served track was chosen and how many candidates it was chosen among (None: not known,
    # e.g. a plugin's own `recommend`). Logged with the event, for off-policy evaluation.
    propensity: float | None = None
    candidates: int | None = None
    deterministic: bool = False  # a ranked pick without exploration: propensity 1, no draw

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
            return set(tracks_of(self.session))
        if scope == "history":
            return set(tracks_of(self.history)).union(tracks_of(self.session))
        return set()

    def artist_plays(self) -> Counter[int]:
        """Plays of each artist (catalog artist code) in this session so far."""
        return Counter(artists_of(self.session))


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

    def __init__(self, seed: int) -> None:
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

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if stop is None and type(start) is int and start > 0:  # randrange(n), what recommenders draw
            return self._randbelow(start)
        return super().randrange(start, stop, step)

    def _randbelow(self, n: int) -> int:
        """A uniform int in [0, n): Lemire's multiply-and-shift of one 64-bit word (unbiased: the
        rare words that would favour some values are drawn again); randrange, choice, sample and
        shuffle draw through it."""
        product = self._next() * n
        if (product & _MASK) < n:
            threshold = ((1 << 64) - n) % n
            while (product & _MASK) < threshold:
                product = self._next() * n
        return product >> 64

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
    """What recommenders may use: the public catalog and the store (and the catalog's artist
    code of each track as Python ints, read per request)."""

    catalog: Catalog
    store: Store
    artist_of: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "artist_of", self.catalog.artist_codes.tolist())


@dataclass(frozen=True, slots=True)
class Distribution:
    """What a serving step would serve, as probabilities: each of `tracks` with its chance in
    `chances`, and every other catalog track with `floor`, except the `excluded` (heard) ones,
    which get nothing (a floor comes from exploring the catalog, or from Random)."""

    tracks: list[int]
    chances: list[float]
    floor: float = 0.0
    excluded: set[int] | frozenset[int] = frozenset()

    def floor_mass(self, catalog_size: int) -> float:
        """The floor's whole mass: on every catalog track neither listed nor excluded."""
        return self.floor * (catalog_size - len(set(self.tracks) | set(self.excluded)))

    def chance(self, track: int) -> float:
        for candidate, chance in zip(self.tracks, self.chances):
            if candidate == track:
                return chance
        return 0.0 if track in self.excluded else self.floor


class Recommender(ABC):
    """Picks the next track; `spec` carries its parameters, `artifact_kind` what it reads.

    Most recommenders only propose candidates (`candidates`: tracks best first, with scores
    if they have them) and leave serving to the shared step in `choose`: drop heard tracks,
    re-rank for artist fatigue, pick. A recommender may instead override `recommend`.

    A plugin's own parameters come from `params` in its spec; if it declares a pydantic model
    as `Params`, they are validated by it when the service starts (a bad value is one line
    naming the recommender) and `self.params` is that model, else the plain dict.
    """

    artifact_kind: str | None = None
    Params: type[BaseModel] | None = None

    def __init__(self, spec: RecommenderSpec, resources: Resources) -> None:
        self.spec = spec
        self.params = self.parse_params(spec)
        self.resources = resources
        self.store = resources.store
        self.artist_of = resources.artist_of
        self.policy = spec.policy  # read per request: once here rather than through the spec

    @classmethod
    def parse_params(cls, spec: RecommenderSpec) -> Any:
        """The spec's `params`, validated by `Params` if the class declares it."""
        if cls.Params is not None:
            return validate_config(cls.Params, spec.params, source=f"recommender {spec.kind!r} params")
        if spec.params and spec.kind in BUILTIN:
            raise BotifyError(f"recommender {spec.kind!r} takes no params (they are for module:Class plugins); "
                              f"got {', '.join(spec.params)}")
        return spec.params

    @property
    def name(self) -> str:
        return self.spec.kind if self.spec.artifact is None else f"{self.spec.kind}({self.spec.artifact})"

    async def candidates(self, query: Query) -> tuple[list[int], list[float] | None] | None:
        """Candidate tracks, best first, and their scores if any; None when there are none."""
        raise NotImplementedError(f"{type(self).__name__} implements neither candidates nor recommend")

    async def recommend(self, query: Query) -> int | None:
        """A track id, or None to let the fallback answer."""
        return self._serve(query, await self.candidates(query))

    def _serve(self, query: Query, found: tuple[list[int], list[float] | None] | None) -> int | None:
        """`choose` over candidates found (nothing to serve if None); an artifact's `Ranked.ordered`
        list is known to be in order."""
        return None if found is None else self.choose(query, found[0], found[1], getattr(found, "ordered", False))

    @property
    def reads_history(self) -> bool:
        """Whether serving reads the user's long history (`query.history`), which the store then
        returns with the play: for the heard filter over it, or a plugin (which may read anything)."""
        return type(self) not in BUILTIN_TYPES or self.spec.heard == "history"

    @property
    def replayable(self) -> bool:
        """Whether `distribution` can say what `recommend` would serve (it can when serving is
        the shared step over `candidates`, not a `recommend` of the class's own)."""
        return type(self).recommend is Recommender.recommend or type(self).distribution is not Recommender.distribution

    async def distribution(self, query: Query) -> Distribution | None:
        """Every track `recommend` could serve for this query and its probability (the same
        candidates and serving step, no draw); None when it would leave it to the fallback."""
        if not self.replayable:
            raise NotImplementedError(f"{self.name} decides in its own recommend: its probabilities are unknown")
        found = await self.candidates(query)
        return None if found is None else self.options(query, found[0], found[1])

    def choose(self, query: Query, tracks: list[int], scores: list[float] | None = None,
               ordered: bool = False) -> int | None:
        """The serving step: unheard candidates (the first `k`), re-ranked by artist fatigue in
        this session, then the best one, a uniform draw, or a softmax draw over scores — or,
        with `explore`, a uniform draw from the candidate pool (or from the catalog's unheard
        tracks) with that probability. Sets the query's `propensity` (the served track's
        probability under this whole step), `candidates` (how many it was chosen among) and
        `deterministic` (no draw at all: a ranked pick without exploration). `ordered`: the
        candidates are known to be `Ranked.ordered` (their scores need no check)."""
        spec = self.spec
        if (self.policy == "ranked" and not spec.explore
                and (scores is None or ordered or all(map(operator.ge, scores, islice(scores, 1, None))))):
            heard = query.heard(spec.heard)
            best = self._best(query, tracks, scores, heard)
            if best is not None:
                fresh = len(tracks) - len(heard.intersection(tracks))
                query.propensity, query.candidates = 1.0, fresh if spec.k is None else min(spec.k, fresh)
                query.deterministic = True
            return best
        found = self._pick(query, tracks, scores)
        if found is None:
            return None
        fresh, pick, heard = found
        if spec.explore_pool == "catalog" and spec.explore:
            size = self.resources.catalog.size
            if query.rng.random() < spec.explore:  # any unheard track of the catalog
                track = query.rng.randrange(size)
                while track in heard:
                    track = query.rng.randrange(size)
            else:
                track = tracks[fresh[self._draw(query, pick, False)]]
            chance = next((chance for index, chance in zip(fresh, pick) if tracks[index] == track), 0.0)
            query.propensity, query.candidates = self._over_catalog([chance], heard)[0][0], size - len(heard)
            return track
        chances = self._explored(pick)
        index = self._draw(query, chances, bool(spec.explore))
        query.propensity, query.candidates = chances[index], len(fresh)
        query.deterministic = self.policy == "ranked" and not spec.explore
        return tracks[fresh[index]]

    def options(self, query: Query, tracks: list[int], scores: list[float] | None = None) -> Distribution | None:
        """What `choose` would serve for this query, as a whole distribution over tracks (the
        same step, no draw): for off-policy evaluation. None when it would serve nothing."""
        found = self._pick(query, tracks, scores)
        if found is None:
            return None
        fresh, pick, heard = found
        served = [tracks[index] for index in fresh]
        spec = self.spec
        if spec.explore_pool == "catalog" and spec.explore:
            return Distribution(served, *self._over_catalog(pick, heard), heard)
        return Distribution(served, self._explored(pick))

    def _over_catalog(self, chances: list[float], heard: set[int]) -> tuple[list[float], float]:
        """Exploring the catalog: the pick's chances mixed with a uniform draw over every unheard
        track, and that draw's own chance of any one of them (the floor under every track)."""
        explore = self.spec.explore
        floor = explore / (self.resources.catalog.size - len(heard))
        return [(1 - explore) * chance + floor for chance in chances], floor

    def _pick(self, query: Query, tracks: list[int], scores: list[float] | None
              ) -> tuple[Sequence[int], list[float], set[int]] | None:
        """The pick before exploration: the candidates' positions left after the heard filter,
        the first `k` and re-ranking, each one's chance, and the heard tracks."""
        spec = self.spec
        heard = query.heard(spec.heard)
        if heard.isdisjoint(tracks):  # the common case: every position, without a pass in Python
            fresh: Sequence[int] = range(len(tracks))
        else:
            fresh = [i for i, track in enumerate(tracks) if track not in heard]
        if spec.k is not None:
            fresh = fresh[: spec.k]
        if not fresh:
            return None
        policy = self.policy
        reranked = spec.artist_discount is not None or spec.artist_cap is not None
        if policy == "uniform" and not reranked:  # the common case needs no values
            return fresh, [1.0 / len(fresh)] * len(fresh), heard
        values = [scores[i] for i in fresh] if scores is not None else [1.0] * len(fresh)
        if reranked:
            plays = query.artist_plays()
            kept, kept_values = [], []
            for i, value in zip(fresh, values):
                count = plays.get(self.artist_of[tracks[i]], 0)
                if count:
                    value = self._fatigued(value, count)
                    if value is None:
                        continue
                kept.append(i)
                kept_values.append(value)
            if not kept:
                return None
            fresh, values = kept, kept_values
        count = len(fresh)
        if policy == "ranked":
            chances = [0.0] * count
            chances[max(range(count), key=values.__getitem__)] = 1.0  # the first of equals: list order
        elif policy == "softmax":
            top = max(values)
            weights = [math.exp((value - top) / spec.temperature) for value in values]
            total = sum(weights)
            chances = [weight / total for weight in weights]
        else:
            chances = [1.0 / count] * count
        return fresh, chances, heard

    def _artist_plays(self, query: Query) -> Counter[int] | None:
        """The session's plays per artist, if this recommender re-ranks for fatigue."""
        spec = self.spec
        return query.artist_plays() if spec.artist_discount is not None or spec.artist_cap is not None else None

    def _fatigued(self, value: float, count: int) -> float | None:
        """Re-ranking for artist fatigue: a candidate's value after `count` (> 0) plays of its
        artist in this session, or None when the artist is capped."""
        spec = self.spec
        if spec.artist_cap is not None and count >= spec.artist_cap:
            return None
        return value if spec.artist_discount is None else value * spec.artist_discount**count

    def _explored(self, chances: list[float]) -> list[float]:
        """Epsilon-greedy over the candidate pool: the pick's chances mixed with a uniform draw
        among the first `explore_pool` of them."""
        spec = self.spec
        if not spec.explore or spec.explore_pool == "catalog":
            return chances
        pool = min(len(chances), spec.explore_pool or len(chances))
        return [(1 - spec.explore) * chance + (spec.explore / pool if i < pool else 0.0)
                for i, chance in enumerate(chances)]

    def _draw(self, query: Query, chances: list[float], mixed: bool) -> int:
        """The position drawn with `chances`: none for a plain ranked pick, one `randrange` for
        a plain uniform one, else a weighted draw."""
        policy = self.policy
        if not mixed and policy == "ranked":
            return chances.index(1.0)
        if not mixed and policy == "uniform":
            return query.rng.randrange(len(chances))
        return query.rng.choices(range(len(chances)), weights=chances)[0]

    def _best(self, query: Query, tracks: list[int], scores: list[float] | None, heard: set[int]) -> int | None:
        """`choose` with pick = "ranked" over candidates in score order (non-increasing): the
        same answer, in one pass that stops as soon as no later candidate can win (a later one
        scores at most as much, and fatigue only lowers a non-negative score) — a learned list
        of 100 costs a few candidates, not a hundred."""
        k, plays, artist_of = self.spec.k, self._artist_plays(query), self.artist_of
        best, best_value, considered = None, -math.inf, 0
        for i, track in enumerate(tracks):
            if track in heard:
                continue
            considered += 1
            if k is not None and considered > k:
                break
            value = 1.0 if scores is None else scores[i]
            if 0 <= value <= best_value:
                break
            if plays:
                count = plays.get(artist_of[track], 0)
                if count:
                    value = self._fatigued(value, count)
                    if value is None:
                        continue
            if value > best_value:  # the first of equals: list order
                best, best_value = track, value
        return best


class Random(Recommender):
    """A uniformly random track: the course's baseline, and the last fallback of every chain."""

    async def recommend(self, query: Query) -> int | None:
        size = self.resources.catalog.size
        query.propensity, query.candidates = 1.0 / size, size
        return query.rng.randrange(size)

    async def distribution(self, query: Query) -> Distribution:
        return Distribution([], [], 1.0 / self.resources.catalog.size)


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


SHARED_MAX = 16  # I2I: beyond this many tracks in several lists of a mix, merging them is quicker


class I2I(Recommender):
    """Item-to-item lists (`{"track"|"item_id", "recommendations", "scores"}` lines) anchored on
    the session: its first track (`anchor = "first"`), its latest track played at least
    `min_time` (`"last"`, the first track if none), or a mix of its latest `anchors` (default 5)
    plays of at least `min_time` weighted by time played (`"mix"`; equally if none was played
    at all). A candidate's score is the anchors' weighted mean of its scores (1 / (1 + rank)
    where a list has none).

    Serving is the shared step over `candidates`. For the ranked pick over a mix (without
    `explore` or `k`) of `Ranked.ordered` lists, `recommend` finds the same track without
    merging and sorting the lists whole: a track in one list only scores its anchor's share of
    its score there, so each list is read from its head while it can still beat the best
    found so far (fatigue only lowers a score), and the few tracks in several lists are summed
    as the merge sums them (lists that share more than `SHARED_MAX` tracks, as when the
    session played an anchor twice, are merged). Ties go as in the merged order: the higher
    mixed score, then the earlier first appearance. On lists of 100 random tracks
    (`python bench/serving_cost.py`): half the time of the merge (2 anchors: 21.5 µs against
    47, 5: 66 against 112); what is left is mostly the union of the lists (the count of
    candidates, and which tracks are in several), one hash of each track."""

    artifact_kind = "track"

    def __init__(self, spec: RecommenderSpec, resources: Resources) -> None:
        super().__init__(spec, resources)
        # (not for a subclass with its own candidates: its recommend must serve those)
        self._from_heads = (self.policy == "ranked" and not spec.explore and spec.k is None and spec.anchor == "mix"
                            and type(self).candidates is I2I.candidates)

    @property
    def replayable(self) -> bool:
        # its own `recommend` is the shared step over its candidates, found faster
        return type(self).recommend is I2I.recommend or super().replayable

    def _anchors(self, query: Query) -> list[tuple[int, float]]:
        spec = self.spec
        min_time = 0.5 if spec.min_time is None else spec.min_time
        if spec.anchor == "first":
            return [(query.first, 1.0)]
        wanted = 1 if spec.anchor == "last" else spec.anchors or 5
        # newest first, as far back as needed (a session may hold hundreds of plays)
        chosen = list(islice((listen for listen in reversed(query.session) if listen.time >= min_time), wanted))
        if spec.anchor == "last":
            return [(chosen[0].track if chosen else query.first, 1.0)]
        if not chosen:
            return [(query.first, 1.0)]
        if not any(listen.time for listen in chosen):  # min_time 0 and only skips: no weights to go by
            return [(listen.track, 1.0) for listen in chosen]
        return [(listen.track, listen.time) for listen in chosen]

    async def candidates(self, query: Query):
        anchors = self._anchors(query)
        return self._merged(anchors, await self.store.ranked(self.spec.artifact, [track for track, _ in anchors]))

    async def recommend(self, query: Query) -> int | None:
        if not self._from_heads:
            return await super().recommend(query)
        anchors = self._anchors(query)
        lists = await self.store.ranked(self.spec.artifact, [track for track, _ in anchors])
        if len(anchors) > 1 and all(found is None or found.ordered for found in lists):
            present = [(weight, found) for (_, weight), found in zip(anchors, lists) if found is not None]
            union: set[int] = set()
            shared: set[int] = set()  # tracks in more than one list
            for _, found in present:
                if union:
                    shared.update(union.intersection(found.tracks))
                union.update(found.tracks)
            # lists more alike (say, one anchor played twice) are quicker merged than summed here
            if len(shared) <= SHARED_MAX:
                return self._best_of_heads(query, sum(weight for _, weight in anchors), present, union, shared)
        return self._serve(query, self._merged(anchors, lists))

    @staticmethod
    def _merged(anchors: list[tuple[int, float]], lists: list[Ranked | None]):
        """The candidates: the anchor's list, or the mix's lists merged, best first."""
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

    def _best_of_heads(self, query: Query, total: float, present: list[tuple[float, Ranked]], union: set[int],
                       shared: set[int]) -> int | None:
        """`choose` (ranked, no `k`) over `_merged`, from the lists' heads (see the class):
        `present` the anchors' weights and lists (where they have one), `total` all anchors'
        weight, `union` every track of the lists, `shared` those in more than one."""

        def share(weight: float, found: Ranked, position: int) -> float:  # as `_merged` weighs it
            return weight * (found.scores[position] if found.scores else 1.0 / (1 + position)) / total

        heard, plays, artist_of = query.heard(self.spec.heard), self._artist_plays(query), self.artist_of
        # the best so far: its value after fatigue, its mixed score, its first appearance
        best, best_value, best_score, best_at = None, -math.inf, -math.inf, 0

        def weigh(track: int, score: float, at: int) -> None:
            nonlocal best, best_value, best_score, best_at
            value = score
            if plays:
                count = plays.get(artist_of[track], 0)
                if count:
                    value = self._fatigued(score, count)
                    if value is None:
                        return
            if value > best_value or (value == best_value and (score > best_score
                                                               or (score == best_score and at < best_at))):
                best, best_value, best_score, best_at = track, value, score, at

        start = 0
        if shared:  # summed in the lists' order, as the merge sums them
            mixed: dict[int, list] = {}  # a shared track: [its mixed score so far, its first appearance]
            for weight, found in present:
                tracks = found.tracks
                for track in shared.intersection(tracks):
                    position = tracks.index(track)
                    score = share(weight, found, position)
                    if track in mixed:
                        mixed[track][0] += score
                    else:
                        mixed[track] = [0.0 + score, start + position]
                start += len(tracks)
            for track, (score, at) in mixed.items():
                if track not in heard:
                    weigh(track, score, at)
            start = 0
        for weight, found in present:
            tracks = found.tracks
            for position, track in enumerate(tracks):
                score = share(weight, found, position)
                if score < best_value:  # the rest of this list scores no more
                    break
                if track not in heard and track not in shared:
                    weigh(track, score, start + position)
            start += len(tracks)
        if best is not None:
            query.propensity, query.candidates = 1.0, len(union) - len(heard.intersection(union))
            query.deterministic = True
        return best


class LastLiked(Recommender):
    """The homework hybrid: from the neighbours of the last track the user played for at least
    `min_time` (never from a skipped one); failing that, a track liked by a random user who
    also liked it. Likes are remembered in the store as requests arrive. Per-track lists
    (`{"track", "recommendations"}` lines, e.g. from `botify train contextual`)."""

    artifact_kind = "track"
    reads_history = True  # its anchor when the session has none

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
        track = self._serve(query, neighbours)
        if track is not None:
            return track
        for other in await self.store.random_likers(anchor, 5, query.rng):
            if other != query.user:
                track = self.choose(query, await self.store.liked_tracks(other))
                if track is not None:  # its chance given the likers drawn, not overall: unknown
                    query.propensity = None
                    query.deterministic = False
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


BUILTIN_TYPES = frozenset(BUILTIN.values())


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
        cls.parse_params(item)
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
    propensity: float | None = None  # the track's probability under the answering recommender's serving step
    candidates: int | None = None
    deterministic: bool = False


class Chain:
    """A recommender and its fallbacks, ending in Random."""

    def __init__(self, spec: RecommenderSpec, resources: Resources) -> None:
        self.members = [_recommender_class(item.kind)(item, resources) for item in spec.chain()]
        if not isinstance(self.members[-1], Random):
            self.members.append(Random(RecommenderSpec(kind="random"), resources))
        self.name = self.members[0].name
        self.n_tracks = resources.catalog.size
        # Built-in recommenders wait for nothing but the store; a plugin may wait for anything.
        self.immediate = all(type(member) in BUILTIN_TYPES for member in self.members)
        self.reads_history = any(member.reads_history for member in self.members)

    async def recommend(self, query: Query) -> Answer:
        for position, member in enumerate(self.members):
            query.propensity = query.candidates = None  # set again by the member that answers, if it can
            query.deterministic = False
            try:
                track = await member.recommend(query)
            except Unavailable as error:  # the store went away after the play was recorded
                logger.warning("recommender %s: %s; using its fallback", member.name, error)
                continue
            except Exception:
                logger.exception("recommender %s failed for user %d; using its fallback", member.name, query.user)
                continue
            if track is None:
                continue
            if isinstance(track, int) and 0 <= track < self.n_tracks:
                return Answer(track, member.name, position > 0, query.propensity, query.candidates,
                              query.deterministic)
            logger.error("recommender %s returned %r, not a track id; using its fallback", member.name, track)
        raise AssertionError("Random always answers")

    async def distribution(self, query: Query) -> tuple[Distribution, str]:
        """What `recommend` would serve for this query, as probabilities, and the member that
        would answer: the first whose distribution is not None, as `recommend` asks them (a
        member that raises is passed over, as there). For a member that declines only by
        the query (all candidate-based ones do), this is the whole chain's distribution."""
        for member in self.members:
            try:
                found = await member.distribution(query)
            except NotImplementedError:
                raise
            except Exception:
                logger.exception("recommender %s failed on a replayed query of user %d", member.name, query.user)
                continue
            if found is not None:
                return found, member.name
        raise AssertionError("Random always answers")

    def unreplayable(self) -> list[str]:
        """The members whose probabilities cannot be computed (they decide in their own recommend)."""
        return [member.name for member in self.members if not member.replayable]
