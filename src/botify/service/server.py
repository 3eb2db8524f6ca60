"""How botify runs on uvicorn: one place for the server's options and its connection hygiene.

uvicorn closes idle keep-alive connections, but not a connection that never finishes its
request head (one that connects and waits, or a slowloris sending a byte a second): such
connections would pile up forever. `GuardedHttp` gives every request head `header_timeout`
seconds, counted from the connection or from the previous answer. The body's own deadline
(`body_timeout`) is kept by the app, which answers 408 and closes the connection. Beyond
`max_connections` uvicorn answers 503; a graceful shutdown waits at most `shutdown_timeout`.

Workers of `--workers N` ask the kernel for SIGTERM when their master dies (`watch_parent`),
so killing the master never leaves orphans serving on the port.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from botify.errors import BotifyError
from botify.service.settings import ServiceSettings

PR_SET_PDEATHSIG = 1


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections slow to send a request head."""

    header_timeout = ServiceSettings.model_fields["header_timeout"].default  # set per process by `configure`

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._head_timer.cancel()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._head_timer.cancel()
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_timer.cancel()
        super().connection_lost(exc)

    def _head_too_slow(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def configure(settings: ServiceSettings) -> None:
    """Set this process's connection limits (the master's, or a worker's from its settings)."""
    GuardedHttp.header_timeout = settings.header_timeout


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's options for these settings (the same for one worker or many)."""
    configure(settings)
    return dict(host=settings.host, port=settings.port, loop="uvloop", http=GuardedHttp, log_level="warning",
                access_log=False, lifespan="on", server_header=False, proxy_headers=False,
                timeout_keep_alive=settings.keepalive_timeout, limit_concurrency=settings.max_connections,
                timeout_graceful_shutdown=settings.shutdown_timeout)


def check_port(host: str, port: int) -> None:
    """Fail with one line, before anything starts, when the address cannot be bound."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = "is in use" if error.errno == 98 else f"cannot be bound ({error.strerror})"
            raise BotifyError(f"port {port} on {host} {reason}; pick another with --port") from None


def check_log_dir(path) -> None:
    """Fail with one line when the event log directory cannot be created or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise BotifyError(f"the log directory {path} cannot be written ({error.strerror}); "
                          "pick another with --log-dir") from None


def watch_parent() -> None:
    """In a worker process: be sent SIGTERM when the parent (uvicorn's master) dies."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to ask for
        return
    if os.getppid() != parent or parent == 1:  # the master died before we asked
        os.kill(os.getpid(), signal.SIGTERM)
