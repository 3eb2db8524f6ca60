"""Connection hygiene and start-up failures of `botify serve`, on the real uvicorn stack.

Idle, slowloris and unfinished-body connections are closed; beyond `--max-connections`
requests get 503; a SIGTERM is bounded by `--shutdown-timeout` whatever clients do; workers
die with their master; every start-up problem is one line before the banner; the banner
never shows a password.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from botify.service.admin import resolve_admin_token
from botify.service.process import free_port
from botify.service.server import listen, uvicorn_options, watch_parent
from botify.service.settings import ServiceSettings
from tests.servers import PATIENCE, RedisServer, wait_until
from tests.test_faults import Served
from tests.test_service import Client

HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
UNFINISHED_BODY = b"POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"track\""


def _closed(sock: socket.socket, seconds: float = 0.05) -> bool:
    """Whether the server closed this connection (EOF or reset), waiting at most `seconds`."""
    return _wait_closed([sock], seconds) == 1


def _wait_closed(socks: list[socket.socket], seconds: float) -> int:
    """How many of `socks` the server closed (EOF or reset) within `seconds`, all watched at
    once; what the server sends before closing (a 408, say) is read and dropped."""
    deadline = time.monotonic() + seconds
    open_ = list(socks)
    while open_ and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(open_, [], [], left)
        for sock in readable:
            timeout = sock.gettimeout()
            sock.setblocking(False)
            try:
                if not sock.recv(65536):
                    open_.remove(sock)
            except BlockingIOError:
                pass
            except OSError:
                open_.remove(sock)
            finally:
                sock.settimeout(timeout)
    return len(socks) - len(open_)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(PATIENCE)
    return sock.recv(4000)


def test_idle_slow_and_unfinished_connections_are_closed(small_world_dir: Path, tmp_path: Path) -> None:
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--header-timeout", "1",
                     "--keepalive-timeout", "1", "--body-timeout", "1"])
    try:
        idle = [_connect(served.port) for _ in range(20)]  # connect and say nothing
        partial = [_connect(served.port) for _ in range(5)]
        for sock in partial:
            sock.sendall(b"POST /next/1 HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        body = [_connect(served.port) for _ in range(5)]
        for sock in body:
            sock.sendall(UNFINISHED_BODY)
        answered = _connect(served.port)  # idle on keep-alive after an answer
        answered.sendall(HEALTH)
        assert b"200 OK" in _answer(answered)
        started = time.monotonic()  # the defaults would keep them 5 s (keep-alive) and 10 s
        assert _wait_closed(idle + partial + body + [answered], 30) == 31
        assert time.monotonic() - started < 4.5, "closed, but not within the 1 s timeouts"
        for sock in idle + partial + body + [answered]:
            sock.close()

        slow = _connect(served.port)  # a slowloris: a byte of head every 0.3 s
        started = time.monotonic()
        for byte in b"GET /health HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx":
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                break
            if _closed(slow):
                break
            time.sleep(0.25)
        else:
            pytest.fail("the slowloris kept its connection for its whole head")
        assert time.monotonic() - started < 8, "the slowloris kept its connection past the header timeout"

        # A keep-alive client that sent one request, then dribbles the next head: the header
        # timeout counts from the previous answer, not from the last byte.
        again = _connect(served.port)
        again.sendall(HEALTH)
        assert b"200 OK" in _answer(again)
        started = time.monotonic()
        for byte in b"GET /health HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx":
            try:
                again.sendall(bytes([byte]))
            except OSError:
                break
            if _closed(again):
                break
            time.sleep(0.25)
        assert time.monotonic() - started < 8, "a dribbled second head kept its connection"
        slow.close()
        again.close()
    finally:
        output = served.stop()
    assert "Traceback" not in output, output


def test_an_unfinished_body_gets_408_and_the_connection_closes(small_world_dir: Path, tmp_path: Path) -> None:
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--body-timeout", "1"])
    try:
        sock = _connect(served.port)
        started = time.monotonic()
        sock.sendall(UNFINISHED_BODY)
        answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer.lower(), answer
        assert 1 <= time.monotonic() - started < 8  # the 1 s body timeout, not the 10 s default
        assert _wait_closed([sock], 30) == 1
        sock.close()
    finally:
        output = served.stop()
    assert "Traceback" not in output and "ERROR" not in output, output  # the app saw a disconnect, no error


def test_answers_leave_whole_in_one_write_and_head_and_continue_still_flow(small_world_dir: Path,
                                                                           tmp_path: Path) -> None:
    """A response's head and body leave together (`OneWrite`), yet a HEAD answer (no body
    write) and an interim `100 Continue` (the client waits for it before its body) are not held."""
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log"])
    try:
        sock = _connect(served.port)
        for _ in range(3):  # keep-alive: each answer is one segment, head and body
            sock.sendall(b'POST /next/5 HTTP/1.1\r\nHost: x\r\nContent-Length: 25\r\n\r\n{"track": 3, "time": 0.5}')
            sock.settimeout(PATIENCE)
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"}") and b'"track":' in first, first
        sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 ") and head.endswith(b"\r\n\r\n"), head
        sock.sendall(b"POST /next/6 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 25\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b'{"track": 3, "time": 0.5}')
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"}"), answer
        sock.close()
    finally:
        output = served.stop()
    assert "Traceback" not in output and "ERROR" not in output, output


def _exchange(sock: socket.socket, request: bytes, answers: int = 1) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Send `request` (one or more requests) and read `answers` answers: status, headers, body."""
    sock.settimeout(PATIENCE)
    if request:
        sock.sendall(request)
    data, found = b"", []
    while len(found) < answers:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(found)} answers"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        length = int(headers[b"content-length"])
        while len(data) < length:
            data += sock.recv(65536)
        found.append((int(lines[0].split()[1]), headers, data[:length]))
        data = data[length:]
    return found


def _play(endpoint: str, user: str, body: bytes, *headers: bytes) -> bytes:
    return (b"POST /%s/%s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s"
            % (endpoint.encode(), user.encode(), b"".join(h + b"\r\n" for h in headers), len(body), body))


PLAYS = [  # (endpoint, user, body, headers): plays, replays, errors of every kind
    ("next", "1", b'{"track": 3, "time": 0.5}', ()),
    ("next", "1", b'{"track": 7, "time": 1}', ()),
    ("next", "2", b'{"track": 3, "time": 0.25}', (b"Idempotency-Key: k-1",)),
    ("next", "2", b'{"track": 3, "time": 0.25}', (b"Idempotency-Key: k-1",)),  # a replay
    ("next", "3", b'{"track": 9999999, "time": 0.5}', ()),  # not in the catalog
    ("next", "3", b'{"track": 3}', ()),  # no time
    ("next", "3", b"not json", ()),
    ("next", "3x", b'{"track": 3, "time": 0.5}', ()),  # not a user id
    ("next", "4", b'{"track": 3, "time": 0.5}', (b"Idempotency-Key: has space",)),
    ("last", "1", b'{"track": 8, "time": 0.75}', ()),
    ("next", "1", b'{"track": 2, "time": 0.5}', ()),  # a new session
    ("next", "5", b'{"track": 4, "time": 0.5}', (b"Connection: close",)),
]


def test_plays_are_answered_in_the_protocol_as_through_asgi(small_world_dir: Path, tmp_path: Path) -> None:
    """On the embedded store, /next and /last are answered in the server's callback (no ASGI
    task: `answer_now`); the answers, headers and logged events are those the same requests
    get through ASGI — plays, replays and every error — and the service counts them in /ready."""
    import asyncio

    import orjson

    from botify.service.app import BotifyApp

    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "direct"])
    try:
        direct = []
        sock = _connect(served.port)
        for endpoint, user, body, headers in PLAYS:
            direct += _exchange(sock, _play(endpoint, user, body, *headers))
        assert direct[-1][1][b"connection"] == b"close" and _wait_closed([sock], 30) == 1
        sock.close()
        sock = _connect(served.port)
        status, _, ready = _exchange(sock, b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")[0]
        assert status == 200 and orjson.loads(ready)["answered_now"] == len(PLAYS)
        sock.close()
    finally:
        output = served.stop()
    assert "Traceback" not in output and "ERROR" not in output, output

    async def through_asgi() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        app = BotifyApp(ServiceSettings(catalog=small_world_dir, log_dir=tmp_path / "asgi"))
        await app.startup()
        found = []
        for endpoint, user, body, headers in PLAYS:
            sent = []

            async def receive(body=body):
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message, sent=sent):
                sent.append(message)

            listed = [(b"host", b"x")] + [tuple(h.lower().split(b": ", 1)) for h in headers]
            listed.append((b"content-length", str(len(body)).encode()))
            await app({"type": "http", "method": "POST", "path": f"/{endpoint}/{user}", "headers": listed},
                      receive, send)
            found.append((sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]))
        await app.shutdown()
        assert app.answered_now == 0
        return found

    expected = asyncio.run(through_asgi())
    assert [status for status, _, _ in direct] == [200, 200, 200, 200, 422, 422, 400, 422, 400, 200, 200, 200]
    for (status, headers, body), (want_status, want_headers, want_body) in zip(direct, expected, strict=True):
        assert (status, body) == (want_status, want_body)
        headers.pop(b"date"), headers.pop(b"connection", None)  # the server's own
        assert headers == want_headers

    def events(directory: Path) -> list[dict]:
        found = []
        for path in sorted(directory.glob("events-*.jsonl")):
            for line in path.read_bytes().splitlines():
                event = orjson.loads(line)
                del event["timestamp"], event["latency"], event["request_id"]
                found.append(event)
        return found

    assert events(tmp_path / "direct") == events(tmp_path / "asgi") and len(events(tmp_path / "asgi")) == 6


def test_answers_in_the_protocol_keep_http_order_and_connection_rules(small_world_dir: Path, tmp_path: Path) -> None:
    """Pipelined requests get their answers in order, whichever path each takes; HTTP/1.0 and
    `Connection: close` close after the answer; an idle connection closes after the keep-alive
    timeout; a play that cannot be answered at once (its body announced with `Expect:
    100-continue`, or sent chunked) takes ASGI; a SIGTERM while a play's body is on its way
    ends it with a 503, not silence."""
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--keepalive-timeout", "0.5",
                     "--shutdown-timeout", "1"])
    try:
        sock = _connect(served.port)
        pipelined = (_play("next", "1", b'{"track": 3, "time": 0.5}') + _play("next", "7", b'{"track": 3, "time": 0.5}')
                     + HEALTH + _play("next", "2", b'{"track": 3, "time": 0.5}')
                     + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + _play("next", "3", b'{"track": 3, "time": 0.5}'))
        answers = _exchange(sock, pipelined, 6)
        started = time.monotonic()
        assert [status for status, _, _ in answers] == [200] * 6
        assert [answers[i][2].split(b",")[0] for i in (0, 1, 3, 5)] == [b'{"user":%d' % u for u in (1, 7, 2, 3)]
        assert answers[2][2] == b'{"status":"ok"}' and b'"service":"botify"' in answers[4][2]
        # closed 0.5 s after the last answer, not at once and not after the 5 s default
        assert _wait_closed([sock], 30) == 1 and 0.4 < time.monotonic() - started < 4, "idle past keep-alive"
        sock.close()

        for request in (_play("next", "4", b'{"track": 3, "time": 0.5}').replace(b"HTTP/1.1", b"HTTP/1.0"),
                        _play("next", "4", b'{"track": 3, "time": 0.5}', b"Connection: close")):
            sock = _connect(served.port)
            (status, headers, _), = _exchange(sock, request)
            assert status == 200 and headers[b"connection"] == b"close" and _wait_closed([sock], 30) == 1
            sock.close()

        sock = _connect(served.port)
        sock.sendall(b"POST /next/6 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"19\r\n{\"track\": 3, \"time\": 0.5}\r\n0\r\n\r\n")
        (status, _, body), = _exchange(sock, b"")
        assert status == 200 and body.startswith(b'{"user":6,'), body
        # in the protocol: the first two pipelined (the others queued behind an ASGI answer), HTTP/1.0
        # and Connection: close; not the chunked one
        assert Client(served.url).call("GET", "/ready")[1]["answered_now"] == 4

        sock.sendall(UNFINISHED_BODY)  # then SIGTERM: the body never comes
        time.sleep(0.2)
        assert Client(served.url).call("GET", "/health")[0] == 200  # a round trip: the head above was read
        served.process.send_signal(signal.SIGTERM)
        (status, headers, body), = _exchange(sock, b"")
        assert status == 503 and b"shutting down" in body and headers[b"connection"] == b"close", body
        sock.close()
    finally:
        output = served.stop()
    assert "Traceback" not in output and "ERROR" not in output, output


def test_a_store_that_waits_is_served_through_asgi(small_world_dir: Path, tmp_path: Path, redis_url: str) -> None:
    """On Redis every request waits for the store: none is answered in the protocol."""
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--redis", redis_url])
    try:
        sock = _connect(served.port)
        (status, _, body), = _exchange(sock, _play("next", "1", b'{"track": 3, "time": 0.5}'))
        assert status == 200 and body.startswith(b'{"user":1,')
        sock.close()
        assert Client(served.url).call("GET", "/ready")[1]["answered_now"] == 0
    finally:
        served.stop()


def test_sigterm_is_bounded_by_the_shutdown_timeout(small_world_dir: Path, tmp_path: Path) -> None:
    # Every other timeout far away: only the graceful shutdown's bound can end these clients.
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--header-timeout", "600",
                     "--keepalive-timeout", "600", "--body-timeout", "600", "--shutdown-timeout", "2"])
    holders = []
    try:
        for _ in range(3):  # clients holding unfinished bodies
            holder = _connect(served.port)
            holder.sendall(UNFINISHED_BODY)
            holders.append(holder)
        kept = _connect(served.port)  # an idle keep-alive connection after an answer
        kept.sendall(HEALTH)
        assert b"200 OK" in _answer(kept)
        silent = _connect(served.port)  # connected, never a byte
        partial = _connect(served.port)
        partial.sendall(b"GET /health HTTP/1.1\r\n")
        time.sleep(0.3)
        assert _wait_closed(holders + [kept, silent, partial], 0.1) == 0
        started = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(PATIENCE)
        elapsed = time.monotonic() - started  # not the 600 s the clients could take, nor the 10 s default
        assert elapsed < 9, f"SIGTERM took {elapsed:.1f} s with a 2 s shutdown timeout"
        answers = [_answer(holder) for holder in holders]
        assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in answers), answers
    finally:
        output = served.stop()
        for sock in holders:
            sock.close()
    assert "Traceback" not in output, output


def test_connections_beyond_the_limit_get_503(small_world_dir: Path, tmp_path: Path) -> None:
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--max-connections", "3"])
    def three_served() -> list[socket.socket] | None:
        """Three connections open, the third answered 200: at the limit, still served (once the
        server has seen the start-up check's connection go)."""
        held = [_connect(served.port) for _ in range(3)]
        held[2].sendall(HEALTH)
        if b"200 OK" in _answer(held[2]):
            return held
        for sock in held:
            sock.close()
        return None

    try:
        held = wait_until(three_served, "three connections served", every=0.1)
        fourth = _connect(served.port)  # four open: beyond it
        fourth.sendall(HEALTH)
        assert _answer(fourth).startswith(b"HTTP/1.1 503 ")
        for sock in [*held, fourth]:
            sock.close()
        for sock in wait_until(three_served, "three connections served after four closed", every=0.1):
            sock.close()  # back under the limit: served again
    finally:
        served.stop()


def test_the_server_closes_a_connection_the_app_answers_with_connection_close(tmp_path: Path) -> None:
    """In-process: uvicorn with botify's options and protocol, behind a two-line app."""
    import uvicorn

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        close = scope["path"] == "/close"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")] + ([(b"connection", b"close")] if close else [])})
        await send({"type": "http.response.body", "body": b"ok"})

    settings = ServiceSettings(catalog=tmp_path / "tracks.json", port=free_port(), keepalive_timeout=30,
                               header_timeout=30)
    sock = listen(settings.host, settings.port)
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "the server's start", every=0.01)
        assert server.started, "the server did not start"
        kept, closing = _connect(settings.port), _connect(settings.port)
        kept.sendall(b"GET /keep HTTP/1.1\r\nHost: x\r\n\r\n")
        closing.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in _answer(kept) and b"200 OK" in _answer(closing)
        assert _wait_closed([closing], 30) == 1
        assert _wait_closed([kept], 0.5) == 0  # keep-alive: open
        kept.close()
        closing.close()
    finally:
        server.should_exit = True
        thread.join(PATIENCE)


def test_a_taken_port_fails_at_listen_not_later() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        from botify.errors import BotifyError

        with pytest.raises(BotifyError, match=rf"^port {port} on 127\.0\.0\.1 is in use \(.+\)"):
            listen("127.0.0.1", port)


def test_workers_exit_when_their_master_is_killed(small_world_dir: Path, tmp_path: Path, redis_url: str) -> None:
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--workers", "2",
                     "--redis", redis_url])
    children = subprocess.run(["pgrep", "-P", str(served.process.pid)], capture_output=True, text=True).stdout.split()
    workers = [pid for pid in children if "botify.service" in _command_line(pid) or "multiprocessing" in
               _command_line(pid)]
    assert len(workers) >= 2, children
    served.process.kill()
    served.process.wait(PATIENCE)
    wait_until(lambda: not [pid for pid in workers if _alive(pid)], "the workers' exit after their master's", every=0.1)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", served.port)) != 0, "something still serves on the port"
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", served.port))  # the port is free again


def _command_line(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: str | int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return False
    return "zombie" not in state.lower()


def _worker(pid_file: str, delay: float) -> None:
    """A stand-in for a uvicorn worker: asks to die with its parent, then says it lives."""
    time.sleep(delay)
    watch_parent()
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(10 * PATIENCE)  # killed by the test if it outlives its master


def _master(pid_file: str, exit_at_once: bool) -> None:
    """A stand-in for uvicorn's master: spawns one worker, then exits at once or waits."""
    delay = 1.0 if exit_at_once else 0.0  # a worker slow to start: its master is gone when it asks
    worker = multiprocessing.get_context("spawn").Process(target=_worker, args=(pid_file, delay), daemon=False)
    worker.start()
    Path(pid_file + ".spawned").write_text(str(worker.pid))
    if exit_at_once:
        os._exit(0)
    time.sleep(10 * PATIENCE)


@pytest.mark.parametrize("master_dies", ["before the worker asks", "after"])
def test_watch_parent_covers_a_master_dead_before_or_after(tmp_path: Path, master_dies: str) -> None:
    pid_file = str(tmp_path / "worker.pid")
    before = master_dies != "after"
    master = multiprocessing.get_context("spawn").Process(target=_master, args=(pid_file, before))
    master.start()
    wait_until(lambda: Path(pid_file + ".spawned").exists(), "the worker's spawn")
    worker = int(Path(pid_file + ".spawned").read_text())
    try:
        if before:
            master.join(PATIENCE)  # gone before the worker calls watch_parent (it sleeps 1 s first)
        else:
            def called() -> bool:  # the worker called watch_parent and lives on
                assert _alive(worker), "the worker died with its master alive"
                return Path(pid_file).exists()

            wait_until(called, "the worker's call of watch_parent")
            master.kill()
            master.join(PATIENCE)
        wait_until(lambda: not _alive(worker), "the worker's exit after its master's", every=0.05)
        assert before != Path(pid_file).exists()  # a worker whose master died first never got going
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
        if master.is_alive():
            master.kill()


def _serve(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "botify", "serve", *map(str, args)], capture_output=True, text=True,
                          timeout=PATIENCE, env={**os.environ, "BOTIFY_ADMIN_TOKEN": "t", **(env or {})})


def _one_line_failure(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in result.stderr and "http://" not in result.stdout + result.stderr


def test_start_up_problems_are_one_line_before_the_banner(small_world_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_line_failure(_serve("--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--port", port),
                          f"port {port} on 127.0.0.1 is in use (")
    blocker = tmp_path / "file"
    blocker.write_text("")
    _one_line_failure(_serve("--catalog", small_world_dir, "--log-dir", blocker / "log", "--port", free_port()),
                      "log directory", str(blocker / "log"))
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o500)
    if not os.access(read_only, os.W_OK):  # root writes anywhere: the case above covers it
        _one_line_failure(_serve("--catalog", small_world_dir, "--log-dir", read_only, "--port", free_port()),
                          "log directory", str(read_only))
    fake = tmp_path / "no-hiredis"
    fake.mkdir()
    (fake / "hiredis.py").write_text("raise ImportError('hiredis is not installed')\n")
    _one_line_failure(_serve("--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--port", free_port(),
                             "--redis", "redis://127.0.0.1:1/0", env={"PYTHONPATH": str(fake)}),
                      "pip install 'botify[redis]'")


def test_the_banner_never_shows_the_redis_password(small_world_dir: Path, tmp_path: Path) -> None:
    server = RedisServer()
    try:
        server.command("CONFIG", "SET", "requirepass", "s3cret-pw")
        served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log",
                         "--redis", f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"])
        with _connect(served.port) as sock:  # the service did reach Redis with the password
            body = b'{"track": 3, "time": 1.0}'
            sock.sendall(b"POST /next/7 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert b"200 OK" in _answer(sock)
        output = served.stop()
        banner = next(line for line in output.splitlines() if "http://" in line)
        assert f"redis redis://:***@127.0.0.1:{server.port}/0" in banner and "s3cret" not in output
        assert "admin token from $BOTIFY_ADMIN_TOKEN" in banner
    finally:
        server.stop()


def test_services_started_at_once_share_one_whole_admin_token(small_world_dir: Path, tmp_path: Path,
                                                              monkeypatch) -> None:
    """The token file appears whole or not at all: of many starts at once, one token wins and
    every start, and the file, has it (written in place, the file was read empty, or
    truncated and rewritten by a second start with another token)."""
    monkeypatch.delenv("BOTIFY_ADMIN_TOKEN", raising=False)
    settings = ServiceSettings(catalog=small_world_dir, admin_token_file=tmp_path / "secrets" / "admin-token")
    opened = os.fdopen

    def slow_disk(*args, **kwargs):  # a file is created a while before the token is in it
        handle = opened(*args, **kwargs)
        time.sleep(0.2)
        return handle

    monkeypatch.setattr(os, "fdopen", slow_disk)
    start, tokens = threading.Barrier(16), []

    def resolve() -> None:
        start.wait()
        tokens.append(resolve_admin_token(settings)[0])

    threads = [threading.Thread(target=resolve) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    token_file = settings.admin_token_file
    assert len(tokens) == 16 and set(tokens) == {token_file.read_text().strip()}
    assert token_file.stat().st_mode & 0o777 == 0o600 and len(tokens[0]) >= 24
    assert sorted(path.name for path in token_file.parent.iterdir()) == ["admin-token"]  # no file left behind


def test_a_generated_admin_token_is_owner_only(small_world_dir: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "secrets" / "admin-token"
    env = {key: value for key, value in os.environ.items() if key != "BOTIFY_ADMIN_TOKEN"}
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "botify", "serve", "--catalog", str(small_world_dir),
                                "--log-dir", str(tmp_path / "log"), "--port", str(port),
                                "--admin-token-file", str(token_file)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: token_file.exists() or process.poll() is not None, "the token file", every=0.05)
        assert token_file.stat().st_mode & 0o777 == 0o600 and len(token_file.read_text().strip()) >= 24
    finally:
        process.terminate()
        output = process.communicate(timeout=PATIENCE)[0].decode()
    assert f"admin token from {token_file}" in output and token_file.read_text().strip() not in output
    token_file.chmod(0o644)
    _one_line_failure(_serve("--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--port", free_port(),
                             "--admin-token-file", token_file, env={"BOTIFY_ADMIN_TOKEN": ""}), "readable by others")


def test_answers_in_the_protocol_wait_for_their_events_and_a_failed_write_takes_the_plays_back(
        small_world_dir: Path, tmp_path: Path) -> None:
    """Plays answered in one turn of the event loop get their events written in one go before
    any answer leaves; when that write fails, every play of the group is taken back from the
    store and answered 503 with the reason, and the log refuses plays until it can write."""
    import asyncio
    import resource

    from botify.service.app import BotifyApp

    async def scenario() -> None:
        app = BotifyApp(ServiceSettings(catalog=small_world_dir, log_dir=tmp_path / "log", log_retry=60))
        await app.startup()
        headers = [(b"content-length", b"25")]
        body = b'{"track": 3, "time": 0.5}'
        answers = [app.answer_now(b"/next/%d" % user, headers, body) for user in (1, 2)]
        assert [status for status, _, _ in answers] == [200, 200] and app.settle_now() == {}
        store = app.service.store
        assert len(await store.history(1)) == 1

        previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        try:
            answers = [app.answer_now(b"/next/%d" % user, headers, body) for user in (1, 3, 4)]
            answers.append(app.answer_now(b"/next/5", headers, b"not json"))  # no play, no event
            assert [status for status, _, _ in answers] == [200, 200, 200, 400]
            resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))  # the file cannot grow
            try:
                replaced = app.settle_now()
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        finally:
            signal.signal(signal.SIGXFSZ, previous_handler)
        assert sorted(replaced) == [0, 1, 2] and all(status == 503 for status, _, _ in replaced.values())
        assert b"event log cannot be written" in replaced[0][1]
        assert len(await store.history(1)) == 1 and len(await store.history(3)) == 0  # taken back
        status, body_, _ = app.answer_now(b"/next/6", headers, body)
        assert status == 503 and app.settle_now() == {}  # refused before anything is recorded
        assert len(await store.history(6)) == 0
        await app.shutdown()

    asyncio.run(scenario())
    from tests.servers import read_events

    assert [event["user"] for event in read_events(tmp_path / "log")] == [1, 2]


def test_a_pipelined_burst_is_answered_in_order_and_fully_logged(small_world_dir: Path, tmp_path: Path) -> None:
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log"])
    try:
        sock = _connect(served.port)
        burst = b"".join(_play("next", str(user), b'{"track": 3, "time": 0.5}') for user in range(200))
        answers = _exchange(sock, burst, 200)
        assert [body.split(b",")[0] for _, _, body in answers] == [b'{"user":%d' % user for user in range(200)]
        sock.close()
    finally:
        output = served.stop()
    assert "Traceback" not in output, output
    from tests.servers import read_events

    assert sorted(event["user"] for event in read_events(tmp_path / "log")) == list(range(200))
