"""Real servers for tests: a throwaway redis-server and the botify service on free ports."""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import uvicorn

from botify.service import BotifyApp, ServiceSettings
from botify.service.process import free_port


# How long a test waits for what takes a second or two on a quiet machine: CI's machines share
# their CPUs, and a whole run there has taken 6.5 times as long as here. Only a hang waits this
# long; tests wait for what they need (a port, an answer, a count), never for a fixed time.
PATIENCE = 120.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = PATIENCE, every: float = 0.02):
    """Polls `condition` until it returns something true, and returns that; fails naming `what`."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f} s")
        time.sleep(every)
    return value


def wait_for_port(port: int, timeout: float = PATIENCE) -> None:
    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, f"something listening on port {port}", timeout, every=0.01)


def is_ready(port: int) -> bool:
    """The service on `port` answers /ready with 200 (a fresh connection: with several workers,
    it lands on any of them)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        connection.request("GET", "/ready")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


class RedisServer:
    """`redis-server` on a free port, no persistence; can be paused, resumed and restarted empty."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()
            self.process = None

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def command(self, *args: str) -> str:
        cli = shutil.which("redis-cli")
        return subprocess.run([cli, "-p", str(self.port), *args], capture_output=True, text=True, check=True).stdout


ADMIN = "test-admin-token"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


class ServiceThread:
    """The botify app on uvicorn in a thread of this process, so tests can look inside it (with
    botify studio around it when the settings ask for it)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.port = free_port()
        self.settings = settings.model_copy(update={"port": self.port, "admin_token": settings.admin_token or ADMIN})
        self.app = BotifyApp(self.settings)
        served = self.app
        if self.settings.studio:
            from botify.studio.app import Studio

            served = Studio(self.app)
        config = uvicorn.Config(served, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on", loop="asyncio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServiceThread:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), "the service's start", every=0.01)
        if not self.server.started:
            raise RuntimeError("the service did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(PATIENCE)


def simulate_through_service(world_dir: Path, world, experiments: str, log_dir: Path, episodes: int, seed: int,
                             chunk_size: int = 400, artifacts: Path | None = None, day: int = 1) -> Path:
    """Serve `experiments` (TOML text, its artifacts in `artifacts`) on the world's catalog and
    send day `day`'s sessions through it; the log directory."""
    from botify.sim import AgentSpec, SimSettings, Simulation

    config = log_dir.parent / f"{log_dir.name}-experiments.toml"
    config.write_text(experiments)
    settings = ServiceSettings(catalog=world_dir, experiments=config, log_dir=log_dir, artifacts=artifacts)
    with ServiceThread(settings) as running:
        simulation = Simulation(world_dir, AgentSpec(kind="remote", url=running.url, connections=16),
                                SimSettings(episodes=episodes, seed=seed, chunk_size=chunk_size), world=world)
        simulation.run_day(day)
        simulation.close()
    return log_dir


def read_events(log_dir: Path, killed: bool = False) -> list[dict]:
    """The events logged; after a SIGKILL (`killed`) a file may end in a line cut mid-write (a
    write crossing a page boundary can be cut by a fatal signal): that event was never answered."""
    import orjson

    events = []
    for path in sorted(Path(log_dir).glob("events-*.jsonl")):
        data = path.read_bytes()
        if killed and not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
        events.extend(orjson.loads(line) for line in data.splitlines() if line)
    return events
