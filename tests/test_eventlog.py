"""The event log writes ahead of the answer, in one write per tick, rotates by size, creates no
empty files, and turns unavailable (then recovers by itself) when it cannot write."""

from __future__ import annotations

import asyncio
import resource
import signal
from pathlib import Path

import pytest

from botify.service.eventlog import EventLog, LogUnavailable
from tests.servers import read_events


def test_a_tick_of_events_is_one_write_and_in_the_file_when_awaited(tmp_path: Path) -> None:
    log = EventLog(tmp_path, "w1", max_bytes=2048)

    async def scenario():
        futures = [log.write({"user": user, "pad": "x" * 40}) for user in range(100)]
        assert not list(tmp_path.glob("*.jsonl"))  # nothing before the tick's write
        await asyncio.gather(*futures)
        users = [event["user"] for event in read_events(tmp_path)]  # no close needed: the kernel has them
        assert users == list(range(100))
        one = log.write({"user": 100})
        await one
        assert [event["user"] for event in read_events(tmp_path)][-1] == 100

    asyncio.run(scenario())
    files = sorted(tmp_path.glob("events-w1-*.jsonl"))
    assert len(files) == 2  # the first tick's batch passed 2 KB: the next event went to a new file
    assert log.written == 101
    log.close()
    with pytest.raises(LogUnavailable, match="shutting down"):
        log.check()


def test_a_new_log_never_overwrites_an_old_file_and_rotation_makes_no_empty_files(tmp_path: Path) -> None:
    async def scenario(log: EventLog, user: int):
        await log.write({"user": user})

    first = EventLog(tmp_path, "w1")
    asyncio.run(scenario(first, 1))
    assert first.rotate() is not None
    assert first.rotate() is None  # nothing written since: no new file
    first.close()
    second = EventLog(tmp_path, "w1")
    asyncio.run(scenario(second, 2))
    second.close()
    assert sorted(event["user"] for event in read_events(tmp_path)) == [1, 2]
    assert all(path.stat().st_size for path in tmp_path.glob("*.jsonl"))
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_a_full_disk_fails_the_batch_cuts_the_partial_line_and_recovers(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE) stands in for a full disk: writes past it fail with EFBIG."""
    log = EventLog(tmp_path, "w1", retry=0.05)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    async def scenario():
        await log.write({"user": 0, "pad": "x" * 100})
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, hard))
        try:
            batch = [log.write({"user": user, "pad": "x" * 100}) for user in range(1, 4)]
            results = await asyncio.gather(*batch, return_exceptions=True)
            assert all(isinstance(result, LogUnavailable) for result in results)
            with pytest.raises(LogUnavailable, match="cannot be written"):
                log.check()  # refuses before anything is recorded
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        await asyncio.sleep(0.06)
        log.check()  # the probe succeeds: available again
        await log.write({"user": 9})

    try:
        asyncio.run(scenario())
    finally:
        signal.signal(signal.SIGXFSZ, previous_handler)
    log.close()
    assert log.failures == 1 and log.error is None
    assert [event["user"] for event in read_events(tmp_path)] == [0, 9]  # whole lines only, none half-written
    assert not list(tmp_path.glob(".probe-*"))


def test_a_directory_that_cannot_be_written_after_a_rotation_is_reported_and_recovers(tmp_path: Path) -> None:
    """The directory is replaced by a file (unwritable for root too) while the log rotates, as
    at a reload; once it is back, events are taken again, without a restart."""
    directory = tmp_path / "log"
    log = EventLog(directory, "w1", retry=0.05)

    async def scenario():
        await log.write({"user": 1})
        log.rotate()
        directory.rename(tmp_path / "moved")
        directory.write_text("not a directory")
        with pytest.raises(LogUnavailable, match="Not a directory"):
            await log.write({"user": 2})
        await asyncio.sleep(0.06)
        with pytest.raises(LogUnavailable, match="Not a directory|File exists"):
            log.check()  # the probe fails too: still unavailable
        directory.unlink()
        await asyncio.sleep(0.06)
        await log.write({"user": 3})

    asyncio.run(scenario())
    log.close()
    assert [event["user"] for event in read_events(directory)] == [3]
    assert [event["user"] for event in read_events(tmp_path / "moved")] == [1]
