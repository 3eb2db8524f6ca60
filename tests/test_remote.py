"""The remote agent against a small real HTTP server on loopback, with injected failures."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from botify.sim import AgentSpec, SimSettings, Simulation
from botify.sim.remote import BotifyClient, RemoteAgent, RemoteError
from botify.world import World


class CourseLikeServer(ThreadingHTTPServer):
    """Speaks the course's API; `faults` lists what to do to the next requests."""

    daemon_threads = True

    def __init__(self, n_tracks: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.n_tracks = n_tracks
        self.faults: list[str] = []
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict]] = []
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
        fault = self.server.next_fault()
        if fault == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if fault == "503":
            return self._answer(503, b"busy")
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
    client = BotifyClient(f"http://127.0.0.1:{port}", connections=2, retries=2, backoff=0.01, timeout=0.5)
    with pytest.raises(RemoteError, match=r"failed 3 times in a row; last error: cannot connect"):
        client.post_batch("next", np.array([1, 2]), np.array([2, 3]), np.array([0.5, 0.5]))
    client.close()
    agent = RemoteAgent(f"http://127.0.0.1:{port}", small_world.catalog.size)
    with pytest.raises(RemoteError, match="cannot connect"):
        agent.check()
    agent.close()


def test_stalled_server_times_out(small_world) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = BotifyClient(f"http://127.0.0.1:{listener.getsockname()[1]}", connections=1, retries=1,
                              backoff=0.01, timeout=0.2)
        with pytest.raises(RemoteError, match="failed 2 times"):
            client.post_batch("next", np.array([1]), np.array([2]), np.array([0.5]))
        client.close()


def test_bad_url_is_explained() -> None:
    with pytest.raises(RemoteError, match="expected an http://host:port URL"):
        BotifyClient("ftp://example")


def _observation(size: int):
    from botify.sim import Observation

    return Observation(np.arange(size), np.arange(size), np.ones(size), np.arange(size), 0, None)
