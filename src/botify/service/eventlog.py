"""The event log: JSON lines in the course's format, written off the request path.

Handlers `append` an event (a dict) to an in-memory queue; a background thread encodes and
writes batches to `events-<worker>-<n>.jsonl` in the log directory, starting a new file
when one passes `max_bytes`. `close` (called on graceful shutdown) writes everything still
queued and fsyncs, so every event the service answered is on disk.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from pathlib import Path

import orjson

SCHEMA_VERSION = 1


class EventLog:
    def __init__(self, directory: Path, worker: str, max_bytes: int = 64 << 20, interval: float = 0.05) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.worker = worker
        self.max_bytes = max_bytes
        self.interval = interval
        self.written = 0
        self._queue: deque[dict] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._sequence = 0
        self._handle = self._open_next()
        self._thread = threading.Thread(target=self._run, name="botify-event-log", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self.directory / f"events-{self.worker}-{self._sequence:04d}.jsonl"

    def _open_next(self):
        while True:
            self._sequence += 1
            if not self.path.exists():
                return self.path.open("ab", buffering=1 << 20)

    def append(self, event: dict) -> None:
        """Queue one event; never blocks the request."""
        if self._closed:
            raise RuntimeError("the event log is closed")
        self._queue.append(event)

    def _drain(self) -> None:
        with self._lock:
            self._write_queued()

    def _write_queued(self) -> None:
        batch = []
        while self._queue:
            batch.append(orjson.dumps(self._queue.popleft()))
        if not batch:
            return
        self._handle.write(b"\n".join(batch) + b"\n")
        self.written += len(batch)
        if self._handle.tell() >= self.max_bytes:
            self._handle.close()
            self._handle = self._open_next()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            with self._lock:
                self._write_queued()
                self._handle.flush()

    def rotate(self) -> Path:
        """Write what is queued, close the file and start the next; the closed file's path.
        Events appended before the call are in the closed file or earlier ones."""
        with self._lock:
            self._write_queued()
            closed = self.path
            self._handle.close()
            self._handle = self._open_next()
        return closed

    def close(self) -> None:
        """Write everything queued, flush and fsync."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join()
        self._write_queued()
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
