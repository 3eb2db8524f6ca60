"""Listeners over days: who comes back tomorrow, and which tracks are trending today.

Both are off by default, so a day's sessions stay exactly the course's (the calibration holds).

**Returning listeners** (`ReturningSpec`). Without them every day draws fresh listeners, so a
recommender cannot keep or lose its audience. With them a listener's chance to come back the
next day follows how their recent sessions went *relative to their own expectation*: an
exponentially weighted mean of their daily mean session time, against a per-listener
expectation (lognormal around `expectation`, which is about what Random gives on the
calibrated world). At par the chance is `base_return`, so without good recommendations the
population decays; each further day away multiplies it by `recall`. Each day's listeners
are the returning ones plus `episodes` first-time listeners (as many as are left); a
listener has one session that day and, the more satisfied, more (Poisson), run in rounds so
that one listener's sessions never overlap at the service. The state is a few arrays per user (`Population`): it travels between days in memory
(`Simulation`) or in a file (`botify loop` writes `dayN/listeners.npz`), and every draw is
seeded by (seed, day), so the same seed gives the same listeners.

**Trending tracks** (`TrendingSpec`). Each day a few tracks start trending: every listener's
affinity (the inner product of track and taste that sets time played) gets a bonus, the
track's hype, which fades by `persistence` per day, and some sessions open on a trending track.
The hype is an item bias by day (timeSVD's b_i(t)) that lives in the simulator only:
recommenders see it only through the logs, a day late, so one trained on yesterday's logs
misses today's new hype and one that weighs recent days more follows it better.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from botify.errors import BotifyError

# Generators beside the chunks' (seed, day, chunk) and (seed, day, chunk, 1): (seed, day, 0, STREAM).
POPULATION_STREAM = 2
TRENDING_STREAM = 3


class ReturningSpec(BaseModel):
    """Listeners who come back the next day depending on how their sessions went."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_return: float = Field(0.6, gt=0, lt=1, description="chance to come back the next day when the recent "
                                                              "session time equals the listener's expectation")
    sensitivity: float = Field(1.5, ge=0, description="log-odds of coming back per unit of log(recent session time / "
                                                      "expectation)")
    smoothing: float = Field(0.5, gt=0, le=1, description="weight of the latest day in the exponentially weighted "
                                                          "recent session time")
    expectation: float = Field(2.0, gt=0, description="median expected session time (Random gives about 2 on the "
                                                      "calibrated world)")
    expectation_sd: float = Field(0.25, ge=0, description="spread of the listeners' own expectations (sd of its log)")
    recall: float = Field(0.3, ge=0, le=1, description="factor on the chance to come back for each further day away")
    extra_sessions: float = Field(0.5, ge=0, description="mean further sessions (Poisson) on a day a listener comes, "
                                                         "times their recent session time / expectation (up to 4)")
    max_sessions: int = Field(5, ge=1, description="most sessions a listener has in a day")


class TrendingSpec(BaseModel):
    """A daily popularity shift: a few tracks start trending each day and fade."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracks: int = Field(10, ge=1, description="tracks that start trending each day")
    strength: float = Field(0.6, ge=0, description="affinity bonus of a track on its first trending day (added to "
                                                   "the inner product of track and taste for every listener)")
    persistence: float = Field(0.5, ge=0, lt=1, description="share of its hype a trending track keeps each next day")
    start_share: float = Field(0.3, ge=0, le=1, description="chance that a session opens on a trending track (drawn "
                                                            "by hype) rather than near one of the listener's interests")


class ListenerDays(BaseModel):
    """The file of `--sim-config`: a `[returning]` and a `[trending]` table, each optional."""

    model_config = ConfigDict(extra="forbid")

    returning: ReturningSpec | None = None
    trending: TrendingSpec | None = None


def stream(seed: int, day: int, number: int) -> np.random.Generator:
    return np.random.default_rng([seed, day, 0, number])


@lru_cache(maxsize=8)
def daily_hype(spec: TrendingSpec, seed: int, day: int, n_tracks: int) -> np.ndarray:
    """Each track's hype on `day` (0 for most): the tracks that started trending on days
    1..day, each `strength * persistence ** age`. Read-only (cached)."""
    hype = np.zeros(n_tracks)
    count = min(spec.tracks, n_tracks)
    for start in range(1, day + 1):  # one draw per day, not per track or listener
        started = stream(seed, start, TRENDING_STREAM).choice(n_tracks, count, replace=False)
        hype[started] += spec.strength * spec.persistence ** (day - start)
    hype.flags.writeable = False
    return hype


def open_on_hype(hype: np.ndarray, first: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """First tracks where a `share` of sessions open on a trending track instead, drawn by hype."""
    cumulative = np.cumsum(hype)
    if share <= 0 or cumulative[-1] <= 0:
        return first
    opens = rng.random(len(first)) < share
    picked = np.searchsorted(cumulative, rng.random(int(opens.sum())) * cumulative[-1], side="right")
    first = first.copy()
    first[opens] = np.minimum(picked, len(hype) - 1)
    return first


class Population:
    """Who has listened, when last, and how their sessions went: one row per user.

    `recent` is the exponentially weighted daily mean session time (NaN before a first
    session), `expectation` the listener's own reference, `last_day` the latest day with a
    session (0: never), `days` how many days had one.
    """

    FIELDS = ("expectation", "recent", "last_day", "days")

    def __init__(self, spec: ReturningSpec, expectation: np.ndarray, recent: np.ndarray, last_day: np.ndarray,
                 days: np.ndarray) -> None:
        self.spec = spec
        self.expectation, self.recent, self.last_day, self.days = expectation, recent, last_day, days

    @classmethod
    def new(cls, spec: ReturningSpec, users: int, seed: int) -> Population:
        """Nobody has listened yet; expectations drawn once, from (seed, 0)."""
        noise = stream(seed, 0, POPULATION_STREAM).standard_normal(users)
        return cls(spec, spec.expectation * np.exp(spec.expectation_sd * noise), np.full(users, np.nan),
                   np.zeros(users, dtype=np.int64), np.zeros(users, dtype=np.int64))

    def return_chance(self, day: int) -> np.ndarray:
        """Each user's chance to listen on `day` (0 for those who never did)."""
        spec = self.spec
        seen = self.last_day > 0
        logit = (np.log(spec.base_return / (1 - spec.base_return))
                 + spec.sensitivity * np.log(np.maximum(self.satisfaction(), 1e-9)))
        away = np.maximum(day - 1 - self.last_day, 0)
        return np.where(seen, spec.recall ** away / (1 + np.exp(-logit)), 0.0)

    def satisfaction(self) -> np.ndarray:
        """Recent session time over expectation (1 for those who never listened)."""
        return np.where(self.last_day > 0, self.recent, self.expectation) / self.expectation

    def listeners(self, day: int, newcomers: int, seed: int) -> list[np.ndarray]:
        """The day's sessions as rounds of distinct listeners in a seeded random order: round
        k holds those with more than k sessions today. The listeners are those who come back
        plus up to `newcomers` who never listened; each has one session and a Poisson number
        more, growing with their satisfaction."""
        spec = self.spec
        rng = stream(seed, day, POPULATION_STREAM)
        back = np.flatnonzero(rng.random(len(self.last_day)) < self.return_chance(day))
        never = np.flatnonzero(self.last_day == 0)
        new = rng.choice(never, min(newcomers, len(never)), replace=False)
        users = rng.permutation(np.concatenate([back, new]))
        more = rng.poisson(spec.extra_sessions * np.clip(self.satisfaction()[users], 0, 4))
        sessions = 1 + np.minimum(more, spec.max_sessions - 1)
        return [users[sessions > k] for k in range(int(sessions.max(initial=0)))]

    def update(self, day: int, users: np.ndarray, times: np.ndarray) -> None:
        """Fold the day's sessions (user, session time) into the state."""
        size = len(self.last_day)
        count = np.bincount(users, minlength=size)
        active = count > 0
        mean = np.bincount(users, weights=times, minlength=size)[active] / count[active]
        previous = self.recent[active]
        alpha = self.spec.smoothing
        self.recent[active] = np.where(np.isnan(previous), mean, (1 - alpha) * previous + alpha * mean)
        self.last_day[active] = day
        self.days[active] += 1

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez(handle, spec=np.array(self.spec.model_dump_json()),
                     **{name: getattr(self, name) for name in self.FIELDS})
        return path

    @classmethod
    def load(cls, path: Path) -> Population:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(ReturningSpec.model_validate_json(str(data["spec"])), *(data[name] for name in cls.FIELDS))
        except (OSError, KeyError, ValueError) as error:
            raise BotifyError(f"{path}: not a listeners' state file ({error})") from error


def listener_days(config: Path | None = None, returning: bool = False, trending: bool = False) -> ListenerDays:
    """The `[returning]` and `[trending]` tables of a config file (TOML, JSON or YAML), each
    switched on with its defaults by its flag when the file has none."""
    from botify.config import load_config, validate_config

    found = load_config(config, ListenerDays) if config is not None else validate_config(ListenerDays, {})
    return found.model_copy(update={
        "returning": found.returning or (ReturningSpec() if returning else None),
        "trending": found.trending or (TrendingSpec() if trending else None),
    })
