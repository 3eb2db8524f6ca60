"""A/B configuration and the course's murmur3 assignment, checked against known vectors."""

from __future__ import annotations

from pathlib import Path

import mmh3
import pytest

from botify.config import validate_config
from botify.errors import BotifyError
from botify.service import ExperimentsConfig
from botify.service.experiments import Experiment


def murmur3_x86_32(data: bytes, seed: int) -> int:
    """A plain reference of MurmurHash3_x86_32 (Austin Appleby), independent of the mmh3 package."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & mask
    rounded = len(data) & ~3
    for i in range(0, rounded, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    k = 0
    tail = data[rounded:]
    if len(tail) == 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


def signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


# Published MurmurHash3_x86_32 test vectors: (input, seed, hash).
KNOWN = [
    (b"", 0, 0x00000000),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
]


@pytest.mark.parametrize(("data", "seed", "expected"), KNOWN)
def test_reference_and_mmh3_agree_with_published_vectors(data: bytes, seed: int, expected: int) -> None:
    assert murmur3_x86_32(data, seed) == expected
    assert mmh3.hash(data, seed, signed=False) == expected


@pytest.mark.parametrize("name", ["STICKY_ARTIST", "TOP_POP", "AA", "I2I_vs_ALS", "эксперимент"])
@pytest.mark.parametrize("treatments", [2, 3, 7, 10])
def test_assignment_is_the_courses_bit_for_bit(name: str, treatments: int) -> None:
    experiment = Experiment(name=name, treatments=treatments)
    salt = signed(murmur3_x86_32(name.encode(), 0))  # the course: salt = mmh3.hash(name), signed
    assert experiment.salt == salt
    for user in range(0, 5000, 7):
        expected = murmur3_x86_32(str(user).encode(), salt & 0xFFFFFFFF) % treatments
        assert experiment.assign(user) == expected


def test_assignment_splits_users_evenly() -> None:
    experiment = Experiment(name="SPLIT", treatments=4)
    counts = [0] * 4
    for user in range(20000):
        counts[experiment.assign(user)] += 1
    assert min(counts) > 4700 and max(counts) < 5300


def test_config_forms() -> None:
    config = validate_config(ExperimentsConfig, {
        "default": {"kind": "top_pop", "artifact": "top.json", "k": 50},
        "experiments": [
            {"name": "AA", "treatments": 3},
            {"name": "OFF", "active": False, "treatments": ["random", "sticky_artist"]},
            {"name": "CTX", "treatments": ["random", {"recommender": {
                "kind": "contextual", "artifact": "ctx.jsonl", "fallback": {"kind": "sticky_artist", "fallback": "random"}}}]},
        ],
    })
    assert [e.name for e in config.active] == ["AA", "CTX"]
    assert config.experiments[0].treatment_names == ("C", "T1", "T2")
    chain = config.experiments[2].treatments[1].recommender.chain()
    assert [spec.kind for spec in chain] == ["contextual", "sticky_artist", "random"]
    assert {spec.artifact for spec in config.specs() if spec.artifact} == {"top.json", "ctx.jsonl"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"experiments": [{"name": "X", "treatments": 1}]}, "at least 2"),
        ({"experiments": [{"name": "X", "treatments": 11}]}, "at most 10"),
        ({"experiments": [{"name": "X", "treatments": 2}, {"name": "X", "treatments": 2}]}, "unique"),
        ({"experiments": [{"name": "X", "treatments": ["random", {"recommender": {"kind": "x", "k": 0}}]}]}, "k"),
        ({"experiments": [{"name": "X", "treatment": 2}]}, "treatment"),
    ],
)
def test_bad_configs_are_explained(data: dict, message: str) -> None:
    with pytest.raises(BotifyError, match=message):
        validate_config(ExperimentsConfig, data, source="experiments.toml")


def test_embedded_default_and_file(tmp_path: Path) -> None:
    default = ExperimentsConfig.load(None)
    assert [e.name for e in default.active] == ["STICKY_ARTIST"]
    path = tmp_path / "e.toml"
    path.write_text('default = "sticky_artist"\n[[experiments]]\nname = "AA"\ntreatments = 2\n')
    loaded = ExperimentsConfig.load(path)
    assert loaded.default.kind == "sticky_artist" and loaded.active[0].name == "AA"
