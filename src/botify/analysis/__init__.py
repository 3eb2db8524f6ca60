"""A/B analysis of the service's event logs: sessions, per-user metrics, effects with honest statistics."""

from botify.analysis.engine import LogSummary, user_metrics
from botify.analysis.stats import Comparison, TreatmentStats, analyze, welch

__all__ = ["Comparison", "LogSummary", "TreatmentStats", "analyze", "user_metrics", "welch"]
