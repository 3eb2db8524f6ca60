"""How botify runs on uvicorn: one place for the server's options and its connection hygiene.

uvicorn closes idle keep-alive connections, but not a connection that never finishes its
request (one that connects and waits, a slowloris sending a byte a second, a body that never
ends): such connections would pile up forever. `GuardedHttp` notes when each connection
entered its phase — waiting for a request head, or for the body — and a sweep once every
fraction of a second closes those past `header_timeout` or `body_timeout` (a late body gets
a 408 first). Per request that costs two clock reads, where a timer per request cost more
than the event log. Beyond `max_connections` open connections uvicorn answers 503; a
graceful shutdown waits at most `shutdown_timeout` for open requests, whatever clients do.

Most of a request's cost on uvicorn is ASGI itself — a scope, a task, an event and two
messages per request: a bare ASGI endpoint does 48,000 req/s on this stack where the same
protocol answering in its callback does 134,000. So when the app says a request can be
answered at once (`immediate`: a play on the embedded store, whose coroutines never wait),
`GuardedHttp` collects its body and answers it in `on_message_complete` (`answer_now`), keeping
HTTP's rules (pipelined answers in order, HTTP/1.0 and `Connection: close`, keep-alive, flow
control, timeouts, graceful shutdown); anything else takes ASGI. The answers given during one
turn of the event loop leave together at its end (`_settle`), after their events went to the
log in one write (`BotifyApp.settle_now`): one system call for the turn instead of one per
request, and still no answer before its event is in the kernel.

`listen` binds the port before the banner (a taken port is one line, never a log after it)
and `run` serves that socket, with one worker or `--workers N`. Workers ask the kernel for
SIGTERM when their master dies (`watch_parent`, called by `create_app` in each worker), so
killing the master never leaves orphans serving on the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import multiprocessing
import os
import signal
import socket
import sys
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from botify.errors import BotifyError
from botify.service.settings import SETTINGS_ENV, ServiceSettings

PR_SET_PDEATHSIG = 1
# Per app (one per event loop): answers given in `on_message_complete` during this turn of the
# loop, sent together at its end (`_settle`) once their events are written in one go.
SETTLING: dict[Any, list[tuple[GuardedHttp, tuple, bool]]] = {}
# Called (with no arguments, maybe more than once) when a graceful shutdown begins, before open
# requests are waited for: botify studio answers the requests it holds for a person at once.
SHUTDOWN_HOOKS: list = []
HEAD, BODY, APP, IDLE = 0, 1, 2, 3  # waiting for a head, a body, the app; idle after a direct answer
ANSWER = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
          b"content-length: %d\r\n\r\n%s")


class OneWrite:
    """A connection's transport that sends a response's head together with its body: uvicorn
    writes the head at `http.response.start` and the body at `http.response.body`, two system
    calls and two TCP segments per answer where one does. The head is held until the next
    write (uvicorn writes every body, even an empty one, but a HEAD answer's), the response's
    end or a close; an interim `100 Continue` goes out at once, since the client waits for it.
    Measured with wrk on /next: about 5% less server CPU per request."""

    __slots__ = ("_transport", "_held")

    def __init__(self, transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100 "):
            self._held = data
        else:
            self._transport.write(data)

    def whole(self, data: bytes) -> None:
        """A whole answer, head and body, in one write."""
        self.flush()
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections slow to send a request head or body,
    and answering what the app can answer at once without ASGI (see `on_message_complete`)."""

    header_timeout = ServiceSettings.model_fields["header_timeout"].default  # set per process by `configure`
    body_timeout = ServiceSettings.model_fields["body_timeout"].default
    keepalive_timeout = ServiceSettings.model_fields["keepalive_timeout"].default
    _open: weakref.WeakSet[GuardedHttp] = weakref.WeakSet()
    _sweeper: asyncio.Task | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(OneWrite(transport))
        self._phase, self._since = HEAD, self.loop.time()
        self._immediate = getattr(self.app, "immediate", None)  # the app's direct path, if it has one
        self._now: bytes | None = None  # the body so far of a request to be answered at once
        self._last = False  # shutting down: close after the answer under way
        self._reads_held = False  # reading paused until the client takes its answers
        self._owed = 0  # answers given in `on_message_complete`, not yet sent
        GuardedHttp._open.add(self)
        if GuardedHttp._sweeper is None or GuardedHttp._sweeper.done():
            GuardedHttp._sweeper = self.loop.create_task(_sweep(self.loop))

    def on_message_begin(self) -> None:
        """A request starts: what uvicorn resets, but not its ASGI scope (a dict and a copy of
        the app's state per request), made in `on_headers_complete` only for requests that take ASGI."""
        if self._phase == IDLE:
            self._phase = HEAD  # header_timeout still counts from the last answer, as after an ASGI one
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def _scope(self) -> None:
        """uvicorn's own scope for this request (its `on_message_begin`, which also resets what
        the parser has gathered since: kept)."""
        url, expect, headers = self.url, self.expect_100_continue, self.headers
        super().on_message_begin()
        self.url, self.expect_100_continue = url, expect
        self.headers = self.scope["headers"] = headers

    def on_headers_complete(self) -> None:
        self._phase, self._since = BODY, self.loop.time()
        limit = self.limit_concurrency
        if (self._immediate is not None and self.parser.get_method() == b"POST" and not self.expect_100_continue
                and (self.cycle is None or self.cycle.response_complete)  # no answer still owed before this one
                and not self.parser.should_upgrade()
                and (limit is None or (len(self.connections) < limit and len(self.tasks) < limit))
                and self._immediate(self.url, self.headers)):
            self._now = b""
            return
        self._now = None
        self._scope()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._now is None:
            super().on_body(body)
        else:
            self._now += body  # at most the app's body limit: `immediate` checked the declared length

    def on_message_complete(self) -> None:
        """A request the app took as `immediate` is answered here, in this callback: the app's
        `answer_now` runs it to its end — no ASGI scope, task, event or messages, which cost a
        bare ASGI endpoint on uvicorn two thirds of its time per request (measured with wrk:
        48,000 req/s through ASGI, 134,000 without) — and the answer leaves, in one write, at
        the end of this turn of the event loop (`_settle`), once its event is in the log. Its
        connection stays as uvicorn would keep it: closed after the answer for HTTP/1.0 or
        `Connection: close`, idle ones closed by the sweep after `keepalive_timeout`, reading
        paused while the client does not take its answers."""
        body = self._now
        if body is None:
            self._phase = APP
            super().on_message_complete()
            return
        self._now = None
        answer = self.app.answer_now(self.url, self.headers, body)
        parser = self.parser
        keep_alive = not self._last and parser.should_keep_alive() and parser.get_http_version() != "1.0"
        self._phase = APP
        self._owed += 1
        settling = SETTLING.get(self.app)
        if settling is None:
            settling = SETTLING[self.app] = []
            self.loop.call_soon(_settle, self.app)
        settling.append((self, answer, keep_alive))
        if not keep_alive:  # nothing more is read from this connection: send what is due now
            _settle(self.app)

    def _deliver(self, status: int, answer: bytes, headers: list, keep_alive: bool) -> None:
        """Send an answer given in `on_message_complete` (its event is in the kernel)."""
        self._owed -= 1
        if self.transport.is_closing():
            return
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        for name, value in headers:
            head += (name, b": ", value, b"\r\n")
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", answer)
        self.transport.whole(b"".join(head))
        self.server_state.total_requests += 1
        if not keep_alive:
            self.transport.close()
            return
        if not self._owed and self._phase == APP:  # not while the next request is under way
            self._phase, self._since = IDLE, self.loop.time()
        if self.flow.write_paused:
            self._reads_held = True
            self.flow.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._reads_held:
            self._reads_held = False
            self.flow.resume_reading()

    def on_response_complete(self) -> None:
        self.transport.flush()  # a HEAD answer has no body write to carry its head
        super().on_response_complete()
        self._phase, self._since = HEAD, self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        GuardedHttp._open.discard(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: idle connections close now, answered ones after their
        answer; a body still on its way is given up just before uvicorn's deadline would cancel
        its request (which logs a traceback), so the app ends it as a disconnect."""
        for hook in SHUTDOWN_HOOKS:
            hook()
        if self.app in SETTLING:
            _settle(self.app)  # answers given, not yet sent: before the connection closes
        if self._now is not None:  # a request to be answered at once, its body on its way
            self._last = True
        else:
            super().shutdown()
        deadline = self.config.timeout_graceful_shutdown
        if self._phase == BODY and deadline is not None and not self.transport.is_closing():
            self.loop.call_later(max(0.0, deadline - 0.25), self._give_up, 503, b"Service Unavailable",
                                 b'{"detail":"the service is shutting down; the request body had not arrived"}')

    def _overdue(self, now: float) -> None:
        if self.transport.is_closing():
            return
        if self._phase == IDLE:
            if now - self._since > self.keepalive_timeout:
                self.transport.close()
        elif self._phase == HEAD and now - self._since > self.header_timeout:
            if self.cycle is None or self.cycle.response_complete:  # not between a pipelined request and its answer
                self.transport.close()
        elif self._phase == BODY and now - self._since > self.body_timeout:
            self._give_up(408, b"Request Timeout",
                          b'{"detail":"the request body did not arrive within %g s"}' % self.body_timeout)

    def _give_up(self, status: int, reason: bytes, detail: bytes) -> None:
        """Answer a request whose body has not arrived (unless an answer has started) and close."""
        if self._phase != BODY or self.transport.is_closing():
            return
        cycle = self.cycle
        if self._now is not None:
            self._now = None
            self.transport.write(ANSWER % (status, reason, len(detail), detail))
        elif cycle is not None:
            if not cycle.response_started:
                self.transport.write(ANSWER % (status, reason, len(detail), detail))
            cycle.disconnected = True  # the app's receive() gets http.disconnect, its answer goes nowhere
            cycle.message_event.set()
        self.transport.close()


def _settle(app) -> None:
    """End of a turn of the event loop (or earlier, when a connection closes after its answer):
    the events of the answers given in callbacks go to the log in one write, then the answers
    leave, each on its connection and in its order (an answer whose event the log could not
    take becomes a 503, its play taken back)."""
    settling = SETTLING.pop(app, None)
    if not settling:
        return
    replaced = app.settle_now()
    for position, (connection, answer, keep_alive) in enumerate(settling):
        connection._deliver(*replaced.get(position, answer), keep_alive)


async def _sweep(loop: asyncio.AbstractEventLoop) -> None:
    """Close overdue connections, a few times per shortest timeout; ends when none are open."""
    while GuardedHttp._open:
        await asyncio.sleep(max(0.05, min(GuardedHttp.header_timeout, GuardedHttp.body_timeout,
                                          GuardedHttp.keepalive_timeout) / 4))
        now = loop.time()
        for connection in list(GuardedHttp._open):
            connection._overdue(now)


def configure(settings: ServiceSettings) -> None:
    """Set this process's connection limits (the master's, or a worker's from its settings)."""
    GuardedHttp.header_timeout = settings.header_timeout
    GuardedHttp.body_timeout = settings.body_timeout
    GuardedHttp.keepalive_timeout = settings.keepalive_timeout


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's options for these settings (the same for one worker or many)."""
    configure(settings)
    # uvicorn answers 503 when a request's head arrives while `limit_concurrency` connections
    # are open, this one included: + 1 serves exactly `max_connections` open connections.
    return dict(host=settings.host, port=settings.port, loop="uvloop", http=GuardedHttp, log_level="warning",
                access_log=False, lifespan="on", server_header=False, proxy_headers=False,
                timeout_keep_alive=settings.keepalive_timeout, limit_concurrency=settings.max_connections + 1,
                timeout_graceful_shutdown=settings.shutdown_timeout)


def listen(host: str, port: int) -> socket.socket:
    """The service's socket, bound now (before the banner); one line when it cannot be."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        reason = "is in use" if error.errno == errno.EADDRINUSE else "cannot be bound"
        raise BotifyError(f"port {port} on {host} {reason} ({error.strerror or error}); "
                          "pick another with --port") from None
    sock.set_inheritable(True)  # as uvicorn's own bind: workers get it
    return sock


def run(settings: ServiceSettings, sock: socket.socket, app=None) -> None:
    """Serve on `sock` (from `listen`): `app` in this process with one worker, else
    `settings.workers` worker processes each building its app with `create_app`."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    options = uvicorn_options(settings)
    if settings.workers == 1:
        server = uvicorn.Server(uvicorn.Config(app, **options))
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises a SIGINT once shut down, as uvicorn.run
            server.run(sockets=[sock])
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    os.environ[SETTINGS_ENV] = settings.to_env()  # the workers' settings (with the admin token they share)
    config = uvicorn.Config("botify.service.app:create_app", factory=True, workers=settings.workers, **options)
    supervisor = Multiprocess(config, sockets=[sock])
    with contextlib.suppress(KeyboardInterrupt):
        supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


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
    """In a worker process of `--workers N`: be sent SIGTERM when the master dies.

    Call it first thing in the worker (`create_app` does). The kernel's parent-death signal
    (Linux `prctl(PR_SET_PDEATHSIG)`) comes only for a death after the call, so a master
    that died before it is caught by comparing the parent with the one that spawned us.
    Outside a worker spawned by uvicorn's supervisor, or off Linux, it does nothing.
    """
    master = multiprocessing.parent_process()
    if master is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != master.pid:  # the master died before we asked
        os.kill(os.getpid(), signal.SIGTERM)
