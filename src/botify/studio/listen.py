"""The Listen view's side: a person plays through the service's real API, like any client.

Their requests go to `/next` and `/last` through `BotifyClient` (the one client of the
service) under user ids from `PEOPLE_FIRST` up, which the service marks `"agent": "person"` in
its events. Which treatment and which recommender served each track is read back from the
event log (written before the answer left), so the page shows what the analysis will see.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from botify.client import BotifyClient
from botify.events.duck import events_view
from botify.service.models import MAX_USER, PEOPLE_FIRST
from botify.studio.watch import log_files

PERSON_MARK = b'"user":' + str(PEOPLE_FIRST)[:1].encode()  # every person's id starts so (a few others too)
LOOKUP_WAIT = 1.0  # seconds to look for a request's event before answering without it


class PeopleLog:
    """People's `next` events, read from the end of the event log as it grows: for each person,
    the latest. Lines of other users are skipped by a byte search, not parsed."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.offsets: dict[str, int] = {}  # only what comes next is read
        for name in log_files(self.log_dir):
            try:
                self.offsets[name] = Path(name).stat().st_size
            except FileNotFoundError:  # rotated away meanwhile
                continue
        self.latest: dict[int, dict] = {}
        self._lock = threading.Lock()

    def _read_new(self) -> None:
        for name in log_files(self.log_dir):
            offset = self.offsets.get(name, 0)
            try:
                with open(name, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
            except OSError:
                continue
            end = chunk.rfind(b"\n") + 1  # complete lines only
            self.offsets[name] = offset + end
            start = chunk.find(PERSON_MARK, 0, end)
            while start >= 0:
                line_start = chunk.rfind(b"\n", 0, start) + 1
                line_end = chunk.find(b"\n", start)
                try:
                    event = orjson.loads(chunk[line_start:line_end])
                except orjson.JSONDecodeError:
                    event = None
                if (isinstance(event, dict) and event.get("message") == "next" and isinstance(event.get("user"), int)
                        and event["user"] >= PEOPLE_FIRST):
                    self.latest[event["user"]] = event
                start = chunk.find(PERSON_MARK, line_end, end)

    def event(self, user: int, track: int, recommendation: int) -> dict | None:
        """The `next` event of `user`'s request that reported `track` and got `recommendation`."""
        deadline = time.monotonic() + LOOKUP_WAIT
        while True:
            with self._lock:
                self._read_new()
                event = self.latest.get(user)
            if event is not None and event.get("track") == track and event.get("recommendation") == recommendation:
                return event
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)


def next_person(log_dir: Path) -> int:
    """The first person id after every one in the logs (so that a studio started again on the
    same logs never gives a new listener someone else's past)."""
    files = log_files(log_dir)
    if not files:
        return PEOPLE_FIRST
    with events_view(files) as connection:
        (highest,) = connection.execute('SELECT max("user") FROM events WHERE "user" >= $first',
                                        {"first": PEOPLE_FIRST}).fetchone()
    return PEOPLE_FIRST if highest is None else min(int(highest) + 1, MAX_USER)


class Listening:
    """Plays of people through the service's API, one at a time (the client is not thread-safe)."""

    def __init__(self, url: str, log_dir: Path, admin_token: str) -> None:
        self.client = BotifyClient(url, connections=1, timeout=10.0, outage=5.0, admin_token=admin_token)
        self.log = PeopleLog(log_dir)
        self.log_dir = Path(log_dir)
        self._next_id: int | None = None
        self._lock = threading.Lock()

    def _new_listener(self) -> int:
        with self._lock:
            if self._next_id is None:
                self._next_id = next_person(self.log_dir)
            user, self._next_id = self._next_id, min(self._next_id + 1, MAX_USER)
            return user

    def _play(self, endpoint: str, user: int, track: int, played: float) -> dict[str, Any]:
        with self._lock:
            (body,) = self.client.post_batch(endpoint, np.array([user]), np.array([track]), np.array([played]))
        answer = orjson.loads(body)
        if endpoint == "last":
            return {"user": user}
        event = self.log.event(user, track, answer["track"]) or {}
        return {"user": user, "track": answer["track"], "experiments": event.get("experiments"),
                "recommender": event.get("recommender"), "fallback": event.get("fallback")}

    def _reload(self) -> tuple[int, bytes]:
        with self._lock:
            return self.client.post_json("/admin/reload")

    async def new_listener(self) -> int:
        return await asyncio.to_thread(self._new_listener)

    async def play(self, endpoint: str, user: int, track: int, played: float) -> dict[str, Any]:
        return await asyncio.to_thread(self._play, endpoint, user, track, played)

    async def reload(self) -> tuple[int, bytes]:
        return await asyncio.to_thread(self._reload)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)  # its own event loop, run off the server's
