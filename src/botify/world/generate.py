"""Deterministic generation of a music world with the structure of the course's LLM world.

Embeddings are built top-down (genre family → genre → artist → track, plus a mood
direction), so same-artist and same-genre tracks lie close together. Users' interests are
chains of related artists, weighted by popularity, with an `openness` chance per hop to jump
to an unrelated popular artist. Everything is vectorised and driven by one seed.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from botify.world import vocabulary
from botify.world.model import Catalog, Users, World


class WorldSpec(BaseModel):
    """Every knob of world generation; the defaults give the calibrated default world."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    tracks: int = Field(15_000, ge=10)
    users: int = Field(10_000, ge=1)
    dim: int = Field(32, ge=2, le=65_536)
    tracks_per_artist: float = Field(12.0, gt=1.0, description="mean tracks per artist")
    genre_spread: float = Field(0.7, ge=0, description="genre offset from its family")
    artist_spread: float = Field(0.75, ge=0, description="artist offset from its genres")
    track_spread: float = Field(0.45, ge=0, description="track offset from its artist")
    mood_weight: float = Field(0.3, ge=0, description="pull of a track's mood direction")
    min_interests: int = Field(2, ge=1)
    max_interests: int = Field(8, ge=1)
    openness_mean: float = Field(0.2, gt=0, lt=1)
    consume_bias_mean: float = 0.47
    consume_bias_sd: float = Field(0.05, ge=0)
    consume_sharpness_mean: float = Field(6.0, gt=0)
    session_budget: int = Field(5, ge=1)
    artist_discount_gamma: float = Field(0.72, ge=0, le=1, description="share kept per earlier play of the artist in the session")
    interest_neighbours: int = Field(10, ge=1)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def _noise(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    """Gaussian rows whose expected norm is 1 in any dimension."""
    return rng.standard_normal((rows, dim)) / np.sqrt(dim)


def _sample_by_weight(rng: np.random.Generator, cumulative: np.ndarray, size: int) -> np.ndarray:
    return np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")


def _unique_names(candidates: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for name in candidates:
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if count == 0 else f"{name} {count + 1}")
    return names


def _artist_names(rng: np.random.Generator, count: int) -> list[str]:
    adjectives, nouns = vocabulary.ADJECTIVES, vocabulary.NOUNS
    firsts, lasts = vocabulary.FIRST_NAMES, vocabulary.LAST_NAMES
    style = rng.integers(0, 4, count)
    a, b, c = rng.integers(0, 1 << 30, (3, count))
    names = []
    for kind, i, j, k in zip(style, a, b, c):
        if kind == 0:
            names.append(f"The {adjectives[i % len(adjectives)]} {nouns[j % len(nouns)]}s")
        elif kind == 1:
            names.append(f"{firsts[i % len(firsts)]} {lasts[j % len(lasts)]}")
        elif kind == 2:
            names.append(f"{adjectives[i % len(adjectives)]} {nouns[j % len(nouns)]}")
        else:
            names.append(f"{firsts[i % len(firsts)]} & the {nouns[k % len(nouns)]}s")
    return _unique_names(names)


def _track_titles(rng: np.random.Generator, count: int) -> list[str]:
    adjectives, nouns, verbs = vocabulary.ADJECTIVES, vocabulary.NOUNS, vocabulary.VERBS
    style = rng.integers(0, 3, count)
    a, b = rng.integers(0, 1 << 30, (2, count))
    titles = []
    for kind, i, j in zip(style, a, b):
        if kind == 0:
            titles.append(f"{adjectives[i % len(adjectives)]} {nouns[j % len(nouns)]}")
        elif kind == 1:
            titles.append(f"{verbs[i % len(verbs)]} the {nouns[j % len(nouns)]}")
        else:
            titles.append(f"{nouns[i % len(nouns)]} of {nouns[j % len(nouns)]}s")
    return titles


def generate_world(spec: WorldSpec) -> World:
    """Build a world from `spec`; the same spec always gives the same world."""
    rng = np.random.default_rng(spec.seed)
    dim = spec.dim

    families = list(vocabulary.GENRE_FAMILIES)
    genre_names = [genre for family in families for genre in vocabulary.GENRE_FAMILIES[family]]
    genre_family = np.repeat(
        np.arange(len(families)), [len(vocabulary.GENRE_FAMILIES[f]) for f in families]
    )
    n_genres = len(genre_names)
    family_vectors = _unit_rows(rng.standard_normal((len(families), dim)))
    genre_vectors = _unit_rows(
        family_vectors[genre_family] + spec.genre_spread * _noise(rng, n_genres, dim)
    )
    mood_vectors = _unit_rows(rng.standard_normal((len(vocabulary.MOODS), dim)))

    # Artists: a main genre (Zipf-like over genres), up to two related secondary genres.
    n_artists = max(2, int(round(spec.tracks / spec.tracks_per_artist)))
    genre_weight = 1.0 / np.arange(1, n_genres + 1) ** 0.8
    genre_weight = genre_weight[rng.permutation(n_genres)]
    main_genre = _sample_by_weight(rng, np.cumsum(genre_weight), n_artists)
    n_secondary = rng.integers(0, 3, n_artists)
    same_family = rng.random((n_artists, 2)) < 0.75
    family_size = np.bincount(genre_family)
    family_start = np.concatenate([[0], np.cumsum(family_size)[:-1]])
    main_family = genre_family[main_genre][:, None]
    in_family = family_start[main_family] + (
        rng.random((n_artists, 2)) * family_size[main_family]
    ).astype(np.int64)
    anywhere = rng.integers(0, n_genres, (n_artists, 2))
    secondary = np.where(same_family, in_family, anywhere)
    artist_genres = np.full((n_artists, 3), -1, dtype=np.int64)
    artist_genres[:, 0] = main_genre
    for slot in range(2):
        use = (n_secondary > slot) & (secondary[:, slot] != main_genre)
        artist_genres[use, slot + 1] = secondary[use, slot]

    secondary_mix = np.zeros((n_artists, dim))
    for slot in (1, 2):
        present = artist_genres[:, slot] >= 0
        secondary_mix[present] += 0.35 * genre_vectors[artist_genres[present, slot]]
    artist_vectors = _unit_rows(
        genre_vectors[main_genre] + secondary_mix + spec.artist_spread * _noise(rng, n_artists, dim)
    )
    fans = np.maximum(1, rng.lognormal(mean=8.0, sigma=1.6, size=n_artists)).astype(np.int64)
    countries = list(vocabulary.COUNTRIES)
    country_weight = np.cumsum(list(vocabulary.COUNTRIES.values()), dtype=np.float64)
    artist_country = _sample_by_weight(rng, country_weight, n_artists)
    career_start = np.clip(np.round(2026 - rng.gamma(2.0, 12.0, n_artists)), 1950, 2025).astype(int)
    career_length = rng.integers(1, 25, n_artists)

    # Tracks: heavy-tailed counts per artist, a mood each, ids shuffled.
    productivity = rng.lognormal(0.0, 0.8, n_artists) * (1 + 0.1 * np.log1p(fans))
    counts = 1 + rng.multinomial(spec.tracks - n_artists, productivity / productivity.sum())
    track_artist = np.repeat(np.arange(n_artists), counts)
    n_tracks = spec.tracks
    mood = rng.integers(0, len(vocabulary.MOODS), n_tracks)
    embeddings = _unit_rows(
        artist_vectors[track_artist]
        + spec.mood_weight * mood_vectors[mood]
        + spec.track_spread * _noise(rng, n_tracks, dim)
    ).astype(np.float32)
    year = np.minimum(2026, career_start[track_artist] + rng.integers(0, career_length[track_artist] + 1))
    track_genre_count = 1 + rng.integers(0, 2, n_tracks)

    order = rng.permutation(n_tracks)
    track_artist, mood, year, embeddings = track_artist[order], mood[order], year[order], embeddings[order]
    track_genre_count = track_genre_count[order]

    artist_names = _artist_names(rng, n_artists)
    titles = _track_titles(rng, n_tracks)
    artist_genre_names = [
        [genre_names[g] for g in row if g >= 0] for row in artist_genres.tolist()
    ]
    records = [
        {
            "track": track,
            "title": titles[track],
            "artist": artist_names[artist],
            "artist_id": artist,
            "genres": artist_genre_names[artist][: track_genre_count[track]],
            "artist_genre": artist_genre_names[artist][0],
            "mood": vocabulary.MOODS[mood[track]],
            "year": int(year[track]),
            "artist_country": countries[artist_country[artist]],
            "artist_fans": int(fans[artist]),
        }
        for track, artist in enumerate(track_artist.tolist())
    ]
    catalog = Catalog.from_records(records)
    users = _generate_users(rng, spec, track_artist, artist_genres, fans)
    return World(catalog, embeddings, users)


def _generate_users(
    rng: np.random.Generator,
    spec: WorldSpec,
    track_artist: np.ndarray,
    artist_genres: np.ndarray,
    fans: np.ndarray,
) -> Users:
    """Interests as popularity-weighted walks over artists that share a genre."""
    n_users, n_artists = spec.users, len(fans)
    artist_tracks = np.argsort(track_artist, kind="stable")
    artist_offsets = np.concatenate([[0], np.cumsum(np.bincount(track_artist, minlength=n_artists))])

    # Per genre, its artists with cumulative popularity shares: keys g + share lie in (g, g+1].
    genre_of_slot = artist_genres.ravel()
    artist_of_slot = np.repeat(np.arange(n_artists), artist_genres.shape[1])
    valid = genre_of_slot >= 0
    genre_of_slot, artist_of_slot = genre_of_slot[valid], artist_of_slot[valid]
    by_genre = np.lexsort((artist_of_slot, genre_of_slot))
    genre_of_slot, artist_of_slot = genre_of_slot[by_genre], artist_of_slot[by_genre]
    weight = fans[artist_of_slot].astype(np.float64)
    genre_total = np.bincount(genre_of_slot, weights=weight)
    running = np.cumsum(weight) - np.concatenate([[0.0], np.cumsum(genre_total)])[genre_of_slot]
    genre_keys = genre_of_slot + running / genre_total[genre_of_slot]
    popularity = np.cumsum(fans.astype(np.float64))
    genres_per_artist = (artist_genres >= 0).sum(axis=1)

    n_interests = rng.integers(spec.min_interests, max(spec.min_interests, spec.max_interests) + 1, n_users)
    openness = rng.beta(2.0, 2.0 * (1 - spec.openness_mean) / spec.openness_mean, n_users)
    longest = 2 * int(n_interests.max())  # spare hops replace walks that revisit a track
    chain = np.empty((n_users, longest), dtype=np.int64)
    artist = _sample_by_weight(rng, popularity, n_users)
    for hop in range(longest):
        if hop > 0:
            pick = (rng.random(n_users) * genres_per_artist[artist]).astype(np.int64)
            genre = artist_genres[artist, pick]
            slot = np.searchsorted(genre_keys, genre + rng.random(n_users), side="left")
            related = artist_of_slot[np.minimum(slot, len(artist_of_slot) - 1)]
            jump = rng.random(n_users) < openness
            artist = np.where(jump, _sample_by_weight(rng, popularity, n_users), related)
        offset = (rng.random(n_users) * (artist_offsets[artist + 1] - artist_offsets[artist])).astype(np.int64)
        chain[:, hop] = artist_tracks[artist_offsets[artist] + offset]

    interests = []
    for user in range(n_users):
        distinct, first_seen = np.unique(chain[user], return_index=True)
        interests.append(distinct[np.argsort(first_seen)][: n_interests[user]])
    shuffled = [row[rng.permutation(len(row))] for row in interests]
    lengths = np.array([len(row) for row in shuffled])
    return Users(
        interest_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        interest_tracks=np.concatenate(shuffled).astype(np.int32),
        consume_bias=rng.normal(spec.consume_bias_mean, spec.consume_bias_sd, n_users),
        consume_sharpness=spec.consume_sharpness_mean * rng.lognormal(0.0, 0.2, n_users) / np.exp(0.02),
        openness=openness,
        session_budget=np.full(n_users, spec.session_budget, dtype=np.int32),
        artist_discount_gamma=np.full(n_users, spec.artist_discount_gamma),
        interest_neighbours=np.full(n_users, spec.interest_neighbours, dtype=np.int32),
    )
