"""The options that choose and size the engine reading the logs, shared by `botify analyze`,
`botify train` and `botify logs compact`; their defaults live in `EngineSettings` only."""

from __future__ import annotations

import typing

import click

from botify.config import validate_config
from botify.errors import BotifyError
from botify.events.engine import EngineSettings

_FIELDS = EngineSettings.model_fields


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    conf = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BotifyError(f"--spark-conf {pair!r}: expected key=value")
        conf[key.strip()] = value
    return conf


def engine_options(spark: bool = True):
    """A decorator adding --memory-limit (and, with `spark`, --engine, --spark-master, --spark-conf)."""
    options = [click.option("--memory-limit", help=f"{_FIELDS['memory_limit'].description} "
                                                   f"(default {_FIELDS['memory_limit'].default}).")]
    if spark:
        options += [
            click.option("--engine", type=click.Choice(typing.get_args(_FIELDS["engine"].annotation)),
                         help=f"{_FIELDS['engine'].description} (default {_FIELDS['engine'].default}); "
                              "spark needs botify[spark] and Java."),
            click.option("--spark-master", help=f"{_FIELDS['spark_master'].description}."),
            click.option("--spark-conf", multiple=True, help=f"{_FIELDS['spark_conf'].description}: key=value; "
                                                             "repeatable."),
        ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def engine_settings(memory_limit=None, engine=None, spark_master=None, spark_conf=()) -> EngineSettings:
    data = {"memory_limit": memory_limit, "engine": engine, "spark_master": spark_master,
            "spark_conf": _pairs(spark_conf) if spark_conf else None}
    return validate_config(EngineSettings, {key: value for key, value in data.items() if value is not None})
