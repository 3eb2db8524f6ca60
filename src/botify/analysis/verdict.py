"""The verdict at a glance: who won on the primary metric, said in words.

An A/B table of every metric × treatment is for checking; a person first wants the answer:
for each treatment, by its recommender's name, did it win, lose or make no difference on the
metric the experiment is about, by how much, and how sure are we. This module turns an
`Analysis` into that headline (the terminal and the HTML report both show it first), with
the latency as a guardrail in absolute milliseconds against a budget rather than a relative
"loss" of microseconds. Outcomes use the Holm-adjusted p-values, so a headline never claims
more than the multiple comparisons allow; without colour the words still say it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from botify.analysis.stats import GUARDRAILS, Analysis, Comparison

PRIMARY = "mean_time_per_session"
LATENCY = "mean_request_latency"
LATENCY_BUDGET_MS = 10.0  # the service's latency budget per request (p99 at 2,000 req/s, see README)
SHORT_NAMES = {"time": "time/user", "sessions": "sessions/user", "mean_request_latency": "latency",
               "mean_tracks_per_session": "tracks/session", "mean_time_per_session": "time/session",
               "days_active": "days active", "return_rate": "return rate", "run_sessions": "sessions/user (run)"}


@dataclass(frozen=True)
class Headline:
    """One treatment's outcome on the primary metric."""

    treatment: str
    label: str  # "T1 sticky_artist"
    outcome: str  # "win", "loss" or "no difference"
    comparison: Comparison


def format_p(p: float) -> str:
    """A p-value as a person reads it: never a bare 0 (a double cannot hold what is below 1e-300)."""
    if not math.isfinite(p):
        return "n/a"
    if p < 1e-300:
        return "< 1e-300"
    if p < 0.001:
        return f"{p:.1e}"
    return f"{p:.3f}"


def outcome(item: Comparison) -> str:
    """"win", "loss" or "no difference" (`Comparison.verdict`, by the Holm-adjusted p-value)."""
    return item.verdict or "no difference"


def label(treatment: str, labels: dict[str, str]) -> str:
    return f"{treatment} {labels[treatment]}" if labels.get(treatment) else treatment


def headlines(analysis: Analysis, labels: dict[str, str], metric: str = PRIMARY) -> list[Headline]:
    return [Headline(item.treatment, label(item.treatment, labels), outcome(item), item)
            for item in analysis.comparisons if item.metric == metric]


def latency_ms(analysis: Analysis) -> dict[str, float]:
    """Mean request latency per treatment, in milliseconds (the engine's unit for it)."""
    return {item.treatment: item.mean for item in analysis.stats if item.metric == LATENCY}


def guardrail_line(analysis: Analysis, budget_ms: float = LATENCY_BUDGET_MS) -> str:
    found = latency_ms(analysis)
    if not found:
        return ""
    worst = max(found.values())
    state = "ok" if worst <= budget_ms else "OVER BUDGET"
    means = ", ".join(f"{name} {value:.3g}" for name, value in found.items())
    return f"latency guardrail (mean under {budget_ms:g} ms): {state} — {means} ms"


def summary_line(analysis: Analysis, labels: dict[str, str], metric: str = PRIMARY) -> str:
    control = next((item.mean for item in analysis.stats if item.metric == metric and item.treatment == analysis.control),
                   float("nan"))
    cuped = "; CUPED" if analysis.comparisons and analysis.comparisons[0].cuped else ""
    return f"{analysis.experiment}: {metric} vs {label(analysis.control, labels)} (mean {control:.4g}{cuped})"


def headline_text(item: Headline, width: int = 22) -> str:
    """One headline as a line of at most about 76 characters (p-values Holm-adjusted)."""
    name = item.label if len(item.label) <= width else item.label[: width - 1] + "…"
    c = item.comparison
    word = {"win": "WIN", "loss": "LOSS"}.get(item.outcome, "no diff")
    return (f"{name:<{width}} {word:<7} {c.effect:+6.1f}% [{c.lower:+.1f}, {c.upper:+.1f}]  "
            f"p {format_p(c.p_holm)}")


def listening_comparisons(analysis: Analysis) -> list[Comparison]:
    """The comparisons of the listening metrics (the guardrails are shown apart)."""
    return [item for item in analysis.comparisons if item.metric not in GUARDRAILS]


def recommender_label(spec) -> str:
    """A short name for a treatment's recommender spec: its kind, and the artifact's folder (or
    file stem) in brackets: `indexed(user-based)`, `i2i(sequential)`."""
    if spec is None:
        return "default"
    name = spec.kind
    if spec.artifact:
        path = Path(spec.artifact)
        name += f"({path.parent.name or path.stem})"
    return name


def labels_of(experiment) -> dict[str, str]:
    """Treatment name → recommender label of an experiment config."""
    return {name: recommender_label(treatment.recommender)
            for name, treatment in zip(experiment.treatment_names, experiment.treatments)}


def labels_near(logs: list[str], experiment: str) -> dict[str, str]:
    """The labels from the experiments file a run recorded beside its logs (`experiments.json`
    in a log directory or up to two folders above it, as `botify loop` and `demo` write it);
    {} when there is none or it does not name the experiment."""
    from botify.config import read_mapping
    from botify.errors import BotifyError
    from botify.service.experiments import ExperimentsConfig

    for log in logs:
        start = Path(log.split("*")[0] or ".")
        for folder in [start, *start.parents][:3]:
            candidate = folder / "experiments.json"
            if candidate.is_file():
                try:
                    config = ExperimentsConfig.model_validate(read_mapping(candidate))
                except (BotifyError, ValueError):
                    return {}
                found = next((item for item in config.experiments if item.name == experiment), None)
                return labels_of(found) if found is not None else {}
    return {}
