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
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from cis490.models.base import EpochRecord, FitReport, ProgressFn
from cis490.models.configs import GBTConfig
from cis490.train import rules

__all__ = ["fit_xgb", "xgb_params"]


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
        record = EpochRecord(rnd, self.cfg.epochs, float(evals_log["train"]["mlogloss"][-1]), f1)
        self.history.append(record)
        self.stopper.update(rnd, record.val_macro_f1)
        if self.on_epoch is not None:
            self.on_epoch(record)
        return self.stopper.should_stop(rnd)


def fit_xgb(
    X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
    cfg: GBTConfig, class_weights: np.ndarray, n_classes: int, seed: int,
    on_epoch: ProgressFn | None = None,
) -> tuple[xgb.Booster, FitReport]:
    """Boost up to ``cfg.epochs`` rounds; return the booster cut to its best round."""
    dtrain = xgb.DMatrix(X_train, label=y_train, weight=class_weights[y_train],
                         nthread=cfg.threads)
    dval = xgb.DMatrix(X_val, label=y_val, nthread=cfg.threads)
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
