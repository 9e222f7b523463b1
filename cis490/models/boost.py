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

Resume (docs/MODELS.md, "Resuming"): the random draws of a round depend on
nothing but ``(seed, round)``, so a fit continued from a saved booster draws
what an uninterrupted one would. Two settings make it so (XGBoost 3.2's
``src/learner.cc`` and ``src/tree/updater_quantile_hist.cc``):
``seed_per_iteration = True`` reseeds XGBoost's global RNG at every round
(``seed * 127 + round``; without it the RNG is seeded once per training call
and a continuation would repeat the first rounds' draws), and every round
starts with a fresh tree updater (``load_config(save_config())``): the hist
updater keeps its column sampler, seeded once from the global RNG when it is
first used, for its whole life, so a continuation's new updater would sample
other columns. The rounds are :func:`_boost`'s, ``xgb.train``'s own loop
(``Booster(params, cache, model_file=booster)``, ``update``, the
``CallbackContainer``) except that a continuation numbers its rounds from the
saved booster's count, as ``seed_per_iteration`` needs (``xgb.train``
restarts at 0). These settings changed gbt's trees (and bytes) once, when
resuming was introduced; same seed, same data still give the same bytes.
After every round the state (the booster as UBJSON, early stopping, the
history) is handed to the driver at most every ``save_every_s`` (2 s), and
always after the last round and the round during which a signal asked to stop.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import xgboost as xgb
from xgboost.callback import CallbackContainer

from cis490.models import rules
from cis490.models.base import EpochRecord, FitReport, ProgressFn
from cis490.models.configs import GBTConfig
from cis490.models.resume import ResumeHook, ResumeState, TrainingInterrupted
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
        "seed_per_iteration": True,  # a round's draws depend on (seed, round) only: resumable
        "eval_metric": "mlogloss",
        "verbosity": 0,
    }


def _record_dict(r: EpochRecord) -> dict:
    return {"epoch": r.epoch, "epochs": r.epochs, "loss": r.loss, "val_macro_f1": r.val_macro_f1,
            "val_loss": r.val_loss, "lr": r.lr}


class _F1EarlyStop(xgb.callback.TrainingCallback):
    def __init__(self, cfg: GBTConfig, on_epoch: ProgressFn | None, dval: xgb.DMatrix,
                 y_val: np.ndarray, n_classes: int, resume: ResumeHook | None = None):
        super().__init__()
        self.cfg = cfg
        self.on_epoch = on_epoch
        self.dval, self.y_val, self.n_classes = dval, y_val, n_classes
        self.labels = rules.present_labels(y_val)  # one label set for every round
        self.stopper = rules.EarlyStopping(cfg.patience)
        self.history: list[EpochRecord] = []
        self.resume = resume
        self.done = False  # the last round or early stopping ended the training
        self.interrupted: TrainingInterrupted | None = None
        self.last_save = time.monotonic()

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
        stop = self.stopper.should_stop(rnd)
        if self.resume is None:
            return stop
        self.done = stop or rnd >= self.cfg.epochs
        signame = self.resume.stop()
        saved = False
        if self.done or signame is not None or time.monotonic() - self.last_save >= self.resume.save_every_s:
            saved = self.resume.save(self.state(model, rnd))
            self.last_save = time.monotonic()
        if signame is not None and not self.done:
            self.interrupted = TrainingInterrupted(signame, rnd + 1, 0, saved)
            return True
        return stop

    def state(self, booster: xgb.Booster, rounds: int) -> ResumeState:
        meta = {"loop": "xgboost", "rounds": rounds, "done": self.done, "epochs": self.cfg.epochs,
                "stopper": {"best_epoch": self.stopper.best_epoch, "best_score": self.stopper.best_score},
                "history": [_record_dict(r) for r in self.history]}
        return ResumeState(meta, {"booster": bytes(booster.save_raw(raw_format="ubj"))})

    def restore(self, state: ResumeState) -> xgb.Booster:
        """Continue from ``state``: the booster of its rounds (raises on anything that does
        not fit this fit)."""
        m = state.meta
        if m.get("loop") != "xgboost":
            raise ValueError(f"a {m.get('loop')!r} state, not the xgboost loop's")
        rounds, done = m["rounds"], m["done"]
        if not (isinstance(rounds, int) and isinstance(done, bool) and 1 <= rounds <= self.cfg.epochs):
            raise ValueError(f"rounds {rounds!r} outside 1..{self.cfg.epochs}")
        if m["epochs"] != self.cfg.epochs or len(m["history"]) != rounds:
            raise ValueError("history does not match the rounds")
        best_epoch, best_score = m["stopper"]["best_epoch"], m["stopper"]["best_score"]
        if not (isinstance(best_epoch, int) and 1 <= best_epoch <= rounds and isinstance(best_score, float)):
            raise ValueError("early-stopping state outside the rounds")
        history = []
        for d in m["history"]:
            if not all(isinstance(d[k], (int, float)) for k in ("epoch", "loss", "val_macro_f1")):
                raise TypeError("a history record of the wrong type")
            history.append(EpochRecord(d["epoch"], d["epochs"], d["loss"], d["val_macro_f1"],
                                       val_loss=d["val_loss"], lr=d["lr"]))
        if [r.epoch for r in history] != list(range(1, rounds + 1)):
            raise ValueError("history rounds are not 1..rounds")
        booster = xgb.Booster(params={"nthread": self.cfg.threads})
        booster.load_model(bytearray(state.blobs["booster"]))
        if booster.num_boosted_rounds() != rounds:
            raise ValueError(f"the booster has {booster.num_boosted_rounds()} rounds, not {rounds}")
        self.history, self.done = history, done
        self.stopper.best_epoch, self.stopper.best_score = best_epoch, best_score
        return booster


def _boost(params: dict, dtrain: xgb.DMatrix, evals: list, rounds: int,
           callbacks: list, booster: xgb.Booster | None = None) -> xgb.Booster:
    """``xgb.train(params, dtrain, rounds, evals=evals, callbacks=callbacks,
    xgb_model=booster)``, its loop as XGBoost 3.2 writes it, except that a continuation
    numbers its rounds on from ``booster``'s (``seed_per_iteration`` seeds a round by its
    number) and that every round gets a fresh tree updater (module doc)."""
    bst = xgb.Booster(params, [dtrain] + [d for d, _ in evals], model_file=booster)
    start = 0 if booster is None else bst.num_boosted_rounds()
    container = CallbackContainer(callbacks, metric=None, output_margin=False)
    bst = container.before_training(bst)
    for i in range(start, rounds):
        if container.before_iteration(bst, i, dtrain, evals):
            break
        bst.load_config(bst.save_config())  # a new updater: its column sampler seeded this round
        bst.update(dtrain, iteration=i)
        if container.after_iteration(bst, i, dtrain, evals):
            break
    bst = container.after_training(bst)
    return bst.reset()


def fit_xgb(
    X_train, y_train: np.ndarray, X_val, y_val: np.ndarray, *,
    cfg: GBTConfig, class_weights: np.ndarray, n_classes: int, seed: int,
    on_epoch: ProgressFn | None = None, scratch: str | None = None,
    budget: int | None = None, resume: ResumeHook | None = None,
) -> tuple[xgb.Booster, FitReport]:
    """Boost up to ``cfg.epochs`` rounds; return the booster cut to its best round.

    With ``resume``: continue from ``resume.state`` when it applies, hand the state to
    ``resume.save`` (module doc), and stop with :class:`TrainingInterrupted` after the
    round during which ``resume.stop()`` says so (its state saved first)."""
    dtrain = quantile_matrix(X_train, y_train, class_weights[y_train], threads=cfg.threads,
                             scratch=scratch, budget=budget)
    # val weighted like train, so its mlogloss is the nets' class-weighted val loss; the
    # weights change only that eval number, never the trees. Binned with train's cuts.
    dval = quantile_matrix(X_val, y_val, class_weights[y_val], threads=cfg.threads, ref=dtrain,
                           scratch=scratch, budget=budget)
    y_val = np.asarray(y_val, dtype=np.int64)
    stop = _F1EarlyStop(cfg, on_epoch, dval, y_val, n_classes, resume)
    booster = None
    if resume is not None and resume.state is not None:
        try:
            booster = stop.restore(resume.state)
        except Exception as exc:  # a state this fit cannot continue: from scratch, said once
            resume.rejected(f"cannot continue from it ({type(exc).__name__}: {exc})")
            stop, booster = _F1EarlyStop(cfg, on_epoch, dval, y_val, n_classes, resume), None
        else:
            rounds = len(stop.history)
            resume.restored(rounds + 1, 0, rounds, tuple(stop.history))
    if resume is not None:
        resume.begin()
    if not stop.done:
        booster = _boost(xgb_params(cfg, n_classes, seed), dtrain,
                         [(dtrain, "train"), (dval, "val")], cfg.epochs, [stop], booster)
    if stop.interrupted is not None:
        raise stop.interrupted
    best = stop.stopper.best_epoch
    booster = booster[:best]
    report = FitReport(epochs_run=len(stop.history), best_epoch=best,
                       best_val_macro_f1=stop.stopper.best_score, history=tuple(stop.history))
    return booster, report
