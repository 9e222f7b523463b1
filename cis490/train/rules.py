"""The training rules every model shares, in numpy only (no torch/xgboost).

- class weights: inverse class frequency **of the train slice**,
  ``n / (n_classes * count_c)``, clipped at ``clip`` (an absent class gets
  ``clip``); validation labels never enter;
- model selection metric: macro F1 over an explicit ``labels`` set, the
  report's definition (``cis490.evaluate.metrics.macro_f1_score``; the
  arithmetic exists once, there). Training passes
  ``labels = present_labels(y_val)`` (the classes present in the val truth),
  computed once per fit, so every epoch, early stopping, the recorded best
  and ``val_metrics`` average over the same classes, and predicting a class
  absent from val cannot change the denominator;
- learning rate: linear warmup over ``warmup_frac`` of all steps, then cosine
  to exactly 0 at the last step boundary;
- early stopping: patience counted in epochs without a *strict* improvement
  of val macro F1; the best epoch is the one restored.

Kept apart from the loops so the rules can be checked numerically
(``tests/train/test_train_rules.py``) and shared by the torch loop and XGBoost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EarlyStopping",
    "class_weights",
    "lr_at",
    "macro_f1",
    "per_class_f1",
    "present_labels",
    "warmup_steps",
]


def class_weights(y_train: np.ndarray, n_classes: int, clip: float) -> np.ndarray:
    """Inverse-frequency weights from the train labels, clipped at ``clip``."""
    y = np.asarray(y_train)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("y_train must be a non-empty 1-D array of class indices")
    counts = np.bincount(y.astype(np.int64), minlength=n_classes)[:n_classes]
    with np.errstate(divide="ignore"):
        w = y.size / (n_classes * counts.astype(np.float64))
    return np.minimum(w, float(clip))


def _metrics():
    """``cis490.evaluate.metrics`` (numpy only), imported on first use.

    Not at module level: importing it runs ``cis490.evaluate``'s package
    ``__init__``, whose modules may import ``cis490.models``, which imports
    this module — a cycle at import time, none at call time.
    """
    from cis490.evaluate import metrics

    return metrics


def present_labels(y_true: np.ndarray) -> np.ndarray:
    """The sorted classes present in ``y_true``: the label set of val macro F1."""
    return _metrics().present_labels(y_true)


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """F1 of each class (0 where a class has neither truth nor prediction)."""
    return _metrics().per_class_f1_score(y_true, y_pred, n_classes)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, *,
             labels: np.ndarray) -> float:
    """Macro F1 over ``labels`` (the report's definition; see the module doc).

    ``labels`` is required: pass ``present_labels(y_val)``, computed once per fit.
    """
    return _metrics().macro_f1_score(y_true, y_pred, labels=labels, n_classes=n_classes)


def warmup_steps(total_steps: int, warmup_frac: float) -> int:
    """Steps of linear warmup: ``warmup_frac`` of all steps, at least 1."""
    return max(1, int(math.ceil(warmup_frac * total_steps)))


def lr_at(step: int, total_steps: int, warmup: int, base_lr: float) -> float:
    """Learning rate for optimiser step ``step`` (0-based).

    Warmup: ``base * (step + 1) / warmup`` for ``step < warmup`` (so the last
    warmup step runs at ``base``); then ``base * (1 + cos(pi * p)) / 2`` with
    ``p = (step - warmup) / (total - warmup)``, which reaches 0 at
    ``step == total``.
    """
    if step < warmup:
        return base_lr * (step + 1) / warmup
    span = max(1, total_steps - warmup)
    p = min(1.0, (step - warmup) / span)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * p))


@dataclass
class EarlyStopping:
    """Track the best val macro F1; say when ``patience`` epochs brought none."""

    patience: int
    best_epoch: int = 0
    best_score: float = -math.inf

    def update(self, epoch: int, score: float) -> bool:
        """Record ``epoch``'s score; True when it is the new best."""
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        return epoch - self.best_epoch >= self.patience
