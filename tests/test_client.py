"""`botify.client.BotifyClient` against a scripted HTTP server on loopback (real sockets, no mocks):
idempotency keys, the status protocol (503/409/429 retried, other 4xx fatal), the outage budget,
the admin token, and a simulated day that keeps what finished when its server dies."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

import botify.client
from botify.client import BotifyClient, RemoteError
from botify.world import World


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it was read

    @property
    def key(self) -> str | None:
        return self.headers.get("idempotency-key")


Reply = tuple[int, dict[str, str], bytes]
DROP = "drop"  # close the connection without answering
DIE = "die"  # stop listening and close every connection: the server is gone


class ScriptedServer:
    """HTTP/1.1 with keep-alive on an asyncio loop in a thread; `answer(request, index)` decides
    what each request gets: a Reply, DROP or DIE. Every request read is kept in `requests`."""

    def __init__(self, answer: Callable[[Request, int], Reply | str]) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.dead = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def posts(self) -> list[Request]:
        return [request for request in self.requests if request.method == "POST"]

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while not self.dead:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, path, _ = head[0].split(" ", 2)
                headers = {name.strip().lower(): value.strip()
                           for name, value in (line.split(":", 1) for line in head[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append(Request(method, path, headers, body, time.monotonic()))
                reply = self.answer(self.requests[-1], len(self.requests) - 1)
                if reply == DIE:
                    self._die()
                if reply in (DROP, DIE):
                    break
                status, extra, content = reply
                lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(content)}",
                         "Content-Type: application/json", *(f"{k}: {v}" for k, v in extra.items())]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + content)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def _die(self) -> None:
        self.dead = True
        self.server.close()
        for writer in list(self.writers):
            writer.close()

    def close(self) -> None:
        async def shut() -> None:
            self._die()
            await asyncio.sleep(0)

        self._call(shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def ok(request: Request) -> Reply:
    """What a recommender answers: a track for /next (from the track played), the user for /last."""
    user = int(request.path.rsplit("/", 1)[1])
    if "/next/" in request.path:
        return 200, {}, json.dumps({"user": user, "track": (json.loads(request.body)["track"] * 7 + 1) % 800}).encode()
    return 200, {}, json.dumps({"user": user}).encode()


@pytest.fixture()
def serve() -> Iterator[Callable[[Callable[[Request, int], Reply | str]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(answer: Callable[[Request, int], Reply | str]) -> ScriptedServer:
        servers.append(ScriptedServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _post(client: BotifyClient, users: list[int], endpoint: str = "next") -> list[bytes]:
    n = len(users)
    return client.post_batch(endpoint, np.array(users), np.arange(n), np.full(n, 0.5))


def test_503_for_a_while_then_200_is_ridden_out_with_one_key_per_request(serve) -> None:
    server = serve(lambda r, i: (503, {}, b'{"detail": "store unavailable"}') if i < 5 else ok(r))
    client = BotifyClient(server.url, connections=1, outage=60, backoff=0.02, admin_token="")
    answers = _post(client, [1, 2])
    client.close()
    assert [json.loads(body)["user"] for body in answers] == [1, 2]
    first = [r.key for r in server.posts if r.path == "/next/1"]
    second = [r.key for r in server.posts if r.path == "/next/2"]
    assert len(first) == 6 and len(set(first)) == 1 and second == second[:1] and second[0] != first[0]
    assert client.stats.retries == 5 == client.stats.by_status[503]
    assert client.stats.by_status[200] == 2 and client.stats.failures == 0


def test_409_is_retried_after_a_short_wait_and_a_replay_is_counted(serve) -> None:
    def answer(request: Request, index: int) -> Reply:
        if index == 0:
            return 409, {"Retry-After": "0"}, b'{"detail": "being handled"}'
        status, _, body = ok(request)
        return status, {"Idempotent-Replay": "true"}, body

    server = serve(answer)
    client = BotifyClient(server.url, connections=1, backoff=0.05, admin_token="")
    started = time.monotonic()
    assert json.loads(_post(client, [7])[0])["track"] == 1
    client.close()
    assert 0.03 <= time.monotonic() - started < 5  # a short wait (0.05 s back-off, jittered)
    assert [r.key for r in server.posts] == [server.posts[0].key] * 2
    assert client.stats.by_status == {409: 1, 200: 1} and client.stats.retries == 1 and client.stats.replays == 1


def test_429_is_retried(serve) -> None:
    server = serve(lambda r, i: (429, {}, b"slow down") if i < 2 else ok(r))
    client = BotifyClient(server.url, connections=1, backoff=0.01, admin_token="")
    _post(client, [3], "last")
    client.close()
    assert len({r.key for r in server.posts}) == 1 and client.stats.by_status == {429: 2, 200: 1}


def test_a_request_whose_connection_drops_is_sent_again_with_the_same_key(serve) -> None:
    server = serve(lambda r, i: DROP if i == 1 else ok(r))
    client = BotifyClient(server.url, connections=1, backoff=0.01, admin_token="")
    _post(client, [1])
    _post(client, [2])  # the pooled connection: read, then dropped without an answer
    client.close()
    keys = [r.key for r in server.posts]
    assert len(keys) == 3 and keys[1] == keys[2] != keys[0]
    assert client.stats.retries == 1 and client.stats.reconnects == 1 and "connection closed" in client.stats.last_error


def test_keys_are_unique_per_request_and_per_client(serve) -> None:
    server = serve(lambda r, i: ok(r))
    first = BotifyClient(server.url, connections=4, admin_token="")
    second = BotifyClient(server.url, connections=4, admin_token="")
    _post(first, list(range(50)))
    _post(first, list(range(50)), "last")
    _post(second, list(range(50)))
    first.close()
    second.close()
    keys = [r.key for r in server.posts]
    assert len(keys) == 150 and len(set(keys)) == 150
    assert all(re.fullmatch(r"[!-~]{1,128}", key) for key in keys)  # what the service accepts
    prefixes = {key.rsplit("-", 1)[0] for key in keys}
    assert len(prefixes) == 2


def test_a_server_that_never_comes_back_fails_after_the_outage_budget(serve) -> None:
    server = serve(lambda r, i: (503, {"Retry-After": "0"}, b'{"detail": "event log unavailable"}'))
    client = BotifyClient(server.url, connections=2, outage=1, backoff=0.05, admin_token="")
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"kept failing for 1 s; last error: HTTP 503: .*event log unavailable"):
        _post(client, [1, 2])
    elapsed = time.monotonic() - started
    client.close()
    assert 0.95 <= elapsed <= 10  # the last attempt when the 1 s budget runs out (the default is 60 s)
    assert client.stats.failures >= 1 and client.stats.retries >= 8  # 0.05, 0.1, 0.2, 0.4 s... on each connection


def test_backoff_doubles_up_to_its_cap(serve, monkeypatch) -> None:
    monkeypatch.setattr(botify.client, "BACKOFF_CAP", 0.2)
    asked, sleep = [], asyncio.sleep

    async def recorded(delay: float, *args):  # the waits the client asks for, whatever the machine's speed
        if delay > 0:
            asked.append(delay)
        return await sleep(delay, *args)

    monkeypatch.setattr(botify.client, "asyncio", SimpleNamespace(**{**vars(asyncio), "sleep": recorded}))
    server = serve(lambda r, i: (503, {}, b"down") if i < 8 else ok(r))
    client = BotifyClient(server.url, connections=1, outage=60, backoff=0.02, admin_token="")
    _post(client, [1])
    client.close()
    expected = np.minimum(0.02 * 2.0 ** np.arange(8), 0.2)  # without the cap the last would be 0.32 ... 2.56 s
    # jitter only shortens a wait, by up to a quarter
    assert len(asked) == 8 and np.all(asked >= 0.75 * expected) and np.all(asked <= expected), asked
    gaps = np.diff([r.at for r in server.posts])  # and the client did wait them
    assert len(gaps) == 8 and np.all(gaps >= 0.75 * expected - 0.02)


def test_retry_after_is_a_minimum_wait_up_to_a_cap(serve, monkeypatch) -> None:
    server = serve(lambda r, i: (503, {"Retry-After": "1"}, b"busy") if i == 0 else ok(r))
    client = BotifyClient(server.url, connections=1, backoff=0.01, admin_token="")
    _post(client, [1])
    gap = server.posts[1].at - server.posts[0].at
    assert 0.95 <= gap < 3  # the 1 s asked, not the 0.01 s back-off or the cap
    monkeypatch.setattr(botify.client, "RETRY_AFTER_CAP", 0.3)
    server.requests.clear()
    server.answer = lambda r, i: (503, {"Retry-After": "3600"}, b"busy") if i == 0 else ok(r)
    _post(client, [2])  # an hour asked, the cap waited: within the 60 s budget
    client.close()
    gap = server.posts[1].at - server.posts[0].at
    assert 0.25 <= gap < 4  # the 0.3 s cap, not the hour asked nor the 5 s default cap


def test_other_4xx_is_an_error_with_the_servers_message_and_not_retried(serve) -> None:
    server = serve(lambda r, i: (422, {}, b'{"detail": "track 9999 is not in the catalog"}'))
    client = BotifyClient(server.url, connections=1, backoff=0.01, admin_token="")
    with pytest.raises(RemoteError, match=r"HTTP 422 to /next/1: .*track 9999 is not in the catalog"):
        _post(client, [1])
    client.close()
    assert len(server.posts) == 1 and client.stats.retries == 0 and client.stats.failures == 1


def test_admin_token_is_sent_as_a_bearer_header_to_admin_posts_only(serve, monkeypatch) -> None:
    server = serve(lambda r, i: (200, {}, b"{}") if r.path == "/admin/reload" else ok(r))
    explicit = BotifyClient(server.url, connections=1, admin_token="s3cret")
    assert explicit.post_json("/admin/reload") == (200, b"{}")
    _post(explicit, [1])
    explicit.close()
    monkeypatch.setenv("BOTIFY_ADMIN_TOKEN", "from-env")
    from_env = BotifyClient(server.url, connections=1)
    from_env.post_json("/admin/reload")
    from_env.close()
    none = BotifyClient(server.url, connections=1, admin_token="")
    none.post_json("/admin/reload")
    none.close()
    sent = [(r.path, r.headers.get("authorization")) for r in server.requests]
    assert sent == [("/admin/reload", "Bearer s3cret"), ("/next/1", None), ("/admin/reload", "Bearer from-env"),
                    ("/admin/reload", None)]


def test_importing_the_client_loads_no_service_module() -> None:
    code = "import sys, botify.client; print(sorted(m for m in sys.modules if m.startswith('botify.service')))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("processes", [1, 2])
def test_a_day_keeps_the_chunks_that_finished_when_its_server_dies(serve, small_world_dir, small_world: World,
                                                                    processes: int) -> None:
    from botify.sim import AgentSpec, SimSettings, Simulation
    from botify.sim.runner import DayInterrupted

    settings = SimSettings(episodes=320, seed=5, chunk_size=64, processes=processes)
    healthy = serve(lambda r, i: (200, {}, b"{}") if r.method == "GET" else ok(r))
    simulation = Simulation(small_world_dir, AgentSpec(kind="remote", url=healthy.url, connections=4),
                            settings.model_copy(update={"processes": 1}), world=small_world)  # same sessions
    full = simulation.run_day(1).result
    simulation.close()
    # The same day against a server that dies after answering 1,500 plays: refused from then on.
    dying = serve(lambda r, i: (200, {}, b"{}") if r.method == "GET" else DIE if len(dying.posts) > 1500 else ok(r))
    spec = AgentSpec(kind="remote", url=dying.url, connections=4, outage=0.5)
    simulation = Simulation(small_world_dir, spec, settings, world=small_world)
    with pytest.raises(DayInterrupted, match=r"kept failing for 0.5 s; last error: (cannot connect|connection closed)") \
            as stopped:
        simulation.run_day(1)
    simulation.close()
    partial = stopped.value.partial
    assert partial is not None and 0 < partial.sessions < 320 and partial.sessions % 64 == 0
    kept = np.isin(full.episode, partial.result.episode)
    np.testing.assert_array_equal(partial.result.time, full.time[kept])  # the very sessions of a healthy day
    report = stopped.value.agent_report
    assert partial.result.agent_report == report
    assert report["requests"] == 1500 and report["failures"] >= 1 and report["retries"] >= 1
