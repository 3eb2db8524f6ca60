"""What a `/next` costs the service in Python, without HTTP: microseconds per request.

  python bench/serving_cost.py [--requests N] [--world DIR]

Two measures, in this process, on one core:
  - the direct path: `BotifyApp.answer_now` for each request and `settle_now` after every 32
    answers, as the server runs them per turn of its event loop (parsing, the embedded store,
    the recommender, the event and its write to the log), for the default experiment and for
    the soak's `i2i` one (`bench/service_load.py`), with the soak's traffic (random users out
    of 200,000, random tracks) after as many requests again to fill the store;
  - a recommender alone (`Chain.recommend`): Random, and i2i on sessions with 1, 2, 3 and 5
    anchors, through its ranked pick from the lists' heads and through the shared serving step
    over the merged lists (`Recommender.recommend`: the same answers).
Each is timed in chunks; the fastest chunk and the median are printed (this VM's speed drifts
within minutes: compare figures within one run). What HTTP adds is the rest of a request's
time in the soak (`python bench/service_load.py --soak`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import tomllib
from pathlib import Path

from service_load import RECOMMENDERS, write_i2i

from botify.artifacts import read_artifact
from botify.service.app import BotifyApp
from botify.service.experiments import RecommenderSpec
from botify.service.recommenders import Chain, Query, Recommender, Resources
from botify.service.settings import ServiceSettings
from botify.service.stores import EmbeddedStore, Listen
from botify.world import World, WorldSpec, generate_world, world_exists

USERS = 200_000  # as the soak's
CHUNK = 25_000


def spread(times: list[float]) -> str:
    times = sorted(times)
    return f"fastest {times[0]:6.2f} µs, median {times[len(times) // 2]:6.2f} µs"


def direct_path(world: Path, work: Path, experiment: str, requests: int) -> None:
    settings = {"catalog": world / "tracks.json", "log_dir": work / f"log-{experiment}", "admin_token": "bench"}
    if experiment != "default":
        (work / "i2i.toml").write_text(f"default = {RECOMMENDERS['i2i']}\n")
        settings.update(experiments=work / "i2i.toml", artifacts=work)
    app = BotifyApp(ServiceSettings(**settings))
    asyncio.run(app.startup())
    tracks = app.service.n_tracks
    rng = random.Random(42)
    traffic = []
    for _ in range(2 * requests):
        body = b'{"track":%d,"time":%.2f}' % (rng.randrange(tracks), rng.random())
        traffic.append((b"/next/%d" % rng.randrange(USERS), [(b"content-type", b"application/json"),
                                                            (b"content-length", b"%d" % len(body))], body))

    def serve(part) -> None:
        for number, (target, headers, body) in enumerate(part, 1):
            if not app.immediate(target, headers):
                raise SystemExit(f"{experiment}: a request would not take the direct path")
            app.answer_now(target, headers, body)
            if number % 32 == 0:
                app.settle_now()
        app.settle_now()

    serve(traffic[:requests])  # the store fills
    times = []
    for start in range(requests, 2 * requests, CHUNK):
        part = traffic[start:start + CHUNK]
        began = time.perf_counter()
        serve(part)
        times.append((time.perf_counter() - began) / len(part) * 1e6)
    asyncio.run(app.shutdown())
    print(f"  direct path, {experiment + ' experiment':<19} {spread(times)} per request", flush=True)


def run_now(coroutine):
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a recommender waited")


def recommenders(world_dir: Path, work: Path) -> None:
    world = World.load(world_dir)
    catalog = world.catalog
    store = EmbeddedStore(50)
    asyncio.run(store.load(catalog, "bench", {"i2i.jsonl": read_artifact(work / "i2i.jsonl", catalog.size)}))
    resources = Resources(catalog, store)
    spec = tomllib.loads(f"spec = {RECOMMENDERS['i2i']}")["spec"]
    i2i = Chain(RecommenderSpec.model_validate(spec), resources)
    member = i2i.members[0]
    artists = catalog.artist_codes.tolist()
    rng = random.Random(0)

    def time_it(label: str, recommend, sessions: list[list[Listen]]) -> None:
        times = []
        for _ in range(5):
            began = time.perf_counter()
            for session in sessions:
                run_now(recommend(Query(1, session[-1].track, session[-1].time, session, seed=5)))
            times.append((time.perf_counter() - began) / len(sessions) * 1e6)
        print(f"  {label:<38} {spread(times)} per request", flush=True)

    one = [[Listen(track, 1.0, artists[track])] for track in (rng.randrange(catalog.size) for _ in range(3000))]
    time_it("random", Chain(RecommenderSpec(kind="random"), resources).recommend, one)
    for anchors in (1, 2, 3, 5):
        sessions = [[Listen(track, rng.choice([0.6, 0.8, 1.0]), artists[track])
                     for track in (rng.randrange(catalog.size) for _ in range(anchors))] for _ in range(3000)]
        time_it(f"i2i, {anchors} anchor{'s' if anchors > 1 else ''}, from the heads", i2i.recommend, sessions)
        if anchors > 1:
            time_it(f"i2i, {anchors} anchors, merged", lambda query: Recommender.recommend(member, query), sessions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000, help="timed requests per experiment")
    parser.add_argument("--world", type=Path, default=Path("runs/bench/default"))
    args = parser.parse_args()
    if not world_exists(args.world):
        generate_world(WorldSpec()).save(args.world)
    print("botify serving_cost: in-process, one core, no HTTP")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        write_i2i(work, sum(1 for _ in (args.world / "tracks.json").open()))
        for experiment in ("default", "i2i"):
            direct_path(args.world, work, experiment, args.requests)
        recommenders(args.world, work)


if __name__ == "__main__":
    main()
