"""`RecEnv`: a Gymnasium view of one session, on the same listener model as the batch runner."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from botify.sim.engine import DEFAULT_MAX_STEPS, ListenerModel, Sessions
from botify.world.model import World


class RecEnv(gym.Env):
    """One listening session: observe `{user, track}`, act with a track id, earn time played.

    `reset(options={"user": u})` fixes the listener; otherwise one is drawn. The session's
    randomness comes from the env's generator, seeded through `reset(seed=...)`.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}  # fps: nominal (a text render per step)

    def __init__(self, world: World, max_steps: int = DEFAULT_MAX_STEPS, render_mode: str | None = None) -> None:
        self.world = world
        self.model = ListenerModel(world, max_steps)
        self.render_mode = render_mode
        self.observation_space = spaces.Dict(
            {"user": spaces.Discrete(world.users.size), "track": spaces.Discrete(world.catalog.size)}
        )
        self.action_space = spaces.Discrete(world.catalog.size)
        self.sessions: Sessions | None = None

    def _observation(self) -> dict[str, np.int64]:
        return {"user": np.int64(self.sessions.user[0]), "track": np.int64(self.sessions.last_track[0])}

    def _info(self) -> dict[str, Any]:
        return {
            "session_time": float(self.sessions.total_time[0]),
            "tracks": self.sessions.length,
            "budget": int(self.sessions.budget[0]),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        user = options.get("user")
        if user is None:
            user = int(self.np_random.integers(self.world.users.size))
        elif not 0 <= int(user) < self.world.users.size:
            raise ValueError(f"user must be in 0..{self.world.users.size - 1}, got {user}")
        self.sessions = self.model.start(np.array([user]), self.np_random)
        return self._observation(), self._info()

    def step(self, action):
        if self.sessions is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be a track id in 0..{self.action_space.n - 1}, got {action!r}")
        result = self.model.step(self.sessions, np.array([int(action)]), self.np_random)
        return (
            self._observation(),
            float(result.time[0]),
            bool(result.terminated[0]),
            bool(result.truncated[0]),
            self._info(),
        )

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.sessions is None:
            return None
        record = self.world.catalog.records[int(self.sessions.last_track[0])]
        return (
            f"user {int(self.sessions.user[0])}: track {record['track']} "
            f"'{record.get('title', '?')}' by {record['artist']}, session time "
            f"{float(self.sessions.total_time[0]):.2f}, budget {int(self.sessions.budget[0])}"
        )


def make_listening(world: World | str | os.PathLike, max_steps: int = DEFAULT_MAX_STEPS,
                   render_mode: str | None = None) -> RecEnv:
    """The entry point of `gymnasium.make("botify/Listening-v0", world=...)` (registered by
    `import botify`): a `World` or the
    directory `botify world` wrote."""
    if not isinstance(world, World):
        world = World.load(world)
    return RecEnv(world, max_steps, render_mode)

