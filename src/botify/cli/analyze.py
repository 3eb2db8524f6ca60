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


def _table(result) -> Table:
    table = Table(title=f"{result.experiment}: treatments vs {result.control}"
                  + (" (CUPED)" if result.comparisons and result.comparisons[0].cuped else ""))
    for column in ("metric", "treatment", "control mean", "treatment mean", "effect %", "95% CI %",
                   "p", "p (Holm)", "MDE % (80%)"):
        table.add_column(column, justify="left" if column in ("metric", "treatment") else "right")
    for item in result.comparisons:
        colour = {"win": "green", "loss": "red"}.get(item.verdict)
        cells = [item.metric, item.treatment, f"{item.control_mean:.4g}", f"{item.treatment_mean:.4g}",
                 f"{item.effect:+.2f}", f"[{item.lower:+.2f}, {item.upper:+.2f}]", f"{item.p_value:.3g}",
                 f"{item.p_holm:.3g}", f"{item.mde:.2f}"]
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


def print_analysis(result, summary) -> None:
    """The terminal view: what was read, a loud SRM warning if any, the comparison table."""
    from botify.analysis.stats import SRM_ALPHA

    # soft_wrap: each message stays one line, however narrow the terminal (or a pipe's 80 columns).
    console.print(f"{summary.lines:,} lines in {summary.files} file(s); users per treatment: "
                  + ", ".join(f"{name} {count:,}" for name, count in result.users.items()), soft_wrap=True)
    if note := skipped_note(summary):
        console.print(f"[yellow]{note}[/]", soft_wrap=True)
    if result.srm:
        console.print(f"[bold red]SAMPLE RATIO MISMATCH: users per treatment are not an even split "
                      f"(chi-square p = {result.srm_p_value:.2g} < {SRM_ALPHA}); do not trust this experiment[/]",
                      soft_wrap=True)
    console.print(_table(result))


@click.command()
@click.argument("logs", nargs=-1, required=True)
@click.option("--experiment", required=True, help="Experiment name, as in the events' `experiments`.")
@click.option("--control", default="C", show_default=True, help="The control treatment.")
@click.option("--pre", "pre_logs", multiple=True, help="Pre-period logs for CUPED (e.g. the previous day); repeatable.")
@click.option("--format", "output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="Also write an HTML report here.")
@engine_options()
def analyze(logs, experiment, control, pre_logs, output, report, **options) -> None:
    """Analyse EXPERIMENT in LOGS (files, directories or globs; rotated and multi-worker logs mix fine;
    compacted directories; with --engine spark, any URI Spark reads: hdfs://, s3a://, globs)."""
    from botify.analysis.engine import user_metrics  # SciPy and DuckDB load only when analysing
    from botify.analysis.stats import analyze as run_analysis

    settings = engine_settings(**options)
    users, summary = user_metrics(list(logs), experiment, timeline=report is not None, settings=settings)
    if len(users["user"]) == 0:
        note = skipped_note(summary)
        raise BotifyError(f"no finished sessions with experiment {experiment!r} in {summary.files} file(s)"
                          + (f" ({_plural(summary.lines, 'line')}; {note})" if note else ""))
    pre = user_metrics(list(pre_logs), None, settings=settings)[0] if pre_logs else None
    try:
        result = run_analysis(users, experiment, control, pre)
    except ValueError as error:
        raise BotifyError(str(error)) from error
    if report is not None:
        from botify.analysis.report import render_section, write_report

        write_report(report, [render_section(result, users, summary, f"Experiment {experiment}")],
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
    print_analysis(result, summary)
    if report is not None:
        console.print(f"report written to {report}")
