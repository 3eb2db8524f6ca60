"""One estimator shape for every training pipeline, and the registry that finds them.

A model is a dataclass of explicit, typed parameters (scikit-learn style: the constructor
takes them all, `get_params` gives them back), documented in a numpydoc `Parameters`
section of its docstring, which `botify train MODEL --help` shows. It learns from
`Interactions` (the service's logs) and the public catalog in `fit`, then `artifacts()`
gives what it serves: ranked lists keyed by user (`user`), by previous track (`track`, with
scores), or one list for everybody (`top`).

Defining a subclass with a `name` registers it (RecBole style: no second list anywhere);
`load_models()` imports every module of this package so that all built-in models register.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
from pydantic import TypeAdapter, ValidationError

from botify.artifacts import DEFAULT_FILES, write_artifact, write_manifest
from botify.errors import BotifyError
from botify.train.dataset import Interactions
from botify.world.model import Catalog

REGISTRY: dict[str, type[Model]] = {}

# Long fits report their steps (epochs, trials) to whatever display the command installed with
# `reporting` (a progress bar, plain lines in a log); library use stays silent.
Reporter = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]
_reporter: Reporter | None = None


@contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Send the progress of fits inside the block to `reporter(label, total)`, a context
    manager that yields `advance(steps)`."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous


@contextmanager
def steps(count: int, label: str) -> Iterator[Callable[[int], None]]:
    """`advance(n)` for `count` steps of work named `label`, shown by the installed reporter."""
    if _reporter is None:
        yield lambda done: None
        return
    with _reporter(label, count) as advance:
        yield advance


def progress(count: int, label: str) -> Iterator[int]:
    """`range(count)`, each step reported to the installed reporter (if any) under `label`."""
    with steps(count, label) as advance:
        for step in range(count):
            yield step
            advance(1)


class Lists(NamedTuple):
    """One artifact a model serves: its kind, ranked tracks per key, optional scores per key."""

    kind: str
    lists: dict[int, list[int]]
    scores: dict[int, list[float]] | None = None


class Param(NamedTuple):
    name: str
    annotation: Any
    default: Any
    help: str


def _docstring_params(doc: str) -> dict[str, str]:
    """`name : type` entries of a numpydoc Parameters section and their (joined) text."""
    found: dict[str, str] = {}
    section = re.split(r"\n\s*Parameters\s*\n\s*-{3,}\s*\n", doc or "", maxsplit=1)
    if len(section) < 2:
        return found
    body = re.split(r"\n\s*\w[\w ]*\n\s*-{3,}", section[1], maxsplit=1)[0]
    current = None
    for line in body.splitlines():
        entry = re.match(r"^(\w+)\s*:", line)
        if entry:
            current = entry.group(1)
            found[current] = ""
        elif current and line.strip():
            found[current] = (found[current] + " " + line.strip()).strip()
    return found


@dataclasses.dataclass(kw_only=True)
class Model(ABC):
    """A training pipeline (see the module docstring)."""

    name: ClassVar[str]
    artifact_kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTRY[cls.name] = cls
        else:  # a user's model (or a base class): named as `botify train` loads it, for manifests and errors
            cls.name = f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def summary(cls) -> str:
        return (inspect.getdoc(cls) or cls.name).split("\n\n")[0].replace("\n", " ")

    @classmethod
    def params(cls) -> list[Param]:
        """The model's parameters: name, type, default and the docstring's help."""
        helps: dict[str, str] = {}
        for klass in reversed(cls.__mro__):  # a subclass documents only what it changes
            if issubclass(klass, Model) and klass.__doc__:
                helps.update(_docstring_params(inspect.cleandoc(klass.__doc__)))
        hints = typing.get_type_hints(cls)
        result = []
        for item in dataclasses.fields(cls):
            if not item.init or item.name.startswith("_"):
                continue
            default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
            result.append(Param(item.name, hints[item.name], default, helps.get(item.name, "")))
        return result

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None) -> Model:
        """Build the model from raw values (CLI strings, config values), checked against each
        parameter's type; a problem is one BotifyError naming the parameter."""
        known = {param.name: param for param in cls.params()}
        values = {}
        for key, value in (params or {}).items():
            key = key.replace("-", "_")
            if key not in known:
                raise BotifyError(f"{cls.name} has no parameter {key!r}; it takes {', '.join(known) or 'none'}")
            try:
                values[key] = TypeAdapter(known[key].annotation).validate_python(value)
            except ValidationError as error:
                problem = error.errors()[0]["msg"].lower()
                raise BotifyError(f"{cls.name}: parameter {key}={value!r}: {problem}") from None
        return cls(**values)

    def get_params(self) -> dict[str, Any]:
        return {param.name: getattr(self, param.name) for param in self.params()}

    @abstractmethod
    def fit(self, train: Interactions, catalog: Catalog) -> Model:
        """Learn from the training interactions; returns self."""

    @abstractmethod
    def lists(self) -> dict[int, list[int]]:
        """Ranked track ids per key of `artifact_kind` (user, previous track, or 0)."""

    def learned(self) -> dict[str, Any]:
        """What the fit learned that a person (or a serving config) may want to read, for the
        manifest: e.g. a learned per-play artist discount."""
        return {}

    def artifacts(self) -> dict[str, Lists]:
        """Every artifact the fitted model serves, by file name, the main one first. A model
        that learned item vectors (`item_vectors`, row i is track i) adds item-to-item lists:
        each track's nearest tracks by cosine similarity, with the similarities as scores."""
        found = {DEFAULT_FILES[self.artifact_kind]: Lists(self.artifact_kind, self.lists())}
        vectors = getattr(self, "item_vectors", None)
        if vectors is not None and self.artifact_kind != "track":
            found[DEFAULT_FILES["track"]] = item_neighbours(vectors, getattr(self, "size", 100))
        return found

    def save(self, out: Path, manifest: dict, item_key: str = "track") -> list[Path]:
        """Write every artifact and a manifest (model, parameters, + `manifest`) into `out`;
        item-to-item lines keyed by `item_key` ("track", or the course's 2026 "item_id")."""
        out = Path(out)
        artifacts = self.artifacts()  # item-to-item lists from vectors are computed here: once
        written = [write_artifact(out / file, item.kind, item.lists, item.scores,
                                  item_key if item.kind == "track" else None) for file, item in artifacts.items()]
        write_manifest(out, {
            "model": self.name,
            "parameters": self.get_params(),
            "artifact": written[0].name,
            "artifact_kind": self.artifact_kind,
            "artifacts": {file: item.kind for file, item in artifacts.items()},
            "learned": self.learned(),
            **manifest,
        })
        return written


def item_neighbours(vectors: np.ndarray, size: int, normalise: bool = True) -> Lists:
    """Item-to-item lists from item vectors: each track's `size` nearest other tracks by
    cosine similarity (inner product without `normalise`), with the similarities as scores."""
    from botify.train.neural import top_k_scored

    vectors = np.asarray(vectors, dtype=np.float32)
    if normalise:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    ids, scores = top_k_scored(vectors, vectors, size + 1)
    lists, score_lists = {}, {}
    for track, (row, values) in enumerate(zip(ids, scores)):
        keep = (row >= 0) & (row != track)
        lists[track] = row[keep][:size].tolist()
        score_lists[track] = values[keep][:size].tolist()
    return Lists("track", lists, score_lists)


def load_models() -> dict[str, type[Model]]:
    """Import every module of `botify.train` so its models register; the registry."""
    import botify.train as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return REGISTRY


def model_class(name: str) -> type[Model]:
    """A registered model by name, or a user's `module:Class` implementing `Model`."""
    if ":" in name:
        from botify.plugins import load_object

        found = load_object(name, "model")
        if not (isinstance(found, type) and issubclass(found, Model)):
            raise BotifyError(f"{name} is not a botify.train.Model subclass")
        return found
    models = load_models()
    if name not in models:
        raise BotifyError(f"unknown model {name!r}: use one of {', '.join(sorted(models))} or module:Class")
    return models[name]


def make_model(name: str, params: dict[str, Any] | None = None) -> Model:
    return model_class(name).from_params(params)
