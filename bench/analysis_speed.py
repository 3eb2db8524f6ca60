"""How fast `botify analyze` turns raw event logs into per-user metrics and a verdict.

  python bench/analysis_speed.py [--sizes 1000000 10000000] [--work DIR]

Writes logs in the service's format (sessions of 8 events, 2 treatments, 4 worker files) with
DuckDB, then times the whole analysis (read, sessionize, aggregate per user, statistics) and
prints events/s and the peak memory of this process.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import duckdb

from botify.analysis import analyze, user_metrics

GENERATE_SQL = """
COPY (
    SELECT CASE WHEN i % 8 = 7 THEN 'last' ELSE 'next' END AS message,
           1700000000000 + i AS "timestamp",
           (i // 8) % {users} AS "user",
           (i * 7919) % 15000 AS track,
           round(random(), 2) AS "time",
           random() / 200 AS latency,
           (i * 31) % 15000 AS recommendation,
           {{'EXP': CASE WHEN hash((i // 8) % {users}) % 2 = 0 THEN 'C' ELSE 'T1' END}} AS experiments
    FROM range({start}, {stop}) t(i)
) TO '{path}' (FORMAT JSON)
"""


def generate(directory: Path, events: int, files: int = 4) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    connection = duckdb.connect()
    connection.execute("SELECT setseed(0.42)")
    users = max(1000, events // 100)
    per_file = -(-events // files) // 8 * 8
    for index in range(files):
        start, stop = index * per_file, min(events, (index + 1) * per_file)
        path = directory / f"events-{index}-0001.jsonl"
        connection.execute(GENERATE_SQL.format(users=users, start=start, stop=stop, path=path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--work", type=Path, default=Path("runs/bench/analysis"))
    args = parser.parse_args()
    print("botify analysis_speed (DuckDB, all cores)")
    for size in args.sizes:
        directory = args.work / f"{size}"
        if not directory.is_dir():
            started = time.perf_counter()
            generate(directory, size)
            print(f"  generated {size:,} events in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        users, summary = user_metrics([directory], "EXP")
        result = analyze(users, "EXP")
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  {summary.lines:>12,} events, {len(users['user']):>9,} users: {seconds:6.2f} s, "
              f"{summary.lines / seconds:>12,.0f} events/s, peak RSS {peak:,.0f} MiB, "
              f"{len(result.comparisons)} comparisons")


if __name__ == "__main__":
    main()
