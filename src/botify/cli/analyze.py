"""`botify analyze`: an experiment's verdict from the service's raw event logs."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import click
from rich.table import Table

from botify.cli.engine import engine_options, engine_settings
from botify.cli.progress import console
from botify.errors import BotifyError

# The metrics a verdict can lead with (the engine's listening metrics, the primary one last).
METRIC_CHOICES = ("time", "sessions", "mean_tracks_per_session", "mean_time_per_session")


def strict_json(value):
    """`value` with every non-finite float (NaN, ±Infinity: not JSON) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # NumPy scalars
        return strict_json(value.item())
    return value


def _table(result, labels: dict[str, str], wide: bool) -> Table:
    """Every listening metric × treatment: compact (fits 80 columns; the recommenders are named
    in the headline) or, with --wide, every column and the latency rows."""
    from rich import box

    from botify.analysis.verdict import SHORT_NAMES, format_p, listening_comparisons, outcome

    title = f"{result.experiment}: treatments vs {result.control}" + (
        " (CUPED)" if result.comparisons and result.comparisons[0].cuped else "")
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    if wide:
        columns = ("metric", "treatment", "control mean", "treatment mean", "effect %", "95% CI %", "p", "p (Holm)",
                   "MDE % (80%)", "verdict")
    else:
        columns = ("metric", "treatment", "effect %", "95% CI %", "p (Holm)", "verdict")
    for column in columns:
        table.add_column(column, justify="left" if column in ("metric", "treatment", "verdict") else "right",
                         no_wrap=True)
    for item in result.comparisons if wide else listening_comparisons(result):
        word = outcome(item)
        colour = {"win": "green", "loss": "red"}.get(word)
        if wide:
            treatment = f"{item.treatment} {labels[item.treatment]}" if labels.get(item.treatment) else item.treatment
            cells = [item.metric, treatment, f"{item.control_mean:.4g}", f"{item.treatment_mean:.4g}",
                     f"{item.effect:+.2f}", f"[{item.lower:+.2f}, {item.upper:+.2f}]", format_p(item.p_value),
                     format_p(item.p_holm), f"{item.mde:.2f}", word]
        else:
            cells = [SHORT_NAMES.get(item.metric, item.metric), item.treatment, f"{item.effect:+.1f}",
                     f"{item.lower:+.1f}..{item.upper:+.1f}", format_p(item.p_holm),
                     {"no difference": "-"}.get(word, word)]
        table.add_row(*[f"[{colour}]{cell}[/]" if colour else cell for cell in cells])
    return table


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def skipped_note(summary) -> str | None:
    """One line saying how many lines the analysis skipped and why, or None if it skipped none."""
    from botify.events.schema import MAX_LINE_BYTES

    if not summary.malformed and not summary.incomplete_fields:
        return None
    return (f"skipped {_plural(summary.malformed, 'malformed line')} (not JSON, invalid UTF-8, over "
            f"{MAX_LINE_BYTES >> 20} MiB or cut off) and {_plural(summary.incomplete_fields, 'event')} with "
            "missing or invalid fields")


def print_analysis(result, summary, labels: dict[str, str] | None = None, metric: str | None = None,
                   wide: bool = False) -> None:
    """The terminal view: what was read, a loud SRM warning if any, the verdict on the primary
    metric in words, the latency guardrail, then the table (compact unless `wide`)."""
    from botify.analysis.stats import SRM_ALPHA
    from botify.analysis.verdict import PRIMARY, guardrail_line, headline_text, headlines, summary_line

    labels, metric = labels or {}, metric or PRIMARY
    # soft_wrap: each message stays one line, however narrow the terminal (or a pipe's 80 columns).
    console.print(f"{summary.lines:,} lines in {summary.files} file(s); users per treatment: "
                  + ", ".join(f"{name} {count:,}" for name, count in result.users.items()), soft_wrap=True)
    if note := skipped_note(summary):
        console.print(f"[yellow]{note}[/]", soft_wrap=True)
    if result.srm:
        console.print(f"[bold red]SAMPLE RATIO MISMATCH: users per treatment are not an even split "
                      f"(chi-square p = {result.srm_p_value:.2g} < {SRM_ALPHA}); do not trust this experiment[/]",
                      soft_wrap=True)
    console.print(f"\n[bold]{summary_line(result, labels, metric)}[/]", soft_wrap=True)
    for item in headlines(result, labels, metric):
        colour = {"win": "green", "loss": "red"}.get(item.outcome)
        text = headline_text(item)
        console.print(f"  [bold {colour}]{text}[/]" if colour else f"  {text}", soft_wrap=True, highlight=False)
    if guard := guardrail_line(result):
        console.print(guard, soft_wrap=True, highlight=False)
    console.print(_table(result, labels, wide))
    if not wide:
        console.print("p: Holm-adjusted over all comparisons; --wide adds means, raw p, MDE and latency", style="dim")


@click.command()
@click.argument("logs", nargs=-1, required=True)
@click.option("--experiment", required=True, help="Experiment name, as in the events' `experiments`.")
@click.option("--control", default="C", show_default=True, help="The control treatment.")
@click.option("--pre", "pre_logs", multiple=True, help="Pre-period logs for CUPED (e.g. the previous day); repeatable.")
@click.option("--format", "output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="Also write an HTML report here.")
@click.option("--metric", type=click.Choice(list(METRIC_CHOICES)), default=METRIC_CHOICES[-1], show_default=True,
              help="The primary metric: the headline's verdict is on it.")
@click.option("--wide", is_flag=True, help="Show every column of the table (it fits 80 columns without).")
@engine_options()
def analyze(logs, experiment, control, pre_logs, output, report, metric, wide, **options) -> None:
    """Analyse EXPERIMENT in LOGS (files, directories or globs; rotated and multi-worker logs mix fine;
    compacted directories; with --engine spark, any URI Spark reads: hdfs://, s3a://, globs)."""
    from botify.analysis.engine import user_metrics  # SciPy and DuckDB load only when analysing
    from botify.analysis.stats import analyze as run_analysis

    settings = engine_settings(**options)
    users, summary = user_metrics(list(logs), experiment, timeline=report is not None, settings=settings)
    if len(users["user"]) == 0:
        from botify.analysis.engine import experiment_names

        note = skipped_note(summary)
        present = experiment_names(list(logs), settings)
        raise BotifyError(f"no finished sessions with experiment {experiment!r} in {summary.files} file(s)"
                          + (f" ({_plural(summary.lines, 'line')}; {note})" if note else "")
                          + ("" if present is None else f"; the logs have experiments {', '.join(present)}"
                             if present else "; the logs name no experiments"))
    pre = user_metrics(list(pre_logs), None, settings=settings)[0] if pre_logs else None
    try:
        result = run_analysis(users, experiment, control, pre)
    except ValueError as error:
        raise BotifyError(str(error)) from error
    from botify.analysis.verdict import labels_near

    labels = labels_near(list(logs), experiment)
    if report is not None:
        from botify.analysis.report import render_section, write_report

        write_report(report, [render_section(result, users, summary, f"Experiment {experiment}", labels, metric)],
                     f"botify: {experiment}")
    if output != "table" and (note := skipped_note(summary)):
        click.echo(note, err=True)  # stdout holds only the document
    if output == "json":
        json.dump(strict_json({"experiment": experiment, "control": control, "users": result.users,
                               "srm_p_value": result.srm_p_value, "srm": result.srm,
                               "lines": summary.lines, "malformed_lines": summary.malformed,
                               "events_missing_fields": summary.incomplete_fields,
                               "comparisons": [item.as_dict() for item in result.comparisons]}),
                  sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
        return
    if output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(result.comparisons[0].as_dict()))
        writer.writeheader()
        writer.writerows(item.as_dict() for item in result.comparisons)
        return
    print_analysis(result, summary, labels, metric, wide)
    if report is not None:
        console.print(f"report written to {report}")
