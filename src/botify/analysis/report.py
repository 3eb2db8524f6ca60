"""A self-contained HTML report of an analysis: tables and inline SVG plots, no external files."""

from __future__ import annotations

import html
import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from botify.events.files import LogSummary
from botify.analysis.stats import SRM_ALPHA, Analysis
from botify.analysis.verdict import (PRIMARY, SHORT_NAMES, format_p, guardrail_line, headlines, label, latency_ms,
                                     listening_comparisons, outcome, summary_line)

MAIN_METRICS = ("mean_time_per_session", "mean_tracks_per_session", "time")
COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _names(analysis: Analysis, labels: dict[str, str]) -> list[str]:
    return [label(name, labels) for name in analysis.treatments]


def _distributions(analysis: Analysis, users: dict[str, np.ndarray], labels: dict[str, str]) -> str:
    """Per-user distributions as box plots, one small panel per metric: readable with 10 treatments."""
    import matplotlib.pyplot as plt

    names = _names(analysis, labels)
    figure, axes = plt.subplots(1, len(MAIN_METRICS), figsize=(4.2 * len(MAIN_METRICS), 0.42 * len(names) + 1.6),
                                sharey=True)
    for axis, metric in zip(axes, MAIN_METRICS):
        groups = [users[metric][users["treatment"] == name].astype(float) for name in analysis.treatments]
        parts = axis.boxplot(groups, vert=False, showfliers=False, patch_artist=True, widths=0.6,
                             medianprops={"color": "black"})
        for patch, colour in zip(parts["boxes"], COLOURS * 2):
            patch.set_facecolor(colour)
            patch.set_alpha(0.55)
        axis.scatter([group.mean() if len(group) else np.nan for group in groups], range(1, len(groups) + 1),
                     marker="D", color="black", s=14, zorder=3, label="mean")
        axis.set_title(SHORT_NAMES.get(metric, metric))
        axis.set_yticks(range(1, len(names) + 1), names)
    axes[0].invert_yaxis()
    axes[-1].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    svg = _svg(figure)
    plt.close(figure)
    return svg


def _effects(analysis: Analysis, labels: dict[str, str]) -> str:
    """A forest plot per listening metric: each treatment's effect and 95% CI against the control."""
    import matplotlib.pyplot as plt

    metrics = [metric for metric in MAIN_METRICS if any(c.metric == metric for c in analysis.comparisons)]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.45 * len(analysis.treatments) + 1.4),
                                sharey=True, squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        items = [c for c in analysis.comparisons if c.metric == metric]
        for row, item in enumerate(items):
            colour = {"win": "#2ca02c", "loss": "#d62728"}.get(outcome(item), "#7f7f7f")
            axis.errorbar(item.effect, row, xerr=[[item.effect - item.lower], [item.upper - item.effect]], fmt="o",
                          color=colour, capsize=4)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_yticks(range(len(items)), [label(item.treatment, labels) for item in items])
        axis.set_title(SHORT_NAMES.get(metric, metric))
        axis.set_xlabel(f"% vs {analysis.control}")
    axes[0][0].invert_yaxis()
    figure.tight_layout()
    svg = _svg(figure)
    plt.close(figure)
    return svg


def _timeline(analysis: Analysis, timeline: dict[str, np.ndarray], labels: dict[str, str]) -> str:
    """Each treatment's share of the sessions finished so far, in session order: an even split
    stays flat (a simulator's bursts in wall-clock time do not distort it)."""
    import matplotlib.pyplot as plt

    order = np.argsort(timeline["second"], kind="stable")
    sessions = timeline["sessions"][order].astype(float)
    treatment = timeline["treatment"][order]
    total = np.cumsum(sessions)
    figure, axis = plt.subplots(figsize=(8, 3))
    for colour, name in zip(COLOURS * 2, analysis.treatments):
        mine = np.cumsum(np.where(treatment == name, sessions, 0.0))
        axis.plot(total, mine / np.maximum(total, 1), color=colour, label=label(name, labels))
    if len(analysis.treatments):
        axis.axhline(1 / len(analysis.treatments), color="black", linewidth=0.8, linestyle="--")
    axis.set_xlabel("sessions finished (in order)")
    axis.set_ylabel("share so far")
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    svg = _svg(figure)
    plt.close(figure)
    return svg


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{(classes or [""] * len(rows))[i]}">' + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
svg { max-width: 100%; height: auto; }
tr.win td { color: #1a7f1a; font-weight: 600; } tr.loss td, p.loss { color: #b22222; }
.meta { color: #666; }
.headline { border: 2px solid #444; border-radius: 6px; padding: 0.4em 1em; margin: 1em 0; }
.headline table { font-size: 1.1em; } td { white-space: nowrap; }
"""


def _headline(analysis: Analysis, labels: dict[str, str], metric: str) -> str:
    rows = []
    for item in headlines(analysis, labels, metric):
        c = item.comparison
        word = {"win": "WIN", "loss": "LOSS"}.get(item.outcome, "no difference")
        rows.append(f'<tr class="{item.outcome.split()[0]}"><td>{html.escape(item.label)}</td><td>{word}</td>'
                    f"<td>{c.effect:+.1f}%</td><td>[{c.lower:+.1f}, {c.upper:+.1f}]</td>"
                    f"<td>{html.escape(format_p(c.p_holm))}</td></tr>")
    guard = guardrail_line(analysis)
    return (f'<div class="headline"><p><b>{html.escape(summary_line(analysis, labels, metric))}</b></p>'
            f"<table><thead><tr><th>treatment</th><th>verdict</th><th>effect</th><th>95% CI</th><th>p (Holm)</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f'<p class="meta">{html.escape(guard)}</p></div>')


def render_section(analysis: Analysis, users: dict[str, np.ndarray], summary: LogSummary, heading: str,
                   labels: dict[str, str] | None = None, metric: str | None = None) -> str:
    """One experiment as an HTML fragment: the verdict on the primary metric first, then the
    other metrics, forest plots, distributions and the split over the sessions."""
    import matplotlib

    matplotlib.use("Agg")
    labels, metric = labels or {}, metric or PRIMARY
    comparisons = _table(
        ["metric", "treatment", "control mean", "treatment mean", "effect %", "95% CI %", "p", "p (Holm)",
         "MDE % (80%)", "verdict"],
        [[c.metric, label(c.treatment, labels), f"{c.control_mean:.4g}", f"{c.treatment_mean:.4g}", f"{c.effect:+.2f}",
          f"[{c.lower:+.2f}, {c.upper:+.2f}]", format_p(c.p_value), format_p(c.p_holm), f"{c.mde:.2f}", outcome(c)]
         for c in listening_comparisons(analysis)],
        [outcome(c).split()[0] for c in listening_comparisons(analysis)],
    )
    per_treatment = _table(
        ["treatment", "users", *[f"{SHORT_NAMES.get(m, m)} mean" for m in MAIN_METRICS], "latency (ms)"],
        [[label(name, labels), f"{analysis.users[name]:,}",
          *[f"{next(s.mean for s in analysis.stats if s.treatment == name and s.metric == m):.4g}" for m in MAIN_METRICS],
          f"{latency_ms(analysis).get(name, float('nan')):.3g}"]
         for name in analysis.treatments],
    )
    srm = (f'<p class="loss"><b>Sample ratio mismatch</b>: users per treatment are not an even split '
           f"(chi-square p = {analysis.srm_p_value:.2g} &lt; {SRM_ALPHA}). Do not trust this experiment.</p>"
           if analysis.srm else f"<p>Sample ratio check: p = {html.escape(format_p(analysis.srm_p_value))} "
                                f"(no mismatch).</p>")
    cuped = " with CUPED (pre-period covariate)" if analysis.comparisons and analysis.comparisons[0].cuped else ""
    timeline = _timeline(analysis, summary.timeline, labels) if summary.timeline is not None else ""
    return f"""<h1>{html.escape(heading)}</h1>
{_headline(analysis, labels, metric)}
{srm}
<p class="meta">{summary.lines:,} log lines in {summary.files} file(s); {summary.malformed:,} malformed lines and
{summary.incomplete_fields:,} events with missing or invalid fields skipped. Control: {html.escape(analysis.control)}.</p>
<h2>Treatments</h2>{per_treatment}
<h2>Effects vs {html.escape(analysis.control)}{cuped}</h2>
<p class="meta">Green: significant win; red: significant loss, after Holm's adjustment over all treatment ×
metric comparisons (95% Welch intervals). Latency is a guardrail, judged in milliseconds above.</p>
{_effects(analysis, labels)}
{comparisons}
<h2>Distributions per user</h2>
<p class="meta">Boxes: quartiles; whiskers: 1.5 IQR; diamonds: means.</p>{_distributions(analysis, users, labels)}
<h2>Split over the sessions</h2>{timeline}
"""


def write_report(path: Path, sections: list[str], title: str) -> Path:
    """Write sections into one self-contained HTML file (everything inline)."""
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>
{"<hr>".join(sections)}
<p class="meta">Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by botify.</p>
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
