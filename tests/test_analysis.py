"""The analysis against a plain reference of the course's notebook, SciPy, and broken logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from botify.analysis import TreatmentStats, analyze, user_metrics, welch
from botify.analysis.engine import METRICS
from botify.analysis.stats import holm
from botify.events.duck import metrics_and_events
from botify.service.experiments import Experiment


def write_logs(directory: Path, seed: int = 0, users: int = 400, effect: float = 0.0) -> list[dict]:
    """Sessions of users split by EXP's assignment, spread over three worker files in shuffled order."""
    rng = np.random.default_rng(seed)
    experiment = Experiment(name="EXP", treatments=3)
    events, clock = [], 1_700_000_000_000
    for user in range(users):
        treatment = experiment.treatment_names[experiment.assign(user)]
        for _ in range(rng.integers(1, 4)):
            for step in range(rng.integers(1, 9)):
                clock += int(rng.integers(0, 3))  # equal timestamps happen
                played = round(float(min(1.0, rng.random() + (effect if treatment == "T1" else 0))), 2)
                events.append({"message": "next", "timestamp": clock, "user": user, "track": int(rng.integers(100)),
                               "time": played, "latency": float(rng.random() / 100), "recommendation": 1,
                               "experiments": {"EXP": treatment, "OTHER": "C"}})
            clock += 1
            events.append({"message": "last", "timestamp": clock, "user": user, "track": 3, "time": 0.5,
                           "latency": 0.001, "experiments": {"EXP": treatment, "OTHER": "C"}})
        if rng.random() < 0.2:  # an unfinished session: no `last`
            events.append({"message": "next", "timestamp": clock + 5, "user": user, "track": 1, "time": 1.0,
                           "latency": 0.002, "experiments": {"EXP": treatment}})
    directory.mkdir(parents=True, exist_ok=True)
    worker = rng.integers(0, 3, len(events))
    for index in range(3):  # each worker's file keeps its own events in order
        with open(directory / f"events-{index}-0001.jsonl", "w") as handle:
            for event, owner in zip(events, worker):
                if owner == index:
                    handle.write(json.dumps(event) + "\n")
    return events


def reference_user_metrics(events: list[dict], experiment: str) -> dict[int, dict]:
    """The course's notebook in plain Python: per user, finished sessions only."""
    by_user = defaultdict(list)
    for event in events:
        by_user[event["user"]].append(event)
    result = {}
    for user, items in by_user.items():
        items.sort(key=lambda e: e["timestamp"])
        sessions, current = [], []
        for event in items:
            current.append(event)
            if event["message"] == "last":
                sessions.append(current)
                current = []
        if not sessions:
            continue
        flat = [e for session in sessions for e in session]
        time = sum(e["time"] for e in flat)
        result[user] = {
            "treatment": flat[0]["experiments"][experiment],
            "time": time,
            "sessions": len(sessions),
            "mean_request_latency": 1000 * sum(e["latency"] for e in flat) / len(flat),
            "mean_tracks_per_session": len(flat) / len(sessions),
            "mean_time_per_session": time / len(sessions),
        }
    return result


def test_per_user_metrics_equal_the_reference(tmp_path: Path) -> None:
    events = write_logs(tmp_path / "log")
    users, summary = user_metrics([tmp_path / "log"], "EXP")
    expected = reference_user_metrics(events, "EXP")
    assert summary.lines == len(events) and summary.malformed == 0 and summary.files == 3
    assert sorted(users["user"].tolist()) == sorted(expected)
    for row, user in enumerate(users["user"].tolist()):
        assert users["treatment"][row] == expected[user]["treatment"]
        for metric in METRICS:
            assert users[metric][row] == pytest.approx(expected[user][metric], abs=1e-9, rel=1e-9)


def test_metrics_and_events_read_the_logs_once(tmp_path: Path) -> None:
    """The studio's board: the same per-user metrics and summary as `user_metrics`, and an
    `events` that holds the logs as read, whatever happens to the files afterwards."""
    events = write_logs(tmp_path / "log")
    users, summary = user_metrics([tmp_path / "log"], "EXP")
    with metrics_and_events([tmp_path / "log"], "EXP") as ((once, once_summary), connection):
        assert once_summary == summary
        assert sorted(once) == sorted(users)
        for name in users:  # the same bits: sums are exact, whatever order DuckDB's threads add in
            np.testing.assert_array_equal(once[name], users[name], err_msg=name)
        for path in (tmp_path / "log").iterdir():
            path.write_text("")
        assert connection.execute("SELECT count(*) FROM events").fetchone()[0] == len(events)
        assert connection.execute("SELECT count(DISTINCT \"user\") FROM events").fetchone()[0] == \
            len({event["user"] for event in events})


def test_sums_are_exact_and_far_out_values_unusable(tmp_path: Path) -> None:
    """A user's time and latency are exact sums rounded once, the same in any order (adding the
    doubles 0.1, 0.2, 0.3 in this order gives 0.6000000000000001); an event whose time or
    latency is a billion or more is unusable, not summed, and does not stop the analysis."""
    lines = []
    for user, times in ((1, (0.1, 0.2, 0.3)), (2, (0.3, 0.2, 0.1)), (3, (0.1, 1e300, 0.2, 0.3)), (4, (0.1, 0.2, 0.3))):
        for step, played in enumerate(times):
            lines.append({"message": "last" if step == len(times) - 1 else "next", "timestamp": 10 * user + step,
                          "user": user, "track": step, "time": played, "latency": 1e12 if user == 4 and step == 1 else played,
                          "experiments": {"EXP": "C"}})
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "events-0-0001.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    users, summary = user_metrics([tmp_path / "log"], "EXP")
    assert users["user"].tolist() == [1, 2, 3, 4] and summary.incomplete_fields == 2
    assert users["time"].tolist() == [0.6, 0.6, 0.6, 0.4]
    assert users["mean_request_latency"].tolist() == [200.0, 200.0, 200.0, 200.0]


def test_effects_equal_the_reference_welch_and_scipy(tmp_path: Path) -> None:
    events = write_logs(tmp_path / "log", effect=0.1, users=900)
    users, _ = user_metrics([str(tmp_path / "log" / "*.jsonl")], "EXP")
    result = analyze(users, "EXP")
    reference = reference_user_metrics(events, "EXP")
    for item in result.comparisons:
        control = np.array([v[item.metric] for v in reference.values() if v["treatment"] == "C"])
        treated = np.array([v[item.metric] for v in reference.values() if v["treatment"] == item.treatment])
        test = stats.ttest_ind(treated, control, equal_var=False)
        interval = test.confidence_interval(0.95)
        assert item.effect == pytest.approx(100 * (treated.mean() - control.mean()) / control.mean(), abs=1e-9)
        assert item.lower == pytest.approx(100 * interval.low / control.mean(), abs=1e-9)
        assert item.upper == pytest.approx(100 * interval.high / control.mean(), abs=1e-9)
        assert item.p_value == pytest.approx(test.pvalue, abs=1e-12)
    time_t1 = next(c for c in result.comparisons if c.metric == "mean_time_per_session" and c.treatment == "T1")
    assert time_t1.significant and time_t1.effect > 0
    assert result.users == {name: sum(v["treatment"] == name for v in reference.values()) for name in ("C", "T1", "T2")}
    assert not result.srm


def test_welch_by_hand() -> None:
    control, treated = TreatmentStats("C", "m", 50, 10.0, 4.0), TreatmentStats("T1", "m", 80, 11.0, 9.0)
    effect, lower, upper, p_value, mde = welch(control, treated)
    se = np.sqrt(4 / 50 + 9 / 80)
    dof = se**4 / ((4 / 50) ** 2 / 49 + (9 / 80) ** 2 / 79)
    t = stats.t.ppf(0.975, dof)
    assert (effect, lower, upper) == pytest.approx((10.0, 10 * (1 - t * se), 10 * (1 + t * se)))
    assert p_value == pytest.approx(2 * stats.t.sf(1 / se, dof))
    assert mde == pytest.approx(10 * (t + stats.t.ppf(0.8, dof)) * se)


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_sample_ratio_mismatch_is_flagged(tmp_path: Path) -> None:
    write_logs(tmp_path / "log", users=900)
    users, _ = user_metrics([tmp_path / "log"], "EXP")
    keep = (users["treatment"] != "T2") | (np.arange(len(users["user"])) % 3 == 0)
    result = analyze({k: v[keep] for k, v in users.items()}, "EXP", treatments=["C", "T1", "T2"])
    assert result.srm and result.srm_p_value < 1e-6


def test_cuped_narrows_intervals_with_a_correlated_pre_period(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 4000
    base = rng.gamma(2.0, 2.0, n)
    treatment = np.where(np.arange(n) % 2 == 0, "C", "T1")
    post = base + rng.normal(0, 0.5, n) + np.where(treatment == "T1", 0.1, 0.0)
    columns = lambda values: {"user": np.arange(n), "treatment": treatment, **{m: values for m in METRICS}}  # noqa: E731
    plain = analyze(columns(post), "EXP")
    adjusted = analyze(columns(post), "EXP", pre=columns(base + rng.normal(0, 0.5, n)))
    width = lambda result: result.comparisons[0].upper - result.comparisons[0].lower  # noqa: E731
    assert width(adjusted) < 0.5 * width(plain)
    assert adjusted.comparisons[0].cuped and adjusted.comparisons[0].significant


def test_malformed_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    events = write_logs(tmp_path / "log", users=100)
    with open(tmp_path / "log" / "events-0-0001.jsonl", "a") as handle:
        handle.write("not json at all\n")
        handle.write('{"message": "next", "user": 1}\n')  # missing fields
        handle.write('{"message": "next", "timestamp": 1, "user": 1, "ti')  # cut by a crash
    users, summary = user_metrics([tmp_path / "log"], "EXP")
    assert summary.lines == len(events) + 3
    assert summary.malformed == 2 and summary.incomplete_fields == 1
    assert len(users["user"]) == len(reference_user_metrics(events, "EXP"))


def test_cli_formats(tmp_path: Path) -> None:
    write_logs(tmp_path / "log", users=300, effect=0.2)
    command = [sys.executable, "-m", "botify", "analyze", str(tmp_path / "log"), "--experiment", "EXP"]
    table = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert "mean_time_per_session" in table.stdout and "T2" in table.stdout
    as_json = json.loads(subprocess.run(command + ["--format", "json"], capture_output=True, text=True).stdout)
    assert as_json["srm"] is False and len(as_json["comparisons"]) == 2 * len(METRICS)
    as_csv = subprocess.run(command + ["--format", "csv"], capture_output=True, text=True).stdout.splitlines()
    assert as_csv[0].startswith("metric,control,treatment") and len(as_csv) == 1 + 2 * len(METRICS)
    missing = subprocess.run(command[:4] + ["nowhere/*.jsonl", "--experiment", "EXP"], capture_output=True, text=True)
    assert missing.returncode == 1 and "no log files there" in missing.stderr
    unknown = subprocess.run(command[:5] + ["--experiment", "NOPE"], capture_output=True, text=True)
    assert unknown.returncode == 1 and "no finished sessions with experiment 'NOPE'" in unknown.stderr
    assert "the logs have experiments EXP, OTHER" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1


def test_a_constant_metric_does_not_break_the_analysis() -> None:
    same = TreatmentStats("C", "m", 10, 8.0, 0.0)
    assert welch(same, TreatmentStats("T1", "m", 12, 8.0, 0.0)) == (0.0, 0.0, 0.0, 1.0, 0.0)
    assert welch(same, TreatmentStats("T1", "m", 12, 9.0, 0.0))[:4] == (12.5, 12.5, 12.5, 0.0)


def test_aa_false_positive_rate_is_alpha(small_world_dir: Path, small_world, tmp_path: Path) -> None:
    """Simulated traffic through the service, all users served by Random; 500 random re-splits."""
    from tests.servers import simulate_through_service

    log = simulate_through_service(small_world_dir, small_world,
                                   'default = "random"\n[[experiments]]\nname = "AA"\ntreatments = 2\n',
                                   tmp_path / "log", episodes=2000, seed=11)
    users, summary = user_metrics([log], "AA")
    assert summary.malformed == 0 and len(users["user"]) == small_world.users.size
    rng = np.random.default_rng(0)
    false_positives = 0
    for _ in range(500):
        labels = np.where(rng.permutation(len(users["user"])) % 2 == 0, "C", "T1")
        result = analyze({**users, "treatment": labels}, "AA")
        verdict = next(c for c in result.comparisons if c.metric == "mean_time_per_session")
        false_positives += verdict.significant
    rate = false_positives / 500
    assert 0.03 <= rate <= 0.07, f"A/A false-positive rate {rate:.3f}"


def test_a_clearly_better_treatment_is_detected(small_world_dir: Path, small_world, tmp_path: Path) -> None:
    """StickyArtist keeps listeners far longer than Random: the analysis must say so."""
    from tests.servers import simulate_through_service

    log = simulate_through_service(small_world_dir, small_world,
                                   '[[experiments]]\nname = "KNOWN"\ntreatments = ["random", "sticky_artist"]\n',
                                   tmp_path / "log", episodes=1000, seed=12)
    users, _ = user_metrics([log], "KNOWN")
    verdict = next(c for c in analyze(users, "KNOWN").comparisons if c.metric == "mean_time_per_session")
    assert verdict.verdict == "win" and verdict.p_holm < 1e-6 and verdict.lower > 20


def test_latency_is_its_own_holm_family(tmp_path: Path) -> None:
    """Latency depends on the machine's timing: it must not move the listening metrics' Holm
    p-values (the same traffic gives the same verdicts run to run)."""
    write_logs(tmp_path / "log", users=300, effect=0.2)
    users, _ = user_metrics([tmp_path / "log"], "EXP")
    first = analyze(users, "EXP", "C")
    slower = {**users, "mean_request_latency": users["mean_request_latency"] * np.where(users["treatment"] == "T1", 3, 1)}
    second = analyze(slower, "EXP", "C")
    listening = [(a.p_holm, b.p_holm) for a, b in zip(first.comparisons, second.comparisons)
                 if a.metric != "mean_request_latency"]
    assert listening and all(a == b for a, b in listening)
    latency = [(a.p_holm, b.p_holm) for a, b in zip(first.comparisons, second.comparisons)
               if a.metric == "mean_request_latency"]
    assert any(a != b for a, b in latency)
