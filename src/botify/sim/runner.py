"""Simulated days: episodes split into seeded chunks, stepped in batches, over processes.

Chunk c of day d draws its users and the listener's randomness from the generator seeded
with (seed, d, c), and the agent's from (seed, d, c, 1). Chunks never depend on which
process runs them, so the same seed gives the same sessions in one process or many. With
returning listeners (`botify.sim.days`) the day's users come from the population's state
instead, drawn from (seed, d, 0, 2) before the chunks, which then only step them.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from botify.client import OUTAGE
from botify.errors import BotifyError
from botify.plugins import load_object
from botify.sim.agents import Agent, ConsoleAgent, Observation, OracleAgent, RandomAgent
from botify.sim.days import Population, ReturningSpec, TrendingSpec, daily_hype
from botify.sim.engine import DEFAULT_MAX_STEPS, ListenerModel
from botify.world.model import World

BUILTIN_AGENTS = ("random", "remote", "studio", "console", "oracle")


class AgentSpec(BaseModel):
    """How to build an agent, in this process or in a worker: a built-in name or `module:Class`."""

    model_config = ConfigDict(extra="forbid")

    kind: str = "random"
    url: str | None = None
    connections: int = Field(32, ge=1)
    timeout: float = Field(5.0, gt=0)
    outage: float = Field(OUTAGE, ge=0, description="seconds the remote agent rides out a failing service")


class SimSettings(BaseModel):
    """What a simulated day is made of."""

    model_config = ConfigDict(extra="forbid")

    episodes: int = Field(10_000, ge=1)
    seed: int = 42
    processes: int = Field(1, ge=1)
    chunk_size: int = Field(4096, ge=1, description="sessions stepped together; part of the seed's meaning")
    max_steps: int = Field(DEFAULT_MAX_STEPS, ge=1)
    replace_users: bool = Field(False, description="draw a day's users with replacement, as the course's simulator "
                                                   "did (a user may have several sessions a day)")
    returning: ReturningSpec | None = Field(None, description="listeners come back depending on their sessions; "
                                                              "`episodes` is then each day's first-time listeners")
    trending: TrendingSpec | None = Field(None, description="a few tracks trend each day")


def make_agent(spec: AgentSpec, world: World) -> Agent:
    """Build the agent a spec names; `package.module:Class` loads any Agent subclass."""
    if spec.kind == "random":
        return RandomAgent(world.catalog.size)
    if spec.kind == "oracle":
        return OracleAgent(world)
    if spec.kind == "console":
        return ConsoleAgent(world)
    if spec.kind in ("remote", "studio"):
        from botify.sim.remote import RemoteAgent, StudioAgent

        if not spec.url:
            raise BotifyError(f"the {spec.kind} agent needs --url (e.g. http://localhost:5001)")
        if spec.kind == "studio":
            agent = StudioAgent(spec.url, world.catalog.size, spec.outage)
        else:
            agent = RemoteAgent(spec.url, world.catalog.size, spec.connections, spec.timeout, spec.outage)
        agent.check()
        return agent
    if ":" in spec.kind:
        factory = load_object(spec.kind, "agent")
        try:
            agent = factory(world)
        except TypeError as error:
            raise BotifyError(f"cannot build agent {spec.kind!r} from a world: {error}") from error
        if not isinstance(agent, Agent):
            raise BotifyError(f"{spec.kind} built a {type(agent).__name__}, not a botify.sim.Agent")
        return agent
    raise BotifyError(f"unknown agent {spec.kind!r}: use one of {', '.join(BUILTIN_AGENTS)} or module:Class")


@dataclass
class ChunkResult:
    """Per-session outcomes of one chunk, in episode order."""

    episode: np.ndarray
    user: np.ndarray
    time: np.ndarray
    tracks: np.ndarray
    truncated: np.ndarray
    steps: int
    agent_report: dict[str, int] = field(default_factory=dict)


def _observe(sessions, tracks: np.ndarray, times: np.ndarray) -> Observation:
    return Observation(sessions.user, tracks, times, sessions.episode, sessions.steps, sessions)


def run_chunk(
    model: ListenerModel,
    agent: Agent,
    settings: SimSettings,
    day: int,
    chunk: int,
    on_sessions_done: Callable[[int], None] = lambda count: None,
    users: np.ndarray | None = None,
    first: int | None = None,
) -> ChunkResult:
    """Simulate chunk `chunk` of day `day` to the end of its last session; its listeners are
    `users` when given (returning listeners), numbered from episode `first`, else drawn."""
    first = chunk * settings.chunk_size if first is None else first
    size = min(settings.chunk_size, settings.episodes - first) if users is None else len(users)
    episodes = np.arange(first, first + size)
    rng = np.random.default_rng([settings.seed, day, chunk])
    agent.reset(np.random.default_rng([settings.seed, day, chunk, 1]))
    trending = settings.trending
    model.hype = None if trending is None else daily_hype(trending, settings.seed, day, model.n_tracks)
    model.hype_start_share = 0.0 if trending is None else trending.start_share
    n_users = model.world.users.size
    if users is not None:
        users = np.asarray(users, dtype=np.int64)
    elif settings.replace_users or size > n_users:
        users = rng.integers(0, n_users, size)
    else:
        users = rng.choice(n_users, size, replace=False)

    sessions = model.start(users, rng, episodes)
    tracks, times = sessions.last_track, np.ones(size)
    total_time, total_tracks = np.zeros(size), np.zeros(size, dtype=np.int64)
    truncated = np.zeros(size, dtype=bool)
    steps = 0
    try:
        while sessions.size:
            actions = agent.next(_observe(sessions, tracks, times))
            result = model.step(sessions, actions, rng)
            steps += sessions.size
            done = result.done
            if done.any():
                ended = sessions.keep(done)
                agent.last(_observe(ended, actions[done], result.time[done]))
                rows = ended.episode - first
                total_time[rows] = ended.total_time
                total_tracks[rows] = ended.length
                truncated[rows] = result.truncated[done]
                on_sessions_done(int(done.sum()))
                live = ~done
                sessions, tracks, times = sessions.keep(live), actions[live], result.time[live]
            else:
                tracks, times = actions, result.time
    except BotifyError as error:  # the unfinished chunk's counters travel with the error (pickled too)
        error.agent_report = agent.report()
        raise
    return ChunkResult(episodes, users, total_time, total_tracks, truncated, steps, agent.report())


@dataclass
class DaySummary:
    """A simulated day in the course's terms: sessions, session time and tracks per session."""

    day: int
    result: ChunkResult
    seconds: float

    @property
    def sessions(self) -> int:
        return len(self.result.time)

    @staticmethod
    def _mean_sem(values: np.ndarray) -> tuple[float, float]:
        sem = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
        return float(values.mean()), float(sem)

    @property
    def time(self) -> tuple[float, float]:
        return self._mean_sem(self.result.time)

    @property
    def tracks(self) -> tuple[float, float]:
        return self._mean_sem(self.result.tracks.astype(np.float64))

    @property
    def steps_per_second(self) -> float:
        return self.result.steps / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict:
        return {
            "day": self.day,
            "sessions": self.sessions,
            "mean_time": self.time[0],
            "sem_time": self.time[1],
            "mean_tracks": self.tracks[0],
            "sem_tracks": self.tracks[1],
            "truncated": int(self.result.truncated.sum()),
            "steps": self.result.steps,
            "seconds": self.seconds,
            **{f"agent_{key}": value for key, value in self.result.agent_report.items()},
        }


def _merge(results: list[ChunkResult]) -> ChunkResult:
    results = sorted(results, key=lambda r: int(r.episode[0]))
    report: dict[str, int] = {}
    for item in results:
        for key, value in item.agent_report.items():
            report[key] = report.get(key, 0) + value
    return ChunkResult(
        episode=np.concatenate([r.episode for r in results]),
        user=np.concatenate([r.user for r in results]),
        time=np.concatenate([r.time for r in results]),
        tracks=np.concatenate([r.tracks for r in results]),
        truncated=np.concatenate([r.truncated for r in results]),
        steps=sum(r.steps for r in results),
        agent_report=report,
    )


_worker: dict = {}


def _start_worker(world_dir: str, agent_spec: dict, settings: dict, progress: multiprocessing.Queue) -> None:
    """Load the world and agent once per worker; a failure is kept and raised by the first task
    (an initializer that raises makes the pool respawn workers forever)."""
    try:
        world = World.load(Path(world_dir))
        settings_model = SimSettings(**settings)
        _worker.update(
            model=ListenerModel(world, settings_model.max_steps),
            agent=make_agent(AgentSpec(**agent_spec), world),
            settings=settings_model,
            progress=progress,
        )
    except Exception as error:  # noqa: BLE001 - re-raised in _work_on_chunk
        _worker["error"] = error


class DayInterrupted(BotifyError):
    """A day stopped by an error (e.g. the service stayed down). `partial` holds the chunks that
    finished before it (whole chunks only: the sessions that ended within an unfinished chunk are
    the short ones, so they would bias the day's means), or None; `agent_report` the agent's
    counters over the whole day, unfinished chunks included (the failures are there)."""

    def __init__(self, message: str, partial: DaySummary | None, agent_report: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.agent_report = agent_report or {}


def _work_on_chunk(day: int, chunk: int, users: np.ndarray | None, first: int | None) -> ChunkResult:
    if "error" in _worker:
        raise _worker["error"]
    return run_chunk(
        _worker["model"], _worker["agent"], _worker["settings"], day, chunk, _worker["progress"].put, users, first
    )


class Simulation:
    """Runs days of sessions for one world, agent and settings, in-process or on a pool."""

    def __init__(self, world_dir: Path, agent_spec: AgentSpec, settings: SimSettings, world: World | None = None) -> None:
        self.world_dir = Path(world_dir)
        self.agent_spec = agent_spec
        self.settings = settings
        self.world = world or World.load(self.world_dir)
        if agent_spec.kind in ("console", "studio") and settings.processes > 1:
            raise BotifyError(f"the {agent_spec.kind} agent runs in one process: drop --processes")
        self._pool = None
        self._model: ListenerModel | None = None
        self._agent: Agent | None = None
        # Returning listeners' state, carried from day to day (`botify loop` sets it from a file).
        self.population: Population | None = None
        self._listeners: dict[int, list[np.ndarray]] = {}

    def listeners(self, day: int) -> list[np.ndarray] | None:
        """With returning listeners, the day's sessions as rounds of distinct listeners (drawn
        once per day); else None."""
        spec = self.settings.returning
        if spec is None:
            return None
        if day not in self._listeners:
            if self.population is None:
                self.population = Population.new(spec, self.world.users.size, self.settings.seed)
            self.population.spec = spec
            self._listeners = {day: self.population.listeners(day, self.settings.episodes, self.settings.seed)}
        return self._listeners[day]

    def sessions_on(self, day: int) -> int:
        """How many sessions `day` will have."""
        found = self.listeners(day)
        return self.settings.episodes if found is None else sum(len(users) for users in found)

    def _rounds(self, day: int) -> list[list[tuple[int, np.ndarray | None, int | None]]]:
        """The day's chunks as (chunk, listeners, first episode), in rounds that run one after
        the other, so that a listener's sessions never overlap (None: the chunk draws its own)."""
        found, size = self.listeners(day), self.settings.chunk_size
        if found is None:
            return [[(chunk, None, None) for chunk in range(-(-self.settings.episodes // size))]]
        if not found:
            raise BotifyError(f"day {day}: no listener came back and no first-time listener is left")
        rounds, chunk, first = [], 0, 0
        for users in found:
            rounds.append([])
            for start in range(0, len(users), size):
                rounds[-1].append((chunk, users[start:start + size], first + start))
                chunk += 1
            first += len(users)
        return rounds

    def _local(self) -> tuple[ListenerModel, Agent]:
        if self._model is None:
            self._model = ListenerModel(self.world, self.settings.max_steps)
            self._agent = make_agent(self.agent_spec, self.world)
            if self._agent.max_batch is not None and self.settings.chunk_size > self._agent.max_batch:
                self.settings = self.settings.model_copy(update={"chunk_size": self._agent.max_batch})
        return self._model, self._agent

    def run_day(self, day: int, on_sessions_done: Callable[[int], None] = lambda count: None) -> DaySummary:
        """Simulate one day; `on_sessions_done` hears how many sessions just finished. An error
        mid-day raises DayInterrupted with the sessions finished so far."""
        started = time.perf_counter()
        results: list[ChunkResult] = []
        unfinished: list[dict[str, int]] = []  # agent counters of the chunks an error stopped
        try:
            if self.settings.processes == 1:
                model, agent = self._local()
                for chunk, users, first in (item for chunks in self._rounds(day) for item in chunks):
                    try:
                        results.append(run_chunk(model, agent, self.settings, day, chunk, on_sessions_done, users,
                                                 first))
                    except BotifyError as error:
                        unfinished.append(getattr(error, "agent_report", {}))
                        raise
            else:
                for chunks in self._rounds(day):
                    self._run_on_pool(day, chunks, on_sessions_done, results, unfinished)
        except BotifyError as error:
            report: dict[str, int] = {}
            for counters in [item.agent_report for item in results] + unfinished:
                for key, value in counters.items():
                    report[key] = report.get(key, 0) + value
            partial = None
            if results:
                partial = DaySummary(day, _merge(results), time.perf_counter() - started)
                partial.result.agent_report = report
            raise DayInterrupted(str(error), partial, report) from None
        summary = DaySummary(day, _merge(results), time.perf_counter() - started)
        if self.population is not None and self.settings.returning is not None:
            self.population.update(day, summary.result.user, summary.result.time)
        return summary

    def _run_on_pool(self, day: int, chunks: list[tuple[int, np.ndarray | None, int | None]],
                     on_sessions_done: Callable[[int], None], results: list[ChunkResult],
                     unfinished: list[dict[str, int]]) -> None:
        """Run chunks of the day on the pool, appending each finished chunk to `results` and the
        agent counters of each failed one to `unfinished`."""
        context = multiprocessing.get_context("spawn")
        if self._pool is None:
            self._progress = context.Manager().Queue()
            self._pool = context.Pool(
                self.settings.processes,
                initializer=_start_worker,
                initargs=(
                    str(self.world_dir),
                    self.agent_spec.model_dump(),
                    self.settings.model_dump(),
                    self._progress,
                ),
            )
        pending = [self._pool.apply_async(_work_on_chunk, (day, *chunk)) for chunk in chunks]
        try:
            while not all(item.ready() for item in pending):
                try:
                    on_sessions_done(self._progress.get(timeout=0.1))
                except queue.Empty:
                    pass
        finally:
            for item in pending:
                if item.ready() and item.successful():
                    results.append(item.get())
                elif item.ready():
                    try:
                        item.get()
                    except Exception as error:  # noqa: BLE001 - the first one is raised below
                        unfinished.append(getattr(error, "agent_report", {}))
            while True:
                try:
                    on_sessions_done(self._progress.get_nowait())
                except queue.Empty:
                    break
        for item in pending:
            item.get()  # raises the first chunk's error, if any

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
        if self._agent is not None:
            self._agent.close()
