"""Training time per model, and one offline table, on a day of the default world's logs.

  python bench/train_speed.py [--sessions 20000] [--work runs/bench/train]

Serves Random on the default world, sends a day of simulated sessions through it, then trains
every model as `botify train --test-share 0.2` does: the served fit on all sessions (its time
is "train s"), and a twin on the earlier 80% evaluated, with the popularity baselines, on the
latest 20%, per user and on next-track (session) queries.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from botify.service.process import ServiceProcess
from botify.sim import AgentSpec, SimSettings, Simulation
from botify.train.dataset import read_interactions
from botify.train.evaluate import evaluate_lists, evaluate_next_track, popularity_baselines
from botify.train.pipeline import train_model
from botify.world import WorldSpec, generate_world, world_exists
from botify.world.model import Catalog

MODELS = [
    ("toppop", {}),
    ("user-based", {}),
    ("mf", {"algorithm": "als"}),
    ("mf", {"algorithm": "bpr"}),
    ("contextual", {}),
    ("contextual-user", {}),
    ("dssm", {}),
    ("lightgcn", {}),
    ("diverse", {"base": "user-based"}),
    ("session-knn", {}),
    ("sequential", {}),
]


def make_logs(work: Path, sessions: int) -> Path:
    world, log_dir = work / "world", work / "log"
    if not world_exists(world):
        generate_world(WorldSpec()).save(world)
    if not list(log_dir.glob("events-*.jsonl")):
        (work / "random.toml").write_text('default = "random"\n')
        with ServiceProcess("--catalog", world, "--log-dir", log_dir, "--experiments", work / "random.toml") as service:
            simulation = Simulation(world, AgentSpec(kind="remote", url=service.url), SimSettings(episodes=sessions))
            simulation.run_day(1)
            simulation.close()
    return log_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--work", type=Path, default=Path("runs/bench/train"))
    args = parser.parse_args()
    log_dir = make_logs(args.work, args.sessions)
    catalog_path = args.work / "world" / "tracks.json"
    n_tracks = Catalog.load(catalog_path).size
    interactions = read_interactions([log_dir])
    train, test = interactions.split_by_time(0.2)
    print(f"botify train_speed: {interactions.size:,} interactions ({train.size:,} train, {test.size:,} test), "
          f"{interactions.window['users']:,} users")
    rows = [(name, float("nan"), {**evaluate_lists(kind, lists, test, n_tracks),
                                  **evaluate_next_track(kind, lists, test, n_tracks)})
            for name, (kind, lists) in popularity_baselines(train, test, n_tracks).items()]
    by_track = popularity_baselines(train, test, n_tracks, kind="track")["shuffled top-100"][1]
    rows.append(("shuffled top-100 per track", float("nan"), {**evaluate_lists("track", by_track, test, n_tracks),
                                                             **evaluate_next_track("track", by_track, test, n_tracks)}))
    for name, params in MODELS:
        label = name + ("" if not params else " " + ",".join(f"{k}={v}" for k, v in params.items()))
        started = time.perf_counter()
        _, metrics = train_model(name, [log_dir], catalog_path, args.work / "artifacts" / label.replace(" ", "_"), params,
                                 test_share=0.2)
        rows.append((label, time.perf_counter() - started, metrics))
    print("  (train s: the served fit on all interactions; total s: both fits, evaluation and saving; next ndcg: "
          "next-track queries, of the item-to-item lists where a model writes them)")
    print(f"  {'model':<28} {'train s':>8} {'total s':>8} {'prec@10':>8} {'rec@10':>8} {'mrr':>8} {'ndcg@10':>8} "
          f"{'coverage':>8} {'next ndcg':>9}")
    for label, total, metrics in rows:
        following = metrics.get("track:next_ndcg@10", metrics.get("next_ndcg@10", float("nan")))
        print(f"  {label:<28} {metrics.get('train_seconds', float('nan')):>8.2f} {total:>8.2f} "
              f"{metrics.get('precision@10', float('nan')):>8.4f} {metrics.get('recall@10', float('nan')):>8.4f} "
              f"{metrics.get('mrr', float('nan')):>8.4f} {metrics.get('ndcg@10', float('nan')):>8.4f} "
              f"{metrics.get('coverage', float('nan')):>8.4f} {following:>9.4f}")


if __name__ == "__main__":
    main()
