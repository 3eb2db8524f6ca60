"""The one HTTP client of the botify service (the simulator, the loop, benches and tests use it).

Requests of a batch go out concurrently over a pool of keep-alive connections, each request
written in one piece with TCP_NODELAY set (the course's client lost ~44 ms per request to
Nagle's algorithm). Every `/next` and `/last` carries an `Idempotency-Key`, the same on each
retry of it, so a request whose answer was lost is not recorded or logged twice by the service.

Transient failures (connection errors, time-outs, 5xx, 409 "still being handled", 429) are
retried with capped exponential back-off (from `backoff` s, doubling to 1 s, each wait shortened
by up to a quarter at random so that the connections of a pool do not retry in lockstep),
honouring `Retry-After` as a minimum wait (up to 5 s), for up to `outage` seconds (60 by
default; the last attempt is made when they run out, or not at all if the server's Retry-After
goes past them): a service restart or a Redis outage of a minute costs a pause, not the run. A server
that stays down longer, or answers another 4xx, raises RemoteError. A 200 that carries
`Idempotent-Replay: true` (the answer to a retry the server had already answered) is counted.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools
import numpy as np

from botify.errors import BotifyError

OUTAGE = 60.0  # seconds of failures a client rides out by default
BACKOFF_CAP = 1.0  # seconds: the longest back-off between two attempts
RETRY_AFTER_CAP = 5.0  # seconds: the longest wait a server's Retry-After gets
JITTER = 0.25  # each back-off is shortened by up to this fraction
RETRY_STATUSES = (409, 429)  # still being handled, rate limited; every 5xx is retried too


class RemoteError(BotifyError):
    """The server is unreachable for good or answered something the API does not allow."""


class _TransientError(Exception):
    """A failure worth retrying: the connection broke, timed out, or the server said 5xx/409/429."""

    def __init__(self, message: str, wait: float = 0.0) -> None:
        super().__init__(message)
        self.wait = wait


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.body = bytearray()
        self.retry_after = 0.0
        self.replay = False
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.open = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(_TransientError(f"connection closed ({exc or 'by the server'})"))

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(RemoteError("the server asked for a protocol upgrade"))
        except httptools.HttpParserError as error:
            self._fail(RemoteError(f"the server's answer is not valid HTTP ({error})"))

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"retry-after":
            try:
                self.retry_after = max(float(value), 0.0)
            except ValueError:  # an HTTP date, or garbage: the back-off alone decides
                pass
        elif name == b"idempotent-replay":
            self.replay = value.strip().lower() == b"true"

    def on_body(self, body: bytes) -> None:
        self.body.extend(body)

    def on_message_complete(self) -> None:
        parser, self.parser = self.parser, None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((parser.get_status_code(), bytes(self.body), parser.should_keep_alive()))

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    async def request(self, payload: bytes, timeout: float) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        self.retry_after = 0.0
        self.replay = False
        self.transport.write(payload)
        timer = loop.call_later(timeout, self._fail, _TransientError(f"no answer within {timeout:g} s"))
        try:
            status, body, keep_alive = await self.waiter
        finally:
            timer.cancel()
        if not keep_alive:
            self.transport.close()
        return status, body


@dataclass
class ClientStats:
    """What a client did: `requests` answered (any status), `retries` (attempts after a
    transient failure), `failures` (requests given up after `outage` s), `replays` (200s that
    repeated an answer the server had already given), answers `by_status`."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    replays: int = 0
    reconnects: int = 0
    last_error: str = ""
    by_status: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


class BotifyClient:
    """A batch client for the course's API over a pool of keep-alive connections.

    `outage`: seconds to keep retrying transient failures of one request (0: no retries).
    `backoff`: the first wait between attempts, doubled after each up to BACKOFF_CAP.
    `idempotency_keys`: send an `Idempotency-Key` with every play (off: traffic as the course sent it).
    `admin_token`: sent to admin endpoints; by default `$BOTIFY_ADMIN_TOKEN` or the owner-only
    token file a local service wrote."""

    def __init__(
        self,
        url: str,
        connections: int = 32,
        timeout: float = 5.0,
        outage: float = OUTAGE,
        backoff: float = 0.05,
        record_latency: bool = False,
        admin_token: str | None = None,
        idempotency_keys: bool = True,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise RemoteError(f"{url}: expected an http://host:port URL")
        self.url = f"http://{parts.hostname}:{parts.port or 80}"
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.connections = connections
        self.timeout = timeout
        self.outage = outage
        self.backoff = backoff
        self.record_latency = record_latency
        if admin_token is None:
            from botify.service.admin import client_token

            admin_token = client_token()
        self.admin_token = admin_token
        self.stats = ClientStats()
        self._loop = asyncio.new_event_loop()
        self._pool: list[_Connection | None] = []
        self._host_header = f"Host: {self.host}:{self.port}\r\n".encode()
        self._key_prefix = secrets.token_hex(8).encode() if idempotency_keys else None  # unique, not reproducible
        self._keys = 0
        self._jitter = random.Random(self._key_prefix)  # the pool's connections desynchronise

    def _payload(self, endpoint: str, user: int, track: int, played: float) -> bytes:
        body = b'{"track":%d,"time":%s}' % (track, repr(float(played)).encode())
        self._keys += 1
        key = b"" if self._key_prefix is None else b"Idempotency-Key: %s-%d\r\n" % (self._key_prefix, self._keys)
        return (
            b"POST %s/%s/%d HTTP/1.1\r\n" % (self.prefix.encode(), endpoint.encode(), user)
            + self._host_header
            + key
            + b"Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(body)
            + body
        )

    async def _connect(self, connection: _Connection | None) -> _Connection:
        if connection is not None and connection.open:
            return connection
        if connection is not None:
            self.stats.reconnects += 1
        try:
            _, protocol = await asyncio.wait_for(
                self._loop.create_connection(_Connection, self.host, self.port), self.timeout
            )
        except (OSError, asyncio.TimeoutError) as error:
            raise _TransientError(f"cannot connect to {self.url} ({error or 'timed out'})") from error
        return protocol

    async def _send(self, slot: int, payload: bytes) -> bytes:
        """Send one request on connection `slot`, retrying transient failures for up to `outage` s."""
        deadline = time.monotonic() + self.outage
        delay = self.backoff
        while True:
            try:
                connection = await self._connect(self._pool[slot])
                self._pool[slot] = connection
                sent = time.perf_counter()
                status, body = await connection.request(payload, self.timeout)
                if self.record_latency:
                    self.stats.latencies.append(time.perf_counter() - sent)
                self.stats.requests += 1
                self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
                if connection.replay and status == 200:
                    self.stats.replays += 1
                if status >= 500 or status in RETRY_STATUSES:
                    raise _TransientError(f"HTTP {status}: {body[:200].decode(errors='replace')}",
                                          connection.retry_after)
                if status != 200:
                    raise RemoteError(
                        f"{self.url} answered HTTP {status} to {payload.split(b' ', 2)[1].decode()}: "
                        f"{body[:300].decode(errors='replace')}"
                    )
                return body
            except _TransientError as error:
                self.stats.last_error = str(error)
                remaining = deadline - time.monotonic()
                asked = min(error.wait, RETRY_AFTER_CAP)  # the server's Retry-After: a minimum wait
                if remaining <= 0 or asked > remaining:  # the budget is spent, or ends before the server is back
                    self.stats.failures += 1
                    if self.outage <= 0:
                        raise RemoteError(f"{self.url} failed (no retries: outage 0): {error}") from None
                    raise RemoteError(f"{self.url} kept failing for {self.outage:g} s; last error: {error}") from None
                self.stats.retries += 1
                await asyncio.sleep(min(max(delay * (1 - JITTER * self._jitter.random()), asked), remaining))
                delay = min(delay * 2, BACKOFF_CAP)
            except RemoteError:  # another 4xx, or an answer that is not HTTP: not worth retrying
                self.stats.failures += 1
                raise

    async def _fan_out(self, payloads: list[bytes]) -> list[bytes]:
        answers: list[bytes] = [b""] * len(payloads)
        cursor = iter(range(len(payloads)))

        async def worker(slot: int) -> None:
            for index in cursor:
                answers[index] = await self._send(slot, payloads[index])

        width = min(self.connections, len(payloads))
        while len(self._pool) < width:
            self._pool.append(None)
        tasks = [asyncio.ensure_future(worker(slot)) for slot in range(width)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return answers

    def post_batch(self, endpoint: str, users: np.ndarray, tracks: np.ndarray, times: np.ndarray) -> list[bytes]:
        """POST one request per row to `/<endpoint>/<user>`; bodies of the answers in order."""
        payloads = [
            self._payload(endpoint, int(u), int(t), float(x))
            for u, t, x in zip(users.tolist(), tracks.tolist(), times.tolist())
        ]
        return self._loop.run_until_complete(self._fan_out(payloads))

    def get(self, path: str) -> tuple[int, bytes]:
        """A plain GET (for `/` and `/track/<id>`), without retries."""
        return self._request_once(
            b"GET %s%s HTTP/1.1\r\n%sConnection: close\r\n\r\n" % (self.prefix.encode(), path.encode(), self._host_header)
        )

    def post_json(self, path: str, body: bytes = b"{}") -> tuple[int, bytes]:
        """A plain POST (for admin endpoints, with the admin token), without retries."""
        auth = b"Authorization: Bearer %s\r\n" % self.admin_token.encode() if self.admin_token else b""
        payload = (b"POST %s%s HTTP/1.1\r\n%s%sContent-Type: application/json\r\nContent-Length: %d\r\n"
                   b"Connection: close\r\n\r\n%s" % (self.prefix.encode(), path.encode(), self._host_header, auth,
                                                   len(body), body))
        return self._request_once(payload)

    def _request_once(self, payload: bytes) -> tuple[int, bytes]:
        async def run() -> tuple[int, bytes]:
            connection = await self._connect(None)
            try:
                return await connection.request(payload, self.timeout)
            finally:
                connection.transport.close()

        try:
            return self._loop.run_until_complete(run())
        except _TransientError as error:
            raise RemoteError(str(error)) from None

    def close(self) -> None:
        for connection in self._pool:
            if connection is not None and connection.transport is not None:
                connection.transport.close()
        self._pool.clear()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()
