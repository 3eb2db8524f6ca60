"""A/B experiments from a config file, with the course's murmur3 assignment bit for bit.

An experiment has 2..10 treatments named `C`, `T1`..`T9` by position. A user's treatment is
`mmh3.hash(str(user), mmh3.hash(name), signed=False) % treatments`, exactly as the course
assigned it, so the same users land in the same groups. A treatment may name the recommender
that serves it; the first active experiment whose assigned treatment names one serves the
request, otherwise the config's `default` recommender does. Experiments without recommenders
(A/A tests, hold-outs) are only logged.
"""

from __future__ import annotations

from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import mmh3
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from botify.config import read_mapping, validate_config

TREATMENT_NAMES = ("C", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9")


class RecommenderSpec(BaseModel):
    """A recommender by kind, its parameters, how it serves, and what answers when it cannot.

    Serving has three steps every recommender shares: drop what the listener has heard
    (`heard`), re-rank for artist fatigue within the session (`artist_discount`,
    `artist_cap`), then choose (`pick`: the best, uniformly among the first `k`, or by a
    softmax over scores with `temperature`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    artifact: str | None = Field(None, description="file in the artifacts directory")
    k: int | None = Field(None, ge=1, description="consider only the first k unheard candidates")
    pick: Literal["uniform", "ranked", "softmax"] | None = Field(
        None, description="uniform among the candidates (the default), the best one, or a softmax over scores")
    ranked: bool = Field(False, description="shorthand for pick = 'ranked'")
    explore: float = Field(0.0, ge=0, le=1, description="epsilon-greedy: with this probability, a uniform draw from "
                                                        "the candidate pool instead of the pick (for off-policy logs)")
    explore_pool: Annotated[int, Field(ge=1)] | Literal["catalog"] | None = Field(
        None, description="exploration draws among the first N candidates left after the heard filter and "
                          "re-ranking (default: all), or, with 'catalog', among every unheard track of the catalog")
    temperature: float = Field(0.1, gt=0, description="softmax temperature over the candidates' scores")
    heard: Literal["session", "history", "none"] = Field(
        "session", description="tracks never recommended again: this session's, the long history's, or none")
    artist_discount: float | None = Field(
        None, gt=0, le=1, description="re-rank: score × discount ** (plays of the track's artist in this session)")
    artist_cap: int | None = Field(None, ge=1, description="re-rank: skip artists played this often in this session")
    anchor: Literal["first", "last", "mix"] = Field(
        "first", description="i2i: the session's first track, its last one played past min_time, or a mix")
    min_time: float | None = Field(None, ge=0, le=1, description="i2i/last_liked: least time for an anchor")
    anchors: int | None = Field(None, ge=1, description="i2i mix: recent session plays used as anchors")
    params: dict[str, Any] = Field({}, description="a plugin recommender's own parameters")
    fallback: RecommenderSpec | None = None

    @property
    def policy(self) -> str:
        return self.pick or ("ranked" if self.ranked else "uniform")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    def chain(self) -> list[RecommenderSpec]:
        """This spec and its fallbacks, in the order they are tried."""
        specs, spec = [], self
        while spec is not None:
            specs.append(spec)
            spec = spec.fallback
        return specs


class Treatment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    recommender: RecommenderSpec | None = None


class Experiment(BaseModel):
    """An experiment: a name (its hash is the salt) and 2..10 treatments C, T1, ..."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    active: bool = True
    treatments: list[Treatment] = Field(min_length=2, max_length=10)

    @field_validator("treatments", mode="before")
    @classmethod
    def _count_or_list(cls, value: Any) -> Any:
        """`treatments = 3` declares three treatments with no recommender (an A/A test)."""
        if isinstance(value, int) and not isinstance(value, bool):
            return [{}] * value
        return [{"recommender": item} if isinstance(item, str) else item for item in value]

    @cached_property
    def salt(self) -> int:
        """The course's salt, `mmh3.hash(name)`, a signed 32-bit int."""
        return mmh3.hash(self.name)

    @cached_property
    def _seed(self) -> int:
        # The course's mmh3 took the signed salt and used its 32 bits as the seed; mmh3 >= 5
        # wants them unsigned. Same bits, same hashes.
        return self.salt & 0xFFFFFFFF

    @property
    def treatment_names(self) -> tuple[str, ...]:
        return TREATMENT_NAMES[: len(self.treatments)]

    def assign(self, user: int) -> int:
        """The index of the user's treatment, as the course computed it."""
        return mmh3.hash(str(user), self._seed, signed=False) % len(self.treatments)


class ExperimentsConfig(BaseModel):
    """What a service runs: the default recommender and the experiments, active or not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: RecommenderSpec = RecommenderSpec(kind="random")
    experiments: list[Experiment] = []

    @model_validator(mode="after")
    def _unique_names(self) -> ExperimentsConfig:
        names = [experiment.name for experiment in self.experiments]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"experiment names must be unique: {', '.join(duplicates)}")
        return self

    @property
    def active(self) -> list[Experiment]:
        return [experiment for experiment in self.experiments if experiment.active]

    def specs(self) -> list[RecommenderSpec]:
        """Every recommender spec that can serve, fallbacks included."""
        found = [*self.default.chain()]
        for experiment in self.active:
            for treatment in experiment.treatments:
                if treatment.recommender is not None:
                    found.extend(treatment.recommender.chain())
        return found

    @classmethod
    def load(cls, path: Path | None) -> ExperimentsConfig:
        """Read a TOML/JSON/YAML file, or botify's embedded default when `path` is None."""
        if path is None:
            source = resources.files("botify.service").joinpath("default_experiments.toml")
            with resources.as_file(source) as default_path:
                return validate_config(cls, read_mapping(default_path), source="default experiments")
        return validate_config(cls, read_mapping(path), source=str(path))
