"""`botify ope`: a candidate recommender's value estimated from logs another policy wrote
(off-policy evaluation; the estimands and estimators are explained in `botify.analysis.ope`)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from botify.cli.progress import console
from botify.errors import BotifyError


def _choices(text: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    chosen = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        raise BotifyError(f"{option} {text!r}: use a comma-separated list of {', '.join(allowed)}")
    return chosen


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


@click.command()
@click.argument("logs", nargs=-1, required=True)
@click.option("--candidate", required=True, metavar="SPEC_OR_ARTIFACT",
              help="The policy to evaluate: a recommender name (sticky_artist), an inline TOML table "
                   "('{kind = \"i2i\", artifact = \"knn/item2item.jsonl\", k = 10}'), a spec file, or a trained "
                   "artifact directory (or one file in it).")
@click.option("--catalog", type=click.Path(path_type=Path), required=True,
              help="The world's tracks.json (or its directory).")
@click.option("--artifacts", "artifacts_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where a spec's artifact names point (as botify serve --artifacts).")
@click.option("--estimators", default="ips,snips,dr", show_default=True, help="Of ips, snips, dm, dr.")
@click.option("--estimand", "estimands", default="step,first,session", show_default=True,
              help="Of step (time per logged recommendation), first (time of each session's first "
                   "recommendation) and session (time per session).")
@click.option("--experiment", default=None, help="Evaluate only the decisions of users in this experiment...")
@click.option("--treatment", default=None, help="...and, of them, this treatment's (e.g. C).")
@click.option("--bootstrap", type=click.IntRange(min=50), default=1000, show_default=True,
              help="Bootstrap resamples of users for the 95% CIs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--min-ess", type=click.FloatRange(min=0), default=100.0, show_default=True,
              help="Warn when the effective sample size is below this.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def ope(logs, candidate, catalog, artifacts_dir, estimators, estimands, experiment, treatment, bootstrap, seed,
        min_ess, as_json) -> None:
    """Estimate what CANDIDATE would have earned on LOGS (files, directories or globs) written by
    another policy: IPS, self-normalised IPS and doubly-robust estimates with 95% bootstrap CIs,
    effective sample sizes and support warnings. The candidate is replayed on every logged
    context through the service's own serving step."""
    from botify.analysis.ope import ESTIMANDS, ESTIMATORS, evaluate_candidate

    if treatment is not None and experiment is None:
        raise BotifyError("--treatment needs --experiment")
    result = evaluate_candidate(list(logs), catalog, candidate, artifacts_dir,
                                _choices(estimators, ESTIMATORS, "--estimators"),
                                _choices(estimands, ESTIMANDS, "--estimand"), experiment, treatment, bootstrap, seed,
                                min_ess)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    info = result.as_dict()
    console.print(f"candidate {result.candidate}")
    console.print(f"{result.decisions:,} logged decisions of {result.users:,} users; replayed "
                  f"{info['replay']['events']:,} events in {result.replay_seconds:.1f} s "
                  f"({info['replay']['events_per_second']:,} events/s); answered by "
                  + ", ".join(f"{name} {count:,}" for name, count in result.answered_by.items()))
    table = Table(title="time per recommendation (step, first) and per session, 95% CI: " + info["ci"],
                  title_justify="left")
    for header in ("estimand", "estimator", "estimate", "95% CI", "ESS", "n"):
        table.add_column(header, justify="left" if header.startswith("est") and header != "estimate" else "right",
                         no_wrap=True)
    table.add_column("warnings", overflow="fold", ratio=1)
    for row in result.rows:
        table.add_row(row.estimand, row.estimator, _number(row.estimate),
                      f"[{_number(row.low)}, {_number(row.high)}]",
                      "-" if row.ess is None else f"{row.ess:,.0f}", f"{row.n:,}", "; ".join(row.warnings))
    console.print(table)
    console.print(f"reward model (dm, dr): {result.reward_model}; cross-fitted R² (weighted as fitted) {_number(result.reward_r2)}")
    skipped = {reason: count for reason, count in result.excluded.items() if count}
    if skipped:
        console.print("not evaluated: " + ", ".join(f"{count:,} decisions {reason}" for reason, count in skipped.items()))
