"""The XGBoost counterpart of the torch loop (same rules, boosting rounds as epochs).

- objective ``multi:softprob``, ``tree_method=hist``, ``nthread`` and
  ``seed`` fixed from the config and the job's seed;
- the train rows are weighted by the class weights of ``rules.class_weights``
  (train slice only), exactly as the nets' cross-entropy;
- after every round a callback reads the weighted train ``mlogloss`` and
  computes the val macro F1 over the classes present in ``y_val``
  (``rules.present_labels``, fixed once per fit: the report's definition) from
  the booster's val predictions — itself, not through a custom metric, whose
  values XGBoost rounds to 6 decimals in its eval log; it emits a progress
  record, and stops after ``patience`` rounds without a strict improvement;
  the booster is then cut to the best round (``booster[:best]``), so the
  saved model *is* the best-on-val model.

Streaming: the matrices are built by ``xgboost.QuantileDMatrix`` from a
:class:`RowBatches` iterator (``ITER_ROWS`` rows at a time, read from a lazy
on-disk view or an array), so the float features are never held whole:
XGBoost keeps only their quantised form (with its sketch and index: ~3.6
bytes per value on random data, ~7 on real features, +121 MiB for 81 498 x
162 values; counted as ``QUANTISED_BYTES_PER_VALUE`` = 8). When that would
pass ``CIS490_XGB_MEMORY_GIB`` (default 0.5 GiB, about 0.4 M train windows of
the realistic features: beyond the benchmark stores, short of the full
store's ~1.4 M), the train and val matrices are
``ExtMemQuantileDMatrix`` with their pages cached in the job's scratch
directory (measured: 400 k rows x 162 features, 170 MiB in memory against
47 MiB external, 15 % slower to train; at 81 k train windows both peaked at
~355 MiB). Both give the same trees, byte for byte, as
the plain ``DMatrix`` of the whole array (checked when this was written with
XGBoost 3.2, and by the tests: in-memory vs external vs array input).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import xgboost as xgb

from cis490.models import rules
from cis490.models.base import EpochRecord, FitReport, ProgressFn
from cis490.models.configs import GBTConfig
from cis490.common import InputError

__all__ = ["ITER_ROWS", "RowBatches", "fit_xgb", "memory_budget_bytes", "quantile_matrix",
           "xgb_params"]

ITER_ROWS = 16384  # 14 MB of float32 at 211 features: the batch term stays small


QUANTISED_BYTES_PER_VALUE = 8
DEFAULT_MEMORY_GIB = 0.5


def memory_budget_bytes() -> int:
    """Largest quantised matrix kept in memory (``CIS490_XGB_MEMORY_GIB``, default 0.5)."""
    raw = os.environ.get("CIS490_XGB_MEMORY_GIB", str(DEFAULT_MEMORY_GIB))
    try:
        gib = float(raw)
    except ValueError:
        raise InputError(f"CIS490_XGB_MEMORY_GIB={raw!r}: use a number of GiB") from None
    return int(gib * (1 << 30))


class RowBatches(xgb.DataIter):
    """``ITER_ROWS``-row batches of ``X`` (array or lazy view) with labels and weights."""

    def __init__(self, X, y: np.ndarray, weight: np.ndarray | None = None, *,
                 rows: int = ITER_ROWS, cache_prefix: str | None = None) -> None:
        self.X, self.y, self.weight, self.rows = X, y, weight, int(rows)
        self._at = 0
        # on_host=False: external-memory pages go to the cache files, not host memory
        super().__init__(cache_prefix=cache_prefix, release_data=True, on_host=cache_prefix is None)

    def next(self, input_data) -> bool:
        n = self.X.shape[0]
        if self._at >= n:
            return False
        sl = slice(self._at, min(n, self._at + self.rows))
        kw = {"data": np.ascontiguousarray(self.X[sl], dtype=np.float32), "label": self.y[sl]}
        if self.weight is not None:
            kw["weight"] = self.weight[sl]
        input_data(**kw)
        self._at = sl.stop
        return True

    def reset(self) -> None:
        self._at = 0


def quantile_matrix(X, y: np.ndarray, weight: np.ndarray | None, *, threads: int,
                    ref: xgb.DMatrix | None = None, scratch: str | None = None,
                    budget: int | None = None) -> xgb.DMatrix:
    """``QuantileDMatrix`` of ``X`` streamed in batches, external memory past ``budget``."""
    quantised = int(X.shape[0]) * int(X.shape[1]) * QUANTISED_BYTES_PER_VALUE
    if quantised > (memory_budget_bytes() if budget is None else budget):
        prefix = os.path.join(scratch or tempfile.gettempdir(), f"xgb-{os.getpid()}-{id(X):x}")
        return xgb.ExtMemQuantileDMatrix(RowBatches(X, y, weight, cache_prefix=prefix),
                                         missing=np.nan, nthread=threads, ref=ref)
    return xgb.QuantileDMatrix(RowBatches(X, y, weight), missing=np.nan, nthread=threads, ref=ref)


def xgb_params(cfg: GBTConfig, n_classes: int, seed: int) -> dict:
    return {
        "objective": "multi:softprob",
        "num_class": n_classes,
        "tree_method": "hist",
        "max_depth": cfg.max_depth,
        "eta": cfg.learning_rate,
        "subsample": cfg.subsample,
        "colsample_bytree": cfg.colsample_bytree,
        "min_child_weight": cfg.min_child_weight,
        "lambda": cfg.reg_lambda,
        "nthread": cfg.threads,
        "seed": seed,
        "eval_metric": "mlogloss",
        "verbosity": 0,
    }


class _F1EarlyStop(xgb.callback.TrainingCallback):
    def __init__(self, cfg: GBTConfig, on_epoch: ProgressFn | None, dval: xgb.DMatrix,
                 y_val: np.ndarray, n_classes: int):
        super().__init__()
        self.cfg = cfg
        self.on_epoch = on_epoch
        self.dval, self.y_val, self.n_classes = dval, y_val, n_classes
        self.labels = rules.present_labels(y_val)  # one label set for every round
        self.stopper = rules.EarlyStopping(cfg.patience)
        self.history: list[EpochRecord] = []

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        rnd = epoch + 1  # XGBoost counts from 0; our records count from 1
        # dval is one of the evals, so this prediction comes from XGBoost's cache
        pred = model.predict(self.dval, training=False).reshape(-1, self.n_classes).argmax(axis=1)
        f1 = rules.macro_f1(self.y_val, pred, self.n_classes, labels=self.labels)
        record = EpochRecord(rnd, self.cfg.epochs, float(evals_log["train"]["mlogloss"][-1]), f1,
                             val_loss=float(evals_log["val"]["mlogloss"][-1]),
                             lr=float(self.cfg.learning_rate))
        self.history.append(record)
        self.stopper.update(rnd, record.val_macro_f1)
        if self.on_epoch is not None:
            self.on_epoch(record)
        return self.stopper.should_stop(rnd)


def fit_xgb(
    X_train, y_train: np.ndarray, X_val, y_val: np.ndarray, *,
    cfg: GBTConfig, class_weights: np.ndarray, n_classes: int, seed: int,
    on_epoch: ProgressFn | None = None, scratch: str | None = None,
    budget: int | None = None,
) -> tuple[xgb.Booster, FitReport]:
    """Boost up to ``cfg.epochs`` rounds; return the booster cut to its best round."""
    dtrain = quantile_matrix(X_train, y_train, class_weights[y_train], threads=cfg.threads,
                             scratch=scratch, budget=budget)
    # val weighted like train, so its mlogloss is the nets' class-weighted val loss; the
    # weights change only that eval number, never the trees. Binned with train's cuts.
    dval = quantile_matrix(X_val, y_val, class_weights[y_val], threads=cfg.threads, ref=dtrain,
                           scratch=scratch, budget=budget)
    stop = _F1EarlyStop(cfg, on_epoch, dval, np.asarray(y_val, dtype=np.int64), n_classes)
    booster = xgb.train(
        xgb_params(cfg, n_classes, seed), dtrain, num_boost_round=cfg.epochs,
        evals=[(dtrain, "train"), (dval, "val")], verbose_eval=False, callbacks=[stop],
    )
    best = stop.stopper.best_epoch
    booster = booster[:best]
    report = FitReport(epochs_run=len(stop.history), best_epoch=best,
                       best_val_macro_f1=stop.stopper.best_score, history=tuple(stop.history))
    return booster, report
