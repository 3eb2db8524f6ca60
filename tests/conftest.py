"""Shared fixtures: small generated worlds and hand-built tiny worlds with known geometry."""

from __future__ import annotations

import os
from pathlib import Path

# Torch and BLAS on one thread in tests (and the commands they start), set before either is
# imported. Their models are small: on a quiet 2-core machine one thread trains them about as
# fast as two, but on a machine whose CPU is shared, as CI's is, two threads that wait for each
# other at every operation took 130 s for four training tests that one thread ran in 58 s.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest

from botify.world import Catalog, Users, World, WorldSpec, generate_world

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--screenshots", metavar="DIR", default=None,
                     help="save screenshots of botify studio's views here (tests/test_studio.py; the README's are "
                          "made with --screenshots docs)")


SMALL_SPEC = WorldSpec(seed=7, tracks=800, users=400, dim=16)
# A dense world: 100 listeners each see most of 240 tracks over their sessions, so held-out
# sessions show what they like and what they skip (the training tests' world).
DENSE = WorldSpec(seed=3, tracks=240, users=100, dim=16, tracks_per_artist=8)


@pytest.fixture(scope="session")
def small_world() -> World:
    return generate_world(SMALL_SPEC)


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory: pytest.TempPathFactory, small_world: World) -> Path:
    directory = tmp_path_factory.mktemp("world")
    small_world.save(directory)
    return directory


def tiny_world(
    embeddings: np.ndarray | list,
    artists: list[str],
    users: list[dict],
) -> World:
    """A world built by hand: embeddings as given (not normalised), one artist per track."""
    records = [{"track": i, "title": f"t{i}", "artist": artist} for i, artist in enumerate(artists)]
    catalog = Catalog.from_records(records)
    user_records = [{"user": i, **user} for i, user in enumerate(users)]
    return World(catalog, np.asarray(embeddings, dtype=np.float32), Users.from_records(user_records, catalog.size))


@pytest.fixture(scope="session")
def redis_server():
    from tests.servers import RedisServer

    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server) -> str:
    if redis_server.process is None:
        redis_server.start()
    redis_server.resume()
    redis_server.command("FLUSHALL")
    redis_server.command("CONFIG", "RESETSTAT")
    return redis_server.url


@pytest.fixture(scope="session")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World, Path]:
    """4,000 Random-served sessions of the dense world through the real service: (log
    directory, world, root holding `world/`)."""
    from tests.servers import simulate_through_service

    root = tmp_path_factory.mktemp("dense")
    world = generate_world(DENSE)
    world.save(root / "world")
    simulate_through_service(root / "world", world, 'default = "random"\n', root / "log", episodes=4000, seed=4,
                             chunk_size=100)
    return root / "log", world, root


@pytest.fixture(scope="session")
def spark_settings():
    """The Spark engine on local[2], started once: every Spark test (and the CLI they run in
    this process) shares the session, so the JVM starts once per test run."""
    pytest.importorskip("pyspark", reason="the Spark tests need botify[spark] (make test installs it)")
    from botify.errors import BotifyError
    from botify.events.engine import EngineSettings, open_engine
    from botify.events.spark import check_java

    try:
        check_java()
    except BotifyError as error:
        pytest.skip(f"{error} (.ci/run installs it)")

    settings = EngineSettings(engine="spark", spark_master="local[2]",
                              spark_conf={"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"})
    engine = open_engine(settings)
    yield settings
    engine.spark.stop()
