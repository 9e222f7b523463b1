"""Honest evaluation: detection metrics, episode-cluster bootstrap CIs, paired tests, report.

Public API (numpy only at import; the detection, plotting and report modules
load scipy, matplotlib and rich when first used):

- ``macro_f1_ci(y_true, y_pred, groups, *, n_resamples=2000, confidence=0.95, seed=0)``
  → ``BootstrapCI(point, low, high, confidence, n_resamples, seed)``
- ``paired_test(y_true, pred_a, pred_b, groups, ...)`` → ``PairedResult``
- ``holm(pvalues)`` → Holm-adjusted p-values
- ``point_metrics``, ``EpisodeBootstrap`` (share resamples across models),
  ``permutation_importance``;
- ``detection`` / ``calibration``: false alarms, time to detect, ROC/PR AUC,
  ECE, temperature scaling — pure functions of stored predictions;
- ``Predictions`` / ``Windows`` (``predictions.py``: the per-window files
  every number is computed from), ``Context`` and ``compare.compare(preds, ctx)
  -> Comparison`` (all the numbers of the report; ``report.write_report``
  writes them), detection per test week with its area under time
  (``ModelEval.over_time``, ``scoring.aut``);
- ``run.run_loho`` / ``report.write_loho_report``: the leave-one-host-out
  evaluation (one ``host`` split per held-out host, and a per-host summary).

``cis490.evaluate.metrics`` re-exports the project's one macro F1, defined in
``cis490.models.f1`` (training's model selection uses it too).

See docs/EVALUATION.md for the definitions.
"""

from .bootstrap import (
    BootstrapCI,
    EpisodeBootstrap,
    PairedResult,
    holm,
    macro_f1_ci,
    paired_test,
)
from .importance import Importance, permutation_importance
from .metrics import PointMetrics, point_metrics

_LAZY = {"Comparison": "compare", "Context": "scoring",
         "Predictions": "predictions", "Windows": "predictions"}

__all__ = [
    "BootstrapCI",
    "Comparison",
    "Context",
    "EpisodeBootstrap",
    "Importance",
    "PairedResult",
    "PointMetrics",
    "Predictions",
    "Windows",
    "holm",
    "macro_f1_ci",
    "paired_test",
    "permutation_importance",
    "point_metrics",
]


def __getattr__(name: str):
    """Load the detection-side names on first use (they import scipy)."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
