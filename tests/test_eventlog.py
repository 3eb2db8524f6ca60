"""The event log hands each event to the kernel before the request answers, rotates by size,
creates no empty files, and turns unavailable (then recovers by itself) when it cannot write."""

from __future__ import annotations

import json
import resource
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from botify.service.eventlog import EventLog, LogUnavailable
from tests.servers import read_events


class Clock:
    """The event log's clock, moved by hand: whether its retry second has passed does not depend
    on how fast the machine runs the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture()
def clock(monkeypatch) -> Clock:
    import botify.service.eventlog

    clock = Clock()
    monkeypatch.setattr(botify.service.eventlog, "time", SimpleNamespace(monotonic=clock))
    return clock


def test_an_event_is_in_the_file_once_written_and_files_rotate_by_size(tmp_path: Path) -> None:
    log = EventLog(tmp_path, "w1", max_bytes=2048)
    for user in range(100):
        log.write({"user": user, "pad": "x" * 40})
        assert read_events(tmp_path)[-1]["user"] == user  # no flush or close needed: the kernel has it
    files = sorted(tmp_path.glob("events-w1-*.jsonl"))
    assert len(files) >= 3 and all(path.stat().st_size >= 2048 for path in files[:-1])
    assert [event["user"] for event in read_events(tmp_path)] == list(range(100))
    assert log.written == 100
    log.close()
    with pytest.raises(LogUnavailable, match="shutting down"):
        log.check()


def test_a_new_log_never_overwrites_an_old_file_and_rotation_makes_no_empty_files(tmp_path: Path) -> None:
    first = EventLog(tmp_path, "w1")
    first.write({"user": 1})
    assert first.rotate() is not None
    assert first.rotate() is None  # nothing written since: no new file
    first.close()
    second = EventLog(tmp_path, "w1")
    second.write({"user": 2})
    second.close()
    assert sorted(event["user"] for event in read_events(tmp_path)) == [1, 2]
    assert len(list(tmp_path.glob("*.jsonl"))) == 2
    assert all(path.stat().st_size for path in tmp_path.glob("*.jsonl"))


def test_a_full_disk_fails_the_batch_cuts_the_partial_line_and_recovers(tmp_path: Path, clock: Clock) -> None:
    """A file-size limit (RLIMIT_FSIZE) stands in for a full disk: writes past it fail with EFBIG."""
    log = EventLog(tmp_path, "w1")
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    try:
        log.write({"user": 0, "pad": "x" * 100})
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, hard))
        try:
            log.write({"user": 1, "pad": "x" * 100})  # fits
            with pytest.raises(LogUnavailable, match="cannot be written"):
                log.write({"user": 2, "pad": "x" * 100})  # would pass 300 bytes: a partial line, cut off
            with pytest.raises(LogUnavailable, match="cannot be written"):
                log.check()  # refuses before anything is recorded
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        clock.advance(1.1)  # past the 1 s retry
        log.check()  # the probe succeeds: available again
        log.write({"user": 9})
    finally:
        signal.signal(signal.SIGXFSZ, previous_handler)
    log.close()
    assert log.failures == 1 and log.error is None
    assert [event["user"] for event in read_events(tmp_path)] == [0, 1, 9]  # whole lines only
    assert not list(tmp_path.glob(".probe-*"))


def test_a_directory_that_cannot_be_written_after_a_rotation_is_reported_and_recovers(tmp_path: Path,
                                                                                        clock: Clock) -> None:
    """The directory is replaced by a file (unwritable for root too) while the log rotates, as
    at a reload; once it is back, events are taken again, without a restart."""
    directory = tmp_path / "log"
    log = EventLog(directory, "w1")

    log.write({"user": 1})
    log.rotate()
    directory.rename(tmp_path / "moved")
    directory.write_text("not a directory")
    with pytest.raises(LogUnavailable, match="Not a directory"):
        log.write({"user": 2})
    clock.advance(1.1)  # past the 1 s retry
    with pytest.raises(LogUnavailable, match="Not a directory|File exists"):
        log.check()  # the probe fails too: still unavailable
    directory.unlink()
    clock.advance(1.1)  # past the 1 s retry
    log.write({"user": 3})
    log.close()
    assert [event["user"] for event in read_events(directory)] == [3]
    assert [event["user"] for event in read_events(tmp_path / "moved")] == [1]


def test_the_courses_layout_is_written_and_read_back(tmp_path: Path) -> None:
    """`--log-name data.json` writes the course's `<dir>/<worker>/data.json` (rotations beside
    it); the analysis finds such files at any depth, alongside botify's own names, and reads
    the same sessions from either layout."""
    from botify.analysis import user_metrics
    from tests.test_analysis import write_logs

    log = EventLog(tmp_path / "log", "w1", max_bytes=1024, name="data.json")
    for number in range(40):
        log.write({"message": "next", "n": number, "pad": "x" * 100})
    log.close()
    files = sorted(path.relative_to(tmp_path / "log").as_posix() for path in (tmp_path / "log").rglob("*"))
    assert files[:3] == ["w1", "w1/data-0002.json", "w1/data-0003.json"] and "w1/data.json" in files
    written = [tmp_path / "log" / "w1" / "data.json", *sorted((tmp_path / "log" / "w1").glob("data-*.json"))]
    assert [json.loads(line)["n"] for path in written for line in path.read_text().splitlines()] == list(range(40))

    write_logs(tmp_path / "botify")
    course = tmp_path / "course"
    for index, path in enumerate(sorted((tmp_path / "botify").glob("*.jsonl"))):
        (course / f"container-{index}").mkdir(parents=True)
        path.rename(course / f"container-{index}" / "data.json")
    (course / "notes.json").write_text("{}")  # not a log: only the service's names are searched for
    write_logs(tmp_path / "again")
    ours, theirs = user_metrics([str(tmp_path / "again")], "EXP")[0], user_metrics([str(course)], "EXP")[0]
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_held_events_leave_in_one_write_and_a_failure_says_how_many_reached_the_kernel(tmp_path: Path,
                                                                                       clock: Clock) -> None:
    """Events written `held` are gathered (nothing in the file) until `release` writes them in
    one go; a rotation writes the held ones first (they belong to the closing file); when the
    final write fails, `release` says why and how many of the held events are in a file."""
    log = EventLog(tmp_path, "w1")
    for user in range(3):
        log.write({"user": user}, held=True)
    assert read_events(tmp_path) == []
    assert log.release() == (None, 3) and log.release() == (None, 0)  # all written; then none held
    assert [event["user"] for event in read_events(tmp_path)] == [0, 1, 2] and log.written == 3

    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        log.write({"user": 3, "pad": "x" * 100}, held=True)
        log.write({"user": 4, "pad": "x" * 100}, held=True)
        assert log.rotate() is not None  # the two held events are in the closed file
        log.write({"user": 5, "pad": "x" * 100}, held=True)
        log.write({"user": 6, "pad": "x" * 100}, held=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150, hard))  # the next file takes one line, not two
        try:
            error, written = log.release()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    finally:
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert "cannot be written" in error and written == 2
    with pytest.raises(LogUnavailable):
        log.check()
    clock.advance(1.1)  # past the 1 s retry
    log.write({"user": 7})
    log.close()
    assert [event["user"] for event in read_events(tmp_path)] == [0, 1, 2, 3, 4, 7]  # 5 and 6 in no file
