"""The remote agent against a small real HTTP server on loopback, with injected failures."""

from __future__ import annotations

import json
import re
import socket
import time
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from botify.sim import AgentSpec, SimSettings, Simulation
from botify.client import BotifyClient, RemoteError
from botify.sim.remote import RemoteAgent
from botify.world import World
from tests.servers import PATIENCE, wait_until


class CourseLikeServer(ThreadingHTTPServer):
    """Speaks the course's API; `faults` lists what to do to the next requests."""

    daemon_threads = True

    def __init__(self, n_tracks: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.n_tracks = n_tracks
        self.faults: list[str] = []
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict]] = []
        self.keys: list[str] = []  # the Idempotency-Key of every POST received, failed ones too
        self.nodelay: list[bool] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CourseLikeServer

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:
        pass

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(200, b'{"status": "alive"}')

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.keys.append(self.headers["Idempotency-Key"])
        fault = self.server.next_fault()
        if fault == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if fault == "503":
            return self._answer(503, b"busy")
        if fault in ("409", "429", "503-wait"):
            self.send_response(int(fault[:3]))
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "2")
            self.end_headers()
            return self.wfile.write(b"{}")
        endpoint, user = self.path.strip("/").split("/")
        with self.server.lock:
            self.server.requests.append((endpoint, {"user": int(user), **body}))
        if fault == "garbage":
            return self._answer(200, b"<html>not json</html>")
        if fault == "400":
            return self._answer(400, b'{"detail": "bad track"}')
        if endpoint == "last":
            return self._answer(200, json.dumps({"user": int(user)}).encode())
        track = (body["track"] * 7 + 1) % self.server.n_tracks
        self._answer(200, json.dumps({"user": int(user), "track": track}).encode())


@pytest.fixture()
def server(small_world: World) -> Iterator[CourseLikeServer]:
    server = CourseLikeServer(small_world.catalog.size)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _simulate(world_dir: Path, world: World, url: str, episodes: int = 200, **agent) -> Simulation:
    spec = AgentSpec(kind="remote", url=url, connections=4, **agent)
    return Simulation(world_dir, spec, SimSettings(episodes=episodes, seed=9, chunk_size=64), world=world)


def test_requests_follow_the_course_protocol(server, small_world_dir: Path, small_world: World) -> None:
    simulation = _simulate(small_world_dir, small_world, server.url)
    summary = simulation.run_day(1)
    simulation.close()
    assert summary.sessions == 200
    nexts = [r for e, r in server.requests if e == "next"]
    lasts = [r for e, r in server.requests if e == "last"]
    assert len(lasts) == 200
    assert len(nexts) == summary.result.steps
    # The first request of each session reports its first track, played in full.
    assert sum(r["time"] == 1.0 for r in nexts) >= 200
    assert all(isinstance(r["track"], int) and 0.0 <= r["time"] <= 1.0 for r in nexts)
    assert summary.as_dict()["agent_requests"] == len(server.requests)
    assert summary.as_dict()["agent_failures"] == 0


def test_same_trajectories_as_an_in_process_agent_with_same_answers(server, small_world_dir, small_world) -> None:
    first = _simulate(small_world_dir, small_world, server.url, episodes=64)
    a = first.run_day(1).result.time
    first.close()
    second = _simulate(small_world_dir, small_world, server.url, episodes=64)
    b = second.run_day(1).result.time
    second.close()
    np.testing.assert_array_equal(a, b)


def test_transient_failures_are_retried_and_counted(server, small_world_dir, small_world) -> None:
    server.faults = ["503", "drop", "503"] + [None] * 30 + ["drop"]
    simulation = _simulate(small_world_dir, small_world, server.url, episodes=100)
    summary = simulation.run_day(1)
    simulation.close()
    report = summary.as_dict()
    assert summary.sessions == 100
    assert report["agent_retries"] >= 4
    assert report["agent_failures"] == 0


def test_garbage_answer_is_one_clear_error(server, small_world) -> None:
    server.faults = ["garbage"]
    agent = RemoteAgent(server.url, small_world.catalog.size, connections=1)
    with pytest.raises(RemoteError, match="expected JSON with an integer 'track'"):
        agent.next(_observation(1))
    agent.close()


def test_client_error_is_not_retried(server, small_world) -> None:
    server.faults = ["400"]
    client = BotifyClient(server.url, connections=1)
    with pytest.raises(RemoteError, match="HTTP 400"):
        client.post_batch("next", np.array([1]), np.array([2]), np.array([0.5]))
    assert client.stats.retries == 0
    client.close()


def test_server_down_for_good_gives_a_clear_error(small_world) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = BotifyClient(f"http://127.0.0.1:{port}", connections=2, outage=0.5, backoff=0.01, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"kept failing for 0.5 s; last error: cannot connect"):
        client.post_batch("next", np.array([1, 2]), np.array([2, 3]), np.array([0.5, 0.5]))
    assert 0.2 < time.monotonic() - started < 10 and client.stats.retries >= 3  # the 0.5 s outage, not 60 s
    client.close()
    agent = RemoteAgent(f"http://127.0.0.1:{port}", small_world.catalog.size)
    with pytest.raises(RemoteError, match="cannot connect"):
        agent.check()
    agent.close()


def test_stalled_server_times_out(small_world) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = BotifyClient(f"http://127.0.0.1:{listener.getsockname()[1]}", connections=1, outage=0.3,
                              backoff=0.01, timeout=0.2)
        with pytest.raises(RemoteError, match="no answer within 0.2 s"):
            client.post_batch("next", np.array([1]), np.array([2]), np.array([0.5]))
        client.close()


def test_bad_url_is_explained() -> None:
    with pytest.raises(RemoteError, match="expected an http://host:port URL"):
        BotifyClient("ftp://example")


def _observation(size: int):
    from botify.sim import Observation

    return Observation(np.arange(size), np.arange(size), np.ones(size), np.arange(size), 0, None)


def test_retries_carry_the_same_idempotency_key(server) -> None:
    server.faults = ["503", "drop", "409", "429"]
    client = BotifyClient(server.url, connections=1, backoff=0.01)
    client.post_batch("next", np.array([1, 2]), np.array([2, 3]), np.array([0.5, 0.5]))
    client.close()
    first, second = server.keys[:5], server.keys[5:]
    assert len(set(first)) == 1 and len(second) == 1 and second[0] != first[0]  # 4 retries of one request
    assert client.stats.retries == 4 and client.stats.by_status[409] == 1


def test_retry_after_is_a_minimum_wait(server) -> None:
    server.faults = ["503-wait"]
    client = BotifyClient(server.url, connections=1, backoff=0.01)
    started = time.monotonic()
    client.post_batch("next", np.array([1]), np.array([2]), np.array([0.5]))
    assert time.monotonic() - started >= 0.95
    client.close()


def test_a_run_that_loses_its_service_writes_what_finished(small_world_dir: Path, tmp_path: Path,
                                                           monkeypatch) -> None:
    """`botify sim` against the real service, SIGKILLed mid-run: the chunks that finished are in the
    CSV, the counters in the table, and stderr holds one line saying so; the exit status is 1."""
    import subprocess
    import sys

    from botify.service.process import ServiceProcess

    monkeypatch.setenv("BOTIFY_ADMIN_TOKEN", "test-admin-token")  # no token file written for the service
    sessions = tmp_path / "sessions.csv"
    with ServiceProcess("--catalog", small_world_dir, "--log-dir", tmp_path / "log") as service:
        run = subprocess.Popen([sys.executable, "-m", "botify", "sim", "run", "--world", str(small_world_dir),
                                "--agent", "remote", "--url", service.url, "--episodes", "200000",
                                "--chunk-size", "200", "--outage", "1", "--sessions-csv", str(sessions)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:  # killed once two chunks' sessions have ended (chunks run one after another)
            def two_chunks() -> bool:
                assert run.poll() is None, run.communicate()[1]
                return sum(path.read_bytes().count(b'"message":"last"')
                           for path in (tmp_path / "log").glob("events-*.jsonl")) >= 400

            wait_until(two_chunks, "400 sessions ended", every=0.05)
        finally:
            service.process.kill()
        killed = time.monotonic()
        stdout, stderr = run.communicate(timeout=PATIENCE)
        exited = time.monotonic()
        result = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "kept failing for 1 s" in lines[0] and f"finished sessions, written to {sessions}" in lines[0]
    assert re.search(r"\(remote agent that day: [\d,]+ requests, [\d,]+ retries, [1-9]\d* failures", lines[0])
    rows = sessions.read_text().splitlines()[1:]
    assert 0 < len(rows) < 200_000 and len(rows) % 200 == 0
    assert f"stopped after {len(rows):,} finished sessions" in lines[0]
    assert "(interrupted)" in result.stdout  # the day's table, counters included, was printed
    assert exited - killed < 60  # the 1 s outage, then the exit: not a hang
