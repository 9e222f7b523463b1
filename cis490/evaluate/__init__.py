"""Honest evaluation: episode-cluster bootstrap CIs, paired tests, breakdowns, report.

Public API (numpy only; plotting and the report writer import matplotlib and
rich lazily, in ``cis490.evaluate.report``):

- ``macro_f1_ci(y_true, y_pred, groups, *, n_resamples=2000, confidence=0.95, seed=0)``
  → ``BootstrapCI(point, low, high, confidence, n_resamples, seed)``
- ``paired_test(y_true, pred_a, pred_b, groups, ...)`` → ``PairedResult``
- ``holm(pvalues)`` → Holm-adjusted p-values
- ``point_metrics``, ``EpisodeBootstrap`` (share resamples across models),
  ``permutation_importance``, ``compare(runs) -> Comparison`` (all the numbers
  of the report; ``report.write_report`` writes them).

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
from .compare import Comparison, Run, compare
from .importance import Importance, permutation_importance
from .metrics import PointMetrics, point_metrics

__all__ = [
    "BootstrapCI",
    "Comparison",
    "EpisodeBootstrap",
    "Importance",
    "PairedResult",
    "PointMetrics",
    "Run",
    "compare",
    "holm",
    "macro_f1_ci",
    "paired_test",
    "permutation_importance",
    "point_metrics",
]
