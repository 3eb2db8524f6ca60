"""Off-policy evaluation (`botify ope`) checked against the online A/B test it predicts.

One world, two simulated days through the real service. Day 1 serves Random; a session-kNN
model is trained on it. Day 2 is one experiment: C logs with an epsilon-greedy policy, and
T1..T3 serve the candidates themselves. OPE on C's decisions alone must find each candidate's
online value inside its SNIPS and DR 95% CIs and rank the candidates as the A/B test does.

The estimand is the time of each session's first recommendation: its context (who listens,
the first track) does not depend on the serving policy, so the candidate's online mean of it
is exactly what OPE estimates from the logger's decisions. Time per recommendation over all
steps is not comparable (each candidate visits its own states: artist fatigue, session
length), and per-session importance weights multiply beyond use; `botify.analysis.ope` says why.

The logger is designed for support, as one would before an OPE study: it draws uniformly from
a list per track that joins the kNN model's top 20 and the track's artist's tracks (built here
from the trained artifact and the public catalog), and with epsilon = 0.3 from the whole
catalog's unheard tracks. Every candidate's choices then have logging probability: the
kNN candidate's and StickyArtist's through the list, Random's through exploration. (Logging
with StickyArtist alone leaves the kNN candidate an effective sample of 5 of 2,000 decisions,
which `botify ope` flags.)

`python -m tests.test_ope --tracks 15000 --users 10000 --day2 40000` prints the comparison
on the default world's size (the README's table).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from botify.world import WorldSpec, generate_world

LOGGER = ('{ kind = "i2i", artifact = "blend/item2item.jsonl", explore = 0.3, explore_pool = "catalog", '
          'fallback = "random" }')
CANDIDATES = {  # treatment → candidate spec (the same text `botify ope` is given)
    "T1": '{ kind = "sticky_artist", fallback = "random" }',
    "T2": '{ kind = "i2i", artifact = "knn/item2item.jsonl", k = 5, fallback = "random" }',
    "T3": "random",
}


def experiment_toml() -> str:
    arms = [LOGGER] + [spec if spec.startswith("{") else f'"{spec}"' for spec in CANDIDATES.values()]
    treatments = ", ".join(f"{{ recommender = {arm} }}" for arm in arms)
    return f'default = "random"\n\n[[experiments]]\nname = "OPE"\ntreatments = [{treatments}]\n'


def blend(knn: Path, catalog, out: Path, top: int = 20) -> None:
    """Per track: the kNN list's top `top`, then the track's artist's other tracks."""
    from botify.artifacts import read_artifact, write_artifact

    lists = read_artifact(knn, catalog.size).lists
    by_artist: dict[int, list[int]] = {}
    for track, artist in enumerate(catalog.artist_codes.tolist()):
        by_artist.setdefault(artist, []).append(track)
    joined = {}
    for track, artist in enumerate(catalog.artist_codes.tolist()):
        head = list(lists.get(track, []))[:top]
        joined[track] = head + [other for other in by_artist[artist] if other != track and other not in head]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_artifact(out, "track", joined)


def run_days(root: Path, spec: WorldSpec, day1: int, day2: int, seed: int = 5) -> Path:
    """Day 1 (Random), the kNN model and the blended list, day 2 (the experiment). A chunk's
    listeners are distinct users (chunks no larger than half the users), so that no user has
    two sessions open at once."""
    from botify.train.pipeline import train_model
    from tests.servers import simulate_through_service

    world = generate_world(spec)
    world.save(root / "world")
    chunk = min(500, spec.users // 2)
    simulate_through_service(root / "world", world, 'default = "random"\n', root / "day1", episodes=day1, seed=seed,
                             chunk_size=chunk)
    train_model("session-knn", [root / "day1"], root / "world", root / "artifacts" / "knn")
    blend(root / "artifacts" / "knn" / "item2item.jsonl", world.catalog, root / "artifacts" / "blend" / "item2item.jsonl")
    simulate_through_service(root / "world", world, experiment_toml(), root / "day2", episodes=day2, seed=seed,
                             chunk_size=chunk, artifacts=root / "artifacts", day=2)
    return root


def ope_json(root: Path, candidate: str, treatment: str, estimand: str = "first") -> dict:
    from botify.cli.main import cli

    result = CliRunner().invoke(cli, ["ope", str(root / "day2"), "--catalog", str(root / "world"), "--artifacts",
                                      str(root / "artifacts"), "--candidate", candidate, "--experiment", "OPE",
                                      "--treatment", treatment, "--estimand", estimand,
                                      "--estimators", "ips,snips,dm,dr", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def compare(root: Path, estimand: str = "first") -> tuple[dict, dict]:
    """Each candidate's online value (`botify ope` on its own treatment's logs, where every
    weight is 1: the plain mean with the same bootstrap) and its OPE rows from C's logs."""
    online, offline = {}, {}
    for treatment, candidate in CANDIDATES.items():
        own = {row["estimator"]: row for row in ope_json(root, candidate, treatment, estimand)["rows"]}
        online[treatment] = own["ips"] | {"snips": own["snips"]["estimate"]}
        offline[treatment] = ope_json(root, candidate, "C", estimand)
    return online, offline


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_days(tmp_path_factory.mktemp("ope"), WorldSpec(seed=11, tracks=800, users=400, dim=16), 2000, 8000)


def test_ope_finds_the_online_values_and_their_order(days: Path) -> None:
    online, offline = compare(days)
    for treatment in CANDIDATES:
        value = online[treatment]
        assert value["snips"] == pytest.approx(value["estimate"]) and value["ess"] == pytest.approx(value["n"])
        rows = {row["estimator"]: row for row in offline[treatment]["rows"]}
        for estimator in ("snips", "dr"):
            assert rows[estimator]["ci_low"] <= value["estimate"] <= rows[estimator]["ci_high"], (treatment, rows)
            assert not rows[estimator]["warnings"], rows[estimator]
    by_online = sorted(CANDIDATES, key=lambda t: online[t]["estimate"])
    for estimator in ("snips", "dr"):
        by_ope = sorted(CANDIDATES, key=lambda t: {r["estimator"]: r for r in offline[t]["rows"]}[estimator]["estimate"])
        assert by_ope == by_online, estimator


def test_a_candidate_the_logger_never_supports_is_flagged(days: Path) -> None:
    """StickyArtist's own logs hold nothing the kNN candidate would pick off the artist: low
    effective sample size and a mean weight under 1, said in the table."""
    rows = ope_json(days, CANDIDATES["T2"], "T1")["rows"]
    assert all(any("insufficient support" in warning for warning in row["warnings"])
               for row in rows if row["estimator"] != "dm")


def test_the_reward_model_is_fitted_on_track_means_without_the_rows_own_user() -> None:
    """A row's track mean leaves out its own user's plays of the track, as they are left out
    where the row's half is scored: user 0 played track 1 twice (times 1.0 and 0.0), user 1 once
    (0.5), so user 0's rows see only user 1's play and user 1's only user 0's."""
    import numpy as np

    from botify.analysis.ope import SHRINK, RewardModel

    user, track, reward = np.array([0, 0, 1]), np.array([1, 1, 1]), np.array([1.0, 0.0, 0.5])
    sums, counts = np.bincount(track, reward, minlength=2), np.bincount(track, minlength=2)
    stats = RewardModel._held_out_stats(user, track, reward, sums, counts, 0.2)
    assert stats[:, 0] == pytest.approx([(0.5 + SHRINK * 0.2) / (1 + SHRINK)] * 2 + [(1.0 + SHRINK * 0.2) / (2 + SHRINK)])
    assert stats[:, 1] == pytest.approx([1 / (1 + SHRINK)] * 2 + [2 / (2 + SHRINK)])


def test_bad_input_is_one_line(days: Path, tmp_path: Path) -> None:
    from botify.cli.main import cli

    base = ["ope", str(days / "day2"), "--catalog", str(days / "world")]
    for extra, message in [(["--candidate", "last_liked"], "needs an 'artifact'"),
                           (["--candidate", "{kind = "], "not a TOML inline table"),
                           (["--candidate", "random", "--estimators", "ips,magic"], "--estimators"),
                           (["--candidate", "random", "--experiment", "OPE", "--treatment", "T9"], "no treatment"),
                           (["--candidate", '{kind = "i2i", artifact = "nope.jsonl"}'], "nope.jsonl")]:
        result = CliRunner().invoke(cli, base + extra)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("not json\n")
    result = CliRunner().invoke(cli, ["ope", str(empty), "--catalog", str(days / "world"), "--candidate", "random"])
    assert result.exit_code == 1 and "no usable events" in result.output


def main() -> None:
    parser = argparse.ArgumentParser(description="OPE against the online A/B test (the README's table).")
    parser.add_argument("--dir", type=Path, default=Path("runs/ope"))
    parser.add_argument("--tracks", type=int, default=800)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--day1", type=int, default=10_000)
    parser.add_argument("--day2", type=int, default=8_000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    spec = WorldSpec(seed=args.seed, tracks=args.tracks, users=args.users)
    args.dir.mkdir(parents=True, exist_ok=True)
    run_days(args.dir, spec, args.day1, args.day2, args.seed)
    online, offline = compare(args.dir)
    print("| candidate | online mean ± 95% CI | IPS [95% CI] | SNIPS [95% CI] | DR [95% CI] | ESS |")
    print("|---|---|---|---|---|---|")
    for treatment, candidate in CANDIDATES.items():
        value = online[treatment]
        rows = {row["estimator"]: row for row in offline[treatment]["rows"]}
        cells = [f"{rows[name]['estimate']:.3f} [{rows[name]['ci_low']:.3f}, {rows[name]['ci_high']:.3f}]"
                 for name in ("ips", "snips", "dr")]
        print(f"| {treatment} `{candidate}` | {value['estimate']:.3f} [{value['ci_low']:.3f}, {value['ci_high']:.3f}] | "
              + " | ".join(cells) + f" | {rows['ips']['ess']:,.0f} of {rows['ips']['n']:,} |")
    print(f"replay: {offline['T1']['replay']['events_per_second']:,} events/s; reward model R² "
          f"{offline['T1']['reward_model']['cross_fitted_r2']}")


if __name__ == "__main__":
    main()
