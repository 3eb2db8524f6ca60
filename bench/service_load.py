"""Keep-alive load on the botify service: requests/s, latency percentiles, errors, server CPU.

  python bench/service_load.py [--requests N] [--connections C] [--quick] [--rate R]

For each store (embedded, and Redis when `redis-server` is installed) and each recommender
(`random`, `sticky_artist`, and `i2i`: session-anchored item-to-item lists of 100 scored
tracks per track, mixing the session's recent plays, re-ranked for artist fatigue — the
served form of the learned session models), starts `botify serve` on the default world with
one worker, times its start-up (spawn to a 200 on /ready), then drives POST /next with random
users and tracks over C keep-alive connections from this process and prints the figures.
With `--rate R` the requests are paced at R per second (in 10 ms ticks) instead of as fast as
possible, which is how the latency budget is stated (p99 under 10 ms at 2,000 req/s). Server
CPU per request comes from the server process's own CPU time (/proc).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from botify.artifacts import write_artifact
from botify.service.process import ServiceProcess, free_port
from botify.client import BotifyClient
from botify.world import WorldSpec, generate_world, world_exists


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_redis() -> tuple[subprocess.Popen, str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL)
    for _ in range(200):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.01)
    raise SystemExit("redis-server did not start")


RECOMMENDERS = {
    "random": '"random"',
    "sticky_artist": '"sticky_artist"',
    "i2i": '{kind = "i2i", artifact = "i2i.jsonl", anchor = "mix", ranked = true, artist_discount = 0.7}',
}


def write_i2i(work: Path, n_tracks: int) -> None:
    """Scored lists of 100 random tracks per track, the shape a trained session model writes."""
    rng = np.random.default_rng(1)
    lists = {track: rng.choice(n_tracks, 100, replace=False).tolist() for track in range(n_tracks)}
    scores = {track: np.sort(rng.random(100))[::-1].round(4).tolist() for track in range(n_tracks)}
    write_artifact(work / "i2i.jsonl", "track", lists, scores)


def drive(client: BotifyClient, users, tracks, times, rate: float | None) -> None:
    if rate is None:
        client.post_batch("next", users, tracks, times)
        return
    per_tick, started = max(1, int(rate / 100)), time.perf_counter()
    for tick, start in enumerate(range(0, len(users), per_tick)):
        client.post_batch("next", users[start:start + per_tick], tracks[start:start + per_tick],
                          times[start:start + per_tick])
        pause = started + (tick + 1) * per_tick / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)


def run(world: Path, work: Path, recommender: str, redis_url: str | None, requests: int, connections: int,
        rate: float | None = None) -> None:
    experiments = work / f"{recommender}.toml"
    experiments.write_text(f"default = {RECOMMENDERS[recommender]}\n")
    args = ["--catalog", world / "tracks.json", "--log-dir", work / "log", "--experiments", experiments,
            "--artifacts", work]
    if redis_url:
        args += ["--redis", redis_url]
    with ServiceProcess(*args) as server:
        rng = np.random.default_rng(0)
        client = BotifyClient(server.url, connections=connections, timeout=5.0, outage=0, record_latency=True)
        warm = 2000
        client.post_batch("next", rng.integers(0, 10_000, warm), rng.integers(0, 15_000, warm), rng.random(warm))
        client.stats.latencies.clear()
        users, tracks, times = rng.integers(0, 10_000, requests), rng.integers(0, 15_000, requests), rng.random(requests)
        pid = server.process.pid
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        errors = 0
        try:
            drive(client, users, tracks, times, rate)
        except Exception as error:  # noqa: BLE001 - counted, shown
            errors += 1
            print(f"    error: {error}")
        wall = time.perf_counter() - wall_before
        cpu = cpu_seconds(pid) - cpu_before
        latencies = np.array(client.stats.latencies) * 1000
        done = len(latencies)
        errors += client.stats.failures + sum(n for status, n in client.stats.by_status.items() if status != 200)
        client.close()
        store = "redis" if redis_url else "embedded"
        print(f"  {store:<9} {recommender:<14} {done / wall:>9,.0f} req/s   p50 {np.percentile(latencies, 50):5.2f} ms"
              f"   p99 {np.percentile(latencies, 99):5.2f} ms   errors {errors}   server CPU "
              f"{cpu / done * 1000:.3f} ms/req   start-up {server.startup_seconds:.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="10,000 requests per run")
    parser.add_argument("--world", type=Path, default=Path("runs/bench/default"))
    parser.add_argument("--rate", type=float, default=None, help="pace the requests at this many per second")
    parser.add_argument("--recommenders", default=",".join(RECOMMENDERS), help="comma-separated, of: "
                        + ", ".join(RECOMMENDERS))
    args = parser.parse_args()
    requests = 10_000 if args.quick else args.requests
    if not world_exists(args.world):
        generate_world(WorldSpec()).save(args.world)
    pace = f"paced at {args.rate:,.0f} req/s" if args.rate else "as fast as possible"
    print(f"botify service_load: one worker, {args.connections} keep-alive connections, {requests:,} POST /next "
          f"per run ({pace}), load generator in this process ({os.cpu_count()} cores)")
    redis = start_redis()
    if redis is None:
        print("  (redis-server not found: Redis runs skipped; apt-get install redis-server)")
    try:
        with tempfile.TemporaryDirectory() as work:
            write_i2i(Path(work), sum(1 for _ in (args.world / "tracks.json").open()))
            for redis_url in [None] + ([redis[1]] if redis else []):
                for recommender in args.recommenders.split(","):
                    run(args.world, Path(work), recommender, redis_url, requests, args.connections, args.rate)
    finally:
        if redis:
            redis[0].terminate()
            redis[0].wait()


if __name__ == "__main__":
    main()
