"""How botify runs on uvicorn: one place for the server's options and its connection hygiene.

uvicorn closes idle keep-alive connections, but not a connection that never finishes its
request (one that connects and waits, a slowloris sending a byte a second, a body that never
ends): such connections would pile up forever. `GuardedHttp` notes when each connection
entered its phase — waiting for a request head, or for the body — and a sweep once every
fraction of a second closes those past `header_timeout` or `body_timeout` (a late body gets
a 408 first). Per request that costs two clock reads, where a timer per request cost more
than the event log. Beyond `max_connections` uvicorn answers 503; a graceful shutdown waits
at most `shutdown_timeout`.

Workers of `--workers N` ask the kernel for SIGTERM when their master dies (`watch_parent`),
so killing the master never leaves orphans serving on the port.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from botify.errors import BotifyError
from botify.service.settings import ServiceSettings

PR_SET_PDEATHSIG = 1
HEAD, BODY, APP = 0, 1, 2
LATE_BODY = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
             b"content-length: %d\r\n\r\n%s")


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections slow to send a request head or body."""

    header_timeout = ServiceSettings.model_fields["header_timeout"].default  # set per process by `configure`
    body_timeout = ServiceSettings.model_fields["body_timeout"].default
    _open: weakref.WeakSet[GuardedHttp] = weakref.WeakSet()
    _sweeper: asyncio.Task | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._phase, self._since = HEAD, self.loop.time()
        GuardedHttp._open.add(self)
        if GuardedHttp._sweeper is None or GuardedHttp._sweeper.done():
            GuardedHttp._sweeper = self.loop.create_task(_sweep(self.loop))

    def on_headers_complete(self) -> None:
        self._phase, self._since = BODY, self.loop.time()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = APP
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._phase, self._since = HEAD, self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        GuardedHttp._open.discard(self)
        super().connection_lost(exc)

    def _overdue(self, now: float) -> None:
        if self.transport.is_closing():
            return
        if self._phase == HEAD and now - self._since > self.header_timeout:
            if self.cycle is None or self.cycle.response_complete:  # not between a pipelined request and its answer
                self.transport.close()
        elif self._phase == BODY and now - self._since > self.body_timeout:
            detail = b'{"detail":"the request body did not arrive within %g s"}' % self.body_timeout
            if self.cycle is not None and not self.cycle.response_started:
                self.cycle.response_complete = True  # the app's answer (to a disconnect) goes nowhere
                self.transport.write(LATE_BODY % (len(detail), detail))
            self.transport.close()


async def _sweep(loop: asyncio.AbstractEventLoop) -> None:
    """Close overdue connections, a few times per shortest timeout; ends when none are open."""
    while GuardedHttp._open:
        await asyncio.sleep(max(0.05, min(GuardedHttp.header_timeout, GuardedHttp.body_timeout) / 4))
        now = loop.time()
        for connection in list(GuardedHttp._open):
            connection._overdue(now)


def configure(settings: ServiceSettings) -> None:
    """Set this process's connection limits (the master's, or a worker's from its settings)."""
    GuardedHttp.header_timeout = settings.header_timeout
    GuardedHttp.body_timeout = settings.body_timeout


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
