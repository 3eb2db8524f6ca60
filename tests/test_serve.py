"""`botify serve` as a real process: shutdown loses no events, workers need Redis, Redis workers share."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.servers import PATIENCE, free_port, is_ready, read_events, wait_until


def start_serve(*args: str, cwd: Path, ready_in_a_row: int = 1, env: dict[str, str] | None = None,
                stderr: int = subprocess.PIPE) -> tuple[subprocess.Popen, int]:
    """`botify serve ARGS` once /ready has answered 200 `ready_in_a_row` times in a row (fresh
    connections land on any worker: with several, a few in a row mean all are up)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "botify", "serve", "--port", str(port), *args], cwd=cwd,
                               env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    in_a_row = 0

    def up() -> bool:
        nonlocal in_a_row
        if process.poll() is not None:
            raise AssertionError("".join(output for output in process.communicate() if output))
        in_a_row = in_a_row + 1 if is_ready(port) else 0
        return in_a_row >= ready_in_a_row

    try:
        wait_until(up, "botify serve's /ready", every=0.05)
    except AssertionError:
        process.kill()
        raise
    return process, port


def hammer(port: int, first_user: int, answered: list[int], stop: threading.Event) -> None:
    """Send /next with fresh user ids until the server goes away; remember what was answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    user = first_user
    try:
        while not stop.is_set():
            connection.request("POST", f"/next/{user}", body=b'{"track": 1, "time": 0.5}')
            response = connection.getresponse()
            body = response.read()
            if response.status == 200 and json.loads(body)["user"] == user:
                answered.append(user)
            user += 1
    except (OSError, http.client.HTTPException):
        pass


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_no_answered_event_is_lost_on_shutdown(small_world_dir: Path, tmp_path: Path, signal_number) -> None:
    process, port = start_serve("--catalog", str(small_world_dir), "--log-dir", "log", cwd=tmp_path)
    answered: list[list[int]] = [[] for _ in range(8)]
    stop = threading.Event()
    threads = [threading.Thread(target=hammer, args=(port, i * 10_000_000, answered[i], stop)) for i in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: sum(map(len, answered)) > 500, "500 answers")  # then signalled under load
    process.send_signal(signal_number)
    # uvicorn shuts down gracefully, then re-raises the signal: exit status 0 or "killed by it".
    assert process.wait(PATIENCE) in (0, -signal_number), process.communicate()[1]
    assert "Traceback" not in process.communicate()[1]
    stop.set()
    for thread in threads:
        thread.join(PATIENCE)
    answered_users = {user for part in answered for user in part}
    logged_users = {event["user"] for event in read_events(tmp_path / "log")}
    assert answered_users <= logged_users, f"{len(answered_users - logged_users)} answered events missing"


def test_several_workers_without_redis_are_refused(small_world_dir: Path, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "botify", "serve", "--catalog", str(small_world_dir),
                          "--workers", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=PATIENCE,
                         env={**os.environ, "BOTIFY_REDIS_URL": ""})
    assert run.returncode == 1 and "--workers 2 needs --redis" in run.stderr and "Traceback" not in run.stderr


def test_bad_catalog_or_experiments_fail_before_serving(small_world_dir: Path, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "botify", "serve", "--catalog", "nowhere/tracks.json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=PATIENCE)
    assert run.returncode == 1 and "tracks.json: file not found" in run.stderr
    (tmp_path / "e.toml").write_text('default = "deep_magic"\n')
    run = subprocess.run([sys.executable, "-m", "botify", "serve", "--catalog", str(small_world_dir),
                          "--experiments", "e.toml"], cwd=tmp_path, capture_output=True, text=True, timeout=PATIENCE)
    assert run.returncode == 1 and "unknown recommender 'deep_magic'" in run.stderr


def test_artifacts_naming_tracks_outside_the_catalog_are_served_with_a_warning_unless_strict(
        small_world_dir: Path, tmp_path: Path) -> None:
    tracks = sum(1 for _ in (small_world_dir / "tracks.json").open())
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "i2i.jsonl").write_text(
        "".join(f'{{"item_id": {t}, "recommendations": [{(t + 1) % tracks}, {tracks + t}]}}\n' for t in range(tracks)))
    (tmp_path / "e.toml").write_text('default = {kind = "i2i", artifact = "i2i.jsonl"}\n')
    args = ("--catalog", str(small_world_dir), "--experiments", "e.toml", "--artifacts", "art")
    process, port = start_serve(*args, cwd=tmp_path)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
        connection.request("POST", "/next/1", body=b'{"track": 3, "time": 1.0}')
        assert json.loads(connection.getresponse().read()) == {"user": 1, "track": 4}
    finally:
        process.terminate()
        stderr = process.communicate(timeout=PATIENCE)[1]
    assert f"artifact i2i.jsonl: {tracks} track ids outside the catalog (0..{tracks - 1}) skipped" in stderr
    strict = subprocess.run([sys.executable, "-m", "botify", "serve", "--strict", *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=PATIENCE)
    assert strict.returncode == 1 and f"{tracks} is not a track id in 0..{tracks - 1}" in strict.stderr
    assert "Traceback" not in strict.stderr and len(strict.stderr.strip().splitlines()) == 1


def test_two_workers_share_redis(small_world_dir: Path, tmp_path: Path, redis_server, redis_url: str) -> None:
    process, port = start_serve("--catalog", str(small_world_dir), "--log-dir", "log", "--workers", "2",
                                "--redis", redis_url, cwd=tmp_path, ready_in_a_row=6)  # both workers up and loaded
    try:
        answered = 0
        for user in range(200):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)  # spread over workers
            connection.request("POST", f"/next/{user % 20}", body=b'{"track": 3, "time": 1.0}')
            answered += connection.getresponse().status == 200
            connection.close()
        assert answered == 200
        # Histories live in Redis, shared: each of the 20 users has its 10 listens there.
        assert int(redis_server.command("LLEN", "botify:history:7")) == 10
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(PATIENCE)
    assert len(read_events(tmp_path / "log")) == 200
    stats = redis_server.command("INFO", "commandstats")
    assert int(stats.split("cmdstat_set:calls=")[1].split(",")[0]) <= 3  # one lock, one ready flag: one upload


def test_every_tuning_option_takes_its_default_from_the_settings() -> None:
    from botify.cli.serve import serve
    from botify.service.settings import ServiceSettings

    options = {param.name: param for param in serve.params}
    for name in ("max_users", "keepalive_timeout", "header_timeout", "body_timeout", "max_connections",
                 "shutdown_timeout", "idempotency_window", "reload_interval", "admin_token_file", "history_length"):
        assert f"--{name.replace('_', '-')}" in options[name].opts
    fields = ServiceSettings.model_fields
    shared = [name for name in options if name in fields and not fields[name].is_required()
              and fields[name].default is not None]
    assert len(shared) >= 19  # host, port, log_dir, workers, seed and the tuning options
    for name in shared:
        assert options[name].default == ServiceSettings.model_fields[name].default, name


def test_workers_get_the_connection_settings_and_one_admin_token(small_world_dir: Path, tmp_path: Path,
                                                                  redis_url: str) -> None:
    """`--workers 2`: each worker closes idle connections after `--header-timeout`, and takes
    the token the master resolved (here generated into `--admin-token-file`)."""
    import socket

    token_file = tmp_path / "admin-token"
    env = {key: value for key, value in os.environ.items() if key != "BOTIFY_ADMIN_TOKEN"}
    process, port = start_serve("--catalog", str(small_world_dir), "--log-dir", "log", "--workers", "2", "--redis",
                                redis_url, "--header-timeout", "1", "--reload-interval", "0", "--admin-token-file",
                                str(token_file), cwd=tmp_path, ready_in_a_row=6, env=env, stderr=subprocess.STDOUT)
    try:  # both workers up (fresh connections land on either)
        token = token_file.read_text().strip()
        statuses = []
        for _ in range(12):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
            connection.request("POST", "/admin/reload", headers={"Authorization": f"Bearer {token}"})
            statuses.append(connection.getresponse().status)
            connection.close()
        assert statuses == [200] * 12
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
        connection.request("POST", "/admin/reload", headers={"Authorization": "Bearer wrong"})
        assert connection.getresponse().status == 401
        connection.close()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) for _ in range(10)]
        started = time.monotonic()
        for sock in idle:  # closed by the 1 s header timeout; without one, never (slow machines: 30 s)
            sock.settimeout(max(0.1, started + 30 - time.monotonic()))
            try:
                assert sock.recv(1) == b""
            except TimeoutError:
                raise AssertionError("a worker kept an idle connection past --header-timeout 1") from None
            finally:
                sock.close()
        assert time.monotonic() - started < 8  # the 1 s header timeout, not the 10 s default
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=PATIENCE)[0]
    assert f"admin token from {token_file}" in output and token not in output
