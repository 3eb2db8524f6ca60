"""The botify service: a lean ASGI app for the course's API, served by uvicorn.

Routing and validation are done here by hand rather than by a framework: at the sizes
botify serves (thousands of requests a second per worker) FastAPI's per-request machinery
costs more than the whole recommendation. Bodies are still validated by pydantic models
(`models.py`), which also write the OpenAPI document served at `/openapi.json`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from botify import __version__
from botify.errors import BotifyError
from botify.artifacts import Artifact, read_artifacts
from botify.service.eventlog import SCHEMA_VERSION, EventLog
from botify.service.experiments import ExperimentsConfig
from botify.service.models import MAX_USER, ListenBody, describe, openapi_document
from botify.service.recommenders import Chain, Query, Resources, check_spec
from botify.service.settings import ServiceSettings
from botify.service.stores import Listen, Store, StoreUnavailable, data_version, open_store
from botify.world.model import Catalog, catalog_path

logger = logging.getLogger("botify.service")

JSON_HEADERS = [(b"content-type", b"application/json")]


class HTTPError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


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
        path = catalog_path(settings.catalog)
        catalog = Catalog.load(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        experiments = ExperimentsConfig.load(settings.experiments)
        names = {spec.artifact for spec in experiments.specs() if spec.artifact}
        artifacts = read_artifacts(settings.artifacts, names, catalog.size)
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
        self._requests = 0
        self.rng = random.Random(settings.seed)
        self.configure(data)

    def configure(self, data: ServiceData) -> None:
        """Route to recommenders built on `data`. No awaits: a swap between two requests."""
        self.data = data
        self.catalog = data.catalog
        self.n_tracks = data.catalog.size
        self.artist_codes = data.catalog.artist_codes
        self.version = data_version(data.catalog_digest, data.artifacts)
        resources = Resources(data.catalog, self.store, self.rng)
        self.default_chain = Chain(data.experiments.default, resources)
        self.experiments = [
            (
                experiment,
                experiment.treatment_names,
                [None if t.recommender is None else Chain(t.recommender, resources) for t in experiment.treatments],
            )
            for experiment in data.experiments.active
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "status": "alive",
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

    def parse_listen(self, body: bytes) -> ListenBody:
        try:
            listen = ListenBody.model_validate_json(body)
        except ValidationError as error:
            raise HTTPError(*describe(error)) from None
        if listen.track >= self.n_tracks:
            raise HTTPError(422, f"track {listen.track} is not in the catalog (ids 0..{self.n_tracks - 1})")
        return listen

    def _route(self, user: int) -> tuple[dict[str, str], Chain]:
        assigned, chain = {}, None
        for experiment, names, chains in self.experiments:
            index = experiment.assign(user)
            assigned[experiment.name] = names[index]
            if chain is None:
                chain = chains[index]
        return assigned, chain or self.default_chain

    def _request_id(self) -> str:
        self._requests += 1
        return f"{self.worker}-{self._requests}"

    def _played(self, listen: ListenBody) -> Listen:
        return Listen(listen.track, listen.time, int(self.artist_codes[listen.track]))

    async def next(self, user: int, listen: ListenBody, started: float) -> bytes:
        session, history = await self.store.listen(user, self._played(listen))
        experiments, chain = self._route(user)
        answer = await chain.recommend(Query(user, listen.track, listen.time, session, history))
        self.log.append({
            "message": "next", "timestamp": int(time.time() * 1000), "user": user, "track": listen.track,
            "time": listen.time, "latency": time.perf_counter() - started, "recommendation": answer.track,
            "experiments": experiments, "recommender": answer.recommender, "fallback": answer.fallback,
            "request_id": self._request_id(), "data_version": self.version, "schema": SCHEMA_VERSION,
        })
        return orjson.dumps({"user": user, "track": answer.track})

    async def last(self, user: int, listen: ListenBody, started: float) -> bytes:
        await self.store.listen(user, self._played(listen), close=True)
        experiments, _ = self._route(user)
        self.log.append({
            "message": "last", "timestamp": int(time.time() * 1000), "user": user, "track": listen.track,
            "time": listen.time, "latency": time.perf_counter() - started, "experiments": experiments,
            "request_id": self._request_id(), "data_version": self.version, "schema": SCHEMA_VERSION,
        })
        return orjson.dumps({"user": user})


async def _read_body(scope: dict, receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise HTTPError(400, "bad Content-Length header")
            if int(value) > limit:
                raise HTTPError(413, f"body of {int(value)} bytes is over the limit of {limit}")
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


async def _respond(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": JSON_HEADERS + [(b"content-length", str(len(body)).encode())] + (headers or []),
    })
    await send({"type": "http.response.body", "body": body})


class BotifyApp:
    """The ASGI application; `data` may be passed in when the caller has already read it."""

    def __init__(self, settings: ServiceSettings, data: ServiceData | None = None) -> None:
        self.settings = settings
        self._data = data
        self.service: Service | None = None
        self._openapi = orjson.dumps(openapi_document())
        self._reloading = asyncio.Lock()

    async def startup(self) -> None:
        data = self._data or ServiceData.read(self.settings)
        settings = self.settings
        store = open_store(settings.redis, settings.history_length, settings.redis_timeout, settings.session_length,
                           settings.session_ttl)
        try:
            await store.load(data.catalog, data.catalog_digest, data.artifacts)
        except StoreUnavailable as error:
            logger.warning("%s; serving 503 until it is back", error)
        log = EventLog(self.settings.log_dir, f"{os.getpid()}", self.settings.log_max_bytes)
        self.service = Service(self.settings, data, store, log)

    async def reload(self) -> dict[str, Any]:
        """Re-read catalog, experiments and artifacts, load them into the store, swap them in,
        and start a new event-log file (so that each configuration's events are in their own files).

        Requests keep flowing: files are read in a thread, and the swap itself has no await.
        A broken file leaves the running configuration in place and answers 422."""
        async with self._reloading:
            try:
                data = await asyncio.to_thread(ServiceData.read, self.settings)
            except BotifyError as error:
                raise HTTPError(422, f"reload refused, still serving {self.service.version}: {error}") from None
            previous = self.service.version
            await self.service.store.load(data.catalog, data.catalog_digest, data.artifacts)
            self.service.configure(data)
            closed = await asyncio.to_thread(self.service.log.rotate)
            return {"reloaded": True, "previous_version": previous, "data_version": self.service.version,
                    "closed_log": str(closed)}

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
            status, body = await self._handle(scope, receive, started)
            await _respond(send, status, body)
        except HTTPError as error:
            await _respond(send, error.status, orjson.dumps({"detail": error.detail}))
        except StoreUnavailable as error:
            await _respond(send, 503, orjson.dumps({"detail": str(error)}), [(b"retry-after", b"1")])
        except Exception:  # noqa: BLE001 - answer, log, keep serving
            logger.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            await _respond(send, 500, orjson.dumps({"detail": "internal error; see the service log"}))

    async def _handle(self, scope, receive, started: float) -> tuple[int, bytes]:
        service = self.service
        method, path = scope["method"], scope["path"]
        endpoint, _, argument = path[1:].partition("/")
        if endpoint in ("next", "last") and argument:
            if method != "POST":
                raise HTTPError(405, f"use POST for /{endpoint}/<user>")
            user = service.parse_user(argument)
            listen = service.parse_listen(await _read_body(scope, receive, self.settings.max_body_bytes))
            handler = service.next if endpoint == "next" else service.last
            return 200, await handler(user, listen, started)
        if path == "/admin/reload":
            if method != "POST":
                raise HTTPError(405, "use POST for /admin/reload")
            return 200, orjson.dumps(await self.reload())
        if method != "GET":
            raise HTTPError(405, f"{method} is not allowed on {path}")
        if path == "/":
            return 200, orjson.dumps(service.describe())
        if path == "/health":
            return 200, b'{"status":"ok"}'
        if path == "/ready":
            return 200, orjson.dumps({"ready": True, **await service.store.status()})
        if path == "/openapi.json":
            return 200, self._openapi
        if endpoint == "track" and argument:
            if not argument.isdigit() or not argument.isascii() or len(argument) > 19:
                raise HTTPError(422, f"track must be an integer id, got {argument!r}")
            record = await service.store.track(int(argument))
            if record is None:
                raise HTTPError(404, f"track {argument} is not in the catalog (ids 0..{service.n_tracks - 1})")
            return 200, orjson.dumps(record)
        raise HTTPError(404, f"no such endpoint: {method} {path} (see /openapi.json)")


def create_app() -> BotifyApp:
    """The app for a uvicorn worker process, with settings passed in the environment."""
    return BotifyApp(ServiceSettings.from_env())


__all__ = ["BotifyApp", "ServiceData", "create_app"]
