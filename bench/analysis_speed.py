"""How fast `botify analyze` turns event logs into per-user metrics and a verdict, per format and
engine, in one run so that the ratios stand.

  python bench/analysis_speed.py [--sizes 1000000 10000000 100000000] [--spark-sizes ...] [--work DIR]

Writes logs in the service's format (sessions of 8 events, 2 treatments, 4 worker files) with
DuckDB and compacts them (`botify logs compact`), then times the whole analysis (read,
sessionize, aggregate per user, statistics) of the JSON lines and of the Parquet with the
DuckDB engine (default settings: its memory limit, all cores), each in a fresh process whose
peak RSS is reported, and with the Spark engine on local[2] (session started before timing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb

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


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def analyse(paths: list[str], settings=None) -> dict:
    from botify.analysis import analyze, user_metrics

    started = time.perf_counter()
    users, summary = user_metrics(paths, "EXP", settings=settings)
    result = analyze(users, "EXP")
    return {"seconds": time.perf_counter() - started, "lines": summary.lines, "users": len(users["user"]),
            "comparisons": len(result.comparisons)}


def measure(path: Path) -> dict:
    """One DuckDB analysis in a fresh process, for its own peak RSS."""
    run = subprocess.run([sys.executable, __file__, "--one", str(path)], capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--spark-sizes", type=int, nargs="*", default=[1_000_000, 10_000_000],
                        help="sizes also analysed on Spark local[2] (none: skip Spark)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench/analysis"))
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps({**analyse([str(args.one)]), "peak_rss_mib": peak_rss_mib()}))
        return
    from botify.events.engine import EngineSettings

    print(f"botify analysis_speed: DuckDB (all cores, {EngineSettings().memory_limit} limit) per format, Spark local[2]")
    rows = []
    for size in args.sizes:
        logs, compacted = args.work / f"{size}", args.work / f"{size}-parquet"
        if not logs.is_dir():
            started = time.perf_counter()
            generate(logs, size)
            print(f"  generated {size:,} events in {time.perf_counter() - started:.1f} s", flush=True)
        if not compacted.is_dir():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "botify", "logs", "compact", str(logs), "--out", str(compacted)],
                           check=True, capture_output=True)
            print(f"  compacted {size:,} events in {time.perf_counter() - started:.1f} s "
                  f"({sum(p.stat().st_size for p in logs.iterdir()) / 2**20:,.0f} MiB JSON → "
                  f"{sum(p.stat().st_size for p in compacted.rglob('*.parquet')) / 2**20:,.0f} MiB Parquet)",
                  flush=True)
        rows.append((size, "json", "duckdb", measure(logs)))
        rows.append((size, "parquet", "duckdb", measure(compacted)))
        for _, kind, engine, result in rows[-2:]:
            print(f"  {size:>12,} events, {kind:<7} {engine}: {result['seconds']:6.2f} s, "
                  f"{size / result['seconds']:>12,.0f} events/s, peak RSS {result['peak_rss_mib']:,.0f} MiB", flush=True)
    if args.spark_sizes:
        from botify.events.engine import open_engine

        settings = EngineSettings(engine="spark", spark_master="local[2]")
        started = time.perf_counter()
        open_engine(settings)
        print(f"  Spark local[2] session started in {time.perf_counter() - started:.1f} s (not in the times below)")
        for size in args.spark_sizes:
            for kind, path in (("json", args.work / f"{size}"), ("parquet", args.work / f"{size}-parquet")):
                result = analyse([str(path)], settings)
                rows.append((size, kind, "spark", result))
                print(f"  {size:>12,} events, {kind:<7} spark : {result['seconds']:6.2f} s, "
                      f"{size / result['seconds']:>12,.0f} events/s", flush=True)
    print("\n| events | format | engine | seconds | events/s | peak RSS |\n|---|---|---|---|---|---|")
    for size, kind, engine, result in rows:
        rss = f"{result['peak_rss_mib']:,.0f} MiB" if "peak_rss_mib" in result else "(JVM)"
        print(f"| {size:,} | {kind} | {engine} | {result['seconds']:.2f} | {size / result['seconds']:,.0f} | {rss} |")


if __name__ == "__main__":
    main()
