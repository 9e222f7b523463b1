"""The one interface every model implements, and its small result records.

Stdlib only (no numpy/torch/xgboost), so ``cis490.models`` stays importable on
a coordinator-only host. The implementations live in the per-model modules.

Array conventions (any data, not only our pipeline's):

- summary models (``gbt``, ``mlp``): ``X`` is ``(n, n_features)`` float;
- sequence models (``cnn``, ``gru``, ``lstm``, ``transformer``): ``X`` is
  ``(n, n_channels, n_steps)`` float32;
- ``NaN`` marks a missing value. The missingness mask is *derived* from it
  (a loader holding an explicit mask writes NaN where the mask is 0, see
  ``cis490.train.data.apply_mask``); there is no separate mask argument.
- ``y`` holds integer class indices ``0..n_classes-1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

__all__ = ["EpochRecord", "FitReport", "Model", "ProgressFn", "StepFn"]


@dataclass(frozen=True)
class EpochRecord:
    """One validation check: the end of an epoch (a net checks after every epoch, or
    every few epochs when an epoch is short: ``FitReport.budget["check_every"]``), or
    of a boosting round for ``gbt``. ``epoch`` counts epochs (rounds) from 1."""

    epoch: int
    epochs: int  # the planned maximum (nets: ``budget["epochs"]``; gbt: max rounds)
    loss: float  # mean class-weighted training loss since the previous check
    val_macro_f1: float
    # for the training curves (metrics.jsonl); not in the checkpoint's history, so a record
    # read back from a checkpoint lacks them and they take no part in comparisons
    val_loss: float | None = field(default=None, compare=False)  # class-weighted, as train
    lr: float | None = field(default=None, compare=False)  # of the epoch's last step (gbt: eta)


ProgressFn = Callable[[EpochRecord], None]
# within an epoch: (epoch, epochs, batches done in this epoch, batches per epoch)
StepFn = Callable[[int, int, int, int], None]


@dataclass(frozen=True)
class FitReport:
    """What ``Model.fit`` returns. The model holds the best-on-val weights.

    ``epochs_run`` is the last epoch trained, ``best_epoch`` the epoch whose
    check was the best; ``history`` holds one record per check. ``budget``
    (the nets) is the planned run, ``cis490.models.rules.Budget.to_dict()``:
    batch size, steps per epoch, epochs, total steps, warmup steps and
    epochs per check.
    """

    epochs_run: int
    best_epoch: int
    best_val_macro_f1: float
    history: tuple[EpochRecord, ...]
    budget: dict[str, int] | None = field(default=None, hash=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_val_macro_f1": self.best_val_macro_f1,
            "history": [
                {"epoch": r.epoch, "loss": r.loss, "val_macro_f1": r.val_macro_f1}
                for r in self.history
            ],
        }
        if self.budget is not None:
            out["budget"] = dict(self.budget)
        return out


@runtime_checkable
class Model(Protocol):
    """fit / predict_proba / save; ``cis490.models.load`` is the inverse of save."""

    name: str  # "gbt", "mlp", ...
    mode: str  # "realistic" | "oracle" | "custom" (array data)
    n_classes: int
    schema_sha256: str

    def fit(
        self,
        X_train: Any,
        y_train: Any,
        X_val: Any,
        y_val: Any,
        *,
        seed: int = 0,
        on_epoch: ProgressFn | None = None,
        on_step: StepFn | None = None,
    ) -> FitReport:
        """Train from scratch; keep the epoch with the best val macro F1. ``on_epoch`` is
        called after each epoch (boosting round), ``on_step`` after each batch (nets)."""
        ...

    def predict_proba(self, X: Any) -> Any:
        """``(n, n_classes)`` float32 class probabilities."""
        ...

    def save(self, directory: str | Path, *, data: dict[str, Any] | None = None) -> Path:
        """Write ``<name>_<mode>.ckpt.json`` + sidecar; return the json's path."""
        ...
