"""`botify serve`: the recommender service on uvicorn."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from botify.config import validate_config
from botify.errors import BotifyError
from botify.service.settings import REDIS_ENV, SETTINGS_ENV, ServiceSettings

_DEFAULTS = ServiceSettings.model_fields


@click.command()
@click.option("--catalog", type=click.Path(path_type=Path), default=Path("data/world/tracks.json"), show_default=True,
              help="The world's tracks.json (or its directory). The service never reads embeddings or users.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=5001, show_default=True)
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("log"), show_default=True,
              help="Where the event log goes (one file per worker, rotated by size).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes; more than one needs --redis to share listen histories.")
@click.option("--experiments", type=click.Path(path_type=Path, dir_okay=False),
              help="Experiments file (TOML/JSON/YAML); botify's embedded default if absent.")
@click.option("--artifacts", type=click.Path(path_type=Path, file_okay=False),
              help="Directory with the artifact files the experiments name.")
@click.option("--redis", "redis_url", envvar=REDIS_ENV, show_envvar=True,
              help="Redis URL, e.g. redis://localhost:6379/0; the embedded store if absent.")
@click.option("--history-length", type=click.IntRange(min=1), default=_DEFAULTS["history_length"].default,
              show_default=True, help=_DEFAULTS["history_length"].description)
@click.option("--session-length", type=click.IntRange(min=1), default=_DEFAULTS["session_length"].default,
              show_default=True, help=_DEFAULTS["session_length"].description)
@click.option("--session-ttl", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS["session_ttl"].default,
              show_default=True, help=_DEFAULTS["session_ttl"].description)
@click.option("--seed", type=int, default=_DEFAULTS["seed"].default, show_default=True,
              help="Seed of the recommenders' randomness.")
def serve(catalog, host, port, log_dir, workers, experiments, artifacts, redis_url, history_length, session_length,
          session_ttl, seed) -> None:
    """Serve the course's API: GET /, GET /track/<id>, POST /next/<user>, POST /last/<user>."""
    import uvicorn

    from botify.service.app import BotifyApp, ServiceData

    settings = validate_config(ServiceSettings, {
        "catalog": catalog, "host": host, "port": port, "log_dir": log_dir, "workers": workers,
        "experiments": experiments, "artifacts": artifacts, "redis": redis_url or None,
        "history_length": history_length, "session_length": session_length, "session_ttl": session_ttl,
        "seed": seed,
    })
    if workers > 1 and not settings.redis:
        raise BotifyError(
            f"--workers {workers} needs --redis: with the embedded store each worker would keep its own "
            "listen histories, so a user's requests landing on different workers would see different "
            "pasts. Start a Redis server and pass --redis redis://localhost:6379/0, or use one worker."
        )
    data = ServiceData.read(settings)  # fail here, with one clear line, before any worker starts
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    active = ", ".join(e.name for e in data.experiments.active) or "none"
    click.echo(
        f"botify {data.catalog.size} tracks on http://{host}:{port} — store "
        f"{'redis ' + settings.redis if settings.redis else 'embedded'}, experiments: {active}, "
        f"events in {log_dir}/, {workers} worker(s)"
    )
    options = dict(host=host, port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False,
                   lifespan="on", server_header=False, proxy_headers=False)
    if workers == 1:
        uvicorn.run(BotifyApp(settings, data), **options)
    else:
        os.environ[SETTINGS_ENV] = settings.to_env()
        uvicorn.run("botify.service.app:create_app", factory=True, workers=workers, **options)
