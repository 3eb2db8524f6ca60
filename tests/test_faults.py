"""Fault injection on real servers: nothing answered is lost, nothing failed leaves a trace,
nothing leaks, and one bad actor (a junk Redis key, a retrying client, a corrupt file) does not
take the service down.

The disk-full cases use a small tmpfs when this process may mount one (root in a container
with CAP_SYS_ADMIN, as in CI), else a per-process file-size limit (RLIMIT_FSIZE), which fails
writes the same way (EFBIG instead of ENOSPC).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from botify.service import ServiceSettings
from botify.service.process import free_port
from botify.sim import AgentSpec, SimSettings, Simulation
from tests.servers import ADMIN, ADMIN_HEADERS, PATIENCE, ServiceThread, read_events, wait_until
from tests.test_service import Client


def _can_mount() -> bool:
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as probe:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True)
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", probe], check=True)
        return True


CAN_MOUNT = _can_mount()


@contextlib.contextmanager
def small_disk(path: Path, kilobytes: int):
    """A directory holding at most `kilobytes`: a tmpfs, or (without mount rights) nothing here
    and an RLIMIT_FSIZE set on the service process instead (see `serve`)."""
    path.mkdir(parents=True, exist_ok=True)
    if CAN_MOUNT:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if CAN_MOUNT:
            subprocess.run(["umount", "-l", str(path)], check=False)


class Served:
    """`botify serve` in a child process (so that it can be SIGKILLed), ready-checked."""

    def __init__(self, args: list[str], env: dict | None = None, file_limit: int | None = None) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "botify", "serve", "--port", str(self.port), *map(str, args)]

        def limit() -> None:
            if file_limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        env={**os.environ, "BOTIFY_ADMIN_TOKEN": ADMIN, **(env or {})},
                                        preexec_fn=limit)
        def up() -> bool:
            assert self.process.poll() is None, self.process.stdout.read().decode()
            probe = Client(self.url)
            try:
                return probe.call("GET", "/health")[0] == 200
            except OSError:
                return False
            finally:  # closed now: a probe left open counts against --max-connections
                probe.connection.close()

        try:
            wait_until(up, "the service's start", every=0.05)
        except BaseException:  # no server left running after a failed start
            self.process.kill()
            self.process.wait()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> str:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(PATIENCE)
        return self.process.stdout.read().decode()


def drive(url: str, users: range, answered: list[int], statuses: dict[int, int], stop: threading.Event) -> None:
    """POST /next for each user in turn on one keep-alive connection; the users answered 200."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=PATIENCE)
    for user in users:
        if stop.is_set():
            return
        try:
            connection.request("POST", f"/next/{user}", body=b'{"track": 3, "time": 0.5}')
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):  # killed mid-answer
            return
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.status == 200:
            answered.append(user)


def logged_users(log_dir: Path, message: str = "next", killed: bool = False) -> list[int]:
    return [event["user"] for event in read_events(log_dir, killed) if event["message"] == message]


def test_sigkill_under_load_loses_no_answered_event(small_world_dir: Path, tmp_path: Path) -> None:
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log"])
    answered: list[int] = []
    statuses: dict[int, int] = {}
    stop = threading.Event()
    threads = [threading.Thread(target=drive, args=(served.url, range(i * 10**6, (i + 1) * 10**6), answered,
                                                    statuses, stop)) for i in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answered) > 200, "200 answers")  # then killed under load
    served.stop(signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join(PATIENCE)
    logged = set(logged_users(tmp_path / "log", killed=True))
    assert set(answered) <= logged, f"{len(set(answered) - logged)} answered events were lost"


def test_a_full_disk_answers_503_with_the_reason_and_recovers(small_world_dir: Path, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 256) as disk:
        log_dir = disk / "log"
        filler = disk / "filler"
        if CAN_MOUNT:
            filler.write_bytes(bytes(180 << 10))
        served = Served(["--catalog", small_world_dir, "--log-dir", log_dir, "--log-retry", "0.2"],
                        file_limit=None if CAN_MOUNT else 200 << 10)
        try:
            client = Client(served.url)
            answered, refused = [], []
            for user in range(2000):
                status, answer = client.post(f"/next/{user}", {"track": 1, "time": 1.0})
                (answered if status == 200 else refused).append(user)
                if status != 200:
                    assert status == 503 and "event log cannot be written" in answer["detail"], answer
                    break
            assert refused, "the disk never filled"
            status, ready = client.call("GET", "/ready")
            assert status == 503 and ("No space left" in ready["detail"] or "too large" in ready["detail"])
            assert client.post("/next/5000", {"track": 1, "time": 1.0})[0] == 503  # refused up front
            if CAN_MOUNT:
                filler.unlink()  # space comes back (under a file-size limit, the next file has room again)
            wait_until(lambda: client.post("/next/7000", {"track": 1, "time": 1.0})[0] == 200,
                       "recovery after space came back", every=0.05)
            assert client.call("GET", "/ready")[0] == 200
        finally:
            served.stop()
        logged = logged_users(log_dir)
        assert sorted(logged) == sorted(answered + [7000])  # every answer logged, no refusal logged


def test_idempotent_retries_are_answered_once(small_world_dir: Path, tmp_path: Path, request) -> None:
    settings = ServiceSettings(catalog=small_world_dir, log_dir=tmp_path / "log")
    with ServiceThread(settings) as running:
        client = Client(running.url)
        headers = {"Content-Type": "application/json", "Idempotency-Key": "abc-1"}
        body = json.dumps({"track": 4, "time": 0.5}).encode()
        first = client.call("POST", "/next/8", body, headers)
        client.connection.request("POST", "/next/8", body=body, headers=headers)
        response = client.connection.getresponse()
        second = (response.status, json.loads(response.read()))
        assert first == second and first[0] == 200 and response.getheader("Idempotent-Replay") == "true"
        assert client.call("POST", "/next/8", body, {"Idempotency-Key": "bad key with spaces"})[0] == 400
        history = running.app.service.store
        assert len(asyncio_run(history.history(8))) == 1
    assert logged_users(tmp_path / "log") == [8]


def asyncio_run(coroutine):
    import asyncio

    return asyncio.run(coroutine)


def _sessions(world_dir: Path, settings: ServiceSettings, connections: int, episodes: int = 300) -> dict:
    with ServiceThread(settings) as running:
        simulation = Simulation(world_dir, AgentSpec(kind="remote", url=running.url, connections=connections),
                                SimSettings(episodes=episodes, seed=11, chunk_size=100))
        simulation.run_day(1)
        simulation.close()
    by_user: dict[int, list] = {}
    for event in read_events(settings.log_dir):
        by_user.setdefault(event["user"], []).append((event["message"], event["track"], event["time"],
                                                     event.get("recommendation")))
    return by_user


def test_same_seed_same_sessions_whatever_the_concurrency_or_store(small_world_dir: Path, tmp_path: Path,
                                                                   redis_url: str) -> None:
    """The service's choices come from (seed, user, request number): the same traffic gives the
    same sessions over 1 or 16 connections, on the embedded store or Redis."""
    config = tmp_path / "e.toml"
    config.write_text('default = "random"\n[[experiments]]\nname = "E"\n'
                      'treatments = ["random", {recommender = {kind = "sticky_artist", k = 5}}]\n')
    base = dict(catalog=small_world_dir, experiments=config)
    one = _sessions(small_world_dir, ServiceSettings(**base, log_dir=tmp_path / "a"), connections=1)
    many = _sessions(small_world_dir, ServiceSettings(**base, log_dir=tmp_path / "b"), connections=16)
    shared = _sessions(small_world_dir, ServiceSettings(**base, log_dir=tmp_path / "c", redis=redis_url), 16)
    assert len(one) > 100
    assert one == many == shared


def test_one_junk_redis_key_troubles_no_one(small_world_dir: Path, tmp_path: Path, redis_server, redis_url) -> None:
    settings = ServiceSettings(catalog=small_world_dir, log_dir=tmp_path / "log", redis=redis_url)
    with ServiceThread(settings) as running:
        client = Client(running.url)
        redis_server.command("SET", "botify:history:100", "x")
        redis_server.command("SET", "botify:session:101", "x")
        redis_server.command("RPUSH", "botify:history:102", "junk")
        statuses = [client.post(f"/next/{user}", {"track": 2, "time": 1.0})[0] for user in range(90, 200)]
        assert statuses == [200] * len(statuses)
        assert [client.post("/next/100", {"track": 3, "time": 1.0})[0] for _ in range(5)] == [200] * 5


def test_secrets_never_leave(small_world_dir: Path, tmp_path: Path) -> None:
    from tests.servers import RedisServer

    server = RedisServer()
    try:
        server.command("CONFIG", "SET", "requirepass", "s3cret-pw")
        url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
        settings = ServiceSettings(catalog=small_world_dir, log_dir=tmp_path / "log", redis=url, redis_timeout=0.2)
        with ServiceThread(settings) as running:
            client = Client(running.url)
            status, ready = client.call("GET", "/ready")
            assert status == 200 and "s3cret" not in json.dumps(ready) and "***" in ready["url"]
            server.pause()
            try:
                status, answer = client.post("/next/1", {"track": 1, "time": 1.0})
                assert status == 503 and "s3cret" not in answer["detail"] and "***" in answer["detail"]
                status, ready = client.call("GET", "/ready")
                assert status == 503 and "s3cret" not in ready["detail"]
            finally:
                server.resume()
    finally:
        server.stop()


def test_admin_needs_the_token_is_rate_limited_and_leaves_no_empty_files(small_world_dir: Path,
                                                                         tmp_path: Path) -> None:
    settings = ServiceSettings(catalog=small_world_dir, log_dir=tmp_path / "log")
    with ServiceThread(settings) as running:
        client = Client(running.url)
        assert client.call("POST", "/admin/reload", b"")[0] == 401
        assert client.call("POST", "/admin/reload", b"", {"Authorization": "Bearer wrong"})[0] == 401
        status, answer = client.call("POST", "/admin/reload", b"", ADMIN_HEADERS)
        assert status == 200 and answer["closed_log"] is None  # nothing was logged: no file
        status, answer = client.call("POST", "/admin/reload", b"", ADMIN_HEADERS)
        assert status == 429 and "retry" in answer["detail"]
        assert client.post("/next/1", {"track": 1, "time": 1.0})[0] == 200
    files = list((tmp_path / "log").glob("*.jsonl"))
    assert len(files) == 1 and all(path.stat().st_size for path in files)


@pytest.mark.parametrize(("name", "content", "problem"), [
    ("top.json", b"\xff\xfe[1, 2]", "not valid JSON"),
    ("top.json", b"[" * 100_000, "not valid JSON"),
    ("i2i.jsonl", b'{"track": 0, "recommendations": [1]}\n\xff\xfe\n', "not valid UTF-8"),
    ("i2i.jsonl", b'{"track": 0, "recommendations": ' + b"[" * 100_000 + b"\n", "nested too deeply"),
])
def test_a_corrupt_artifact_is_refused_naming_file_and_problem(small_world_dir: Path, tmp_path: Path, name: str,
                                                               content: bytes, problem: str) -> None:
    artifacts = tmp_path / "art"
    artifacts.mkdir()
    kind = "top_pop" if name == "top.json" else "i2i"
    (tmp_path / "e.toml").write_text(f'default = {{kind = "{kind}", artifact = "{name}"}}\n')
    good = b"[1, 2, 3]" if name == "top.json" else b'{"track": 0, "recommendations": [1, 2]}\n'
    (artifacts / name).write_bytes(good)
    settings = ServiceSettings(catalog=small_world_dir, experiments=tmp_path / "e.toml", artifacts=artifacts,
                               log_dir=tmp_path / "log")
    with ServiceThread(settings) as running:
        (artifacts / name).write_bytes(content)
        status, answer = Client(running.url).call("POST", "/admin/reload", b"", ADMIN_HEADERS)
        assert status == 422 and name in answer["detail"] and problem in answer["detail"], answer
    started = subprocess.run([sys.executable, "-m", "botify", "serve", "--catalog", str(small_world_dir),
                              "--experiments", str(tmp_path / "e.toml"), "--artifacts", str(artifacts),
                              "--log-dir", str(tmp_path / "log2"), "--port", str(free_port())],
                             capture_output=True, text=True, timeout=PATIENCE)
    lines = started.stderr.strip().splitlines()
    assert started.returncode != 0 and len(lines) == 1 and name in lines[0] and "Traceback" not in started.stderr
    assert "serving" not in started.stdout and "http://" not in started.stdout
