"""Point metrics from confusion counts: confusion matrix, F1, macro F1, accuracy.

Every metric here is a function of a confusion matrix ``C[t, p]`` (rows: true
class, columns: predicted class), and every function accepts a *stack* of
them, shape ``(..., K, K)``. That is what makes the episode bootstrap cheap
(see ``bootstrap.py``): a resample is a weighted sum of per-episode confusion
matrices, and the metric is evaluated on all resamples at once.

Classes are the integers ``0 .. K-1`` (``cis490.data.channels.PHASES``
order). Which classes macro F1 averages over is the *evaluation label set*:

- by default, the classes present in ``y_true`` of the data passed in — fixed
  once for the whole test set, so every bootstrap resample and every model is
  scored over the same classes (a model cannot change the denominator of its
  own score by what it predicts);
- predictions of a class outside that set are still errors (they are false
  negatives of the true class);
- a class in the set whose F1 is 0/0 in some resample (no true and no
  predicted windows of it) scores 0.

This is exactly scikit-learn's
``f1_score(y_true, y_pred, labels=labels, average='macro', zero_division=0)``
and the tests hold us to it. Pass ``labels`` explicitly to score a fixed set
(e.g. all four phases).

Input validation lives apart from the arithmetic (``validate_labels``), as in
``scipy.stats._resampling``; messages name the offending parameter.

The macro F1 itself (label validation, ``confusion_matrix``, ``f1_per_class``,
``macro_f1``, ``present_labels``, ``per_class_f1_score``, ``macro_f1_score``)
is defined once, in ``cis490.models.f1``, and re-exported here under the same
names: training selects models by it, so training and this report share one
macro F1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cis490.models import f1 as _f1
from cis490.models.f1 import (
    confusion_matrix,
    evaluation_labels,
    f1_per_class,
    macro_f1,
    macro_f1_score,
    per_class_f1_score,
    present_labels,
    validate_labels,
)

_as_label_array = _f1._as_label_array  # bootstrap.py checks its label arrays with it

__all__ = [
    "PointMetrics",
    "accuracy",
    "confusion_matrix",
    "episode_confusions",
    "evaluation_labels",
    "f1_per_class",
    "macro_f1",
    "macro_f1_score",
    "per_class_f1_score",
    "per_episode_confusion",
    "point_metrics",
    "present_labels",
    "validate_labels",
]


# --------------------------------------------------------------------------
# validation (kept apart from the algorithms; the labels' is in cis490.models.f1)


def validate_groups(groups, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Map episode ids (any hashable dtype) to ``0..G-1``; return (codes, unique ids)."""
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(f"`groups` must be one-dimensional, got shape {g.shape}")
    if g.size != n:
        raise ValueError(f"`groups` must have one entry per window ({n}), got {g.size}")
    uniq, codes = np.unique(g, return_inverse=True)
    return codes.astype(np.int64).ravel(), uniq


# --------------------------------------------------------------------------
# algorithms (inputs already validated)


def episode_confusions(
    codes: np.ndarray, n_groups: int, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
) -> np.ndarray:
    """Per-episode confusion matrices, flattened: int64 ``(G, K*K)``.

    Row g is ``confusion_matrix`` of the windows of episode g, so a bootstrap
    resample with episode counts ``w`` (G,) has confusion ``w @ E``.
    """
    kk = n_classes * n_classes
    flat = np.bincount(codes * kk + y_true * n_classes + y_pred, minlength=n_groups * kk)
    return flat.reshape(n_groups, kk)


def accuracy(cm: np.ndarray) -> np.ndarray:
    """Share of windows on the diagonal: ``(..., K, K)`` → ``(...)`` (NaN if empty)."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum(axis=(-2, -1))
    correct = np.trace(cm, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return correct / total


def per_episode_confusion(y_true, y_pred, groups, *, n_classes: int | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Validated front end of ``episode_confusions``: (episode ids, ``(G, K, K)`` counts)."""
    yt, yp, k, _ = validate_labels(y_true, y_pred, n_classes=n_classes)
    codes, uniq = validate_groups(groups, yt.size)
    return uniq, episode_confusions(codes, uniq.size, yt, yp, k).reshape(uniq.size, k, k)


# --------------------------------------------------------------------------
# convenience record


@dataclass(frozen=True)
class PointMetrics:
    """Point estimates on one set of windows."""

    macro_f1: float
    accuracy: float
    f1: tuple[float, ...]        # per class, index = class label, all K classes
    support: tuple[int, ...]     # true windows per class
    labels: tuple[int, ...]      # classes averaged into macro_f1
    confusion: tuple[tuple[int, ...], ...]
    n_windows: int


def point_metrics(y_true, y_pred, *, n_classes: int | None = None,
                  labels: Sequence[int] | None = None) -> PointMetrics:
    """Macro F1, accuracy, per-class F1 and the confusion matrix of one prediction."""
    yt, yp, k, lab = validate_labels(y_true, y_pred, n_classes=n_classes, labels=labels)
    cm = confusion_matrix(yt, yp, k)
    return PointMetrics(
        macro_f1=float(macro_f1(cm, lab)),
        accuracy=float(accuracy(cm)),
        f1=tuple(float(v) for v in f1_per_class(cm)),
        support=tuple(int(v) for v in cm.sum(axis=1)),
        labels=tuple(int(v) for v in lab),
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
        n_windows=int(yt.size),
    )
