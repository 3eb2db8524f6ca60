"""Off-policy evaluation: what a candidate recommender would have earned, from logs another policy wrote.

Every `/next` event logs the served track's propensity under the policy that served it. The
candidate is replayed on each logged context — the user's open session and long history as
the service's store held them at that moment, rebuilt by feeding the logged plays through the
service's own `EmbeddedStore` (the service's logs and the public catalog only: never the
world's embeddings or users) — and asked, through `Chain.distribution` (the very serving step
the service draws from, not a copy of it), how likely it was to serve the logged track, and
what else it would have served. The reward of a decision is the time the listener played the
served track (the time of the session's next event, whose track it is).

Three estimands, because they answer different questions and only some are comparable with
what the candidate would do online:

- `step`: time per recommendation over the *logged* contexts — the classic contextual-bandit
  value E_{x ~ logger}[E_{a ~ candidate}[r]]. It is *not* the candidate's own online time per
  recommendation when the candidate changes the states it visits: a StickyArtist session
  piles up plays of one artist (artist fatigue) and runs longer or shorter than the logger's,
  so its online per-recommendation mean averages over states the logger rarely reaches.
- `first`: time of the first recommendation of each session. Its context (who listens, the
  first track, what came before today) does not depend on the serving policy, so this value is
  exactly the candidate's online mean time of its first recommendation: the honest estimand to
  check OPE against an A/B test (tests/test_ope.py does, and the README shows the figures).
- `session`: time per session (the first track's time plus every recommendation's), by
  per-decision importance sampling (PDIS, "ips") and its per-step self-normalised form
  (WPDIS, "snips"). This *is* the candidate's online session time, but the weights multiply
  along the session, so the effective sample size collapses unless the candidate stays close
  to the logger; no doubly-robust session estimate is given (it would need a model of the
  future session value, which depends on every later reward).

Estimators per decision (w = candidate's probability of the logged track / logged propensity):
IPS mean(w r); SNIPS sum(w r) / sum(w); DM mean(sum_a candidate(a) q(x, a)); DR = DM + mean(w (r
- q(x, a_logged))). The reward model q is a ridge regression of the time played on a few
features of (session so far, track) — already heard in the session, plays of the track's
artist in the session and the time of the latest one, same artist as the session's first
track, the track's shrunk mean time when recommended and the share of that mean that is data —
cross-fitted on two halves of the users (each half is scored by the model fitted on the other
half; the track means a row is fitted with leave its own user's plays out, as they are out
when it is scored). Each decision is weighted by the candidate's importance weight, so q fits
best where the candidate plays: fitted unweighted it fits the logger's choices, and valued a
random track at 0.30 where the logs say 0.17, an error DR's correction carries whenever the
weights' mean strays from 1 (README, "Off-policy evaluation"). Where the candidate spreads mass
over the whole catalog (Random, exploration), its expected q is the listed tracks' exact sum
plus the rest's mass times the mean q over a seeded sample of the rest.

95% confidence intervals: percentile bootstrap over users (a user's decisions are not
independent), the whole estimator recomputed from per-user sums on each resample. The
effective sample size is Kish's (sum w)^2 / sum w^2. Support is checked by the mean weight: it
estimates the share of the candidate's choices the logger could have made (1 when the
logger's support covers the candidate's), so a mean weight whose CI lies below 1 means the
candidate picks tracks the logger never offered, and IPS/DR are biased low there (SNIPS
rescales, which is right only if the uncovered choices are as good as the covered ones).
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from botify.errors import BotifyError
from botify.events.duck import events_view
from botify.events.relational import ORDER, USABLE, session_number

ESTIMATORS = ("ips", "snips", "dm", "dr")
ESTIMANDS = ("step", "first", "session")
FLOOR_SAMPLES = 32  # tracks sampled to value a candidate's mass spread over the catalog
SHRINK = 5.0  # pseudo-counts pulling a track's mean time toward the overall mean

DECISIONS_SQL = """
WITH usable AS (
    SELECT * FROM events WHERE """ + USABLE + """ AND track IS NOT NULL
),
numbered AS (
    SELECT *, """ + session_number("true") + """ AS session FROM usable
)
SELECT "user", session, message = 'last' AS is_last, track, "time", recommendation, propensity,
       coalesce(treatment, '') AS treatment,
       row_number() OVER w - 1 AS step, lead(track) OVER w AS next_track, lead("time") OVER w AS reward,
       bool_or(message = 'last') OVER (PARTITION BY "user", session) AS complete
FROM numbered
WINDOW w AS (PARTITION BY "user", session ORDER BY """ + ORDER + """)
ORDER BY """ + ORDER + """
"""


@dataclass(frozen=True)
class Logged:
    """The logs' plays in the order the service took them (numpy columns), and which `/next`
    events are decisions to evaluate."""

    user: np.ndarray
    sid: np.ndarray  # session id, dense over (user, session)
    is_last: np.ndarray
    track: np.ndarray
    time: np.ndarray
    recommendation: np.ndarray
    propensity: np.ndarray
    step: np.ndarray
    reward: np.ndarray
    complete: np.ndarray
    decision: np.ndarray  # bool: a /next event of the chosen treatment with a known reward and propensity
    excluded: dict[str, int]


def read_logged(paths: list[str | Path], experiment: str | None = None, treatment: str | None = None) -> Logged:
    """The plays and decisions of the logs (files, directories, globs): DuckDB does the
    sessionizing (as the analysis numbers sessions) and the matching of each decision to the
    play that followed it."""
    with events_view(list(paths), experiment, ("recommendation", "propensity")) as connection:
        table = connection.execute(DECISIONS_SQL).fetchnumpy()
    if not len(table["user"]):
        raise BotifyError("the logs hold no usable events")
    column = {name: np.asarray(values) for name, values in table.items()}

    def filled(name: str, fill, dtype) -> np.ndarray:
        values = table[name]
        if isinstance(values, np.ma.MaskedArray):
            return values.filled(fill).astype(dtype)
        return np.asarray(values, dtype=dtype)

    users = column["user"].astype(np.int64)
    sessions = column["session"].astype(np.int64)
    _, sid = np.unique(users * (1 << 32) + sessions, return_inverse=True)
    is_next = ~column["is_last"].astype(bool)
    recommendation = filled("recommendation", -1, np.int64)
    propensity = filled("propensity", np.nan, np.float64)
    next_track = filled("next_track", -2, np.int64)
    reward = filled("reward", np.nan, np.float64)
    chosen = is_next.copy()
    if experiment is not None:
        treatments = column["treatment"].astype(str)
        if treatment is None:
            chosen &= treatments != ""
        else:
            present = sorted(set(treatments[is_next]) - {""})
            if treatment not in present:
                raise BotifyError(f"experiment {experiment} has no treatment {treatment!r} in these logs "
                                  f"(present: {', '.join(present) or 'none'})")
            chosen &= treatments == treatment
    followed = chosen & (next_track == recommendation) & np.isfinite(reward)
    known = followed & np.isfinite(propensity) & (propensity > 0)
    excluded = {"without a following play": int((chosen & ~followed).sum()),
                "without a propensity": int((followed & ~known).sum())}
    if not known.any():
        raise BotifyError("the logs hold no /next decisions with a propensity and a following play to evaluate "
                          "(propensities are logged since schema 2)")
    return Logged(users, sid.astype(np.int64), ~is_next, column["track"].astype(np.int64), column["time"].astype(float),
                  recommendation, propensity, column["step"].astype(np.int64), reward,
                  column["complete"].astype(bool), known, excluded)


@dataclass
class Replayed:
    """The candidate on each decision: its chance of the logged track, and its whole
    distribution (listed tracks in CSR form, the floor's mass and the tracks it excludes)."""

    chance: np.ndarray
    offsets: np.ndarray
    tracks: np.ndarray
    chances: np.ndarray
    floor_mass: np.ndarray
    blocked_offsets: np.ndarray
    blocked: np.ndarray
    answered_by: dict[str, int]
    seconds: float
    events: int


async def _replay(logged: Logged, chain, artist_of: list[int], store) -> Replayed:
    from botify.service.recommenders import Query
    from botify.service.stores import Listen

    size = chain.n_tracks
    chance, offsets, tracks, chances, floor_mass = [], [0], [], [], []
    blocked_offsets, blocked, answered_by = [0], [], {}
    users, listened, times = logged.user.tolist(), logged.track.tolist(), logged.time.tolist()
    closes, decisions, served = logged.is_last.tolist(), logged.decision.tolist(), logged.recommendation.tolist()
    started = time.perf_counter()
    for i, user in enumerate(users):
        track = listened[i]
        recorded = await store.listen(user, Listen(track, times[i], artist_of[track]), closes[i])
        if not decisions[i]:
            continue
        query = Query(user, track, times[i], recorded.session, recorded.history)
        distribution, member = await chain.distribution(query)
        answered_by[member] = answered_by.get(member, 0) + 1
        chance.append(distribution.chance(served[i]))
        tracks.extend(distribution.tracks)
        chances.extend(distribution.chances)
        offsets.append(len(tracks))
        if distribution.floor:
            floor_mass.append(distribution.floor_mass(size))
            blocked.extend(set(distribution.tracks) | set(distribution.excluded))
        else:
            floor_mass.append(0.0)
        blocked_offsets.append(len(blocked))
    seconds = time.perf_counter() - started
    as_int = lambda values: np.asarray(values, dtype=np.int64)  # noqa: E731
    return Replayed(np.asarray(chance), as_int(offsets), as_int(tracks), np.asarray(chances, dtype=float),
                    np.asarray(floor_mass), as_int(blocked_offsets), as_int(blocked), answered_by, seconds, len(users))


def replay(logged: Logged, catalog, spec, artifacts: dict) -> Replayed:
    """Replay the candidate `spec` (a RecommenderSpec, its artifacts read) on every decision,
    through the store the service runs with its default settings."""
    from botify.service.recommenders import Chain, Resources
    from botify.service.stores import EmbeddedStore
    from botify.service.stores.base import default

    store = EmbeddedStore(default("history_length"), max_users=max(int(np.unique(logged.user).size), 1))
    asyncio.run(store.load(catalog, "ope", artifacts))
    resources = Resources(catalog, store)
    chain = Chain(spec, resources)
    unknown = chain.unreplayable()
    if unknown:
        raise BotifyError(f"cannot evaluate {', '.join(unknown)} off-policy: it decides in its own recommend, so "
                          f"its probabilities are unknown (give it candidates() and let the serving step choose)")
    return asyncio.run(_replay(logged, chain, resources.artist_of, store))


def _track_stats(sums: np.ndarray, counts: np.ndarray, overall: float) -> np.ndarray:
    """A track's mean time shrunk toward `overall`, and the share of it that is data: the
    shrunk mean of a track the logs hardly hold is the logged mean, which is the logger's
    choices' (good ones), not a random track's; the share lets the model tell the two apart."""
    return np.column_stack([(sums + SHRINK * overall) / (counts + SHRINK), counts / (counts + SHRINK)])


class RewardModel:
    """Ridge regression of time played on features of (session so far, track), from the logs."""

    NAMES = ("bias", "heard in session", "artist plays", "artist played", "artist's latest time",
             "artist of first track", "track mean time", "track's share of data")
    DESCRIPTION = ("ridge regression of time played on: " + ", ".join(NAMES[1:]) +
                   "; weighted by the candidate's importance weights; cross-fitted on two halves of the users")

    def __init__(self, logged: Logged, artists: np.ndarray) -> None:
        self.artists = artists
        order = np.lexsort((logged.step, logged.sid))
        self.sid, self.step = logged.sid[order], logged.step[order]
        self.track, self.time = logged.track[order], logged.time[order]
        self.length = int(logged.step.max()) + 2
        first = np.full(int(logged.sid.max()) + 1, -1, dtype=np.int64)
        at_start = self.step == 0
        first[self.sid[at_start]] = self.track[at_start]
        self.first_track = first
        # Key widths: the logged plays' largest artist and track, plus one (`_count` uses them too).
        self.artist_width = int(artists[self.track].max()) + 1
        self.track_width = int(self.track.max()) + 1
        self.artist_keys, self.artist_times = self._index(artists[self.track], self.artist_width)
        self.track_keys, _ = self._index(self.track, self.track_width)

    def _index(self, values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        keys = (self.sid * width + values) * self.length + self.step
        order = np.argsort(keys, kind="stable")
        return keys[order], self.time[order]

    def _count(self, keys: np.ndarray, width: int, sid: np.ndarray, value: np.ndarray, step: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Plays of `value` in session `sid` up to `step` (inclusive), and the index of the latest."""
        base = (sid * width + value) * self.length
        low = np.searchsorted(keys, base, side="left")
        high = np.searchsorted(keys, base + step, side="right")
        return high - low, high - 1

    def features(self, sid: np.ndarray, step: np.ndarray, track: np.ndarray, track_stats: np.ndarray) -> np.ndarray:
        """The model's inputs; `track_stats` holds each pair's track mean time and the share of
        it that is data (n / (n + SHRINK)), as `_track_stats` makes them."""
        artist, artist_width, track_width = self.artists[track], self.artist_width, self.track_width
        inside_a = artist < artist_width
        inside_t = track < track_width
        plays, latest = self._count(self.artist_keys, artist_width, sid, np.where(inside_a, artist, 0), step)
        plays = np.where(inside_a, plays, 0)
        latest_time = np.where(plays > 0, self.artist_times[np.clip(latest, 0, None)], 0.0)
        heard, _ = self._count(self.track_keys, track_width, sid, np.where(inside_t, track, 0), step)
        heard = np.where(inside_t, heard, 0) > 0
        first_artist = self.artists[self.first_track[sid]]
        return np.column_stack([np.ones(len(track)), heard, np.minimum(plays, 5), plays > 0, latest_time,
                                artist == first_artist, track_stats]).astype(float)

    def fit(self, logged: Logged, rows: np.ndarray, fold: np.ndarray, n_tracks: int, weight: np.ndarray) -> None:
        """Fit one model per half of the users on the logged decisions `rows`, each weighted by
        `weight` (the candidate's importance weight: the fit is then best where the candidate
        plays, which is where DM and DR use it; unweighted in a half where they sum to 0)."""
        self.models, self.stats = [], []
        track, reward = logged.recommendation[rows], logged.reward[rows]
        weight = np.asarray(weight, dtype=float)
        residuals = np.empty(len(rows))
        for half in (0, 1):
            train = fold != half
            w = weight[train] if weight[train].sum() > 0 else np.ones(int(train.sum()))
            overall = reward[train].mean() if train.any() else 0.0
            sums = np.bincount(track[train], reward[train], minlength=n_tracks)
            counts = np.bincount(track[train], minlength=n_tracks)
            stats = _track_stats(sums, counts, overall)
            x = self.features(logged.sid[rows][train], logged.step[rows][train], track[train],
                              self._held_out_stats(logged.user[rows][train], track[train], reward[train], sums, counts,
                                                   overall))
            penalty = 1e-3 * w.sum() * np.eye(x.shape[1])
            penalty[0, 0] = 0.0
            coefficients = np.linalg.solve(x.T @ (x * w[:, None]) + penalty, x.T @ (w * reward[train]))
            self.models.append(coefficients)
            self.stats.append(stats)
            test = ~train
            x_test = self.features(logged.sid[rows][test], logged.step[rows][test], track[test], stats[track[test]])
            residuals[test] = reward[test] - np.clip(x_test @ coefficients, 0, 1)
        total = weight.sum()
        if total > 0:
            mean = (weight * reward).sum() / total
            spread = (weight * (reward - mean) ** 2).sum()
            self.r2 = float(1 - (weight * residuals**2).sum() / spread) if spread > 0 else float("nan")
        else:
            self.r2 = float("nan")

    @staticmethod
    def _held_out_stats(user: np.ndarray, track: np.ndarray, reward: np.ndarray, sums: np.ndarray, counts: np.ndarray,
                        overall: float) -> np.ndarray:
        """Each training row's track statistics without its own user's plays of the track: the
        model is scored on users whose plays are in no mean, so it must be fitted that way too.
        A mean that holds the row's own reward (for a track heard once, a sixth of it) makes
        the fit over-trust the mean, and leaves it no rows where the mean is all prior, as it
        is out of fold for most of the catalog."""
        _, pair, pair_counts = np.unique(user * (int(track.max()) + 1) + track, return_inverse=True,
                                         return_counts=True)
        pair_sums = np.bincount(pair, reward)
        return _track_stats(sums[track] - pair_sums[pair], counts[track] - pair_counts[pair], overall)

    def predict(self, half: np.ndarray, sid: np.ndarray, step: np.ndarray, track: np.ndarray) -> np.ndarray:
        """q(x, a) for pairs, each scored by the model fitted on the other half of the users."""
        out = np.empty(len(track))
        for model in (0, 1):
            use = half == model  # rows of half 0 are scored by the model fitted without them
            x = self.features(sid[use], step[use], track[use], self.stats[model][track[use]])
            out[use] = np.clip(x @ self.models[model], 0, 1)
        return out


@dataclass(frozen=True)
class Row:
    estimand: str
    estimator: str
    estimate: float
    low: float
    high: float
    ess: float | None
    n: int
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Result:
    rows: list[Row]
    candidate: str
    decisions: int
    users: int
    replay_seconds: float
    events: int
    reward_model: str
    reward_r2: float
    answered_by: dict[str, int]
    excluded: dict[str, int]
    bootstrap: int

    def as_dict(self) -> dict:
        return {"candidate": self.candidate, "decisions": self.decisions, "users": self.users,
                "replay": {"events": self.events, "seconds": round(self.replay_seconds, 3),
                           "events_per_second": round(self.events / max(self.replay_seconds, 1e-9))},
                "answered_by": self.answered_by, "excluded": self.excluded,
                "reward_model": {"model": self.reward_model, "cross_fitted_r2": _finite(self.reward_r2)},
                "ci": f"95% percentile bootstrap over users, {self.bootstrap} resamples",
                "rows": [{"estimand": row.estimand, "estimator": row.estimator, "estimate": _finite(row.estimate),
                          "ci_low": _finite(row.low), "ci_high": _finite(row.high),
                          "ess": None if row.ess is None else round(row.ess, 1), "n": row.n,
                          "warnings": row.warnings} for row in self.rows]}


def _finite(value: float) -> float | None:
    return round(float(value), 6) if np.isfinite(value) else None


def _resamples(users: int, count: int, seed: int) -> np.ndarray:
    """`count` bootstrap resamples of `users` users: how often each is drawn (seeded)."""
    rng = np.random.default_rng([seed, users])
    return rng.multinomial(users, np.full(users, 1.0 / users), size=count).astype(float)


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _ess(weights: np.ndarray) -> float:
    total = float((weights**2).sum())
    return float(weights.sum() ** 2 / total) if total > 0 else 0.0


def _support_warnings(weights: np.ndarray, mean_draws: np.ndarray, ess: float, min_ess: float) -> list[str]:
    found = []
    mean = float(weights.mean())
    low, high = _interval(mean_draws)
    if high < 1:
        found.append(f"insufficient support: mean weight {mean:.2f} [{low:.2f}, {high:.2f}] < 1, about "
                     f"{1 - mean:.0%} of the candidate's choices were never possible under the logger")
    if ess < min_ess:
        found.append(f"ESS {ess:.0f} < {min_ess:g}: too few logged decisions resemble the candidate's")
    return found


def estimate(logged: Logged, replayed: Replayed, model: RewardModel, catalog_size: int, estimators: tuple[str, ...],
             estimands: tuple[str, ...], bootstrap: int = 1000, seed: int = 0, min_ess: float = 100.0) -> list[Row]:
    """The table's rows: each estimand × estimator, with bootstrap CIs, ESS and warnings."""
    rows_index = np.flatnonzero(logged.decision)
    weight = replayed.chance / logged.propensity[rows_index]
    reward = logged.reward[rows_index]
    users, user_of = np.unique(logged.user[rows_index], return_inverse=True)
    draws = _resamples(users.size, bootstrap, seed)
    q_logged, q_candidate = _model_terms(logged, replayed, model, rows_index, catalog_size, seed)
    out = []
    for estimand in estimands:
        if estimand == "session":
            out.extend(_session_rows(logged, rows_index, weight, reward, user_of, users.size, draws, estimators,
                                     min_ess))
            continue
        keep = np.ones(len(rows_index), dtype=bool) if estimand == "step" else logged.step[rows_index] == 0
        w, r, g = weight[keep], reward[keep], user_of[keep]
        columns = np.column_stack([np.ones(keep.sum()), w * r, w, q_candidate[keep],
                                   q_candidate[keep] + w * (r - q_logged[keep])])
        per_user = np.zeros((users.size, columns.shape[1]))
        np.add.at(per_user, g, columns)
        boot = draws @ per_user
        total = per_user.sum(axis=0)
        ess = _ess(w)
        warnings = _support_warnings(w, boot[:, 2] / boot[:, 0], ess, min_ess)
        ratios = {"ips": (1, 0), "snips": (1, 2), "dm": (3, 0), "dr": (4, 0)}
        for name in estimators:
            top, bottom = ratios[name]
            with np.errstate(divide="ignore", invalid="ignore"):
                low, high = _interval(boot[:, top] / boot[:, bottom])
            value = total[top] / total[bottom] if total[bottom] else float("nan")
            weighted = name != "dm"
            out.append(Row(estimand, name, float(value), low, high, ess if weighted else None, int(keep.sum()),
                           warnings if weighted else ["reward model only: biased where the model is wrong"]))
    return out


def _model_terms(logged: Logged, replayed: Replayed, model: RewardModel, rows: np.ndarray, catalog_size: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """q(x, logged track) and the candidate's expected q(x, a) on every decision."""
    half = (logged.user[rows] * 2654435761 % (1 << 32)) % 2
    model.fit(logged, rows, half, catalog_size, replayed.chance / logged.propensity[rows])
    sid, step = logged.sid[rows], logged.step[rows]
    q_logged = model.predict(half, sid, step, logged.recommendation[rows])
    counts = np.diff(replayed.offsets)
    owner = np.repeat(np.arange(len(rows)), counts)
    q_listed = model.predict(half[owner], sid[owner], step[owner], replayed.tracks)
    q_candidate = np.bincount(owner, replayed.chances * q_listed, minlength=len(rows)).astype(float)
    spread = np.flatnonzero(replayed.floor_mass > 0)
    if spread.size:
        rng = np.random.default_rng([seed, 1])
        sample = rng.integers(0, catalog_size, (spread.size, FLOOR_SAMPLES))
        blocked_counts = np.diff(replayed.blocked_offsets)
        blocked_keys = np.repeat(np.arange(len(rows)), blocked_counts) * catalog_size + replayed.blocked
        free = ~np.isin(spread[:, None] * catalog_size + sample, blocked_keys)
        owner = np.repeat(spread, FLOOR_SAMPLES)
        q = model.predict(half[owner], sid[owner], step[owner], sample.ravel()).reshape(sample.shape)
        with np.errstate(invalid="ignore"):
            mean = np.where(free.any(axis=1), (q * free).sum(axis=1) / np.maximum(free.sum(axis=1), 1), q.mean(axis=1))
        q_candidate[spread] += replayed.floor_mass[spread] * mean
    return q_logged, q_candidate


def _session_rows(logged: Logged, rows: np.ndarray, weight: np.ndarray, reward: np.ndarray, user_of: np.ndarray,
                  n_users: int, draws: np.ndarray, estimators: tuple[str, ...], min_ess: float) -> list[Row]:
    """Per-session PDIS ("ips") and per-step self-normalised WPDIS ("snips") over complete
    sessions whose every decision could be evaluated."""
    sid = logged.sid[rows]
    sessions = int(logged.sid.max()) + 1
    steps_in = np.bincount(logged.sid[(~logged.is_last)], minlength=sessions)
    evaluated = np.bincount(sid, minlength=sessions)
    starts = logged.step == 0
    first_time = np.zeros(sessions)
    first_time[logged.sid[starts]] = logged.time[starts]
    complete = np.zeros(sessions, dtype=bool)
    complete[logged.sid] = logged.complete
    whole = complete & (evaluated == steps_in) & (evaluated > 0)
    keep = whole[sid]
    if not keep.any():
        return [Row("session", name, float("nan"), float("nan"), float("nan"), 0.0, 0,
                    ["no complete session with every decision evaluable"]) for name in estimators if name in ("ips", "snips")]
    sid, w, r, g, step = sid[keep], weight[keep], reward[keep], user_of[keep], logged.step[rows][keep]
    order = np.lexsort((step, sid))
    sid, w, r, g, step = sid[order], w[order], r[order], g[order], step[order]
    log_w = np.log(np.maximum(w, 1e-300))
    zero = w == 0
    cumulative = np.cumsum(log_w)
    starts_at = np.r_[0, np.flatnonzero(np.diff(sid)) + 1]
    start_of = np.repeat(starts_at, np.diff(np.r_[starts_at, len(sid)]))
    before = np.where(start_of > 0, cumulative[start_of - 1], 0.0)
    dead = np.maximum.accumulate(np.where(zero, np.arange(len(sid)), -1))  # latest zero weight so far
    W = np.where(dead >= start_of, 0.0, np.exp(cumulative - before))
    ended = np.r_[starts_at[1:] - 1, len(sid) - 1]
    final = W[ended]
    session_ids = sid[starts_at]
    session_user = g[starts_at]
    n = len(session_ids)
    ess = _ess(final)
    columns = np.column_stack([np.ones(n), first_time[session_ids] + np.bincount(
        np.repeat(np.arange(n), np.diff(np.r_[starts_at, len(sid)])), W * r, minlength=n), final])
    per_user = np.zeros((n_users, 3))
    np.add.at(per_user, session_user, columns)
    boot = draws @ per_user
    # A product of weights has mean 1 in expectation but is heavy-tailed: its sample mean says
    # little about support, so only the effective sample size is checked here.
    warnings = [] if ess >= min_ess else [f"ESS {ess:.0f} < {min_ess:g}: the session's weights multiply; too few "
                                          f"logged sessions resemble the candidate's"]
    out = []
    if "ips" in estimators:
        low, high = _interval(boot[:, 1] / boot[:, 0])
        out.append(Row("session", "ips", float(per_user[:, 1].sum() / n), low, high, ess, n, warnings))
    if "snips" in estimators:
        length = int(step.max()) + 1
        numerator = np.zeros((n_users, length))
        np.add.at(numerator, (g, step), W * r)
        alive = np.zeros((n_users, length))
        np.add.at(alive, (g, step), W)
        after = np.zeros((n_users, length + 1))
        np.add.at(after, (session_user, step[ended] + 1), final)
        denominator = alive + np.cumsum(after, axis=1)[:, :length]
        first = np.zeros(n_users)
        np.add.at(first, session_user, first_time[session_ids])
        counts = per_user[:, 0]

        def value(num, den, firsts, count):
            with np.errstate(divide="ignore", invalid="ignore"):
                steps = np.where(den > 0, num / den, 0.0)
            return firsts / count + steps.sum(axis=-1)

        point = value(numerator.sum(axis=0), denominator.sum(axis=0), first.sum(), counts.sum())
        boot_values = value(draws @ numerator, draws @ denominator, draws @ first, draws @ counts)
        low, high = _interval(boot_values)
        out.append(Row("session", "snips", float(point), low, high, ess, n, warnings))
    return out


def read_candidate(text: str, catalog, artifacts_dir: Path | None):
    """A candidate from the command line: a recommender spec (a name such as `sticky_artist`,
    an inline TOML table, or a TOML/JSON/YAML file holding one) or a trained artifact directory
    (`botify train ... --out DIR`, or one file in it), served as the loop serves such lists.
    Returns (spec, artifacts, label)."""
    from botify.artifacts import ArtifactError, read_artifacts, read_manifest
    from botify.config import read_mapping, validate_config
    from botify.service.experiments import RecommenderSpec
    from botify.service.recommenders import check_spec

    path = Path(text)
    if path.is_dir() or (path.is_file() and path.parent.joinpath("manifest.json").is_file()
                         and path.suffix in (".json", ".jsonl") and path.name != "manifest.json"):
        directory = path if path.is_dir() else path.parent
        try:
            manifest = read_manifest(directory)
        except ArtifactError as error:
            raise BotifyError(str(error)) from error
        files = manifest.get("artifacts") or {manifest.get("artifact"): manifest.get("artifact_kind")}
        if path.is_file():
            files = {path.name: files.get(path.name)}
        elif len(files) != 1:
            raise BotifyError(f"{directory} holds {', '.join(files)}: name one (e.g. {directory / next(iter(files))})")
        (file, kind), = files.items()
        name = f"{directory.name}/{file}"
        data = {"top": {"kind": "top_pop", "k": 100}, "user": {"kind": "indexed"},
                "track": {"kind": "i2i", "pick": "ranked", "artist_discount": 0.7}}.get(kind)
        if data is None:
            raise BotifyError(f"{directory / file}: unknown artifact kind {kind!r}")
        spec = RecommenderSpec.model_validate({**data, "artifact": name, "fallback": "random"})
        artifacts_dir = directory.parent
    elif path.is_file():
        spec = validate_config(RecommenderSpec, read_mapping(path), source=str(path))
    else:
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                data = tomllib.loads(f"candidate = {stripped}")["candidate"]
            except tomllib.TOMLDecodeError as error:
                raise BotifyError(f"--candidate {text!r}: not a TOML inline table: {error}") from error
        elif stripped.replace("_", "").replace(":", "").replace(".", "").isalnum():
            data = stripped
        else:
            raise BotifyError(f"--candidate {text!r}: neither a recommender name, an inline table, a file nor a "
                              f"directory")
        spec = validate_config(RecommenderSpec, data if isinstance(data, dict) else {"kind": data},
                               source="--candidate")
    names = {item.artifact for item in spec.chain() if item.artifact}
    try:
        artifacts = read_artifacts(artifacts_dir, names, catalog.size, strict=False)
        check_spec(spec, artifacts)
    except (ArtifactError, KeyError) as error:
        raise BotifyError(f"--candidate: {error}") from error
    return spec, artifacts, spec.model_dump_json(exclude_defaults=True)


def evaluate_candidate(paths: list[str | Path], catalog_file: Path, candidate: str, artifacts_dir: Path | None = None,
                       estimators: tuple[str, ...] = ("ips", "snips", "dr"), estimands: tuple[str, ...] = ESTIMANDS,
                       experiment: str | None = None, treatment: str | None = None, bootstrap: int = 1000,
                       seed: int = 0, min_ess: float = 100.0) -> Result:
    """`botify ope`: read the logs, replay the candidate, estimate."""
    from botify.world.model import Catalog, catalog_path

    catalog = Catalog.load(catalog_path(catalog_file))
    spec, artifacts, label = read_candidate(candidate, catalog, artifacts_dir)
    logged = read_logged(paths, experiment, treatment)
    if int(max(logged.track.max(), logged.recommendation.max())) >= catalog.size:
        raise BotifyError(f"the logs name tracks outside the catalog (0..{catalog.size - 1}): another world's logs?")
    replayed = replay(logged, catalog, spec, artifacts)
    model = RewardModel(logged, catalog.artist_codes.astype(np.int64))
    rows = estimate(logged, replayed, model, catalog.size, estimators, estimands, bootstrap, seed, min_ess)
    return Result(rows, label, int(logged.decision.sum()), int(np.unique(logged.user[logged.decision]).size),
                  replayed.seconds, replayed.events, RewardModel.DESCRIPTION, model.r2, replayed.answered_by,
                  logged.excluded, bootstrap)
