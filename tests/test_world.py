"""The generated world: invariants, determinism, file formats and clear errors on bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from botify.errors import WorldError
from botify.world import World, WorldSpec, generate_world, world_exists
from tests.conftest import SMALL_SPEC


def test_ids_are_contiguous_and_embeddings_normalised(small_world: World) -> None:
    catalog = small_world.catalog
    assert [record["track"] for record in catalog.records] == list(range(SMALL_SPEC.tracks))
    assert small_world.embeddings.shape == (SMALL_SPEC.tracks, SMALL_SPEC.dim)
    assert small_world.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(small_world.embeddings, axis=1), 1.0, atol=1e-5)
    assert small_world.users.size == SMALL_SPEC.users


def test_tracks_carry_the_course_fields(small_world: World) -> None:
    fields = {"track", "title", "artist", "artist_id", "genres", "artist_genre", "mood", "year",
              "artist_country", "artist_fans"}
    for record in small_world.catalog.records[:50]:
        assert fields <= set(record)
        assert record["artist_genre"] in record["genres"]
        assert 1900 < record["year"] < 2030


def test_interests_are_valid_tracks(small_world: World) -> None:
    users = small_world.users
    assert users.interest_tracks.min() >= 0
    assert users.interest_tracks.max() < small_world.catalog.size
    counts = np.diff(users.interest_offsets)
    assert counts.min() >= SMALL_SPEC.min_interests and counts.max() <= SMALL_SPEC.max_interests
    assert ((users.openness >= 0) & (users.openness <= 1)).all()


def test_same_artist_closer_than_same_genre_closer_than_random(small_world: World) -> None:
    emb, artist = small_world.embeddings, small_world.track_artist
    genre = np.unique([r["artist_genre"] for r in small_world.catalog.records], return_inverse=True)[1]
    a, b = np.random.default_rng(0).integers(0, len(emb), (2, 20000))
    cos = np.einsum("ij,ij->i", emb[a], emb[b])
    same_artist = (artist[a] == artist[b]) & (a != b)
    same_genre = (genre[a] == genre[b]) & ~same_artist
    assert same_artist.sum() > 20 and same_genre.sum() > 20
    assert cos[same_artist].mean() > cos[same_genre].mean() + 0.1
    assert cos[same_genre].mean() > cos[genre[a] != genre[b]].mean() + 0.1


def test_popularity_is_heavy_tailed(small_world: World) -> None:
    fans = {}
    for record in small_world.catalog.records:
        fans[record["artist"]] = record["artist_fans"]
    values = np.sort(np.array(list(fans.values())))[::-1]
    top = values[: max(1, len(values) // 10)].sum()
    assert top / values.sum() > 0.3


def test_same_seed_same_world_and_other_seed_differs() -> None:
    spec = WorldSpec(seed=3, tracks=200, users=50, dim=8)
    first, second = generate_world(spec), generate_world(spec)
    assert first.catalog.records == second.catalog.records
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    assert first.users.to_records() == second.users.to_records()
    other = generate_world(spec.model_copy(update={"seed": 4}))
    assert not np.array_equal(first.embeddings, other.embeddings)


def test_save_and_load_round_trip(small_world: World, small_world_dir: Path) -> None:
    assert world_exists(small_world_dir)
    loaded = World.load(small_world_dir)
    assert loaded.catalog.records == small_world.catalog.records
    np.testing.assert_array_equal(loaded.embeddings, small_world.embeddings)
    assert loaded.users.to_records() == small_world.users.to_records()


def _copy(world_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "world"
    shutil.copytree(world_dir, target)
    return target


def test_foreign_world_in_course_format(tmp_path: Path) -> None:
    """Course files: `tracks.npy`, extra fields, users without optional columns, ids shuffled."""
    tracks = [{"track": i, "artist": f"a{i % 3}", "title": f"song {i}", "lyrics_vibe": "x"} for i in (2, 0, 1, 3)]
    (tmp_path / "tracks.json").write_text("\n".join(json.dumps(t) for t in tracks) + "\n")
    np.save(tmp_path / "tracks.npy", np.eye(4, dtype=np.float64))
    users = [{"user": 0, "interests": [1, 2], "consume_bias": 0.5, "consume_sharpness": 2.0, "hobby": "x"}]
    (tmp_path / "users.json").write_text(json.dumps(users[0]) + "\n")
    world = World.load(tmp_path)
    assert [r["track"] for r in world.catalog.records] == [0, 1, 2, 3]
    assert world.embeddings.dtype == np.float32
    assert world.users.session_budget[0] == 5
    assert world.users.artist_discount_gamma[0] == pytest.approx(0.8)
    assert world.users.interest_neighbours[0] == 4  # the default 10, capped by the catalog


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "users.json").unlink(), "users.json: file not found"),
        (lambda d: (d / "embeddings.npy").unlink(), "embeddings.npy: file not found"),
        (lambda d: (d / "tracks.json").write_text('{"track": 0, "artist": "a"}\n{oops\n'), "tracks.json:2: not valid JSON"),
        (lambda d: np.save(d / "embeddings.npy", np.zeros((3, 4), np.float32)), "has 3 rows but tracks.json has"),
        (lambda d: np.save(d / "embeddings.npy", np.full((800, 16), np.nan, np.float32)), "NaN"),
        (lambda d: (d / "users.json").write_text('{"user": 0, "interests": [99999]}\n'), "interest 99999"),
        (lambda d: (d / "users.json").write_text('{"user": 0, "interests": [1], "consume_sharpness": "x"}\n'),
         "consume_sharpness='x'"),
        (lambda d: (d / "users.json").write_text('{"user": 1, "interests": [1]}\n'), "user ids must be 0..0"),
        (lambda d: (d / "tracks.json").write_text('{"track": 0, "artist": "a"}\n{"track": 2, "artist": "a"}\n'),
         "first missing id 1"),
        (lambda d: (d / "tracks.json").write_text(""), "holds no records"),
    ],
)
def test_broken_files_name_the_file_and_problem(small_world_dir: Path, tmp_path: Path, damage, message) -> None:
    directory = _copy(small_world_dir, tmp_path)
    damage(directory)
    with pytest.raises(WorldError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        World.load(directory)


def test_missing_world_directory_suggests_generate(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match="botify world generate"):
        World.load(tmp_path / "nowhere")
