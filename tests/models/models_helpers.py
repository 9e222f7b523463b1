"""Synthetic, learnable array tasks for the model suite (tiny: the suite runs on 2 cores)."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgboost")

N_CLASSES = 4
N_CHANNELS = 5
N_STEPS = 12
N_FEATURES = 2 * N_CHANNELS

# Small, fast hyper per model: enough to learn the synthetic task in seconds. The nets
# run the seed's budget (exactly `epochs` epochs of `batch_size`, a check after each:
# min_steps = min_check_steps = 0), so the tests below can count epochs; the default
# budget rule has its own tests (tests/train/test_train_rules.py, test_models_budget.py).
EXACT = {"min_steps": 0, "min_check_steps": 0}
FAST_HYPER = {
    "gbt": {"epochs": 40, "max_depth": 3, "patience": 10},
    "mlp": {"epochs": 25, "batch_size": 32, "hidden": [32], "lr": 3e-3, **EXACT},
    "cnn": {"epochs": 15, "batch_size": 32, "filters": [16, 16], "kernels": [5, 3], "lr": 3e-3,
            **EXACT},
    "gru": {"epochs": 15, "batch_size": 32, "hidden": 16, "lr": 5e-3, **EXACT},
    "lstm": {"epochs": 15, "batch_size": 32, "hidden": 16, "lr": 5e-3, **EXACT},
    "transformer": {"epochs": 15, "batch_size": 32, "d_model": 16, "n_heads": 2,
                    "n_layers": 1, "ff_dim": 32, "lr": 3e-3, **EXACT},
}
ALL_MODELS = tuple(FAST_HYPER)  # the torch and XGBoost models (test_models_training.py)

# minirocket (aeon, an optional extra) takes part in the shared suite (test_models_suite.py)
# and has its own file (test_minirocket.py): 840 kernels and a 300-window cap keep it quick
# and run the sampling path (400 train windows)
FAST_HYPER["minirocket"] = {"n_kernels": 840, "max_train_windows": 300}
HAVE_AEON = importlib.util.find_spec("aeon") is not None
SUITE_MODELS = (*ALL_MODELS, pytest.param(
    "minirocket", marks=pytest.mark.skipif(not HAVE_AEON, reason="aeon (cis490[minirocket]) absent")))


def make_sequences(n: int, seed: int, class_p=(0.4, 0.1, 0.15, 0.35)):
    """``(X, y)``: (n, C, T) float32 with NaN; the class sets channel levels and a trend.

    Class c raises channel 0 by ``c``, gives channel 1 a rising trend for
    classes 2 and 3, and class 1 bursts channel 2 in the second half; 10 % of
    the values and, on a fifth of the rows, all of channel 4 are missing.
    """
    rng = np.random.default_rng(seed)
    y = rng.choice(N_CLASSES, size=n, p=class_p)
    X = rng.normal(size=(n, N_CHANNELS, N_STEPS)).astype(np.float32)
    t = np.linspace(-1, 1, N_STEPS, dtype=np.float32)
    X[:, 0, :] += 1.5 * y[:, None]
    X[:, 1, :] += 2.5 * (y[:, None] >= 2) * t[None, :]
    X[:, 2, N_STEPS // 2:] += 3.0 * (y[:, None] == 1)
    X[:, 3, :] = X[:, 3, :] * 100.0 + 1000.0  # unscaled column: normalisation must cope
    X[rng.random(X.shape) < 0.1] = np.nan
    X[rng.random(n) < 0.2, 4, :] = np.nan
    return X, y.astype(np.int64)


def summarise(X: np.ndarray) -> np.ndarray:
    """Summary features of sequence windows: per-channel mean and trend (NaN if absent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of an all-NaN slice
        half = X.shape[2] // 2
        first = np.nanmean(X[:, :, :half], axis=2)
        second = np.nanmean(X[:, :, half:], axis=2)
    return np.concatenate([(first + second) / 2, second - first], axis=1).astype(np.float32)


def task_for(name: str, n_train: int = 400, n_val: int = 200, seed: int = 1):
    Xtr, ytr = make_sequences(n_train, seed)
    Xva, yva = make_sequences(n_val, seed + 100)
    if name in ("gbt", "mlp"):
        return summarise(Xtr), ytr, summarise(Xva), yva
    return Xtr, ytr, Xva, yva


def shape_kwargs(name: str) -> dict:
    if name in ("gbt", "mlp"):
        return {"n_features": N_FEATURES}
    return {"n_channels": N_CHANNELS, "n_steps": N_STEPS}


def new_model(name: str, **overrides):
    from cis490 import models

    hyper = {**FAST_HYPER[name], **overrides}
    return models.create(name, n_classes=N_CLASSES, **shape_kwargs(name), **hyper)
