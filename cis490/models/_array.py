"""What all seven models share, independent of the library that trains them.

``ArrayModel`` holds the identity of a model (name, mode, input shape,
classes, config, schema hash), validates arrays at the boundary (messages name
the argument), fits the normalisation statistics on the train slice only, and
assembles the checkpoint metadata. Subclasses add the library part:
``_fit`` (train, keep the best-on-val state), ``_predict`` and the sidecar
bytes.

Normalisation: per feature (summary) or per channel over all time steps
(sequence), mean and standard deviation over the finite train values in
float64; an all-missing column gets mean 0, a constant one std 1. After
standardisation NaN becomes 0 (``standardise``); sequence models also see the
0/1 missingness mask as extra input channels (``cis490.models._torchbase``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cis490.models import checkpoint as ckpt
from cis490.models import configs, rules
from cis490.models.base import EpochRecord, FitReport, ProgressFn, StepFn

__all__ = ["ArrayModel", "chunks", "default_schema_sha256", "fit_normalisation", "is_lazy",
           "standardise"]

CHUNK_ROWS = 4096  # rows read at a time from a lazy array (statistics, digests, predictions)


def is_lazy(X: Any) -> bool:
    """A loader's on-disk view (``WindowArray`` / ``RowArray``, marked ``lazy_rows``): read by
    row index, never whole. Anything else (a DataFrame, a tensor, a list) goes through
    ``np.asarray`` as before."""
    return getattr(type(X), "lazy_rows", False) is True


def chunks(n: int, size: int = CHUNK_ROWS):
    """``slice`` objects covering ``range(n)`` in order, ``size`` rows each."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))

DEFAULT_MODE = "custom"


def default_schema_sha256(input_shape: dict[str, int], classes: Sequence[str]) -> str:
    """Schema hash of array data that carries no schema file: shape + classes."""
    return ckpt.sha256_bytes(ckpt.canonical_json({"input": input_shape, "classes": list(classes)}))


def fit_normalisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (summary) or per-channel (sequence) mean/std of finite values."""
    axes = (0,) if X.ndim == 2 else (0, 2)
    n_cols = X.shape[1]
    total = np.zeros(n_cols)
    total_sq = np.zeros(n_cols)
    count = np.zeros(n_cols)
    for sl in chunks(X.shape[0]):  # one streaming pass: X may be a lazy on-disk view
        chunk = np.asarray(X[sl], dtype=np.float64)
        finite = np.isfinite(chunk)
        chunk = np.where(finite, chunk, 0.0)
        total += chunk.sum(axis=axes)
        total_sq += (chunk * chunk).sum(axis=axes)
        count += finite.sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, 0.0)
        var = np.where(count > 0, total_sq / count - mean * mean, 1.0)
    std = np.sqrt(np.maximum(var, 0.0))
    std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return mean, std


def standardise(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``((X - mean) / std`` with NaN -> 0, float32; and the finite-mask."""
    X = np.asarray(X, dtype=np.float32)
    shape = (1, -1) if X.ndim == 2 else (1, -1, 1)
    mask = np.isfinite(X)
    z = (X - mean.astype(np.float32).reshape(shape)) / std.astype(np.float32).reshape(shape)
    return np.where(mask, z, np.float32(0.0)).astype(np.float32, copy=False), mask


def _digest(X: np.ndarray, y: np.ndarray) -> str:
    """sha256 of the arrays' shapes and bytes (recorded as a data digest)."""
    h = hashlib.sha256(repr((X.shape, str(X.dtype), y.shape)).encode())
    for sl in chunks(X.shape[0]):
        h.update(np.ascontiguousarray(X[sl]).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return h.hexdigest()


class ArrayModel:
    """Base of the seven models (see module doc)."""

    name: str = ""
    kind: str = ""  # "summary" | "sequence"
    sidecar_ext: str = ""
    libraries: tuple[str, ...] = ("numpy",)
    # whether ``_fit`` keeps and continues a resume state (``self.resume``, a
    # ``cis490.models.resume.ResumeHook``); minirocket does not: it restarts from scratch
    resumable: bool = False

    def __init__(
        self,
        *,
        config: configs.TrainConfig,
        n_classes: int,
        input_shape: dict[str, int],
        mode: str = DEFAULT_MODE,
        classes: Sequence[str] | None = None,
        schema_sha256: str | None = None,
    ) -> None:
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", mode):  # part of the file names
            raise ValueError(f"mode {mode!r}: use 1-32 lowercase letters, digits, '_' or '-'")
        self.config = config
        self.n_classes = int(n_classes)
        self.input_shape = dict(input_shape)
        self.mode = mode
        self.classes = [str(c) for c in (classes or range(n_classes))]
        if len(self.classes) != n_classes:
            raise ValueError(f"classes has {len(self.classes)} names for n_classes={n_classes}")
        self.schema_sha256 = schema_sha256 or default_schema_sha256(self.input_shape, self.classes)
        self.norm_mean: np.ndarray | None = None
        self.norm_std: np.ndarray | None = None
        self.class_weights: np.ndarray | None = None
        self.report: FitReport | None = None
        self.val_metrics: dict[str, Any] | None = None
        self.digests: dict[str, Any] = {}  # data digests/provenance for the checkpoint
        self.scratch_dir: str | None = None  # private local files of a fit (gbt's page cache)
        self.resume = None  # a ResumeHook for the next fit (the driver's --resume-dir); never saved

    # -- input validation ----------------------------------------------------

    def _check_X(self, X: Any, arg: str) -> np.ndarray:
        X = X if isinstance(X, np.ndarray) or is_lazy(X) else np.asarray(X)
        if self.kind == "summary":
            want = (self.input_shape["n_features"],)
            if X.ndim != 2 or X.shape[1:] != want:
                raise ValueError(f"{arg} must have shape (n, {want[0]}), got {X.shape}")
        else:
            want = (self.input_shape["n_channels"], self.input_shape["n_steps"])
            if X.ndim != 3 or X.shape[1:] != want:
                raise ValueError(f"{arg} must have shape (n, {want[0]}, {want[1]}), got {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{arg} is empty")
        if not np.issubdtype(X.dtype, np.floating):
            if is_lazy(X):
                raise ValueError(f"{arg} must hold floats, got {X.dtype}")
            X = X.astype(np.float32)
        return X

    def _check_y(self, y: Any, n: int, arg: str) -> np.ndarray:
        y = np.asarray(y)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{arg} must be {n} integer class indices, got {y.dtype} {y.shape}")
        if y.min() < 0 or y.max() >= self.n_classes:
            raise ValueError(f"{arg} holds labels outside 0..{self.n_classes - 1}")
        return y.astype(np.int64)

    # -- the interface -------------------------------------------------------

    def fit(self, X_train, y_train, X_val, y_val, *, seed: int = 0,
            on_epoch: ProgressFn | None = None, on_step: StepFn | None = None) -> FitReport:
        X_train = self._check_X(X_train, "X_train")
        X_val = self._check_X(X_val, "X_val")
        y_train = self._check_y(y_train, X_train.shape[0], "y_train")
        y_val = self._check_y(y_val, X_val.shape[0], "y_val")
        self.class_weights = rules.class_weights(  # train labels only
            y_train, self.n_classes, self.config.class_weight_clip)
        self.digests = {"train_sha256": _digest(X_train, y_train),
                        "val_sha256": _digest(X_val, y_val)}
        self.report = self._fit(X_train, y_train, X_val, y_val, int(seed), on_epoch, on_step)
        pred = self.predict_proba(X_val).argmax(axis=1)
        labels = rules.present_labels(y_val)  # the loops' (and the report's) label set
        self.val_metrics = {
            "macro_f1": rules.macro_f1(y_val, pred, self.n_classes, labels=labels),
            "per_class_f1": [float(v) for v in rules.per_class_f1(y_val, pred, self.n_classes)],
            "n_train": int(X_train.shape[0]),
            "n_val": int(X_val.shape[0]),
            "seed": int(seed),
        }
        return self.report

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.report is None:
            raise RuntimeError(f"{self.name} model is not fitted")
        return self._predict(self._check_X(X, "X"))

    def save(self, directory: str | Path, *, data: dict[str, Any] | None = None) -> Path:
        if self.report is None:
            raise RuntimeError(f"{self.name} model is not fitted; nothing to save")
        meta = {
            "model": self.name,
            "mode": self.mode,
            "kind": self.kind,
            "input": self.input_shape,
            "n_classes": self.n_classes,
            "classes": self.classes,
            "config": configs.config_to_dict(self.config),
            "schema_sha256": self.schema_sha256,
            "normalisation": None if self.norm_mean is None else {
                "axis": "feature" if self.kind == "summary" else "channel",
                "mean": [float(v) for v in self.norm_mean],
                "std": [float(v) for v in self.norm_std],
            },
            "class_weights": [float(v) for v in self.class_weights],
            "fit": self.report.to_dict(),
            "val_metrics": self.val_metrics,
            "data": {**self.digests, **(data or {})},
            "libraries": ckpt.library_versions(*self.libraries),
        }
        return ckpt.write_checkpoint(directory, f"{self.name}_{self.mode}", meta,
                                     self._sidecar_bytes(), self.sidecar_ext)

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], sidecar: bytes) -> "ArrayModel":
        model = cls(
            config=configs.config_from_dict(meta["model"], meta["config"]),
            n_classes=meta["n_classes"], input_shape=meta["input"], mode=meta["mode"],
            classes=meta["classes"], schema_sha256=meta["schema_sha256"],
        )
        norm = meta.get("normalisation")
        if norm is not None:
            model.norm_mean = np.asarray(norm["mean"], dtype=np.float64)
            model.norm_std = np.asarray(norm["std"], dtype=np.float64)
        model.class_weights = np.asarray(meta["class_weights"], dtype=np.float64)
        fit = meta["fit"]
        budget = fit.get("budget")  # the nets' planned run (rules.plan_budget)
        epochs = budget["epochs"] if budget else model.config.epochs
        model.report = FitReport(
            epochs_run=fit["epochs_run"], best_epoch=fit["best_epoch"],
            best_val_macro_f1=fit["best_val_macro_f1"],
            history=tuple(EpochRecord(epochs=epochs, **h) for h in fit["history"]),
            budget=budget,
        )
        model.val_metrics = meta["val_metrics"]
        model.digests = dict(meta.get("data") or {})
        model._load_sidecar(sidecar)
        return model

    # -- for subclasses --------------------------------------------------------

    def _fit(self, X_train, y_train, X_val, y_val, seed, on_epoch, on_step=None) -> FitReport:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _sidecar_bytes(self) -> bytes:
        raise NotImplementedError

    def _load_sidecar(self, data: bytes) -> None:
        raise NotImplementedError
