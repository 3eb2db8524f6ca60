"""`botify serve` as a child process: started on a free port, ready-checked, stopped gracefully."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from botify.errors import BotifyError


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceProcess:
    """Runs `botify serve ARGS` in the background; `with` waits for /ready and stops it with SIGTERM."""

    def __init__(self, *args: str | Path, port: int | None = None, log_file: Path | None = None) -> None:
        self.port = port or free_port()
        self.command = [sys.executable, "-m", "botify", "serve", "--port", str(self.port), *map(str, args)]
        self.log_file = log_file
        self.process: subprocess.Popen | None = None
        self.startup_seconds = float("nan")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def _see(self) -> str:
        return f"; see {self.log_file}" if self.log_file else ""

    def start(self, timeout: float = 120.0) -> ServiceProcess:
        """Waits for /ready while the process lives: a start takes a few seconds, but several times
        that on a machine whose CPU is shared, so `timeout` only guards against a hang."""
        from botify.client import BotifyClient

        started = time.monotonic()
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 - closed in stop
        self._output = output
        self.process = subprocess.Popen(self.command, stdout=output, stderr=output)
        client = BotifyClient(self.url, connections=1, timeout=0.5, outage=0)
        try:
            while time.monotonic() - started < timeout:
                if self.process.poll() is not None:
                    raise BotifyError(f"botify serve exited with status {self.process.returncode}{self._see}")
                try:
                    if client.get("/ready")[0] == 200:
                        self.startup_seconds = time.monotonic() - started
                        return self
                except BotifyError:
                    pass
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise BotifyError(f"botify serve was not ready on {self.url} after {timeout:.0f} s{self._see}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, so the service writes every event it answered before exiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log_file and self._output is not subprocess.DEVNULL:
            self._output.close()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
