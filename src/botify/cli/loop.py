"""`botify loop`: the course's daily cycle, automated against one running service.

Day 1 serves Random (cold start). Before each later day the configured models are trained
on all logs so far, the experiment is written next to them and `POST /admin/reload` swaps
both into the running service; after each day `/admin/reload` closes that day's log files, so
every day is analysed on its own events, with day 1 (Random for all) as the CUPED pre-period.

Each day has its own folder: `DIR/dayN/log` (that day's events, moved there once the reload
has closed them) and `DIR/dayN/artifacts` (what was trained before it and served on it);
`DIR/artifacts` points at the day being served. One
HTML report holds every experiment day, and `summary.json` beside it holds the figures: for
each day and treatment its recommender, users, mean time per session, the effect against the
control (and, with `compare`, against other treatments) with CI and Holm p, and each trained
model's training time. With returning listeners (`botify.sim.days`) their state is carried
from day to day in `dayN/listeners.npz`, and each experiment day also gets the retention
metrics over the experiment days so far (`analysis/retention.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel, ConfigDict, Field

from botify.cli.progress import console, session_progress, summary_table, text_table
from botify.cli.sim import days_options
from botify.config import read_mapping, validate_config
from botify.errors import BotifyError
from botify.service.experiments import ExperimentsConfig
from botify.service.process import ServiceProcess
from botify.client import BotifyClient
from botify.sim.days import ListenerDays, Population
from botify.sim.runner import AgentSpec, SimSettings, Simulation
from botify.world import WorldSpec, generate_world, world_exists


class TrainSpec(BaseModel):
    """A model to train before each experiment day; its artifacts go to ARTIFACTS/<name>."""

    model_config = ConfigDict(extra="forbid")

    model: str
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    params: dict[str, Any] = {}


class LoopPlan(BaseModel):
    """An experiment file for the loop: the service's experiments plus `[[train]]` entries."""

    train: list[TrainSpec] = []
    service: ExperimentsConfig

    @classmethod
    def load(cls, data: dict, source: str) -> LoopPlan:
        data = dict(data)
        train = data.pop("train", [])
        return validate_config(cls, {"train": train, "service": data}, source=source)


class DailyLoop:
    """One world, one running service, days of simulated listeners, training in between."""

    def __init__(self, run_dir: Path, plan: LoopPlan, seed: int = SimSettings.model_fields["seed"].default,
                 world_dir: Path | None = None, compare: tuple[str, ...] = (), studio: bool = False,
                 dynamics: ListenerDays | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.dynamics = dynamics or ListenerDays()
        self.day_users: dict[tuple[str, int], dict] = {}  # (experiment, day) → the engine's per-user table
        self._day_one: dict | None = None  # day 1's per-user table over every event (`day_one_users`)
        self.studio = studio
        self.plan = plan
        self.seed = seed
        self.world_dir = Path(world_dir) if world_dir else self.run_dir / "world"
        self.artifacts = self.run_dir / "artifacts"  # → dayN/artifacts, the day being served
        self.log_dir = self.run_dir / "log"  # where the service writes; a finished day's files move to dayN/log
        self.experiments_file = self.run_dir / "experiments.json"
        self.day_files: dict[int, list[str]] = {}
        self.sections: list[str] = []
        self.compare = tuple(compare)
        self.summary: dict[str, Any] = {"seed": seed, "days": [], "training": []}

    def check(self) -> None:
        """Everything the plan names must make sense before a day is simulated."""
        from botify.train.base import model_class

        for spec in self.plan.train:
            model_class(spec.model).from_params(spec.params)
        names = {spec.name for spec in self.plan.train}
        for spec in self.plan.service.specs():
            if spec.artifact and Path(spec.artifact).parts[0] not in names:
                raise BotifyError(f"recommender {spec.kind!r} serves {spec.artifact!r}, but no [[train]] entry is named "
                                  f"{Path(spec.artifact).parts[0]!r} (artifacts are NAME/file; [[train]] names: "
                                  f"{', '.join(sorted(names)) or 'none'})")
        for experiment in self.plan.service.active:
            unknown = [name for name in self.compare if name not in experiment.treatment_names]
            if unknown:
                raise BotifyError(f"--compare {', '.join(unknown)}: experiment {experiment.name} has treatments "
                                  f"{', '.join(experiment.treatment_names)}")

    def prepare(self) -> None:
        self.check()
        if world_exists(self.world_dir):
            console.print(f"using the world in {self.world_dir}")
        else:
            with console.status("generating the default world"):
                generate_world(WorldSpec(seed=self.seed)).save(self.world_dir)
            console.print(f"generated the default world in {self.world_dir}")
        for stale in self.log_dir.glob("events-*.jsonl"):
            stale.unlink()
        for stale in self.run_dir.glob("day[0-9]*"):  # an earlier run's days in this folder
            shutil.rmtree(stale)
        if self.artifacts.is_dir() and not self.artifacts.is_symlink():
            shutil.rmtree(self.artifacts)
        self._serve_artifacts_of(1)
        self.experiments_file.write_text(json.dumps({"default": "random"}))

    def day_dir(self, day: int) -> Path:
        return self.run_dir / f"day{day}"

    def _serve_artifacts_of(self, day: int) -> None:
        """Point DIR/artifacts at dayN/artifacts (a symlink swapped atomically)."""
        (self.day_dir(day) / "artifacts").mkdir(parents=True, exist_ok=True)
        link = self.run_dir / "artifacts.next"
        link.unlink(missing_ok=True)
        link.symlink_to(Path(f"day{day}") / "artifacts", target_is_directory=True)
        os.replace(link, self.artifacts)

    def _file_day(self, day: int) -> list[str]:
        """Move the day's closed event files to dayN/log; their paths."""
        target = self.day_dir(day) / "log"
        target.mkdir(parents=True, exist_ok=True)
        moved = []
        for path in sorted(self.log_dir.glob("events-*.jsonl")):
            if path.stat().st_size:
                moved.append(str(path.rename(target / path.name)))
            else:
                path.unlink()
        return moved

    def _reload(self, client: BotifyClient) -> None:
        for _ in range(20):
            status, body = client.post_json("/admin/reload")
            if status != 429:  # reloads are rate-limited: wait for the next slot
                break
            time.sleep(0.25)
        if status != 200:
            raise BotifyError(f"the service refused the reload: {body.decode(errors='replace')}")

    def _train(self, day: int) -> None:
        from botify.artifacts import read_manifest
        from botify.cli.progress import work_progress
        from botify.train.base import reporting
        from botify.train.pipeline import train_model

        logs = sorted(str(path) for files in self.day_files.values() for path in files)
        self._serve_artifacts_of(day)
        for spec in self.plan.train:
            out = self.artifacts / spec.name
            started = time.monotonic()
            console.print(f"training {spec.model} on {len(logs)} log file(s)")
            with reporting(work_progress):
                model, metrics = train_model(spec.model, logs, self.world_dir / "tracks.json", out, spec.params)
            seconds = time.monotonic() - started
            files = ", ".join(read_manifest(out)["artifacts"])
            console.print(f"trained {spec.model} in {seconds:.1f} s (fit {metrics['train_seconds']:.1f} s) → "
                          f"{self.day_dir(day) / 'artifacts' / spec.name}: {files}", soft_wrap=True)
            self.summary["training"].append({"day": day, "model": spec.model, "name": spec.name,
                                             "parameters": model.get_params(), "seconds": round(seconds, 2),
                                             "fit_seconds": metrics["train_seconds"]})

    def _analyse(self, day: int) -> None:
        from botify.analysis.engine import user_metrics
        from botify.analysis.report import render_section
        from botify.analysis.stats import analyze
        from botify.analysis.verdict import labels_of
        from botify.cli.analyze import print_analysis

        for experiment in self.plan.service.active:
            users, summary = user_metrics(self.day_files[day], experiment.name, timeline=True)
            self.day_users[(experiment.name, day)] = users
            # CUPED's pre-period is day 1, the last day before any experiment: a later day was
            # already treated, and adjusting for it would take the treatment's own effect out.
            pre = self.day_one_users() if day > 1 else None
            names = list(experiment.treatment_names)
            result = analyze(users, experiment.name, "C", pre, treatments=names)
            console.print(f"\n[bold]Day {day}[/]")
            labels = labels_of(experiment)
            print_analysis(result, summary, labels)
            self.sections.append(render_section(result, users, summary, f"Day {day}: experiment {experiment.name}",
                                                labels))
            others = {name: analyze(users, experiment.name, name, pre, treatments=names) for name in self.compare}
            entry = day_summary(day, experiment, result, others)
            entry["offline_online"] = self._offline_vs_online(day, experiment, entry)
            if self.dynamics.returning is not None:
                entry["retention"] = self._retention(day, experiment, labels)
            self.summary["days"].append(entry)

    def day_one_users(self) -> dict:
        """Day 1's per-user metrics (every event, no experiment yet): CUPED's pre-period for
        every later day and experiment, read once (day 1's logs never change after it)."""
        if self._day_one is None:
            from botify.analysis.engine import user_metrics

            self._day_one = user_metrics(self.day_files[1], None)[0]
        return self._day_one

    def _retention(self, day: int, experiment, labels: dict[str, str]) -> dict[str, Any]:
        """Retention metrics over the experiment days so far (2..day), CUPED with day 1's activity."""
        from botify.analysis.retention import (RETENTION_METRICS, render_retention, retention_pre, retention_table,
                                               retention_users)
        from botify.analysis.stats import analyze

        users = retention_users({d: self.day_users[(experiment.name, d)] for d in range(2, day + 1)})
        pre = retention_pre(users, {1: self.day_one_users()})
        result = analyze(users, experiment.name, "C", pre, treatments=list(experiment.treatment_names),
                         metrics=RETENTION_METRICS)
        title = f"Day {day}: retention in {experiment.name} over days 2-{day}"
        headers, rows = retention_table(result, labels)
        console.print(text_table(headers, rows, title), soft_wrap=True)
        self.sections.append(render_retention(result, labels, title))
        merged: dict[str, dict[str, Any]] = {}  # treatment → its row, every metric's mean and effect
        for metric in RETENTION_METRICS:
            for row in day_summary(day, experiment, result, {}, metric)["treatments"]:
                item = merged.setdefault(row["treatment"], {key: row[key] for key in ("treatment", "recommender", "users")})
                item[metric] = row[metric]
                if "vs_control" in row:
                    item.setdefault("vs_control", {})[metric] = row["vs_control"]
        return {"days": list(range(2, day + 1)), "cuped": any(item.cuped for item in result.comparisons),
                "treatments": list(merged.values())}

    def _offline_vs_online(self, day: int, experiment, entry: dict) -> dict[str, Any]:
        """Judge the artifacts served on `day` offline on that day's own logs (they were trained
        on the days before it), next-track queries for every kind, and rank them against the
        treatments' online means (Spearman), so offline and online rankings can be compared."""
        from scipy import stats

        from botify.artifacts import read_artifact
        from botify.train.dataset import read_interactions
        from botify.train.evaluate import evaluate_next_track
        from botify.world.model import Catalog

        test = read_interactions(self.day_files[day])
        n_tracks = Catalog.load(self.world_dir / "tracks.json").size
        rows = []
        for name, treatment in zip(experiment.treatment_names, experiment.treatments):
            spec = treatment.recommender
            served = next((item for item in spec.chain() if item.artifact), None) if spec else None
            if served is None:
                continue
            artifact = read_artifact(self.artifacts / served.artifact, n_tracks)
            metrics = evaluate_next_track(artifact.kind, artifact.lists, test, n_tracks)
            online = next(row["mean_time_per_session"] for row in entry["treatments"] if row["treatment"] == name)
            rows.append({"treatment": name, "artifact": served.artifact, **metrics, "online": online})
        found: dict[str, Any] = {"rows": rows}
        if len(rows) >= 3:
            rho, p_value = stats.spearmanr([row["next_ndcg@10"] for row in rows], [row["online"] for row in rows])
            found.update({"spearman_next_ndcg@10_vs_online": float(rho), "p_value": float(p_value)})
        return found

    def run(self, days: int, day1_episodes: int, episodes: int) -> list[str]:
        """Run the days; the HTML sections of the experiment days."""
        self.prepare()
        self.summary["world"] = str(self.world_dir)
        args = ["--catalog", self.world_dir / "tracks.json", "--log-dir", self.log_dir,
                "--experiments", self.experiments_file, "--artifacts", self.artifacts, "--seed", str(self.seed)]
        with ServiceProcess(*args, *(["--studio"] if self.studio else []),
                            log_file=self.run_dir / "service.log") as service:
            console.print(f"service on {service.url} (ready in {service.startup_seconds:.2f} s)")
            if self.studio:
                console.print(f"studio: [bold]{service.url}/studio/#watch[/] (listen and watch live; reloading "
                              "needs the admin token: $BOTIFY_ADMIN_TOKEN or ~/.botify/admin-token)")
            client = BotifyClient(service.url, connections=1, timeout=60, outage=0)
            try:
                for day in range(1, days + 1):
                    if day > 1:
                        self._train(day)
                        self.experiments_file.write_text(self.plan.service.model_dump_json(exclude_none=True))
                        self._reload(client)
                    label = "random" if day == 1 else ", ".join(e.name for e in self.plan.service.active) or "default"
                    size = day1_episodes if day == 1 else episodes
                    simulation = Simulation(self.world_dir, AgentSpec(kind="remote", url=service.url),
                                            SimSettings(episodes=size, seed=self.seed, returning=self.dynamics.returning,
                                                        trending=self.dynamics.trending))
                    state = self.day_dir(day) / "listeners.npz"  # returning listeners' state after the day
                    if self.dynamics.returning is not None and day > 1:
                        simulation.population = Population.load(self.day_dir(day - 1) / state.name)
                    try:
                        with session_progress(f"day {day} ({label})", simulation.sessions_on(day)) as advance:
                            summary = simulation.run_day(day, advance)
                    finally:
                        simulation.close()
                    if simulation.population is not None:
                        simulation.population.save(state)
                    console.print(summary_table([summary], title=f"Day {day}: {label}"))
                    if day == 1:
                        mean, se = summary.time
                        self.summary["day1"] = {"recommender": "random", "sessions": summary.sessions,
                                                "mean_time_per_session": mean, "se": se}
                    self._reload(client)  # closes the day's last log file (the next opens with the next event)
                    self.day_files[day] = self._file_day(day)
                    if day > 1:
                        self._analyse(day)
                if self.studio and sys.stdin.isatty():
                    click.prompt(f"the studio stays open on {service.url}/studio/; press Enter to stop the service",
                                 default="", show_default=False)
            finally:
                client.close()
        from botify.cli.analyze import strict_json

        (self.run_dir / "summary.json").write_text(json.dumps(strict_json(self.summary), indent=2, default=float,
                                                              allow_nan=False) + "\n")  # NaN → null: strict JSON
        return self.sections


def _comparison(item) -> dict[str, Any]:
    return {"effect_pct": item.effect, "ci_pct": [item.lower, item.upper], "p_value": item.p_value,
            "p_holm": item.p_holm, "verdict": item.verdict or "no significant difference"}


def day_summary(day: int, experiment, result, others: dict[str, Any], metric: str = "mean_time_per_session") -> dict:
    """One experiment day as plain JSON: per treatment its recommender, users, mean of `metric`,
    and its effect against the control and against each treatment in `others`."""
    means = {item.treatment: item.mean for item in result.stats if item.metric == metric}
    treatments = []
    for name, treatment in zip(experiment.treatment_names, experiment.treatments):
        spec = treatment.recommender.model_dump(exclude_none=True, exclude_defaults=True) if treatment.recommender else None
        row: dict[str, Any] = {"treatment": name, "recommender": spec, "users": result.users.get(name, 0),
                               metric: means.get(name)}
        for label, analysis in {"vs_control": result, **{f"vs_{other}": found for other, found in others.items()}}.items():
            match = next((item for item in analysis.comparisons if item.metric == metric and item.treatment == name), None)
            if match is not None:
                row[label] = _comparison(match)
        treatments.append(row)
    return {"day": day, "experiment": experiment.name, "metric": metric, "srm_p_value": result.srm_p_value,
            "cuped": any(item.cuped for item in result.comparisons), "treatments": treatments}


@click.command()
@click.option("--days", type=click.IntRange(min=2), default=2, show_default=True)
@click.option("--experiment", "experiment_file", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Experiments (as for botify serve) plus [[train]] entries: model, name, params.")
@click.option("--dir", "run_dir", type=click.Path(path_type=Path), default=Path("runs/loop"), show_default=True)
@click.option("--world", "world_dir", type=click.Path(path_type=Path, file_okay=False),
              help="An existing world [default: DIR/world, generated with the default spec if absent].")
@click.option("--day1-episodes", type=click.IntRange(min=100), default=20_000, show_default=True)
@click.option("--episodes", type=click.IntRange(min=100), default=20_000, show_default=True,
              help="Sessions on each experiment day.")
@click.option("--seed", type=int, default=SimSettings.model_fields["seed"].default, show_default=True)
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="HTML report across days [default: DIR/report.html].")
@click.option("--compare", multiple=True, metavar="TREATMENT",
              help="Also compare every treatment against this one (e.g. T1) in summary.json; repeatable.")
@days_options
def loop(days, experiment_file, run_dir, world_dir, day1_episodes, episodes, seed, report, compare, returning,
         trending, sim_config) -> None:
    """Simulate a day, train on all logs so far, reload, run the experiment, analyse — DAYS times.

    With --returning, DAY1_EPISODES and EPISODES are each day's first-time listeners, and the
    listeners who come back are added to them."""
    from botify.analysis.report import write_report
    from botify.sim.days import listener_days

    plan = LoopPlan.load(read_mapping(experiment_file), str(experiment_file))
    if world_dir is not None and not world_exists(world_dir):
        raise BotifyError(f"{world_dir}: no world there (botify world generate --out {world_dir})")
    dynamics = listener_days(sim_config, returning, trending)
    sections = DailyLoop(run_dir, plan, seed, world_dir, compare, dynamics=dynamics).run(days, day1_episodes, episodes)
    written = write_report(report or run_dir / "report.html", sections, f"botify loop: {experiment_file.name}")
    console.print(f"\nreport: [bold]{written}[/]; figures: [bold]{run_dir / 'summary.json'}[/]")
