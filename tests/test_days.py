"""Listeners over days: returning listeners, trending tracks, retention metrics, the time-aware model."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from botify.analysis.engine import user_metrics
from botify.analysis.retention import retention_pre, retention_users
from botify.analysis.stats import analyze
from botify.sim import AgentSpec, SimSettings, Simulation
from botify.sim.days import ListenerDays, Population, ReturningSpec, TrendingSpec, daily_hype, listener_days
from botify.train.dataset import Interactions
from botify.train.popularity import TopPop
from botify.train.trending import Trending
from botify.world import WorldSpec, generate_world

# sha256 of two default days (1,000 sessions each, seed 5, chunks of 300) on the small world, as
# made by the code before returning listeners and trends existed (commit 559d34f): off by
# default, the simulator must give exactly the same sessions.
BEFORE = "c36cac054e6a0be5a99e5f1e918af33a28101647a99ea8a72e244d033da198a9"


def _days(world_dir, world, days: int, **settings):
    simulation = Simulation(world_dir, AgentSpec(kind=settings.pop("agent", "random")), SimSettings(**settings),
                            world=world)
    try:
        return [simulation.run_day(day).result for day in range(1, days + 1)], simulation
    finally:
        simulation.close()


def test_defaults_are_the_course_model_byte_for_byte(small_world_dir: Path, small_world) -> None:
    assert SimSettings().returning is None and SimSettings().trending is None
    results, _ = _days(small_world_dir, small_world, 2, episodes=1000, seed=5, chunk_size=300)
    digest = hashlib.sha256()
    for result in results:
        for column in (result.episode, result.user, np.round(result.time, 2), result.tracks, result.truncated):
            digest.update(np.ascontiguousarray(column).tobytes())
    assert digest.hexdigest() == BEFORE


def _outcomes(results) -> list[tuple]:
    return [(r.user.tolist(), np.round(r.time, 6).tolist(), r.tracks.tolist()) for r in results]


def test_returning_listeners_are_reproducible(small_world_dir: Path, small_world) -> None:
    """Same seed, same listeners and sessions: in one process, over two, and through a state file."""
    options = dict(episodes=150, seed=3, chunk_size=64, returning=ReturningSpec(), trending=TrendingSpec())
    first, simulation = _days(small_world_dir, small_world, 3, **options)
    again, _ = _days(small_world_dir, small_world, 3, **options)
    assert _outcomes(first) == _outcomes(again)
    pooled, _ = _days(small_world_dir, small_world, 3, processes=2, **options)
    assert _outcomes(pooled) == _outcomes(first)
    other, _ = _days(small_world_dir, small_world, 3, **{**options, "seed": 4})
    assert _outcomes(other) != _outcomes(first)
    # Day 1: 150 first-time listeners, some with several sessions; later days hold returning
    # listeners and first-timers.
    assert len(np.unique(first[0].user)) == 150 and len(first[0].user) > 150
    assert np.array_equal(first[0].episode, np.arange(len(first[0].user)))
    assert len(np.unique(first[1].user)) > 150 and np.isin(first[1].user, first[0].user).sum() > 0

    # `botify loop` carries the state in a file between days: day 3 from day 2's file is the same day.
    state = simulation.population
    assert state.last_day.max() == 3 and state.days.sum() == sum(len(np.unique(r.user)) for r in first)
    two, on_two = _days(small_world_dir, small_world, 2, **options)
    path = on_two.population.save(small_world_dir.parent / "listeners-test.npz")
    resumed = Simulation(small_world_dir, AgentSpec(kind="random"), SimSettings(**options), world=small_world)
    resumed.population = Population.load(path)
    assert _outcomes([resumed.run_day(3).result]) == _outcomes(first[2:])
    resumed.close()


def test_good_sessions_bring_listeners_back(small_world_dir: Path, small_world) -> None:
    """The oracle's long sessions keep its listeners; Random's population decays."""
    options = dict(episodes=400, seed=2, returning=ReturningSpec())  # every listener of the world on day 1
    kept, per_listener = {}, {}
    for agent in ("random", "oracle"):
        results, _ = _days(small_world_dir, small_world, 4, agent=agent, **options)
        kept[agent] = [len(np.unique(r.user)) for r in results]
        per_listener[agent] = len(results[2].user) / kept[agent][2]  # sessions per listener on day 3
        came_back = np.isin(results[1].user, results[0].user).mean()
        assert 0 < came_back <= 1
    assert kept["random"][0] == kept["oracle"][0] == 400
    assert kept["random"][1] > kept["random"][2] > kept["random"][3]  # decay without good recommendations
    assert all(oracle > random for oracle, random in zip(kept["oracle"][1:], kept["random"][1:]))
    assert per_listener["oracle"] > per_listener["random"] > 1  # satisfied listeners come more often in a day


def test_return_chance_follows_satisfaction_against_expectation() -> None:
    spec = ReturningSpec(expectation_sd=0)
    population = Population.new(spec, 4, seed=1)
    population.update(1, np.array([0, 1, 2]), np.array([spec.expectation, 4 * spec.expectation, 0.5]))
    chance = population.return_chance(2)
    assert chance[0] == pytest.approx(spec.base_return) and chance[1] > chance[0] > chance[2] and chance[3] == 0
    assert population.return_chance(3)[0] == pytest.approx(spec.base_return * spec.recall)  # a day away
    population.update(2, np.array([0]), np.array([3 * spec.expectation]))  # the weighted mean moves up
    assert population.recent[0] == pytest.approx((1 - spec.smoothing) * spec.expectation
                                                  + spec.smoothing * 3 * spec.expectation)


def test_trending_tracks_are_opened_on_and_played_longer(small_world_dir: Path, small_world) -> None:
    spec = TrendingSpec()
    hype = daily_hype(spec, 5, 2, small_world.catalog.size)
    assert np.count_nonzero(hype) == 2 * spec.tracks and hype.max() == pytest.approx(spec.strength)
    assert np.array_equal(hype, daily_hype(spec, 5, 2, small_world.catalog.size))
    assert not np.array_equal(hype, daily_hype(spec, 6, 2, small_world.catalog.size))  # seeded by (seed, day)

    from botify.sim.engine import ListenerModel

    model = ListenerModel(small_world)
    rng = np.random.default_rng(0)
    users = np.arange(small_world.users.size)
    plain = model.start(users, rng)
    model.hype, model.hype_start_share = hype, spec.start_share
    trending = model.start(users, np.random.default_rng(0))
    opened = (hype[trending.last_track] > 0).mean()
    assert (hype[plain.last_track] > 0).mean() < 0.05 and abs(opened - spec.start_share) < 0.08
    # A hyped track is played longer than the same track without the hype, by the same listeners.
    track = np.full(len(users), int(np.argmax(hype)))
    boosted = model.step(trending, track, np.random.default_rng(1)).time
    model.hype = None
    assert boosted.mean() > model.step(plain, track, np.random.default_rng(1)).time.mean() + 0.1


def test_dynamics_config(tmp_path: Path) -> None:
    assert listener_days() == ListenerDays()
    assert listener_days(returning=True).returning == ReturningSpec()
    (tmp_path / "days.toml").write_text("[trending]\ntracks = 3\n")
    found = listener_days(tmp_path / "days.toml", returning=True)
    assert found.trending.tracks == 3 and found.returning == ReturningSpec()
    (tmp_path / "bad.toml").write_text("[returning]\nbase = 0.5\n")
    with pytest.raises(Exception, match="returning.base: Extra inputs are not permitted"):
        listener_days(tmp_path / "bad.toml")


def _log(path: Path, day: int, sessions: dict[int, tuple[str, int]]) -> Path:
    """A day's hand-made event log: user → (treatment, finished sessions of one track each)."""
    lines, clock = [], day * 1_000_000
    for user, (treatment, count) in sessions.items():
        for _ in range(count):
            for message in ("next", "last"):
                clock += 10
                lines.append(json.dumps({"message": message, "timestamp": clock, "user": user, "track": 1,
                                         "time": 0.5, "latency": 0.001, "experiments": {"X": treatment}}))
    path.mkdir(parents=True, exist_ok=True)
    (path / "events-1-1.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_retention_metrics_on_a_hand_made_log(tmp_path: Path) -> None:
    plan = {  # day → user → (treatment, sessions)
        1: {1: ("C", 1), 5: ("T1", 2)},
        2: {1: ("C", 1), 2: ("T1", 2), 3: ("C", 1)},
        3: {1: ("C", 2), 4: ("T1", 1)},
        4: {1: ("C", 1), 2: ("T1", 1), 5: ("T1", 1)},
    }
    tables = {day: user_metrics([_log(tmp_path / f"day{day}", day, users)], "X")[0] for day, users in plan.items()}
    found = retention_users({day: tables[day] for day in (2, 3, 4)})
    assert found["user"].tolist() == [1, 2, 3, 4, 5]
    assert found["treatment"].tolist() == ["C", "T1", "C", "T1", "T1"]
    assert found["days_active"].tolist() == [3, 2, 1, 1, 1]
    assert found["run_sessions"].tolist() == [4, 3, 1, 1, 1]
    # Days 2 and 3 have a next day: user 1 came back after both, 2 after neither of its one
    # (day 4 has none), 3 and 4 did not; 5 was first seen on the last day: no return to judge.
    assert found["return_rate"][:4].tolist() == [1.0, 0.0, 0.0, 0.0] and np.isnan(found["return_rate"][4])
    pre = retention_pre(found, {1: user_metrics([tmp_path / "day1"], None)[0]})
    assert pre["days_active"].tolist() == [1, 0, 0, 0, 1] and pre["run_sessions"].tolist() == [1, 0, 0, 0, 2]
    result = analyze(found, "X", "C", treatments=["C", "T1"], metrics=("days_active", "return_rate", "run_sessions"))
    means = {(item.treatment, item.metric): (item.count, item.mean) for item in result.stats}
    assert means[("C", "days_active")] == (2, 2.0) and means[("T1", "days_active")] == (3, 4 / 3)
    assert means[("C", "return_rate")] == (2, 0.5) and means[("T1", "return_rate")] == (2, 0.0)  # NaN left out
    assert means[("T1", "run_sessions")] == (3, 5 / 3)
    assert {item.metric for item in result.comparisons} == {"days_active", "return_rate", "run_sessions"}


def _interactions(users, tracks, sessions, starts, positions=None) -> Interactions:
    size = len(users)
    return Interactions(np.array(users), np.array(tracks), np.ones(size), np.array(sessions),
                        np.array(positions if positions is not None else [0] * size), np.array(starts),
                        np.array(starts))


def test_trending_weighs_recent_first_plays() -> None:
    from botify.world.model import Catalog

    catalog = Catalog.from_records([{"track": i, "artist": f"a{i}"} for i in range(4)])
    # Track 0 was opened on three times long ago, track 1 twice lately; track 2 played (not opened) lately.
    train = _interactions([1, 2, 3, 4, 5, 5], [0, 0, 0, 1, 1, 2], [0, 0, 0, 0, 0, 0], [1, 2, 3, 10, 11, 11],
                          [0, 0, 0, 0, 0, 1])
    assert Trending(half_life=0).fit(train, catalog).top == [0, 1]  # the twin: counts alone
    assert Trending(half_life=1).fit(train, catalog).top == [1, 0]
    assert Trending(half_life=0, plays="all").fit(train, catalog).top == TopPop().fit(train, catalog).top


# A world with enough listeners for an A/B effect on retention in a few seconds.
CROWD = WorldSpec(seed=7, tracks=800, users=3000, dim=16)


@pytest.fixture(scope="module")
def crowd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("crowd")
    generate_world(CROWD).save(directory)
    return directory


def _loop(cwd: Path, plan: str, *options: str) -> dict:
    (cwd / "plan.toml").write_text(plan)
    run = subprocess.run([sys.executable, "-m", "botify", "loop", "--experiment", "plan.toml", "--dir", "run", *options],
                         cwd=cwd, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 0, run.stderr + run.stdout
    return json.loads((cwd / "run" / "summary.json").read_text())


STICKY = """
[[experiments]]
name = "KEEP"
treatments = ["random", { recommender = { kind = "sticky_artist", fallback = "random" } }]
"""


def test_better_sessions_raise_the_return_rate(crowd_dir: Path, tmp_path: Path) -> None:
    """StickyArtist makes sessions clearly longer than Random; with returning listeners its
    listeners also come back more often, and the loop's analysis says so."""
    summary = _loop(tmp_path, STICKY, "--days", "3", "--world", str(crowd_dir), "--day1-episodes", "1500",
                    "--episodes", "750", "--returning")
    assert all((tmp_path / "run" / f"day{day}" / "listeners.npz").is_file() for day in (1, 2, 3))
    second, third = summary["days"]
    rows = {row["treatment"]: row for row in second["treatments"]}
    assert rows["T1"]["vs_control"]["ci_pct"][0] > 10  # clearly better sessions
    assert [entry["retention"]["days"] for entry in summary["days"]] == [[2], [2, 3]]
    retention = {row["treatment"]: row for row in third["retention"]["treatments"]}
    assert third["retention"]["cuped"]
    assert retention["C"]["users"] + retention["T1"]["users"] > 2000
    effect = retention["T1"]["vs_control"]["return_rate"]
    assert retention["T1"]["return_rate"] > retention["C"]["return_rate"] and effect["ci_pct"][0] > 0, effect
    assert retention["T1"]["vs_control"]["days_active"]["effect_pct"] > 0
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Day 3: retention in KEEP over days 2-3" in report


# The README's comparison (examples/trending.toml), its half-life scaled to this test's 2,000-session days.
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "trending.toml"
TWINS = EXAMPLE.read_text().replace("half_life = 10000", "half_life = 2000")


def test_the_time_aware_model_follows_the_trend(crowd_dir: Path, tmp_path: Path) -> None:
    """With trending tracks, the decayed popularity beats its time-unaware twin once the logs
    span days with different trends (day 2 serves lists learned from day 1 alone)."""
    assert "half_life = 2000" in TWINS
    summary = _loop(tmp_path, TWINS, "--days", "4", "--world", str(crowd_dir), "--day1-episodes", "2000",
                    "--episodes", "2000", "--trending", "--compare", "T1")
    last = {row["treatment"]: row for row in summary["days"][-1]["treatments"]}
    assert last["T2"]["vs_T1"]["ci_pct"][0] > 0, last["T2"]["vs_T1"]
    # Every day's CUPED pre-period is day 1 (untreated): a large raw difference keeps its sign.
    for day in summary["days"]:
        rows = {row["treatment"]: row for row in day["treatments"]}
        for name in ("T1", "T2"):
            raw = rows[name]["mean_time_per_session"] / rows["C"]["mean_time_per_session"] - 1
            if abs(raw) > 0.2:
                assert np.sign(rows[name]["vs_control"]["effect_pct"]) == np.sign(raw), (day["day"], name)
