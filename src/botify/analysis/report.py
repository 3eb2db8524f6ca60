"""A self-contained HTML report of an analysis: tables and inline SVG plots, no external files."""

from __future__ import annotations

import html
import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from botify.events.files import LogSummary
from botify.analysis.stats import SRM_ALPHA, Analysis

MAIN_METRICS = ("mean_time_per_session", "mean_tracks_per_session", "time")
COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _distributions(analysis: Analysis, users: dict[str, np.ndarray]) -> str:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(MAIN_METRICS), figsize=(4.2 * len(MAIN_METRICS), 3.2))
    for axis, metric in zip(axes, MAIN_METRICS):
        values = users[metric].astype(float)
        high = np.percentile(values, 99) if len(values) else 1.0
        bins = np.linspace(values.min() if len(values) else 0.0, max(high, 1e-9), 40)
        for colour, name in zip(COLOURS, analysis.treatments):
            group = values[users["treatment"] == name]
            axis.hist(np.clip(group, None, high), bins=bins, histtype="step", density=True, linewidth=1.6,
                      color=colour, label=f"{name} (mean {group.mean():.3g})")
        axis.set_title(metric)
        axis.set_ylabel("share of users")
        axis.legend(fontsize=8)
    figure.tight_layout()
    svg = _svg(figure)
    plt.close(figure)
    return svg


def _effects(analysis: Analysis) -> str:
    import matplotlib.pyplot as plt

    items = analysis.comparisons
    figure, axis = plt.subplots(figsize=(8, 0.42 * len(items) + 1))
    for row, item in enumerate(items):
        colour = {"win": "#2ca02c", "loss": "#d62728"}.get(item.verdict, "#7f7f7f")
        axis.errorbar(item.effect, row, xerr=[[item.effect - item.lower], [item.upper - item.effect]], fmt="o",
                      color=colour, capsize=4)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_yticks(range(len(items)), [f"{item.metric} · {item.treatment}" for item in items])
    axis.invert_yaxis()
    axis.set_xlabel(f"effect vs {analysis.control}, % of the control mean (95% Welch CI)")
    figure.tight_layout()
    svg = _svg(figure)
    plt.close(figure)
    return svg


def _timeline(analysis: Analysis, timeline: dict[str, np.ndarray]) -> str:
    """Finished sessions per time bin and treatment, in about 40 bins over the log's span."""
    import matplotlib.pyplot as plt

    seconds = timeline["second"].astype(np.int64)
    start, span = int(seconds.min()), max(1, int(seconds.max() - seconds.min()) + 1)
    width = max(1, -(-span // 40))
    unit, scale = ("minutes", 60) if span > 600 else ("seconds", 1)
    figure, axis = plt.subplots(figsize=(8, 3))
    for colour, name in zip(COLOURS, analysis.treatments):
        rows = timeline["treatment"] == name
        counts = np.bincount((seconds[rows] - start) // width, weights=timeline["sessions"][rows],
                             minlength=-(-span // width))
        axis.plot(np.arange(len(counts)) * width / scale, counts / width * scale, marker="o", markersize=3,
                  color=colour, label=name)
    axis.set_xlabel(f"{unit} since the first session")
    axis.set_ylabel(f"finished sessions per {unit[:-1]}")
    axis.legend(fontsize=8)
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
th:first-child, td:first-child, td:nth-child(2) { text-align: left; }
tr.win td { color: #1a7f1a; font-weight: 600; } tr.loss td, p.loss { color: #b22222; }
.meta { color: #666; }
"""


def render_section(analysis: Analysis, users: dict[str, np.ndarray], summary: LogSummary, heading: str) -> str:
    """One experiment's tables and plots as an HTML fragment."""
    import matplotlib

    matplotlib.use("Agg")
    comparisons = _table(
        ["metric", "treatment", "control mean", "treatment mean", "effect %", "95% CI %", "p", "p (Holm)", "MDE % (80%)"],
        [[c.metric, c.treatment, f"{c.control_mean:.4g}", f"{c.treatment_mean:.4g}", f"{c.effect:+.2f}",
          f"[{c.lower:+.2f}, {c.upper:+.2f}]", f"{c.p_value:.3g}", f"{c.p_holm:.3g}", f"{c.mde:.2f}"]
         for c in analysis.comparisons],
        [c.verdict for c in analysis.comparisons],
    )
    per_treatment = _table(
        ["treatment", "users", *[f"{m} mean" for m in MAIN_METRICS]],
        [[name, f"{analysis.users[name]:,}",
          *[f"{next(s.mean for s in analysis.stats if s.treatment == name and s.metric == m):.4g}" for m in MAIN_METRICS]]
         for name in analysis.treatments],
    )
    srm = (f'<p class="loss"><b>Sample ratio mismatch</b>: users per treatment are not an even split '
           f"(chi-square p = {analysis.srm_p_value:.2g} &lt; {SRM_ALPHA}). Do not trust this experiment.</p>"
           if analysis.srm else f"<p>Sample ratio check: p = {analysis.srm_p_value:.3g} (no mismatch).</p>")
    cuped = " with CUPED (pre-period covariate)" if analysis.comparisons and analysis.comparisons[0].cuped else ""
    timeline = _timeline(analysis, summary.timeline) if summary.timeline is not None else ""
    return f"""<h1>{html.escape(heading)}</h1>
<p class="meta">{summary.lines:,} log lines in {summary.files} file(s); {summary.malformed:,} malformed lines and
{summary.incomplete_fields:,} events with missing fields skipped. Control: {html.escape(analysis.control)}.</p>
{srm}
<h2>Treatments</h2>{per_treatment}
<h2>Effects vs {html.escape(analysis.control)}{cuped}</h2>
<p class="meta">Green: significant win; red: significant loss (95% Welch interval excludes 0; for latency,
lower is better). Holm-adjusted p-values account for all treatment × metric comparisons.</p>
{comparisons}
{_effects(analysis)}
<h2>Distributions per user</h2>{_distributions(analysis, users)}
<h2>Sessions over time</h2>{timeline}
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
