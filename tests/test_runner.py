"""Simulated days: determinism by seed (also across processes), agents and summaries."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from botify.errors import BotifyError
from botify.sim import (
    Agent, AgentSpec, ConsoleAgent, ListenerModel, Observation, SimSettings, Simulation, make_agent, run_chunk,
)
from botify.world import World


def _day(world_dir: Path, world: World, kind: str = "random", **settings) -> np.ndarray:
    options = {"episodes": 900, "seed": 3, "chunk_size": 256, **settings}
    simulation = Simulation(world_dir, AgentSpec(kind=kind), SimSettings(**options), world=world)
    try:
        summary = simulation.run_day(1)
    finally:
        simulation.close()
    result = summary.result
    return np.stack([result.episode, result.user, result.time, result.tracks])


def test_same_seed_same_sessions_in_one_process_or_two(small_world_dir: Path, small_world: World) -> None:
    one = _day(small_world_dir, small_world)
    np.testing.assert_array_equal(one, _day(small_world_dir, small_world))
    np.testing.assert_array_equal(one, _day(small_world_dir, small_world, processes=2))
    assert not np.array_equal(one, _day(small_world_dir, small_world, seed=4))


def test_every_episode_is_reported_once(small_world_dir: Path, small_world: World) -> None:
    episode, user, time, tracks = _day(small_world_dir, small_world)
    np.testing.assert_array_equal(episode, np.arange(900))
    assert (time >= 1.0).all() and (tracks >= 2).all()
    assert (user < small_world.users.size).all()


def test_users_are_distinct_within_a_chunk_unless_drawn_with_replacement(small_world_dir: Path,
                                                                          small_world: World) -> None:
    """botify draws a chunk's users without replacement; `replace_users` (`--replace-users`)
    draws them as the course's simulator did, with repeats, still seeded."""
    users = _day(small_world_dir, small_world, chunk_size=100)[1]
    assert all(len(set(users[i:i + 100])) == 100 for i in range(0, 900, 100))
    replaced = _day(small_world_dir, small_world, chunk_size=100, replace_users=True)[1]
    assert any(len(set(replaced[i:i + 100])) < 100 for i in range(0, 900, 100))
    np.testing.assert_array_equal(replaced, _day(small_world_dir, small_world, chunk_size=100, replace_users=True)[1])


def test_oracle_beats_random_by_far(small_world_dir: Path, small_world: World) -> None:
    random_time = _day(small_world_dir, small_world)[2].mean()
    oracle_time = _day(small_world_dir, small_world, kind="oracle", episodes=300)[2].mean()
    assert oracle_time > 3 * random_time


class RecordingAgent(Agent):
    """Repeats the last track and remembers what it saw: every session ends by its budget."""

    def __init__(self, world: World) -> None:
        self.seen_steps: list[int] = []
        self.ended = 0

    def next(self, observation: Observation) -> np.ndarray:
        self.seen_steps.append(observation.step)
        return observation.track.copy()

    def last(self, observation: Observation) -> None:
        self.ended += observation.size


def test_custom_agent_by_module_path(small_world_dir: Path, small_world: World) -> None:
    spec = AgentSpec(kind="tests.test_runner:RecordingAgent")
    simulation = Simulation(small_world_dir, spec, SimSettings(episodes=50, seed=1), world=small_world)
    summary = simulation.run_day(1)
    agent = simulation._agent
    assert agent.ended == 50
    # Repeats always play 0.0, so every session lasts exactly its budget (5) of steps.
    assert summary.time == (1.0, 0.0) and summary.tracks[0] == 6.0
    assert agent.seen_steps == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("kind", "message"),
    [("nosuch", "unknown agent"), ("botify.nope:Agent", "cannot load agent"), ("botify.world:World", "cannot build"), ("builtins:repr", "built a str, not a"),
     ("remote", "needs --url")],
)
def test_bad_agent_specs_are_explained(small_world: World, kind: str, message: str) -> None:
    with pytest.raises(BotifyError, match=message):
        make_agent(AgentSpec(kind=kind), small_world)


def test_console_agent_searches_and_takes_ids(small_world: World) -> None:
    artist_word = small_world.catalog.records[5]["artist"].split()[-1]
    answers = itertools.chain(["", "zzzz-not-there", artist_word, "7"], itertools.repeat("5"))
    written: list[str] = []
    agent = ConsoleAgent(small_world, read=lambda prompt: next(answers), write=written.append)
    settings = SimSettings(episodes=1, seed=0, chunk_size=1)
    result = run_chunk(ListenerModel(small_world), agent, settings, day=1, chunk=0)
    assert result.tracks[0] >= 4
    assert any("nothing matches 'zzzz-not-there'" in line for line in written)
    assert any(line.strip().startswith("5:") for line in written)
    assert any("session over" in line for line in written)
