"""`botify serve`: the recommender service on uvicorn.

Every start-up problem (a broken file, the Redis extra missing, the port taken, the log
directory unwritable, the admin token file unsafe) is one line and a non-zero exit, before
the banner. Options and their defaults come from `ServiceSettings`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from botify.config import validate_config
from botify.errors import BotifyError
from botify.service.settings import REDIS_ENV, ServiceSettings

_FIELDS = ServiceSettings.model_fields


def _option(name: str, kind, **extra):
    """A click option for a settings field: its default and help from the field."""
    field = _FIELDS[name]
    return click.option(f"--{name.replace('_', '-')}", name, type=kind, default=field.default, show_default=True,
                        help=field.description, **extra)


TUNING = ("history_length", "session_length", "session_ttl", "max_users", "idempotency_window", "log_retry",
          "redis_timeout", "keepalive_timeout", "header_timeout", "body_timeout", "max_connections",
          "shutdown_timeout", "reload_interval", "admin_token_file")
POSITIVE = click.FloatRange(min=0, min_open=True)
TYPES = {"history_length": click.IntRange(min=1), "session_length": click.IntRange(min=1), "session_ttl": POSITIVE,
         "max_users": click.IntRange(min=1), "idempotency_window": click.FloatRange(min=0), "log_retry": POSITIVE,
         "redis_timeout": POSITIVE, "keepalive_timeout": POSITIVE, "header_timeout": POSITIVE,
         "body_timeout": POSITIVE, "max_connections": click.IntRange(min=1),
         "shutdown_timeout": click.FloatRange(min=0), "reload_interval": click.FloatRange(min=0),
         "admin_token_file": click.Path(path_type=Path, dir_okay=False)}


def _tuning(command):
    for name in reversed(TUNING):
        command = _option(name, TYPES[name])(command)
    return command


def service_options(command):
    """The options of `botify serve` (and `botify studio`), defaults and help from the settings."""
    options = [
        click.option("--catalog", type=click.Path(path_type=Path), default=Path("data/world/tracks.json"),
                     show_default=True,
                     help="The world's tracks.json (or its directory). The service never reads embeddings or users."),
        click.option("--host", default=_FIELDS["host"].default, show_default=True),
        click.option("--port", type=int, default=_FIELDS["port"].default, show_default=True),
        click.option("--log-dir", type=click.Path(path_type=Path), default=_FIELDS["log_dir"].default,
                     show_default=True, help="Where the event log goes (one file per worker, rotated by size)."),
        click.option("--workers", type=click.IntRange(min=1), default=_FIELDS["workers"].default, show_default=True,
                     help="Worker processes; more than one needs --redis to share listen histories."),
        click.option("--experiments", type=click.Path(path_type=Path, dir_okay=False),
                     help="Experiments file (TOML/JSON/YAML); botify's embedded default if absent."),
        click.option("--artifacts", type=click.Path(path_type=Path, file_okay=False),
                     help="Directory with the artifact files the experiments name."),
        click.option("--redis", "redis_url", envvar=REDIS_ENV, show_envvar=True,
                     help="Redis URL, e.g. redis://localhost:6379/0; the embedded store if absent."),
        click.option("--seed", type=int, default=_FIELDS["seed"].default, show_default=True,
                     help="Seed of the recommenders' randomness (each request draws from (seed, user, request number))."),
        click.option("--log-name", default=_FIELDS["log_name"].default,
                     help=_FIELDS["log_name"].description.capitalize() + "."),
        click.option("--strict", is_flag=True, default=_FIELDS["strict"].default,
                     help=_FIELDS["strict"].description.capitalize() + "."),
    ]
    command = _tuning(command)
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@service_options
@click.option("--studio", is_flag=True, default=_FIELDS["studio"].default, help=_FIELDS["studio"].description)
def serve(**options) -> None:
    """Serve the course's API: GET /, GET /track/<id>, POST /next/<user>, POST /last/<user>."""
    run_service(**options)


def run_service(catalog, host, port, log_dir, workers, experiments, artifacts, redis_url, seed, log_name, strict,
                studio, **tuning) -> None:
    """Check everything, bind the port, print the banner and serve until stopped."""
    from botify.service.admin import resolve_admin_token
    from botify.service.app import BotifyApp, ServiceData
    from botify.service.server import check_log_dir, listen, run

    settings = validate_config(ServiceSettings, {
        "catalog": catalog, "host": host, "port": port, "log_dir": log_dir, "workers": workers,
        "experiments": experiments, "artifacts": artifacts, "redis": redis_url or None, "seed": seed,
        "log_name": log_name, "strict": strict, "studio": studio, **tuning,
    })
    if workers > 1 and not settings.redis:
        raise BotifyError(
            f"--workers {workers} needs --redis: with the embedded store each worker would keep its own "
            "listen histories, so a user's requests landing on different workers would see different "
            "pasts. Start a Redis server and pass --redis redis://localhost:6379/0, or use one worker."
        )
    if workers > 1 and settings.studio:
        raise BotifyError(f"the studio runs in one worker (its queue of requests for people lives in one process); "
                          f"drop --workers {workers}")
    if settings.redis:
        try:
            import hiredis  # noqa: F401 - only checking that the extra is installed
        except ImportError:
            raise BotifyError("--redis needs the Redis extra: pip install 'botify[redis]'") from None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = ServiceData.read(settings)  # fail here, with one clear line, before any worker starts
    check_log_dir(settings.log_dir)
    sock = listen(host, port)  # bound before the banner: a taken port is one line, not a log after it
    port = sock.getsockname()[1]  # the port chosen, for --port 0
    token, token_source = resolve_admin_token(settings)  # once, here: every worker gets the same token
    settings = settings.model_copy(update={"admin_token": token, "port": port})
    active = ", ".join(e.name for e in data.experiments.active) or "none"
    click.echo(
        f"botify {data.catalog.size} tracks on http://{host}:{port} — store "
        f"{'redis ' + settings.redis_display if settings.redis else 'embedded'}, experiments: {active}, "
        f"events in {log_dir}/, {workers} worker(s); admin token from {token_source}"
    )
    app = None
    if workers == 1:
        app = BotifyApp(settings, data)
        if settings.studio:
            from botify.studio.app import Studio

            app = Studio(app)
            click.echo(f"studio on http://{host}:{port}/studio/ — listen, recommend (send listeners with: botify sim "
                       f"run --agent studio --url http://{host}:{port}), watch; answering and reloading need the "
                       f"admin token (open the page with #token=<token>)")
    run(settings, sock, app)
