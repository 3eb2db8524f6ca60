"""The event log: JSON lines in the course's format (fields in `botify.events.schema`), written
ahead of every answer.

An answered request's event has reached the kernel before its response is sent, so even a
SIGKILL loses nothing the service answered: `write` hands the encoded line to the kernel with
one `os.write` on an unbuffered, append-only file (page cache, no fsync) and only then does
the request answer. Requests the server answers in its own callback (see server.py) are
grouped: their events are written `held`, and `release` writes them in one `os.write`
before any of their answers leaves (grouping behind futures was measured slower:
the futures cost more than the system calls they save; here no future is involved).

When the log cannot be written (disk full, directory unwritable, file system read-only),
the request fails, a partial line is cut off again, and the log turns *unavailable*:
`check` raises `LogUnavailable` (503, with the reason) before a request touches anything, and
`/ready` says why. Every `retry` seconds a probe writes a scratch file beside the log; once
that works the log is available again, with a new file. Nothing queues while unavailable,
so memory stays bounded.

Files are `events-<worker>-<n>.jsonl`, a new one when a file passes `max_bytes` or at a
reload; a file is created at its first event, so there are no empty files. `close` writes
what is queued and fsyncs.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import orjson

from botify.errors import Unavailable

PROBE_BYTES = 64 << 10  # the scratch write that must succeed before events are taken again

logger = logging.getLogger("botify.service")


class LogUnavailable(Unavailable):
    """The event log cannot be written; events are not accepted until it can."""


class EventLog:
    """One worker's event log files: `events-<worker>-<n>.jsonl` in `directory`, or, with a
    `name` such as the course's `data.json`, `<worker>/data.json` (then `data-0002.json`, ...
    after each rotation), the course's one folder per container."""

    def __init__(self, directory: Path, worker: str, max_bytes: int = 64 << 20, retry: float = 1.0,
                 name: str | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.worker = worker
        self.name = name
        self.max_bytes = max_bytes
        self.retry = retry
        self.written = 0
        self.failures = 0
        self.error: str | None = None
        self._closed = False
        self._fd: int | None = None
        self._size = 0
        self._sequence = 0
        self._retry_at = 0.0
        self._held: list[bytes] | None = None  # events written `held`, until `release`
        self._held_error: str | None = None  # why held events could not be written
        self._held_written = 0  # of the held events, how many reached the kernel early (rotate, close)

    @property
    def path(self) -> Path:
        if self.name is None:
            return self.directory / f"events-{self.worker}-{self._sequence:04d}.jsonl"
        name = Path(self.name)
        file = name.name if self._sequence == 1 else f"{name.stem}-{self._sequence:04d}{name.suffix}"
        return self.directory / self.worker / file

    def _open_next(self) -> None:
        if self.name is not None:
            (self.directory / self.worker).mkdir(exist_ok=True)
        while True:
            self._sequence += 1
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                continue
            self._size = 0
            return

    def check(self) -> None:
        """Raise LogUnavailable while the log cannot be written (and probe again when due)."""
        if self._closed:
            raise LogUnavailable("the service is shutting down; retry on another instance")
        if self.error is not None and not self._recovered():
            raise LogUnavailable(f"the event log cannot be written ({self.error}); events are not accepted "
                                 f"until it can, retrying every {self.retry:g} s")

    def _recovered(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        self._retry_at = now + self.retry
        probe = self.directory / f".probe-{self.worker}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                written = os.write(descriptor, bytes(PROBE_BYTES))
            finally:
                os.close(descriptor)
                probe.unlink(missing_ok=True)
            if written < PROBE_BYTES:
                raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            self.error = f"{error.strerror or error} in {self.directory}"
            return False
        logger.warning("the event log in %s is writable again; accepting events", self.directory)
        self.error = None
        return True

    def write(self, event: dict, held: bool = False) -> None:
        """Hand one event to the kernel (`held`: to the group `release` writes); raises
        LogUnavailable (and the log turns unavailable) if it cannot."""
        if self.error is not None or self._closed:
            self.check()
        data = orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
        if held:
            if self._held is None:
                self._held = []
            self._held.append(data)
            return
        self._put(data, 1)

    def release(self) -> tuple[str | None, int]:
        """Write the events held since the last release in one write. Returns None and their
        number once all are in the kernel; else why not, and how many of the first ones are
        (written early, by a rotation): the others are in no file, and the log turns unavailable."""
        self._write_held()
        done = self._held_error, self._held_written
        self._held, self._held_error, self._held_written = None, None, 0
        return done

    def _write_held(self) -> None:
        """Write the events held so far (at `release`, and before the file changes or closes);
        after a failure, none that follow."""
        if self._held:
            held, self._held = self._held, []
            if self._held_error is None:
                try:
                    self._put(b"".join(held), len(held))
                    self._held_written += len(held)
                except LogUnavailable as error:
                    self._held_error = str(error)

    def _put(self, data: bytes, events: int) -> None:
        try:
            if self._fd is None:
                self._open_next()
            if os.write(self._fd, data) < len(data):  # a partial write: no room for the rest
                raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            if self._fd is not None:
                try:
                    os.ftruncate(self._fd, self._size)  # cut a partial line off again
                except OSError:
                    pass
            self._failed(error)
            raise LogUnavailable(f"the event log cannot be written ({self.error}); retry shortly") from None
        self._size += len(data)
        self.written += events
        if self._size >= self.max_bytes:
            self._close_file()

    def _failed(self, error: OSError) -> None:
        self.failures += 1
        self.error = f"{error.strerror or error} in {self.directory}"
        self._retry_at = time.monotonic() + self.retry
        logger.error("cannot write the event log (%s); answering 503 to events until it can", self.error)
        self._close_file()

    def _close_file(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def status(self) -> dict:
        """For /ready: raises LogUnavailable while the log cannot be written."""
        self.check()
        return {"log": str(self.directory), "events_written": self.written}

    def rotate(self) -> Path | None:
        """Close the current file (the next event starts a new one); the closed file's path,
        or None if nothing was written to a file since the last rotation."""
        self._write_held()  # held events belong to the closing file's configuration
        if self._fd is None:
            return None
        closed = self.path
        self._close_file()
        return closed

    def close(self) -> None:
        """Fsync and close; later writes are refused."""
        if self._closed:
            return
        self._write_held()
        self._closed = True
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as error:
                logger.error("cannot fsync the event log: %s", error)
            self._close_file()
