"""The botify service: a lean ASGI app for the course's API, served by uvicorn.

Routing and validation are done here by hand rather than by a framework: at the sizes
botify serves (thousands of requests a second per worker) FastAPI's per-request machinery
costs more than the whole recommendation. Bodies are still validated by pydantic models
(`models.py`), which also write the OpenAPI document served at `/openapi.json`. On the
embedded store with built-in recommenders a play waits for nothing, so the server answers
`/next` and `/last` in its own callback (`immediate`, `answer_now`; see server.py) with the
same steps, errors included, and everything else through ASGI.

Nothing accepted is lost, nothing failed leaves a trace: a play is recorded in the store,
answered by a recommender, and its event written to the log (reaching the kernel) before the
response goes out; if the log cannot take it, the play is taken back from the store and the
client gets 503. With an `Idempotency-Key` header, a retry of an answered request gets the
same answer back and is neither recorded nor logged again. Every random choice comes from
the request's own generator, seeded by (seed, user, the user's request number), so the same
traffic gives the same answers whatever the concurrency, worker count or store.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from botify import __version__
from botify.artifacts import Artifact, read_artifacts
from botify.errors import BotifyError, Unavailable
from botify.events.schema import event as log_event
from botify.service.admin import authorized, resolve_admin_token
from botify.service.docs import docs_file
from botify.service.eventlog import EventLog, LogUnavailable
from botify.service.experiments import ExperimentsConfig
from botify.service.models import MAX_USER, PEOPLE_FIRST, describe, openapi_document, read_listen
from botify.service.recommenders import Chain, Query, Resources, check_spec, request_seed
from botify.service.settings import ServiceSettings
from botify.service.stores import InFlight, Listen, Store, data_version, open_store
from botify.world.model import Catalog, catalog_path

logger = logging.getLogger("botify.service")

JSON_HEADERS = [(b"content-type", b"application/json")]


class HTTPError(Exception):
    def __init__(self, status: int, detail: str, headers: list | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or []


@dataclass(frozen=True)
class ServiceData:
    """What a worker serves from, read and checked once: catalog, experiments, artifacts."""

    catalog: Catalog
    catalog_digest: str
    experiments: ExperimentsConfig
    artifacts: dict[str, Artifact]

    @classmethod
    def read(cls, settings: ServiceSettings) -> ServiceData:
        """Read and cross-check everything; a problem is a BotifyError naming the file."""
        try:
            return cls._read(settings)
        except OSError as error:
            raise BotifyError(f"{error.filename or 'a data file'}: cannot read it ({error.strerror})") from None
        except (ValueError, RecursionError, UnicodeDecodeError) as error:  # a parser's own error, not yet named
            raise BotifyError(f"cannot read the service's data: {error}") from None

    @classmethod
    def _read(cls, settings: ServiceSettings) -> ServiceData:
        path = catalog_path(settings.catalog)
        catalog = Catalog.load(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        experiments = ExperimentsConfig.load(settings.experiments)
        names = {spec.artifact for spec in experiments.specs() if spec.artifact}
        artifacts = read_artifacts(settings.artifacts, names, catalog.size, settings.strict)
        for name, artifact in artifacts.items():
            if artifact.skipped:
                logger.warning("artifact %s: %d track ids outside the catalog (0..%d) skipped; --strict refuses such "
                               "files", name, artifact.skipped, catalog.size - 1)
        for spec in experiments.specs():
            check_spec(spec, artifacts)
        return cls(catalog, digest, experiments, artifacts)


class Service:
    """One worker's service: validates, records listens, routes to a recommender, logs."""

    def __init__(self, settings: ServiceSettings, data: ServiceData, store: Store, log: EventLog) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.worker = f"{os.getpid()}"
        self.seed = settings.seed
        self.replays = 0
        self.undone = 0
        self._requests = 0
        self.held: tuple | None = None  # the play `play` just answered while the log was held, to undo
        self.configure(data)

    def configure(self, data: ServiceData) -> None:
        """Route to recommenders built on `data`. No awaits: a swap between two requests."""
        self.catalog = data.catalog
        self.n_tracks = data.catalog.size
        self.version = data_version(data.catalog_digest, data.artifacts)
        resources = Resources(data.catalog, self.store)
        self.artist_of = resources.artist_of  # Python ints: no NumPy scalar per request
        self.default_chain = Chain(data.experiments.default, resources)
        self.experiments = [
            (
                experiment,
                experiment.treatment_names,
                [None if t.recommender is None else Chain(t.recommender, resources) for t in experiment.treatments],
            )
            for experiment in data.experiments.active
        ]
        # Whether a request's coroutines never wait: the server may then answer it in its own
        # callback (`BotifyApp.answer_now`) instead of an ASGI task.
        self.immediate = self.store.immediate and self.default_chain.immediate and all(
            chain is None or chain.immediate for _, _, chains in self.experiments for chain in chains)

    def describe(self) -> dict[str, Any]:
        return {
            "status": "alive",
            "message": "welcome to botify, the best toy music recommender",  # the course's greeting
            "service": "botify",
            "version": __version__,
            "tracks": self.n_tracks,
            "store": self.store.kind,
            "data_version": self.version,
            "experiments": {e.name: list(names) for e, names, _ in self.experiments},
        }

    @staticmethod
    def parse_user(text: str) -> int:
        if not text.isdigit() or not text.isascii() or len(text) > 10 or int(text) > MAX_USER:
            raise HTTPError(422, f"user must be an integer id in 0..{MAX_USER}, got {text!r}")
        return int(text)

    def parse_listen(self, body: bytes) -> tuple[int, float]:
        try:
            track, share = read_listen(body)
        except ValidationError as error:
            raise HTTPError(*describe(error)) from None
        if track >= self.n_tracks:
            raise HTTPError(422, f"track {track} is not in the catalog (ids 0..{self.n_tracks - 1})")
        return track, share

    def _route(self, user: int) -> tuple[dict[str, str], Chain]:
        assigned, chain = {}, None
        for experiment, names, chains in self.experiments:
            index = experiment.assign(user)
            assigned[experiment.name] = names[index]
            if chain is None:
                chain = chains[index]
        return assigned, chain or self.default_chain

    async def play(self, endpoint: str, user: int, track: int, share: float, started: float,
                   key: str | None, held: bool = False) -> tuple[bytes, bool]:
        """Handle `/next` or `/last`: the answer, and whether it replays an earlier one. With
        `held` the event waits for `EventLog.release` (the answer must too) and the play is
        kept in `self.held`, to be taken back if that write fails."""
        self.log.check()  # 503 before anything is recorded while the log cannot be written
        close = endpoint == "last"
        played = Listen(track, share, self.artist_of[track])
        experiments, chain = self._route(user)
        recorded = await self.store.listen(user, played, close, key, not close and chain.reads_history)
        if recorded.replay is not None:
            self.replays += 1
            return recorded.replay, True
        try:
            self._requests += 1
            request_id = f"{self.worker}-{self._requests}"  # before awaiting: concurrent requests get their own
            agent = "person" if user >= PEOPLE_FIRST else None
            if close:
                answer = orjson.dumps({"user": user})
                event = log_event("last", int(time.time() * 1000), user, track, share,
                                  time.perf_counter() - started, experiments, request_id, self.version, agent=agent)
            else:
                query = Query(user, track, share, recorded.session, recorded.history,
                              request_seed(self.seed, user, recorded.number))
                chosen = await chain.recommend(query)
                answer = orjson.dumps({"user": user, "track": chosen.track})
                event = log_event("next", int(time.time() * 1000), user, track, share,
                                  time.perf_counter() - started, experiments, request_id, self.version,
                                  recommendation=chosen.track, recommender=chosen.recommender,
                                  fallback=chosen.fallback, propensity=chosen.propensity,
                                  candidates=chosen.candidates, deterministic=chosen.deterministic, agent=agent)
            self.log.write(event, held)  # in the kernel before the answer leaves
        except BaseException:
            await self._undo(user, played, recorded, close, key)
            raise
        if held:
            self.held = (user, played, recorded, close, key)
        if key is not None:
            try:
                await self.store.answered(user, key, answer)
            except (Unavailable, BotifyError) as error:  # answered and logged: a retry may be handled again
                logger.warning("could not remember the answer to Idempotency-Key %r: %s", key, error)
        return answer, False

    async def _undo(self, user: int, played: Listen, recorded, close: bool, key: str | None) -> None:
        """Take back the play of a request that fails after it was recorded."""
        try:
            await self.store.undo(user, played, recorded, close, key)
            self.undone += 1
        except (Unavailable, BotifyError) as error:
            logger.error("could not take back user %d's play of track %d after its request failed: %s",
                         user, played.track, error)


def _header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _body_headers(headers: list[tuple[bytes, bytes]]) -> tuple[bytes | None, str | None]:
    """Content-Length and Idempotency-Key of a request, in one pass over its headers."""
    length = key = None
    for name, value in headers:
        if name == b"content-length":
            length = value
        elif name == b"idempotency-key":
            if not 0 < len(value) <= 128 or value.translate(None, KEY_CHARACTERS):
                raise HTTPError(400, "Idempotency-Key must be 1..128 printable ASCII characters without spaces")
            key = value.decode()
    return length, key


async def _read_body(receive, length: bytes | None, limit: int) -> bytes:
    """The request's body (the server closes a connection whose body is late: see server.py)."""
    if length is not None:
        if not length.isdigit():
            raise HTTPError(400, "bad Content-Length header")
        if int(length) > limit:
            raise HTTPError(413, f"body of {int(length)} bytes is over the limit of {limit}")
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "client disconnected")
        body += message.get("body", b"")
        if len(body) > limit:
            raise HTTPError(413, f"body is over the limit of {limit} bytes")
        if not message.get("more_body"):
            return body


def _response_headers(body: bytes, headers: list | None) -> list[tuple[bytes, bytes]]:
    """An answer's headers: JSON unless `headers` start with their own content-type, and its length."""
    length = (b"content-length", str(len(body)).encode())
    if headers and headers[0][0] == b"content-type":
        return [*headers, length]
    return [*JSON_HEADERS, length, *(headers or ())]


async def _respond(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _response_headers(body, headers)})
    await send({"type": "http.response.body", "body": body})


def _run_now(coroutine):
    """Run a coroutine that never waits (see `BotifyApp.immediate`) to its end, here."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a request answered now waited for something: `immediate` is wrong about this configuration")


def _failure(error: Exception, method: str, path: str) -> tuple[int, bytes, list | None]:
    """The answer to a request that raised `error` (called in its `except` block)."""
    if isinstance(error, HTTPError):
        return error.status, orjson.dumps({"detail": error.detail}), error.headers
    if isinstance(error, InFlight):
        return 409, orjson.dumps({"detail": str(error)}), [(b"retry-after", b"1")]
    if isinstance(error, Unavailable):
        return 503, orjson.dumps({"detail": str(error)}), [(b"retry-after", b"1")]
    logger.exception("unexpected error serving %s %s", method, path)
    return 500, orjson.dumps({"detail": "internal error; see the service log"}), None


KEY_CHARACTERS = bytes(range(33, 127))  # printable ASCII but space: what an Idempotency-Key may hold
REPLAY_HEADERS = [(b"idempotent-replay", b"true")]
NOW_TARGETS = (b"/next/", b"/last/")  # what `BotifyApp.immediate` may take


class GcClock:
    """How long this process's garbage collector has run while serving (from `gc.callbacks`), for
    /ready: the total, and the longest pause since the previous /ready (`recent_longest_ms`)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self.longest = 0.0
        self.recent = 0.0
        self.counting = True
        self._started = 0.0
        gc.callbacks.append(self)

    _instance: GcClock | None = None

    @classmethod
    def of_this_process(cls) -> GcClock:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        if not self.counting:
            return
        spent = time.perf_counter() - self._started
        self.seconds += spent
        self.collections += 1
        self.longest = max(self.longest, spent)
        self.recent = max(self.recent, spent)

    def status(self) -> dict:
        recent, self.recent = self.recent, 0.0
        return {"seconds": round(self.seconds, 6), "collections": self.collections,
                "longest_ms": round(self.longest * 1000, 3), "recent_longest_ms": round(recent * 1000, 3)}


def _settle() -> None:
    """After (re)loading: take what is loaded out of the garbage collector's scans (it is never
    cyclic garbage), and collect young objects in larger batches. A service's steady state
    allocates per request and frees by reference counting; with the default thresholds the
    collector's full passes over the catalog, artifacts and users' state cost more per request
    than the event log."""
    clock = GcClock.of_this_process()
    clock.counting = False  # this deliberate pass is start-up work, not a pause in serving
    try:
        gc.collect()
    finally:
        clock.counting = True
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


GC_THRESHOLDS = (20_000, 20, 100)


class BotifyApp:
    """The ASGI application; `data` may be passed in when the caller has already read it."""

    def __init__(self, settings: ServiceSettings, data: ServiceData | None = None) -> None:
        self.settings = settings
        self._data = data
        self.service: Service | None = None
        self._openapi = orjson.dumps(openapi_document())
        self._reloading = asyncio.Lock()
        self._last_reload = float("-inf")
        self.admin_token = ""
        self.gc = GcClock.of_this_process()
        self.answered_now = 0  # requests answered by `answer_now` (without an ASGI task)
        self._settling: list[tuple | None] = []  # per answer since the last `settle_now`: its play, if held

    async def startup(self) -> None:
        data = self._data or ServiceData.read(self.settings)
        settings = self.settings
        self.admin_token = settings.admin_token or resolve_admin_token(settings)[0]
        store = open_store(settings)
        try:
            await store.load(data.catalog, data.catalog_digest, data.artifacts)
        except Unavailable as error:
            logger.warning("%s; serving 503 until it is back", error)
        log = EventLog(settings.log_dir, f"{os.getpid()}", settings.log_max_bytes, settings.log_retry, settings.log_name)
        self.service = Service(settings, data, store, log)
        _settle()

    async def reload(self) -> dict[str, Any]:
        """Re-read catalog, experiments and artifacts, load them into the store, swap them in,
        and start a new event-log file (so that each configuration's events are in their own files).

        Requests keep flowing: files are read in a thread, and the swap itself has no await.
        A broken file leaves the running configuration in place and answers 422. Reloads are
        at least `reload_interval` seconds apart (429 otherwise)."""
        wait = self._last_reload + self.settings.reload_interval - time.monotonic()
        if wait > 0 or self._reloading.locked():
            raise HTTPError(429, f"a reload ran less than {self.settings.reload_interval:g} s ago; retry in "
                                 f"{max(wait, 0.1):.1f} s", [(b"retry-after", str(max(1, round(wait))).encode())])
        async with self._reloading:
            self._last_reload = time.monotonic()
            try:
                data = await asyncio.to_thread(ServiceData.read, self.settings)
            except BotifyError as error:
                raise HTTPError(422, f"reload refused, still serving {self.service.version}: {error}") from None
            previous = self.service.version
            await self.service.store.load(data.catalog, data.catalog_digest, data.artifacts)
            self.service.configure(data)
            closed = self.service.log.rotate()
            _settle()
            return {"reloaded": True, "previous_version": previous, "data_version": self.service.version,
                    "closed_log": None if closed is None else str(closed)}

    async def shutdown(self) -> None:
        if self.service is not None:
            self.service.log.close()
            await self.service.store.close()

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except BotifyError as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return None
        started = time.perf_counter()
        try:
            status, body, headers = await self._handle(scope, receive, started)
        except Exception as error:  # noqa: BLE001 - every failure is an answer (`_failure` logs the unexpected)
            status, body, headers = _failure(error, scope["method"], scope["path"])
        await _respond(send, status, body, headers)

    def immediate(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether the server may answer this POST by `answer_now`, in its own callback once the
        body is in: a `/next` or `/last` with a declared body length within the limit, while
        every coroutine such a request runs is known never to wait (the embedded store and
        built-in recommenders: `Service.immediate`). Such a request then needs no ASGI task,
        scope or messages — most of a request's cost on uvicorn (see server.py)."""
        service = self.service
        if (service is None or not service.immediate or target[:6] not in NOW_TARGETS or b"?" in target
                or b"%" in target):
            return False
        for name, value in headers:
            if name == b"content-length":
                return value.isdigit() and int(value) <= self.settings.max_body_bytes
        return False

    def answer_now(self, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
                   ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """The answer to a request `immediate` accepted: status, body and every header — the
        same as through ASGI, which runs the same steps."""
        started = time.perf_counter()
        path = target.decode("latin-1")
        service = self.service
        service.held = None
        try:
            endpoint, _, argument = path[1:].partition("/")
            user = service.parse_user(argument)
            _, key = _body_headers(headers)
            status, answer, extra = _run_now(self._play(endpoint, user, key, body, started, held=True))
        except Exception as error:  # noqa: BLE001 - as in __call__
            status, answer, extra = _failure(error, "POST", path)
        self._settling.append(service.held)
        self.answered_now += 1
        return status, answer, _response_headers(answer, extra)

    def settle_now(self) -> dict[int, tuple[int, bytes, list[tuple[bytes, bytes]]]]:
        """Write the events of the answers `answer_now` gave since the last call, in one write,
        before the server sends any of them; if the log cannot take them, their plays are taken
        back and those answers become 503 (by their position among those answers)."""
        settling, self._settling = self._settling, []
        error, written = self.service.log.release()
        if error is None:
            return {}
        status, body, extra = _failure(LogUnavailable(error), "POST", "(answers of one turn)")
        failed = (status, body, _response_headers(body, extra))
        replaced, logged = {}, 0
        for position, held in enumerate(settling):
            if held is None:  # no event: an error, or a replay
                continue
            if logged >= written:
                _run_now(self.service._undo(*held))
                replaced[position] = failed
            logged += 1
        return replaced

    async def _play(self, endpoint: str, user: int, key: str | None, body: bytes, started: float,
                    held: bool = False) -> tuple[int, bytes, list | None]:
        track, share = self.service.parse_listen(body)
        answer, replayed = await self.service.play(endpoint, user, track, share, started, key, held)
        return 200, answer, REPLAY_HEADERS if replayed else None

    async def _handle(self, scope, receive, started: float) -> tuple[int, bytes, list | None]:
        service = self.service
        method, path = scope["method"], scope["path"]
        endpoint, _, argument = path[1:].partition("/")
        if endpoint in ("next", "last") and argument:
            if method != "POST":
                raise HTTPError(405, f"use POST for /{endpoint}/<user>")
            user = service.parse_user(argument)
            length, key = _body_headers(scope["headers"])
            body = await _read_body(receive, length, self.settings.max_body_bytes)
            return await self._play(endpoint, user, key, body, started)
        if path == "/admin/reload":
            if method != "POST":
                raise HTTPError(405, "use POST for /admin/reload")
            if not authorized(_header(scope, b"authorization"), self.admin_token):
                raise HTTPError(401, "admin endpoints need 'Authorization: Bearer <token>' (the token is in "
                                     "$BOTIFY_ADMIN_TOKEN or the file the service named when it started)",
                                [(b"www-authenticate", b"Bearer")])
            return 200, orjson.dumps(await self.reload()), None
        if method != "GET":
            raise HTTPError(405, f"{method} is not allowed on {path}")
        if path == "/":
            return 200, orjson.dumps(service.describe()), None
        if path == "/health":
            return 200, b'{"status":"ok"}', None
        if path == "/ready":
            log = service.log.status()
            return 200, orjson.dumps({"ready": True, **await service.store.status(), **log,
                                      "gc": self.gc.status(), "answered_now": self.answered_now}), None
        if path == "/openapi.json":
            return 200, self._openapi, None
        if endpoint == "docs":
            found = docs_file(argument)
            if found is None:
                raise HTTPError(404, f"no such file: {path} (the API's page is /docs)")
            return 200, *found
        if endpoint == "track" and argument:
            if not argument.isdigit() or not argument.isascii() or len(argument) > 19:
                raise HTTPError(422, f"track must be an integer id, got {argument!r}")
            record = await service.store.track(int(argument))
            if record is None:
                raise HTTPError(404, f"track {argument} is not in the catalog (ids 0..{service.n_tracks - 1})")
            if "recommendations" not in record:  # the course's Track always had the key
                record = {**record, "recommendations": []}
            return 200, orjson.dumps(record), None
        raise HTTPError(404, f"no such endpoint: {method} {path} (see /openapi.json)")


def create_app() -> BotifyApp:
    """The app for a uvicorn worker process, with settings passed in the environment; the
    worker exits when its master dies."""
    from botify.service.server import configure, watch_parent

    watch_parent()
    settings = ServiceSettings.from_env()
    configure(settings)
    return BotifyApp(settings)


__all__ = ["BotifyApp", "ServiceData", "create_app"]
