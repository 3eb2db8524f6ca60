"""botify studio: web pages to be a listener, be the recommender, and watch an experiment live.

The studio wraps the service's ASGI app in the same process and on the same uvicorn server:
paths under `/studio` are the studio's, every other request goes to the service untouched. It
holds no data of its own: a person's plays go through the service's API (`listen.py`), a
person's recommendations are the `Person` recommender's answers (`person.py`), and the
dashboard reads the service's event log (`watch.py`). The page is plain HTML, JavaScript and
CSS shipped in the package (no build step, no CDN: it works offline).

Every studio endpoint checks its input and answers 4xx with a message; control actions
(answering a request, reloading the service) need the service's admin token, which the page
sends as `Authorization: Bearer` (taken from `#token=...` in its URL or typed in).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from botify.client import RemoteError
from botify.errors import BotifyError
from botify.service.admin import authorized
from botify.service.app import BotifyApp, HTTPError, _read_body
from botify.service.models import MAX_USER, PEOPLE_FIRST
from botify.service.server import SHUTDOWN_HOOKS
from botify.studio.listen import Listening
from botify.studio.person import Desk, Person
from botify.studio.watch import Board

logger = logging.getLogger("botify.studio")

PREFIX = "/studio"
MAX_BODY = 1024
SEARCH_LIMIT = 50
SUGGESTIONS = 5  # tracks suggested per recommender
CONTENT_TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
                 ".css": b"text/css; charset=utf-8", ".json": b"application/json"}


class PlayBody(BaseModel):
    """A person's play: `POST /studio/api/next` and `/studio/api/last`."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    user: int = Field(ge=PEOPLE_FIRST, le=MAX_USER, description="a person's id (from /studio/api/listener)")
    track: int = Field(ge=0, description="the track just played")
    time: float = Field(ge=0, le=1, description="the share of it played")


class AnswerBody(BaseModel):
    """A person's recommendation for a waiting request: `POST /studio/api/answer`."""

    model_config = ConfigDict(strict=True, extra="forbid")

    request: int = Field(ge=1)
    track: int = Field(ge=0)


def _parse(model: type[BaseModel], body: bytes) -> BaseModel:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            if item["type"] == "json_invalid":
                raise HTTPError(400, "body is not valid JSON") from None
            where = ".".join(str(part) for part in item["loc"]) or "body"
            problems.append(f"{where}: {item['msg'].lower()}")
        raise HTTPError(422, "; ".join(problems)) from None


def _query(scope: dict) -> dict[str, str]:
    try:
        parsed = parse_qs(scope["query_string"].decode("ascii"), strict_parsing=False, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise HTTPError(400, "the query string is not valid") from None
    return {key: values[-1] for key, values in parsed.items()}


def _int_argument(arguments: dict[str, str], name: str, default: int | None, low: int, high: int) -> int:
    text = arguments.get(name)
    if text is None:
        if default is None:
            raise HTTPError(422, f"{name} is required")
        return default
    if not text.isdigit() or not text.isascii() or len(text) > 10 or not low <= int(text) <= high:
        raise HTTPError(422, f"{name} must be an integer in {low}..{high}, got {text[:40]!r}")
    return int(text)


def _static_files() -> dict[str, tuple[bytes, bytes]]:
    folder = resources.files("botify.studio").joinpath("static")
    files = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if suffix in CONTENT_TYPES:
            files[item.name] = (item.read_bytes(), CONTENT_TYPES[suffix])
    return files


class Studio:
    """The ASGI app: the studio under `/studio`, the service `inner` everywhere else."""

    def __init__(self, inner: BotifyApp, watch_interval: float = 1.0) -> None:
        self.inner = inner
        self.settings = inner.settings
        self.desk = Desk()
        self.board = Board(self.settings.log_dir, watch_interval)
        self.files = _static_files()
        self.listening: Listening | None = None
        self._search: tuple[object, list[str]] | None = None
        self.routes = {  # /studio/api/<name>: method and handler
            "info": ("GET", self.info), "search": ("GET", self.search), "queue": ("GET", self.queue),
            "suggest": ("GET", self.suggest), "watch": ("GET", self.watch), "listener": ("POST", self.listener),
            "next": ("POST", self.next), "last": ("POST", self.last), "answer": ("POST", self.answer),
            "reload": ("POST", self.reload),
        }

    # ASGI

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self.inner(scope, self._lifespan_receive(receive), send)
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            return await self.inner(scope, receive, send)
        try:
            status, body, content_type = await self._handle(scope, receive, path[len(PREFIX):])
        except HTTPError as error:
            status, body, content_type = error.status, orjson.dumps({"detail": error.detail}), CONTENT_TYPES[".json"]
        except RemoteError as error:
            status, body, content_type = 502, orjson.dumps({"detail": f"the service: {error}"}), CONTENT_TYPES[".json"]
        except BotifyError as error:
            status, body, content_type = 503, orjson.dumps({"detail": str(error)}), CONTENT_TYPES[".json"]
        except Exception:  # noqa: BLE001 - answer, log, keep serving
            logger.exception("unexpected error in the studio serving %s %s", scope["method"], path)
            status, body, content_type = 500, b'{"detail":"internal error; see the service log"}', CONTENT_TYPES[".json"]
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _lifespan_receive(self, receive):
        async def wrapped():
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.desk.open()
                SHUTDOWN_HOOKS.append(self.desk.close)  # held requests go to their fallback, not cancelled
            elif message["type"] == "lifespan.shutdown":
                self.desk.close()
                if self.desk.close in SHUTDOWN_HOOKS:
                    SHUTDOWN_HOOKS.remove(self.desk.close)
                if self.listening is not None:
                    await self.listening.close()
            return message

        return wrapped

    # routing

    async def _handle(self, scope, receive, path: str) -> tuple[int, bytes, bytes]:
        method = scope["method"]
        if path in ("", "/", "/index.html"):
            self._allow(method, "GET", path)
            return 200, *self.files["index.html"]
        if path.startswith("/static/"):
            self._allow(method, "GET", path)
            found = self.files.get(path[len("/static/"):])
            if found is None:
                raise HTTPError(404, f"no such file: {PREFIX}{path}")
            return 200, *found
        if not path.startswith("/api/"):
            raise HTTPError(404, f"no such page: {PREFIX}{path}")
        name = path[len("/api/"):]
        if name not in self.routes:
            raise HTTPError(404, f"no such endpoint: {method} {PREFIX}{path}")
        expected, handler = self.routes[name]
        self._allow(method, expected, path)
        if self.inner.service is None:
            raise HTTPError(503, "the service is still starting")
        body = b""
        if method == "POST":
            body = await _read_body(receive, dict(scope["headers"]).get(b"content-length"), MAX_BODY)
        answer = await handler(scope=scope, body=body, arguments=_query(scope))
        return 200, orjson.dumps(answer), CONTENT_TYPES[".json"]

    @staticmethod
    def _allow(method: str, expected: str, path: str) -> None:
        if method != expected:
            raise HTTPError(405, f"use {expected} for {PREFIX}{path}")

    def _check_token(self, scope) -> None:
        token = self.inner.admin_token
        if token and not authorized(dict(scope["headers"]).get(b"authorization"), token):
            raise HTTPError(401, "this action needs the service's admin token ($BOTIFY_ADMIN_TOKEN or the file "
                                 "botify serve named): open the page with #token=<token> or enter it on the page")

    def _listening(self) -> Listening:
        if self.listening is None:
            host = self.settings.host if self.settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
            url = f"http://{'[' + host + ']' if ':' in host else host}:{self.settings.port}"
            self.listening = Listening(url, self.settings.log_dir, self.inner.admin_token)
        return self.listening

    # what the page shows of tracks

    def _record(self, track: int) -> dict[str, Any]:
        record = self.inner.service.catalog.records[track]
        return {"track": track, "title": record.get("title", f"track {track}"), "artist": record.get("artist", "?"),
                "genres": record.get("genres") or ([record["artist_genre"]] if record.get("artist_genre") else [])}

    def _check_track(self, track: int) -> None:
        size = self.inner.service.catalog.size
        if track >= size:
            raise HTTPError(422, f"track {track} is not in the catalog (ids 0..{size - 1})")

    def _search_texts(self) -> list[str]:
        catalog = self.inner.service.catalog
        if self._search is None or self._search[0] is not catalog:  # built once per catalog (a reload swaps it)
            texts = [" ".join([str(record.get("title", "")), str(record.get("artist", "")),
                               *map(str, record.get("genres") or []), str(record.get("artist_genre", ""))]).lower()
                     for record in catalog.records]
            self._search = (catalog, texts)
        return self._search[1]

    # endpoints

    async def info(self, **_) -> dict[str, Any]:
        service = self.inner.service
        people = [
            {"experiment": experiment.name, "treatment": names[index]}
            for experiment, names, chains in service.experiments
            for index, chain in enumerate(chains) if chain is not None and isinstance(chain.members[0], Person)
        ]
        return {"experiments": service.describe()["experiments"], "person_treatments": people,
                "recommenders": [recommender.name for recommender in self._suggesters()], "tracks": service.n_tracks,
                "people_first": PEOPLE_FIRST, "data_version": service.version}

    async def search(self, arguments: dict[str, str], **_) -> dict[str, Any]:
        words = arguments.get("q", "").lower().split()
        if not words:
            raise HTTPError(422, "q: give words to search for in titles, artists and genres")
        if len(words) > 10 or sum(map(len, words)) > 200:
            raise HTTPError(422, "q: at most 10 words and 200 characters")
        limit = _int_argument(arguments, "limit", 20, 1, SEARCH_LIMIT)
        found = []
        for track, text in enumerate(self._search_texts()):
            if all(word in text for word in words):
                found.append(self._record(track))
                if len(found) == limit:
                    break
        return {"query": " ".join(words), "tracks": found}

    async def listener(self, **_) -> dict[str, Any]:
        return {"user": await self._listening().new_listener()}

    async def _play(self, endpoint: str, body: bytes) -> dict[str, Any]:
        play = _parse(PlayBody, body)
        self._check_track(play.track)
        answer = await self._listening().play(endpoint, play.user, play.track, play.time)
        if endpoint == "next":
            answer["record"] = self._record(answer["track"])
        return answer

    async def next(self, body: bytes, **_) -> dict[str, Any]:
        return await self._play("next", body)

    async def last(self, body: bytes, **_) -> dict[str, Any]:
        return await self._play("last", body)

    def _question(self, question) -> dict[str, Any]:
        query = question.query
        return {"request": question.id, "user": query.user, "timeout": round(question.deadline - question.asked, 1),
                "deadline_in": round(max(question.deadline - time.monotonic(), 0.0), 1),
                "session": [{**self._record(listen.track), "time": listen.time} for listen in query.session]}

    async def queue(self, **_) -> dict[str, Any]:
        questions = sorted(self.desk.waiting.values(), key=lambda question: question.id)
        return {"requests": [self._question(question) for question in questions],
                "answered": self.desk.answered, "timed_out": self.desk.timed_out}

    def _suggesters(self) -> list:
        """The service's configured recommenders (default, treatments and their fallbacks), each
        once, people aside."""
        service = self.inner.service
        chains = [service.default_chain] + [chain for _, _, chains in service.experiments for chain in chains if chain]
        unique = {}
        for member in (member for chain in chains for member in chain.members):
            if not isinstance(member, Person):
                unique.setdefault(member.name, member)
        return list(unique.values())

    async def suggest(self, arguments: dict[str, str], **_) -> dict[str, Any]:
        request = _int_argument(arguments, "request", None, 1, 2**31)
        question = self.desk.waiting.get(request)
        if question is None:
            raise HTTPError(404, f"request {request} is not waiting any more (answered or timed out)")
        heard = question.query.heard("session")
        suggestions = []
        for recommender in self._suggesters():
            query = dataclasses.replace(question.query, _rng=None)  # its own draws, as the service would make
            try:
                found = await recommender.candidates(query)
                tracks = [] if found is None else [track for track in found[0] if track not in heard][:SUGGESTIONS]
            except NotImplementedError:  # a recommender that only decides alone: its one answer
                track = await recommender.recommend(query)
                tracks = [] if track is None else [track]
            except Exception as error:  # noqa: BLE001 - a broken recommender leaves the others' suggestions
                logger.warning("suggestions of %s failed: %s", recommender.name, error)
                tracks = []
            suggestions.append({"recommender": recommender.name, "tracks": [
                self._record(track) for track in tracks if isinstance(track, int) and 0 <= track < self.inner.service.n_tracks]})
        return {"request": request, "suggestions": suggestions}

    async def answer(self, scope, body: bytes, **_) -> dict[str, Any]:
        self._check_token(scope)
        answer = _parse(AnswerBody, body)
        self._check_track(answer.track)
        if not self.desk.answer(answer.request, answer.track):
            raise HTTPError(404, f"request {answer.request} is not waiting any more (answered or timed out)")
        return {"request": answer.request, "track": answer.track}

    async def reload(self, scope, **_) -> dict[str, Any]:
        self._check_token(scope)
        status, body = await self._listening().reload()
        if status != 200:
            try:
                detail = orjson.loads(body)["detail"]
            except (orjson.JSONDecodeError, TypeError, KeyError):
                detail = body[:300].decode(errors="replace")
            raise HTTPError(status if 400 <= status < 500 else 502, f"the service refused the reload: {detail}")
        return orjson.loads(body)

    async def watch(self, arguments: dict[str, str], **_) -> dict[str, Any]:
        experiments = self.inner.service.describe()["experiments"]
        experiment = arguments.get("experiment") or next(iter(experiments), None)
        if experiment is not None and experiment not in experiments:
            raise HTTPError(422, f"experiment {experiment[:60]!r} is not active here; active: "
                                 f"{', '.join(experiments) or 'none'}")
        board = dict(await self.board.get(experiment))
        size = self.inner.service.catalog.size
        board["recent"] = [{**session, "tracks": [{**(self._record(item["track"]) if item["track"] is not None and 0 <= item["track"] < size
                                                      else {"track": item["track"]}), "time": item["time"]}
                                                   for item in session["tracks"]]}
                           for session in board["recent"]]
        board["experiments"] = experiments
        return board

