"""Connection hygiene and start-up failures of `botify serve`, on the real uvicorn stack.

Idle, slowloris and unfinished-body connections are closed; a SIGTERM is bounded whatever
clients do; workers die with their master; every start-up problem is one line before the
banner; the banner never shows a password.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from botify.service.process import free_port
from tests.servers import RedisServer
from tests.test_faults import Served


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed this connection (EOF or reset), without blocking long."""
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def _wait_closed(socks: list[socket.socket], seconds: float) -> int:
    deadline = time.monotonic() + seconds
    closed: set[int] = set()
    while time.monotonic() < deadline and len(closed) < len(socks):
        for index, sock in enumerate(socks):
            if index not in closed and _closed(sock):
                closed.add(index)
    return len(closed)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=2)


def test_idle_slow_and_unfinished_connections_are_closed(small_world_dir: Path, tmp_path: Path) -> None:
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--header-timeout", "1",
                     "--keepalive-timeout", "1", "--body-timeout", "1"])
    try:
        idle = [_connect(served.port) for _ in range(20)]
        partial = [_connect(served.port) for _ in range(5)]
        for sock in partial:
            sock.sendall(b"POST /next/1 HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        body = [_connect(served.port) for _ in range(5)]
        for sock in body:
            sock.sendall(b"POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"track\"")
        answered = _connect(served.port)
        answered.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in answered.recv(1000)
        started = time.monotonic()
        assert _wait_closed(idle + partial + body + [answered], 6) == 31
        assert time.monotonic() - started < 4
        for sock in body:
            sock.close()
        slow = _connect(served.port)  # a slowloris: a byte of head every 0.3 s
        started = time.monotonic()
        for byte in b"GET /health HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxx":
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                break
            if _closed(slow):
                break
            time.sleep(0.25)
        assert time.monotonic() - started < 3, "the slowloris kept its connection"
    finally:
        served.stop()


def test_an_unfinished_body_gets_408_and_sigterm_is_bounded(small_world_dir: Path, tmp_path: Path) -> None:
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--body-timeout", "1",
                     "--shutdown-timeout", "2"])
    try:
        sock = _connect(served.port)
        sock.sendall(b"POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"track\"")
        answer = sock.recv(1000)
        assert b"408" in answer and b"connection: close" in answer.lower()
        holders = []
        for _ in range(3):  # clients that hold unfinished bodies and idle keep-alive connections
            holder = _connect(served.port)
            holder.sendall(b"POST /next/2 HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{")
            holders.append(holder)
            holders.append(_connect(served.port))
        time.sleep(0.2)
        started = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(10)
        assert time.monotonic() - started < 4
    finally:
        served.stop()


def test_workers_exit_when_their_master_is_killed(small_world_dir: Path, tmp_path: Path, redis_url: str) -> None:
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--workers", "2",
                     "--redis", redis_url])
    children = subprocess.run(["pgrep", "-P", str(served.process.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) >= 2
    served.process.kill()
    served.process.wait(10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in children):
        assert time.monotonic() < deadline, "workers outlived their master"
        time.sleep(0.1)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", served.port))  # the port is free again


def _state(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def _serve(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "botify", "serve", *map(str, args)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def _one_line_failure(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in result.stderr and "http://" not in result.stdout


def test_start_up_problems_are_one_line_before_the_banner(small_world_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_line_failure(_serve("--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--port", port),
                          f"port {port}", "in use")
    blocker = tmp_path / "file"
    blocker.write_text("")
    _one_line_failure(_serve("--catalog", small_world_dir, "--log-dir", blocker / "log", "--port", free_port()),
                      "log directory", str(blocker / "log"))
    fake = tmp_path / "no-hiredis"
    fake.mkdir()
    (fake / "hiredis.py").write_text("raise ImportError('hiredis is not installed')\n")
    _one_line_failure(_serve("--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--port", free_port(),
                             "--redis", "redis://127.0.0.1:1/0", env={"PYTHONPATH": str(fake)}), "botify[redis]")


def test_the_banner_never_shows_the_redis_password(small_world_dir: Path, tmp_path: Path) -> None:
    server = RedisServer()
    try:
        server.command("CONFIG", "SET", "requirepass", "s3cret-pw")
        served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log",
                         "--redis", f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"])
        output = served.stop()
        assert "redis://:***@127.0.0.1" in output and "s3cret" not in output
        assert "admin token from $BOTIFY_ADMIN_TOKEN" in output
    finally:
        server.stop()


def test_a_generated_admin_token_is_owner_only(small_world_dir: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "secrets" / "admin-token"
    env = {key: value for key, value in os.environ.items() if key != "BOTIFY_ADMIN_TOKEN"}
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "botify", "serve", "--catalog", str(small_world_dir),
                                "--log-dir", str(tmp_path / "log"), "--port", str(port),
                                "--admin-token-file", str(token_file)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not token_file.exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        assert token_file.stat().st_mode & 0o777 == 0o600 and len(token_file.read_text().strip()) >= 24
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert str(token_file) in output and token_file.read_text().strip() not in output
    token_file.chmod(0o644)
    _one_line_failure(_serve("--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--port", free_port(),
                             "--admin-token-file", token_file, env={"BOTIFY_ADMIN_TOKEN": ""}), "readable by others")


@pytest.mark.parametrize("count", [3])
def test_connections_beyond_the_limit_get_503(small_world_dir: Path, tmp_path: Path, count: int) -> None:
    served = Served(["--catalog", small_world_dir, "--log-dir", tmp_path / "log", "--max-connections", str(count)])
    try:
        held = [_connect(served.port) for _ in range(count)]
        time.sleep(0.2)
        extra = _connect(served.port)
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"503" in extra.recv(1000)
        for sock in held:
            sock.close()
    finally:
        served.stop()
