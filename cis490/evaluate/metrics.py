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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

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
# validation (kept apart from the algorithms)


def _as_label_array(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"`{name}` must hold integer class labels, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"`{name}` must hold non-negative class labels, found {arr.min()}")
    return arr


def validate_labels(
    y_true, y_pred, *, n_classes: int | None = None, labels: Sequence[int] | None = None,
    pred_name: str = "y_pred",
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Check and normalise ``y_true``/``y_pred``; return them with K and the label set."""
    yt = _as_label_array(y_true, "y_true")
    yp = _as_label_array(y_pred, pred_name)
    if yt.shape != yp.shape:
        raise ValueError(f"`y_true` and `{pred_name}` must have the same length, "
                         f"got {yt.size} and {yp.size}")
    if yt.size == 0:
        raise ValueError("`y_true` must not be empty")
    seen = int(max(yt.max(), yp.max())) + 1
    if n_classes is None:
        k = seen if labels is None else max(seen, int(max(labels)) + 1)
    else:
        k = int(n_classes)
        if k < 1:
            raise ValueError(f"`n_classes` must be >= 1, got {n_classes}")
        if seen > k:
            raise ValueError(f"labels must be < `n_classes`={k}, found {seen - 1}")
    lab = evaluation_labels(yt, k, labels)
    return yt, yp, k, lab


def evaluation_labels(y_true: np.ndarray, n_classes: int, labels: Sequence[int] | None) -> np.ndarray:
    """The classes macro F1 averages over (see module doc)."""
    if labels is None:
        return np.unique(y_true).astype(np.int64)
    lab = np.asarray(labels, dtype=np.int64)
    if lab.ndim != 1 or lab.size == 0:
        raise ValueError("`labels` must be a non-empty sequence of class labels")
    if np.unique(lab).size != lab.size:
        raise ValueError(f"`labels` must not repeat a class, got {lab.tolist()}")
    if lab.min() < 0 or lab.max() >= n_classes:
        raise ValueError(f"`labels` must lie in 0..{n_classes - 1}, got {lab.tolist()}")
    return lab


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


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``C[t, p]`` = number of windows of true class t predicted p; int64 (K, K)."""
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


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


def f1_per_class(cm: np.ndarray) -> np.ndarray:
    """F1 of every class from confusion stack ``(..., K, K)`` → ``(..., K)``.

    F1 = 2TP / (2TP + FP + FN), and 0 where the denominator is 0 (no true and
    no predicted windows: scikit-learn's ``zero_division=0``).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    denom = cm.sum(axis=-1) + cm.sum(axis=-2)  # (2TP + FN + FP)
    out = np.zeros_like(tp)
    np.divide(2.0 * tp, denom, out=out, where=denom > 0)
    return out


def macro_f1(cm: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unweighted mean of per-class F1 over ``labels``: ``(..., K, K)`` → ``(...)``."""
    return f1_per_class(cm)[..., labels].mean(axis=-1)


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
# label-array front ends (model selection in cis490.train uses these, so that
# training and the report share one macro F1)


def present_labels(y_true) -> np.ndarray:
    """The sorted classes present in ``y_true``: the default evaluation label set."""
    yt = _as_label_array(y_true, "y_true")
    if yt.size == 0:
        raise ValueError("`y_true` must not be empty")
    return np.unique(yt)


def per_class_f1_score(y_true, y_pred, n_classes: int) -> np.ndarray:
    """F1 of each of the ``n_classes`` classes, float64 ``(K,)`` (0 where 0/0)."""
    yt, yp, k, _ = validate_labels(y_true, y_pred, n_classes=n_classes)
    return f1_per_class(confusion_matrix(yt, yp, k))


def macro_f1_score(y_true, y_pred, *, labels: Sequence[int], n_classes: int | None = None) -> float:
    """Macro F1 over ``labels`` (required: say which classes are averaged).

    Equals ``sklearn.metrics.f1_score(y_true, y_pred, labels=labels,
    average="macro", zero_division=0)``; pass ``labels=present_labels(y_true)``
    for the report's definition.
    """
    if labels is None or np.ndim(labels) != 1 or np.size(labels) == 0:
        raise ValueError("`labels` must be a non-empty sequence of class labels "
                         "(e.g. present_labels(y_true))")
    yt, yp, k, lab = validate_labels(y_true, y_pred, n_classes=n_classes, labels=labels)
    return float(macro_f1(confusion_matrix(yt, yp, k), lab))


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
