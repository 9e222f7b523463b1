"""The training rules every model shares, in numpy only (no torch/xgboost).

- class weights: inverse class frequency **of the train slice**,
  ``n / (n_classes * count_c)``, clipped at ``clip`` (an absent class gets
  ``clip``); validation labels never enter;
- model selection metric: macro F1 over an explicit ``labels`` set, the
  report's definition (``cis490.models.f1.macro_f1_score``, which
  ``cis490.evaluate.metrics`` re-exports: the arithmetic exists once). Training passes
  ``labels = present_labels(y_val)`` (the classes present in the val truth),
  computed once per fit, so every epoch, early stopping, the recorded best
  and ``val_metrics`` average over the same classes, and predicting a class
  absent from val cannot change the denominator;
- training budget (the nets): :func:`plan_budget` turns ``(n_train, config)``
  into the batch size, steps per epoch, epochs, total optimizer steps and
  the validation-check schedule (see its doc);
- learning rate: linear warmup over ``warmup_frac`` of all steps, then cosine
  to exactly 0 at the last step boundary;
- early stopping: patience counted in validation checks (one epoch, or a few
  when epochs are short: :func:`plan_budget`) without an improvement of val
  macro F1: strictly higher, or (the nets, ``ties_improve``) equal, so that
  of equal checks the later, longer-trained one is kept; the best check is
  the one restored.

Kept apart from the loops so the rules can be checked numerically
(``tests/train/test_train_rules.py``) and shared by the torch loop and XGBoost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cis490.models import f1

__all__ = [
    "AUTO_BATCH_MAX",
    "AUTO_BATCH_MIN",
    "AUTO_BATCHES_PER_EPOCH",
    "Budget",
    "EarlyStopping",
    "auto_batch_size",
    "class_weights",
    "lr_at",
    "macro_f1",
    "per_class_f1",
    "plan_budget",
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


def present_labels(y_true: np.ndarray) -> np.ndarray:
    """The sorted classes present in ``y_true``: the label set of val macro F1."""
    return f1.present_labels(y_true)


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """F1 of each class (0 where a class has neither truth nor prediction)."""
    return f1.per_class_f1_score(y_true, y_pred, n_classes)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, *,
             labels: np.ndarray) -> float:
    """Macro F1 over ``labels`` (the report's definition; see the module doc).

    ``labels`` is required: pass ``present_labels(y_val)``, computed once per fit.
    """
    return f1.macro_f1_score(y_true, y_pred, labels=labels, n_classes=n_classes)


# The automatic batch size (config ``batch_size = 0``): at least AUTO_BATCHES_PER_EPOCH
# batches an epoch, never fewer than AUTO_BATCH_MIN rows nor more than AUTO_BATCH_MAX.
AUTO_BATCH_MAX = 256
AUTO_BATCH_MIN = 8
AUTO_BATCHES_PER_EPOCH = 64


def auto_batch_size(n_train: int) -> int:
    """``min(256, max(8, n_train // 64))``, at most ``n_train``."""
    n = int(n_train)
    return max(1, min(n, AUTO_BATCH_MAX, max(AUTO_BATCH_MIN, n // AUTO_BATCHES_PER_EPOCH)))


@dataclass(frozen=True)
class Budget:
    """A net's training run, planned before it starts (:func:`plan_budget`)."""

    batch_size: int  # the largest batch; an epoch's batches differ by at most one row
    steps_per_epoch: int  # ceil(n_train / batch_size)
    epochs: int  # planned passes over train: a whole number of checks
    total_steps: int  # epochs * steps_per_epoch: the cosine schedule's length
    warmup_steps: int
    check_every: int  # epochs per validation check

    @property
    def checks(self) -> int:
        return self.epochs // self.check_every

    def is_check(self, epoch: int) -> bool:
        """True when a validation check ends ``epoch`` (counted from 1)."""
        return epoch % self.check_every == 0

    def to_dict(self) -> dict[str, int]:
        return {"batch_size": self.batch_size, "steps_per_epoch": self.steps_per_epoch,
                "epochs": self.epochs, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "check_every": self.check_every}


def plan_budget(n_train: int, cfg) -> Budget:
    """The budget of a net trained on ``n_train`` rows with config ``cfg``.

    ``cfg`` is a ``TorchConfig`` (any object with ``epochs``, ``batch_size``,
    ``min_steps``, ``min_check_steps``, ``warmup_frac``):

    - batch: ``cfg.batch_size`` if positive, else :func:`auto_batch_size`;
      at most ``n_train``. ``steps_per_epoch = ceil(n_train / batch)``;
    - check_every: 1, or ``ceil(min_check_steps / steps_per_epoch)`` when an
      epoch has fewer than ``min_check_steps`` steps;
    - epochs: ``max(cfg.epochs, ceil(min_steps / steps_per_epoch))`` rounded
      up to a multiple of ``check_every`` (the last epoch ends in a check);
    - total steps ``epochs * steps_per_epoch``, warmup ``warmup_steps(total, warmup_frac)``.

    With ``batch_size = B > 0``, ``min_steps = 0`` and ``min_check_steps = 0``
    the run is the seed's: exactly ``cfg.epochs`` epochs of ``B``-row batches,
    a check after each.
    """
    n = int(n_train)
    if n < 1:
        raise ValueError(f"n_train must be positive, got {n_train}")
    batch = min(n, int(cfg.batch_size)) if cfg.batch_size > 0 else auto_batch_size(n)
    spe = -(-n // batch)
    check_every = 1 if spe >= cfg.min_check_steps else -(-int(cfg.min_check_steps) // spe)
    epochs = max(int(cfg.epochs), -(-int(cfg.min_steps) // spe))
    epochs = check_every * -(-epochs // check_every)
    total = epochs * spe
    return Budget(batch, spe, epochs, total, warmup_steps(total, cfg.warmup_frac), check_every)


def epoch_batches(order: np.ndarray, steps: int) -> list[np.ndarray]:
    """A permutation cut into ``steps`` batches of near-equal size, each sorted (ascending
    rows: short reads from the shards); sizes differ by at most one row, so no batch is
    a tiny remainder (BatchNorm's statistics, the loss's weight)."""
    return [np.sort(part) for part in np.array_split(order, steps)]


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
    """Track the best val macro F1; say when ``patience`` checks brought none.

    ``epoch`` counts checks (the nets: one check per ``Budget.check_every``
    epochs; gbt: boosting rounds). A check improves on the best when its score
    is strictly higher or, with ``ties_improve``, equal. The nets tie-improve:
    a small val set (10-14 windows on GunPoint or ItalyPowerDemand) gives the
    same macro F1 at most checks, and the later of equal checks has trained
    longer on a cosine schedule that is nearer its end (ItalyPowerDemand's FCN:
    0.947 test accuracy at the first of 22 equal checks, 0.970 at the last);
    its val loss is no guide there, as it grows with the confidence of one
    wrong window. gbt keeps the strict rule (its rounds tie often and a later
    round is only a bigger model).
    """

    patience: int
    ties_improve: bool = False
    best_epoch: int = 0
    best_score: float = -math.inf

    def update(self, epoch: int, score: float) -> bool:
        """Record ``epoch``'s score; True when it is the new best."""
        if score > self.best_score or (self.ties_improve and score == self.best_score):
            self.best_score, self.best_epoch = score, epoch
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        return epoch - self.best_epoch >= self.patience
