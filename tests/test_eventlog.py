"""The event log writes off the request path, rotates by size and loses nothing on close."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from botify.service.eventlog import EventLog
from tests.servers import read_events


def test_rotates_by_size_and_close_writes_everything(tmp_path: Path) -> None:
    log = EventLog(tmp_path, "w1", max_bytes=2048, interval=0.01)
    writers = [
        threading.Thread(target=lambda base=base: [log.append({"user": base + i, "pad": "x" * 40}) for i in range(500)])
        for base in (0, 10_000, 20_000)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    log.close()
    files = sorted(tmp_path.glob("events-w1-*.jsonl"))
    assert len(files) >= 2
    assert all(path.stat().st_size >= 2048 for path in files[:-1])  # a file closes once it passes the size
    users = [event["user"] for event in read_events(tmp_path)]
    assert sorted(users) == sorted(list(range(500)) + list(range(10_000, 10_500)) + list(range(20_000, 20_500)))
    assert log.written == 1500
    with pytest.raises(RuntimeError, match="closed"):
        log.append({"user": 1})


def test_a_new_log_never_overwrites_an_old_file(tmp_path: Path) -> None:
    first = EventLog(tmp_path, "w1")
    first.append({"user": 1})
    first.close()
    second = EventLog(tmp_path, "w1")
    second.append({"user": 2})
    second.close()
    assert sorted(event["user"] for event in read_events(tmp_path)) == [1, 2]


def test_rotate_closes_the_file_with_everything_before_it(tmp_path: Path) -> None:
    log = EventLog(tmp_path, "w1", interval=10)  # the writer thread will not wake by itself
    for user in range(100):
        log.append({"user": user})
    closed = log.rotate()
    log.append({"user": 100})
    log.close()
    first = [int(line.split(b":")[1].rstrip(b"}")) for line in closed.read_bytes().splitlines()]
    assert first == list(range(100))
    assert sorted(event["user"] for event in read_events(tmp_path)) == list(range(101))
