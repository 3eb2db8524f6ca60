"""How fast the simulator runs: prints steps per second for each way of driving it.

  python bench/sim_speed.py [--quick] [--work DIR]

Measured on the default world and on a world in the course's formats (tracks.json,
tracks.npy, users.json) with 16,000 tracks and 4,096-dimensional embeddings:
  - `botify world generate` wall time;
  - the batch engine with the in-process random recommender, one core: a cold day (nearest
    neighbours of every interest searched on first use, batched) and warm days after it;
  - the Gymnasium env, one session at a time;
  - the remote agent against a local minimal server speaking the course's API.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the targets are for one core
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from botify.service.process import free_port  # noqa: E402
from botify.sim import AgentSpec, ListenerModel, RandomAgent, RecEnv, SimSettings, Simulation, run_chunk  # noqa: E402
from botify.world import World, WorldSpec, generate_world  # noqa: E402

HERE = Path(__file__).resolve().parent


def report(label: str, value: float, unit: str) -> None:
    print(f"  {label:<58} {value:>14,.0f} {unit}", flush=True)


def generate(directory: Path, spec: WorldSpec, course_names: bool) -> float:
    for name in ("tracks.json", "embeddings.npy", "tracks.npy", "users.json"):
        (directory / name).unlink(missing_ok=True)
    started = time.perf_counter()
    generate_world(spec).save(directory)
    seconds = time.perf_counter() - started
    if course_names:
        (directory / "embeddings.npy").rename(directory / "tracks.npy")
    return seconds


def batch_engine(world: World, episodes: int, warm_days: int) -> tuple[float, float, float]:
    model = ListenerModel(world)
    agent = RandomAgent(world.catalog.size)
    settings = SimSettings(episodes=episodes, seed=1)
    chunks = range(-(-episodes // settings.chunk_size))

    def day(number: int) -> tuple[int, float]:
        started = time.perf_counter()
        steps = sum(run_chunk(model, agent, settings, number, chunk).steps for chunk in chunks)
        return steps, time.perf_counter() - started

    cold_steps, cold_seconds = day(1)
    warm = [day(number) for number in range(2, 2 + warm_days)]
    warm_rate = sum(s for s, _ in warm) / sum(t for _, t in warm)
    return cold_steps / cold_seconds, warm_rate, cold_seconds


def gym_env(world: World, seconds: float) -> tuple[float, float]:
    """Steps/s of the env after one batched search of every interest's neighbours (timed apart)."""
    env = RecEnv(world)
    started = time.perf_counter()
    env.model.nearest(np.unique(world.users.interest_tracks))
    search_seconds = time.perf_counter() - started
    rng = np.random.default_rng(0)
    steps, started = 0, time.perf_counter()
    episode = 0
    while time.perf_counter() - started < seconds:
        env.reset(seed=episode)
        episode += 1
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(world.catalog.size)))
            steps += 1
            done = terminated or truncated
    return steps / (time.perf_counter() - started), search_seconds


def remote_agent(world_dir: Path, world: World, episodes: int) -> tuple[float, float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "minimal_server.py"), str(port), str(world.catalog.size)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        spec = AgentSpec(kind="remote", url=f"http://127.0.0.1:{port}", connections=64)
        simulation = Simulation(world_dir, spec, SimSettings(episodes=episodes, seed=1, chunk_size=1024), world=world)
        try:
            simulation.run_day(1)  # warms the first-track searches, so day 2 times the agent
            summary = simulation.run_day(2)
        finally:
            simulation.close()
        requests = summary.result.steps + summary.sessions
        return summary.steps_per_second, requests / summary.seconds
    finally:
        server.terminate()
        server.wait()


def bench_world(name: str, directory: Path, spec: WorldSpec, course_names: bool, quick: bool) -> None:
    print(f"\n{name}: {spec.tracks:,} tracks x {spec.dim} dims, {spec.users:,} users")
    report("botify world generate (wall)", generate(directory, spec, course_names) * 1000, "ms")
    world = World.load(directory)
    episodes = 10_000 if quick else 50_000
    cold, warm, cold_seconds = batch_engine(world, episodes, warm_days=1 if quick else 3)
    report(f"batch engine, random, cold day of {episodes:,} sessions", cold, "steps/s")
    report("  cold day wall time (first-track searches included)", cold_seconds * 1000, "ms")
    report("batch engine, random, warm days", warm, "steps/s")
    env_rate, search_seconds = gym_env(world, 1.0 if quick else 3.0)
    report("nearest neighbours of all interests, one batched search", search_seconds * 1000, "ms")
    report("Gymnasium env, one session at a time", env_rate, "steps/s")
    steps_rate, request_rate = remote_agent(directory, world, 2_000 if quick else 10_000)
    report("remote agent vs minimal local server, warm day", steps_rate, "steps/s")
    report("  HTTP requests (/next and /last)", request_rate, "req/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    parser.add_argument("--work", type=Path, default=Path("runs/bench"), help="where the bench worlds are written")
    args = parser.parse_args()
    print(f"botify sim_speed on {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    bench_world("default world", args.work / "default", WorldSpec(), False, args.quick)
    bench_world("course-format world", args.work / "course4096", WorldSpec(tracks=16_000, dim=4096), True, args.quick)


if __name__ == "__main__":
    main()
