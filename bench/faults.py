"""Faults a new operator meets, injected into a real `botify serve`, with what they cost.

  python bench/faults.py [--world DIR] [--before REV]

Prints, in one run:
  - events answered (HTTP 200) vs logged, under SIGTERM, SIGKILL, a full disk (a small tmpfs)
    and a log directory that turns read-only at a reload (a read-only bind mount); the full
    disk and read-only cases also say how the refused requests were answered and how long the
    service took to take events again once the disk was writable;
  - one junk Redis key: the share of 503s for the other users;
  - a Redis pause (SIGSTOP for 3 s) and an empty Redis restart: requests by status, and the
    time from the end of the fault to the first 200;
  - retries: a simulated day through a proxy that loses 1% of answers after the service
    handled them, and what the analysis counts (sessions, duplicated events);
  - throughput (POST /next, embedded store, 32 connections) with the write-ahead log, and with
    `--before REV` the same load on an older botify checked out from git (e.g. the commit before
    the write-ahead log) in the same run.

The disk cases need mount rights (root with CAP_SYS_ADMIN); without them they are skipped,
and the fault-injection tests (tests/test_faults.py) fall back to a file-size limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

from botify.client import BotifyClient
from botify.service.process import free_port
from botify.world import WorldSpec, generate_world, world_exists
from service_load import cpu_seconds  # bench/ is this script's directory

TOKEN = "bench-faults-token"


def read_events(log_dir: Path) -> list[dict]:
    events = []
    for path in sorted(Path(log_dir).glob("events-*.jsonl")):
        events.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line)
    return events


class Serve:
    """`botify serve` as a child process (so that it can be killed), waited for until /health answers."""

    def __init__(self, world: Path, log_dir: Path, *extra: str, pythonpath: str | None = None) -> None:
        self.port = free_port()
        env = {**os.environ, "BOTIFY_ADMIN_TOKEN": TOKEN}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.process = subprocess.Popen([sys.executable, "-m", "botify", "serve", "--catalog", str(world / "tracks.json"),
                                         "--log-dir", str(log_dir), "--port", str(self.port), *extra],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while self.status("GET", "/health") != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("botify serve did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, method: str, path: str, headers: dict | None = None) -> int | None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            connection.request(method, path, headers=headers or {})
            return connection.getresponse().status
        except OSError:
            return None

    def reload(self) -> int | None:
        return self.status("POST", "/admin/reload", {"Authorization": f"Bearer {TOKEN}"})

    def rss_mib(self) -> int:
        return int(Path(f"/proc/{self.process.pid}/status").read_text().split("VmRSS:")[1].split()[0]) // 1024

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(30)


class Load:
    """Threads posting /next for fresh users on keep-alive connections, recording each answer."""

    def __init__(self, url: str, threads: int = 4, users: tuple[int, int] | None = None) -> None:
        self.port = int(url.rsplit(":", 1)[1])
        self.answered: list[int] = []
        self.statuses: dict[str, int] = {}
        self.stamps: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.users = users
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self, index: int) -> None:
        user, rng = index * 10**8, random.Random(index)
        connection = None
        while not self.stop.is_set():
            if self.users is None:
                user += 1
                who = user
            else:
                who = rng.randrange(*self.users)
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("POST", f"/next/{who}", body=b'{"track": 3, "time": 0.5}')
                response = connection.getresponse()
                response.read()
                code = str(response.status)
            except (OSError, http.client.HTTPException):
                connection, code = None, "no answer"
                time.sleep(0.01)
            self.statuses[code] = self.statuses.get(code, 0) + 1
            self.stamps.append((time.monotonic(), 200 if code == "200" else 0))
            if code == "200":
                self.answered.append(who)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)

    def first_200_after(self, moment: float) -> float | None:
        times = [stamp for stamp, code in sorted(self.stamps) if stamp >= moment and code == 200]
        return times[0] - moment if times else None


def recover(served: Serve, load: Load, undo_fault) -> str:
    """End the fault, keep the load on for 2 s, stop; how long the first 200 took after the fault ended."""
    undo_fault()
    ended = time.monotonic()
    time.sleep(2)
    served.stop()
    load.finish()
    seconds = load.first_200_after(ended)
    return "never" if seconds is None else f"{seconds:.2f} s"


def answered_vs_logged(load: Load, log_dir: Path) -> str:
    logged = [event["user"] for event in read_events(log_dir) if event["message"] == "next"]
    lost = len(set(load.answered) - set(logged))
    extra = len(set(logged) - set(load.answered))
    return (f"answered {len(load.answered):>7,}  logged {len(logged):>7,}  answered but lost {lost:,}  "
            f"logged but not answered {extra:,}")


def statuses(load: Load) -> str:
    return ", ".join(f"{code}: {count:,}" for code, count in sorted(load.statuses.items()))


def can_mount() -> bool:
    with tempfile.TemporaryDirectory() as probe:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True).returncode:
            return False
        subprocess.run(["umount", probe], check=True)
    return True


def signals(world: Path, root: Path) -> None:
    for name, sig in (("SIGTERM", signal.SIGTERM), ("SIGKILL", signal.SIGKILL)):
        log_dir = root / name
        served = Serve(world, log_dir)
        load = Load(served.url)
        time.sleep(3)
        served.stop(sig)
        load.finish()
        print(f"  {name:<22} {answered_vs_logged(load, log_dir)}")


def full_disk(world: Path, root: Path) -> None:
    disk = root / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        (disk / "filler").write_bytes(bytes(3 << 20))
        served = Serve(world, disk / "log", "--log-retry", "0.5")
        load = Load(served.url)
        deadline = time.monotonic() + 30
        while load.statuses.get("503", 0) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = served.status("GET", "/ready")
        rss = served.rss_mib()
        time.sleep(2)
        rss_later = served.rss_mib()
        recovered = recover(served, load, lambda: (disk / "filler").unlink())
        print(f"  {'disk full (tmpfs 4 MB)':<22} {answered_vs_logged(load, disk / 'log')}")
        print(f"  {'':<22} by status: {statuses(load)}; /ready while full: {ready}; RSS {rss} → {rss_later} MiB "
              f"while refusing; first 200 {recovered} after space came back")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def read_only(world: Path, root: Path) -> None:
    log_dir = root / "ro-log"
    log_dir.mkdir()
    served = Serve(world, log_dir, "--log-retry", "0.5", "--reload-interval", "0")
    load = Load(served.url)
    time.sleep(1)
    subprocess.run(["mount", "--bind", str(log_dir), str(log_dir)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(log_dir)], check=True)
    try:
        reload_status = served.reload()  # the next event opens a new file: refused
        time.sleep(2)
    finally:
        recovered = recover(served, load, lambda: subprocess.run(["umount", str(log_dir)], check=True))
    print(f"  {'read-only at a reload':<22} {answered_vs_logged(load, log_dir)}")
    print(f"  {'':<22} reload {reload_status}; by status: {statuses(load)}; first 200 "
          f"{recovered} after the directory was writable again")


@contextlib.contextmanager
def redis_server():
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        yield process, port
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()


def redis_faults(world: Path, root: Path) -> None:
    with redis_server() as (redis, port):
        url = f"redis://127.0.0.1:{port}/0"
        served = Serve(world, root / "redis-log", "--redis", url)
        subprocess.run(["redis-cli", "-p", str(port), "SET", "botify:history:100", "x"], capture_output=True)
        load = Load(served.url, users=(0, 1000))
        time.sleep(3)
        load.finish()
        print(f"  {'junk key (user 100)':<22} {sum(load.statuses.values()):,} requests over users 0..999: {statuses(load)}")

        load = Load(served.url, users=(0, 10**6))
        time.sleep(1)
        redis.send_signal(signal.SIGSTOP)
        time.sleep(3)
        redis.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        time.sleep(2)
        load.finish()
        print(f"  {'Redis paused 3 s':<22} {statuses(load)}; first 200 {load.first_200_after(resumed):.2f} s after resume")
        served.stop()

    with redis_server() as (redis, port):
        url = f"redis://127.0.0.1:{port}/0"
        served = Serve(world, root / "redis-log2", "--redis", url)
        load = Load(served.url, users=(0, 10**6))
        time.sleep(1)
        redis.kill()
        redis.wait()
        time.sleep(1)
        restarted = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL)
        back = time.monotonic()
        time.sleep(3)
        load.finish()
        restarted.kill()
        restarted.wait()
        served.stop()
        print(f"  {'Redis restarted empty':<22} {statuses(load)}; first 200 {load.first_200_after(back):.2f} s after "
              f"the restart")


class LossyProxy:
    """Forwards HTTP/1.1 keep-alive traffic; after the service answered, drops the connection
    instead of passing 1% of the answers on (the client sees a lost answer and retries)."""

    def __init__(self, target: int, loss: float = 0.01, seed: int = 0) -> None:
        self.target, self.loss, self.rng = target, loss, random.Random(seed)
        self.port = free_port()
        self.dropped = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        started.set()
        self.loop.run_forever()
        server.close()

    async def _client(self, reader, writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length" in head.lower() else 0
                upstream_writer.write(head + await reader.readexactly(length))
                answer = await upstream_reader.readuntil(b"\r\n\r\n")
                size = int(answer.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                answer += await upstream_reader.readexactly(size)
                if head.startswith(b"POST") and self.rng.random() < self.loss:
                    self.dropped += 1
                    break
                writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        writer.close()
        upstream_writer.close()


def retries(world: Path, root: Path) -> None:
    from botify.analysis.engine import user_metrics
    from botify.sim import AgentSpec, SimSettings, Simulation

    config = root / "retry.toml"
    config.write_text('default = "random"\n[[experiments]]\nname = "E"\ntreatments = 2\n')
    log_dir = root / "retry-log"
    served = Serve(world, log_dir, "--experiments", str(config))
    proxy = LossyProxy(served.port)
    simulation = Simulation(world, AgentSpec(kind="remote", url=f"http://127.0.0.1:{proxy.port}", connections=16),
                            SimSettings(episodes=5000, seed=1))
    summary = simulation.run_day(1)
    simulation.close()
    served.stop()
    events = read_events(log_dir)
    users, _ = user_metrics([str(log_dir)], "E")
    nexts = sum(event["message"] == "next" for event in events)
    lasts = len(events) - nexts
    print(f"  {'1% of answers lost':<22} {proxy.dropped:,} answers dropped, {summary.as_dict().get('agent_retries', 0):,} "
          f"retries; {summary.sessions:,} sessions and {summary.result.steps:,} recommendations simulated; logged "
          f"{lasts:,} /last and {nexts:,} /next events; the analysis counts {int(users['sessions'].sum()):,} sessions")


def throughput(world: Path, root: Path, before: str | None, rounds: int = 5) -> None:
    """Median req/s and server CPU per request over interleaved rounds (this machine's noise hits
    every variant alike): this build with the course's traffic (no Idempotency-Key), this build
    with keys, and an older revision with the course's traffic."""
    variants = [("write-ahead log, no keys", None, False), ("write-ahead log, keys", None, True)]
    if before:
        tree = root / "before"
        subprocess.run(["git", "worktree", "add", "-f", "--detach", str(tree), before], check=True, capture_output=True)
        variants.append((f"before ({before})", str(tree / "src"), False))
    rng = np.random.default_rng(0)
    n = 50_000
    users, tracks, times = rng.integers(0, 10_000, n), rng.integers(0, 1000, n), rng.random(n)
    results: dict[str, list[tuple[float, float]]] = {}
    for round_ in range(rounds):
        for name, pythonpath, keys in variants:
            served = Serve(world, root / f"tp-{round_}-{len(results)}", pythonpath=pythonpath)
            client = BotifyClient(served.url, connections=32, outage=0, idempotency_keys=keys)
            client.post_batch("next", users[:5000], tracks[:5000], times[:5000])  # warm up
            cpu, started = cpu_seconds(served.process.pid), time.perf_counter()
            client.post_batch("next", users, tracks, times)
            seconds = time.perf_counter() - started
            results.setdefault(name, []).append((n / seconds, (cpu_seconds(served.process.pid) - cpu) / n * 1e6))
            client.close()
            served.stop()
    for name, values in results.items():
        rates, cpus = sorted(rate for rate, _ in values), sorted(cpu for _, cpu in values)
        print(f"  {name:<28} median {rates[len(rates) // 2]:>8,.0f} req/s, server CPU {cpus[len(cpus) // 2]:5.1f} µs "
              f"per request ({rounds} rounds)")
    if before:
        subprocess.run(["git", "worktree", "remove", "--force", str(root / "before")], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=Path("runs/bench/world"))
    parser.add_argument("--before", help="a git revision to compare throughput with (e.g. HEAD~5)")
    args = parser.parse_args()
    if not world_exists(args.world):
        generate_world(WorldSpec(seed=42)).save(args.world)
    mountable = os.geteuid() == 0 and can_mount()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        print("events answered vs logged")
        signals(args.world, root)
        if mountable:
            full_disk(args.world, root)
            read_only(args.world, root)
        else:
            print("  disk full / read-only: skipped (needs mount rights)")
        print("Redis faults (one worker)")
        redis_faults(args.world, root)
        print("retries through the remote agent")
        retries(args.world, root)
        print("throughput, POST /next, embedded store, default experiments, 32 connections")
        throughput(args.world, root, args.before)


if __name__ == "__main__":
    main()
