"""Macro F1 from confusion counts: the one definition training and evaluation share.

Model selection while training (``cis490.models.rules``: early stopping, the
recorded best, ``val_metrics``) and the evaluation report
(``cis490.evaluate.metrics``, which re-exports every name here) score with
these functions, so a model is selected by exactly the number the report
gives it. The definition (the evaluation label set, zero division) is
explained in ``cis490.evaluate.metrics`` and docs/EVALUATION.md; in short,
``macro_f1_score(y_true, y_pred, labels=labels)`` equals scikit-learn's
``f1_score(y_true, y_pred, labels=labels, average='macro', zero_division=0)``.

Every confusion-matrix function accepts a stack ``(..., K, K)`` (rows: true
class, columns: predicted class). Numpy only; imports nothing of cis490.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "confusion_matrix",
    "evaluation_labels",
    "f1_per_class",
    "macro_f1",
    "macro_f1_score",
    "per_class_f1_score",
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
    """The classes macro F1 averages over: those present in ``y_true``, or ``labels``."""
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


# --------------------------------------------------------------------------
# algorithms (inputs already validated)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``C[t, p]`` = number of windows of true class t predicted p; int64 (K, K)."""
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


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


# --------------------------------------------------------------------------
# label-array front ends


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
