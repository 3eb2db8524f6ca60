"""Treatment statistics and comparisons: the course's Welch table, plus SRM, Holm, MDE, CUPED."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from botify.events.engine import METRICS

ALPHA = 0.05
POWER = 0.8
SRM_ALPHA = 0.001
LOWER_IS_BETTER = frozenset({"mean_request_latency"})
GUARDRAILS = frozenset({"mean_request_latency"})  # their own Holm family


@dataclass(frozen=True)
class TreatmentStats:
    treatment: str
    metric: str
    count: int
    mean: float
    var: float


@dataclass(frozen=True)
class Comparison:
    """A treatment against the control on one metric; effects and intervals in % of the control mean."""

    metric: str
    control: str
    treatment: str
    control_mean: float
    treatment_mean: float
    effect: float
    lower: float
    upper: float
    p_value: float
    p_holm: float
    significant: bool
    significant_holm: bool
    mde: float
    cuped: bool

    @property
    def verdict(self) -> str:
        """"win", "loss" or "" (no difference), knowing that lower latency is better: by the
        Holm-adjusted p-value, so that no output claims more than the multiple comparisons allow
        (the one definition the terminal, the report, JSON/CSV, the loop and the studio share)."""
        if not self.significant_holm:
            return ""
        difference = self.treatment_mean - self.control_mean  # the effect % is undefined on a zero baseline
        better = difference < 0 if self.metric in LOWER_IS_BETTER else difference > 0
        return "win" if better else "loss"

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def welch(
    control: TreatmentStats, treatment: TreatmentStats, alpha: float = ALPHA, reference: float | None = None
) -> tuple[float, float, float, float, float]:
    """Effect, lower, upper (in % of `reference`, by default the control mean), p-value and MDE (%)
    of the Welch t-test with Welch–Satterthwaite degrees of freedom."""
    delta = treatment.mean - control.mean
    var_c, var_t = control.var / control.count, treatment.var / treatment.count
    base = control.mean if reference is None else reference
    scale = 100 / base if base else float("nan")  # no relative effect on a zero baseline (p still holds)
    se = np.sqrt(var_c + var_t)
    if se == 0:  # a metric constant in both groups: the difference is exact
        return delta * scale, delta * scale, delta * scale, (1.0 if delta == 0 else 0.0), 0.0
    dof = (var_c + var_t) ** 2 / (var_c**2 / (control.count - 1) + var_t**2 / (treatment.count - 1))
    quantile = stats.t.ppf(1 - alpha / 2, dof)
    p_value = 2 * stats.t.sf(abs(delta / se), dof)
    mde = (quantile + stats.t.ppf(POWER, dof)) * se * scale
    return delta * scale, (delta - quantile * se) * scale, (delta + quantile * se) * scale, float(p_value), float(mde)


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input's order."""
    order = np.argsort(p_values)
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def sample_ratio(counts: dict[str, int], treatments: list[str]) -> float:
    """p-value of users per treatment against an even split (the hash splits evenly)."""
    observed = np.array([counts.get(name, 0) for name in treatments], dtype=float)
    return float(stats.chisquare(observed).pvalue)


def cuped(values: np.ndarray, covariate: np.ndarray, has_covariate: np.ndarray) -> np.ndarray:
    """Y - theta (X - mean X), theta = cov(Y, X) / var(X) over users with a pre-period value."""
    x, y = covariate[has_covariate], values[has_covariate]
    if len(x) < 3 or np.var(x) == 0:
        return values
    theta = np.cov(y, x)[0, 1] / np.var(x, ddof=1)
    adjusted = values.copy()
    adjusted[has_covariate] = y - theta * (x - x.mean())
    return adjusted


def _present(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


@dataclass(frozen=True)
class Analysis:
    experiment: str
    control: str
    treatments: list[str]
    stats: list[TreatmentStats]
    comparisons: list[Comparison]
    users: dict[str, int]
    srm_p_value: float

    @property
    def srm(self) -> bool:
        return self.srm_p_value < SRM_ALPHA


def analyze(
    users: dict[str, np.ndarray],
    experiment: str,
    control: str = "C",
    pre: dict[str, np.ndarray] | None = None,
    treatments: list[str] | None = None,
    alpha: float = ALPHA,
    metrics: tuple[str, ...] = METRICS,
) -> Analysis:
    """Per-treatment stats and every treatment × metric comparison against the control, over
    the columns `metrics` of `users` (and of `pre`, for CUPED). A NaN is a value a user does
    not have (e.g. a return rate with no day to return on): that user is left out of that metric."""
    present = sorted(set(users["treatment"].tolist()))
    names = treatments or present
    if control not in present:
        raise ValueError(f"no users in control {control!r} of {experiment}; treatments seen: {', '.join(present) or 'none'}")
    counts = {name: int((users["treatment"] == name).sum()) for name in names}

    columns = {metric: users[metric].astype(np.float64) for metric in metrics}
    if pre is not None:
        index = {int(u): i for i, u in enumerate(pre["user"])}
        rows = np.array([index.get(int(u), -1) for u in users["user"]])
        has = rows >= 0
        for metric in metrics:
            covariate = np.where(has, pre[metric][np.maximum(rows, 0)], 0.0).astype(np.float64)
            columns[metric] = cuped(columns[metric], covariate, has & np.isfinite(columns[metric]))

    table, tested = [], {}
    for metric in metrics:
        for name in names:
            values = _present(columns[metric][users["treatment"] == name])
            item = TreatmentStats(name, metric, len(values), float(values.mean()) if len(values) else float("nan"),
                                  float(values.var(ddof=1)) if len(values) > 1 else float("nan"))
            tested[(metric, name)] = item
            raw_values = _present(users[metric][users["treatment"] == name].astype(np.float64))
            table.append(item if pre is None else TreatmentStats(
                name, metric, len(raw_values), float(raw_values.mean()) if len(raw_values) else float("nan"),
                float(raw_values.var(ddof=1)) if len(raw_values) > 1 else float("nan")))
    means = {(item.metric, item.treatment): item.mean for item in table}
    results = []
    for metric in metrics:
        base = tested[(metric, control)]
        for name in names:
            if name == control or tested[(metric, name)].count < 2:
                continue
            reference = means[(metric, control)]
            results.append((metric, name, reference, means[(metric, name)],
                            *welch(base, tested[(metric, name)], alpha, reference)))
    # Two families for Holm: the listening metrics, and the latency guardrail (whose p-values
    # depend on the machine's timing and must not move the listening metrics' verdicts).
    adjusted = [0.0] * len(results)
    for guardrail in (False, True):
        family = [i for i, item in enumerate(results) if (item[0] in GUARDRAILS) == guardrail]
        for i, value in zip(family, holm([results[i][7] for i in family])):
            adjusted[i] = value
    comparisons = [
        Comparison(metric, control, name, control_mean, treatment_mean, effect, lower, upper, p, p_adj,
                   bool(lower > 0 or upper < 0) if np.isfinite(lower) else bool(p < alpha), bool(p_adj < alpha), mde,
                   pre is not None)
        for (metric, name, control_mean, treatment_mean, effect, lower, upper, p, mde), p_adj in zip(results, adjusted)
    ]
    return Analysis(experiment, control, names, table, comparisons, counts, sample_ratio(counts, names))
