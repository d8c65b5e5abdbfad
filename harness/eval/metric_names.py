"""The built-in metrics' names, one-line descriptions and directions (no torch: ``harness list
metrics`` and the leaderboard read them without importing the protocol)."""
from __future__ import annotations

#: Metric keys returned by :func:`compute_metrics` (besides ``scale`` and ``valid_px``).
METRIC_NAMES: tuple[str, ...] = (
    "abs_rel",
    "sq_rel",
    "rmse",
    "rmse_log",
    "log10",
    "a1",
    "a2",
    "a3",
    "silog",
)

#: One-line description of each metric (docs/datasets.md, "Metric definitions"; g = GT, p = prediction, per image).
METRIC_DESCRIPTIONS: dict[str, str] = {
    "abs_rel": "AbsRel: mean |g - p| / g",
    "sq_rel": "SqRel: mean (g - p)^2 / g (m)",
    "rmse": "RMSE: sqrt(mean (g - p)^2) (m)",
    "rmse_log": "RMSElog: sqrt(mean (ln g - ln p)^2)",
    "log10": "log10: mean |log10 g - log10 p|",
    "a1": "delta1: fraction with max(g/p, p/g) < 1.25",
    "a2": "delta2: fraction with max(g/p, p/g) < 1.25^2",
    "a3": "delta3: fraction with max(g/p, p/g) < 1.25^3",
    "silog": "SILog: 100 sqrt(mean d^2 - mean(d)^2), d = ln p - ln g",
}

#: Metrics for which a smaller value is better (the δ accuracies a1..a3 are higher-is-better).
LOWER_IS_BETTER: frozenset[str] = frozenset({"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"})
