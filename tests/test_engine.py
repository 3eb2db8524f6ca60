"""Each rule of the course's user model, on hand-built tiny worlds where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from botify.sim import ListenerModel
from tests.conftest import tiny_world

EYE = np.eye(6, dtype=np.float32)


def _model(user: dict, artists: list[str] | None = None, embeddings=EYE, max_steps: int = 250) -> ListenerModel:
    artists = artists or [f"artist {i}" for i in range(len(embeddings))]
    return ListenerModel(tiny_world(embeddings, artists, [user]), max_steps=max_steps)


def _start(model: ListenerModel, sessions: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    return model.start(np.zeros(sessions, dtype=np.int64), rng), rng


def test_first_track_is_the_interest_when_one_neighbour_and_played_in_full() -> None:
    model = _model({"interests": [3], "interest_neighbours": 1})
    sessions, _ = _start(model, sessions=20)
    assert (sessions.last_track == 3).all()
    assert (sessions.total_time == 1.0).all()
    np.testing.assert_array_equal(sessions.taste, np.repeat(EYE[[3]], 20, axis=0))


def test_first_track_is_drawn_among_the_nearest_neighbours() -> None:
    # Track 0's nearest by inner product: itself (1.0), then 1 (0.9), 2 (0.8); 3..5 are far.
    embeddings = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)
    model = _model({"interests": [0], "interest_neighbours": 3}, embeddings=embeddings)
    sessions, _ = _start(model, sessions=600)
    counts = np.bincount(sessions.last_track, minlength=6)
    assert set(np.flatnonzero(counts)) == {0, 1, 2}
    assert counts[:3].min() > 150  # uniform over the three


def test_time_follows_the_sigmoid_formula_rounded_to_two_digits() -> None:
    bias, sharpness = 0.2, 3.0
    embeddings = np.array([[1, 0], [0.6, 0.8], [0, 1], [-0.6, 0.8], [-1, 0], [0, -1]], dtype=np.float32)
    model = _model({"interests": [0], "interest_neighbours": 1, "consume_bias": bias, "consume_sharpness": sharpness},
                   embeddings=embeddings)
    for track in (1, 2, 3, 4, 5):
        sessions, rng = _start(model)
        result = model.step(sessions, np.array([track]), rng)
        score = float(embeddings[track] @ embeddings[0])
        expected = round(1 / (1 + np.exp(-(score - bias) * sharpness)), 2)
        assert result.time[0] == pytest.approx(expected, abs=1e-9)


def test_repeat_plays_for_zero() -> None:
    model = _model({"interests": [0], "interest_neighbours": 1, "consume_bias": -10.0})
    sessions, rng = _start(model)
    assert model.step(sessions, np.array([1]), rng).time[0] == 1.0
    assert model.step(sessions, np.array([0]), rng).time[0] == 0.0  # the first track
    assert model.step(sessions, np.array([1]), rng).time[0] == 0.0


def test_artist_discount_counts_plays_of_that_artist_in_the_session() -> None:
    # Tracks 1..4 by one artist, all loved (0.99995 before discount); gamma 0.6.
    artists = ["first", "same", "same", "same", "same", "other"]
    model = _model({"interests": [0], "interest_neighbours": 1, "consume_bias": -10.0, "artist_discount_gamma": 0.6},
                   artists=artists)
    sessions, rng = _start(model)
    times = [model.step(sessions, np.array([track]), rng).time[0] for track in (1, 2, 3, 5, 4)]
    assert times == [1.0, 0.6, 0.36, 1.0, 0.22]


def test_artist_discount_includes_the_first_track_and_zero_time_plays() -> None:
    artists = ["same", "same", "same", "x", "y", "z"]
    model = _model({"interests": [0], "interest_neighbours": 1, "consume_bias": -10.0, "artist_discount_gamma": 0.5},
                   artists=artists)
    sessions, rng = _start(model)
    assert model.step(sessions, np.array([0]), rng).time[0] == 0.0  # repeat, still a play of "same"
    assert model.step(sessions, np.array([1]), rng).time[0] == 0.25


def test_budget_drops_on_every_unplayed_track_and_ends_the_session() -> None:
    model = _model({"interests": [0], "interest_neighbours": 1, "session_budget": 3})
    sessions, rng = _start(model)
    ended = []
    for _ in range(3):
        result = model.step(sessions, np.array([0]), rng)  # repeats: time 0, budget always drops
        ended.append(bool(result.terminated[0]))
    assert ended == [False, False, True]
    assert sessions.budget[0] == 0 and sessions.total_time[0] == 1.0


def test_budget_holds_on_fully_played_tracks() -> None:
    model = _model({"interests": [0], "interest_neighbours": 1, "session_budget": 1, "consume_bias": -10.0})
    sessions, rng = _start(model)
    for track in (1, 2, 3, 4, 5):
        assert not model.step(sessions, np.array([track]), rng).done[0]
    assert sessions.total_time[0] == 6.0 and sessions.length == 6


def test_budget_drop_probability_is_one_minus_time() -> None:
    embeddings = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [1, 0], [1, 0]], dtype=np.float32)
    model = _model({"interests": [0], "interest_neighbours": 1, "consume_bias": 0.0, "consume_sharpness": 1.0,
                    "session_budget": 100}, embeddings=embeddings)
    sessions, rng = _start(model, sessions=20000)
    result = model.step(sessions, np.ones(20000, dtype=np.int64), rng)  # sigmoid(0) = 0.5
    assert result.time[0] == 0.5
    assert (100 - sessions.budget).mean() == pytest.approx(0.5, abs=0.02)


def test_step_cap_truncates_instead_of_terminating() -> None:
    model = _model({"interests": [0], "interest_neighbours": 1, "consume_bias": -10.0}, max_steps=3)
    sessions, rng = _start(model)
    flags = [model.step(sessions, np.array([track]), rng) for track in (1, 2, 3)]
    assert [bool(f.truncated[0]) for f in flags] == [False, False, True]
    assert not flags[-1].terminated[0]


def test_sessions_in_a_batch_are_independent() -> None:
    model = _model({"interests": [0], "interest_neighbours": 1, "consume_bias": -10.0})
    sessions, rng = _start(model, sessions=2)
    model.step(sessions, np.array([1, 2]), rng)
    result = model.step(sessions, np.array([2, 2]), rng)
    np.testing.assert_array_equal(result.time, [1.0, 0.0])
    kept = sessions.keep(np.array([False, True]))
    assert kept.size == 1 and kept.slot[0] == 1 and kept.total_time[0] == 2.0


@pytest.mark.parametrize("actions", [np.array([6]), np.array([-1]), np.array([0.5]), np.array([1, 2])])
def test_bad_actions_are_refused(actions) -> None:
    model = _model({"interests": [0]})
    sessions, rng = _start(model)
    with pytest.raises(ValueError):
        model.step(sessions, actions, rng)
