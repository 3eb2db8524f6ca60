"""The Gymnasium view of one session."""

from __future__ import annotations

import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from botify import ENV_ID
from botify.sim import RecEnv
from botify.world import World


@pytest.mark.filterwarnings("error")
def test_gymnasium_make_after_import_botify_passes_the_env_checker(small_world_dir) -> None:
    """`import botify` registers botify/Listening-v0 (checked in a fresh interpreter); the env
    made from a world directory passes Gymnasium's checker without a warning."""
    made = subprocess.run([sys.executable, "-c", "import botify, gymnasium, sys; "
                           "env = gymnasium.make('botify/Listening-v0', world=sys.argv[1]); print(env.unwrapped.action_space)",
                           str(small_world_dir)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and made.stdout.startswith("Discrete("), made.stderr
    for render_mode in (None, "ansi"):
        env = gymnasium.make(ENV_ID, world=small_world_dir, render_mode=render_mode)
        check_env(env.unwrapped, skip_render_check=render_mode is None)


def _rollout(env: RecEnv, seed: int) -> list[tuple]:
    observation, _ = env.reset(seed=seed)
    trajectory = [(int(observation["user"]), int(observation["track"]))]
    done = False
    while not done:
        action = env.action_space.sample()
        observation, reward, terminated, truncated, info = env.step(action)
        trajectory.append((int(observation["track"]), reward))
        done = terminated or truncated
    trajectory.append(info["session_time"])
    return trajectory


def test_same_seed_same_session(small_world: World) -> None:
    env = RecEnv(small_world)
    env.action_space.seed(5)
    first = _rollout(env, seed=11)
    env.action_space.seed(5)
    assert _rollout(env, seed=11) == first
    env.action_space.seed(5)
    assert _rollout(env, seed=12) != first


def test_reward_sums_to_session_time_and_user_option(small_world: World) -> None:
    env = RecEnv(small_world, max_steps=400, render_mode="ansi")
    observation, info = env.reset(seed=1, options={"user": 17})
    assert observation["user"] == 17 and info["session_time"] == 1.0
    total, done = 1.0, False
    while not done:
        observation, reward, terminated, truncated, info = env.step(int(env.np_random.integers(small_world.catalog.size)))
        total += reward
        done = terminated or truncated
    assert info["session_time"] == pytest.approx(total)
    assert "user 17" in env.render()


def test_bad_use_is_explained(small_world: World) -> None:
    env = RecEnv(small_world)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    with pytest.raises(ValueError, match="user must be"):
        env.reset(options={"user": small_world.users.size})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="track id"):
        env.step(small_world.catalog.size)
    with pytest.raises(ValueError, match="track id"):
        env.step(np.float64(1.5))
