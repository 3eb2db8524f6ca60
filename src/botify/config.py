"""The one config loader: TOML, JSON or YAML files validated by pydantic models."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from botify.errors import BotifyError

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_mapping(path: Path) -> dict:
    """Read a config file into a dict, choosing the parser by the file's suffix."""
    if not path.is_file():
        raise BotifyError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix in (".yml", ".yaml"):
            try:
                import yaml
            except ImportError as error:
                raise BotifyError(f"{path}: YAML configs need PyYAML (pip install pyyaml)") from error
            data = yaml.safe_load(text)
        else:
            raise BotifyError(f"{path}: unknown config format (use .toml, .json or .yaml)")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise BotifyError(f"{path}: cannot parse: {error}") from error
    if not isinstance(data, dict):
        raise BotifyError(f"{path}: the top level must be a table/object")
    return data


def load_config(path: Path, model: type[ModelT], **overrides: object) -> ModelT:
    """Load `path` into `model`; keyword overrides that are not None win over the file."""
    data = read_mapping(path) if path is not None else {}
    data.update({key: value for key, value in overrides.items() if value is not None})
    return validate_config(model, data, source=str(path) if path else "options")


def validate_config(model: type[ModelT], data: dict, source: str = "options") -> ModelT:
    """Validate `data` into `model`, turning pydantic's errors into one readable message."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'value'}: {item['msg']}"
            for item in error.errors()
        )
        raise BotifyError(f"{source}: invalid {model.__name__}: {problems}") from error
