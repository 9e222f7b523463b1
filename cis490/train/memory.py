"""A training job's peak memory, estimated from the data's shape and the model's config.

The worker asks for this before it claims a job (``python -m cis490.train.run
... --estimate-memory`` prints ``{"peak_bytes": ...}``) and leaves a job whose
estimate exceeds the host's free share to a bigger host, so two slots never
over-commit. Training streams its data (``cis490.train.data``), so what grows
with the store is small: per-window bookkeeping and, for ``gbt``, the
quantised matrix (one byte per value). The terms, in bytes:

- ``base``: the interpreter with the job's libraries imported, measured with
  ``bench/bench_memory.py`` on the smallest store (torch ~0.45 GiB with
  deterministic kernels, xgboost ~0.28 GiB), rounded up;
- ``per_window``: ``WINDOW_BYTES`` for every train and val window (the
  loader's per-window table, labels, index arrays, val predictions);
- nets: ``PARAM_COPIES`` float32 copies of the parameters (weights, grads,
  two AdamW moments, the best-on-val copy) and the activations kept for the
  backward pass of one batch (``ACT_FACTOR`` float32 per sample, step and
  hidden unit and layer; attention adds heads × steps² per layer);
- ``gbt``: the quantised train and val matrices (or, past the in-memory
  budget, ``boost.ITER_ROWS`` rows of pages), gradient pairs and the
  prediction caches, and one float batch being quantised.

It is an upper estimate (``MARGIN`` on top): the benchmark prints it beside
the measured peak of every default model (docs/MODELS.md, "Memory").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Estimate", "estimate"]

MIB = 1 << 20
BASE = {"torch": 450 * MIB, "xgboost": 280 * MIB}
WINDOW_BYTES = 600
PARAM_COPIES = 5
ACT_FACTOR = 16
MARGIN = 1.25


@dataclass(frozen=True)
class Estimate:
    peak_bytes: int
    parts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "parts": dict(self.parts)}


def _net_terms(model, cfg, shape: dict[str, int], n_train: int) -> dict[str, int]:
    import torch

    with torch.random.fork_rng(devices=[]):  # counting must not move the global RNG
        net = model._build()
    from cis490.models import rules

    params = sum(p.numel() for p in net.parameters())
    batch = rules.plan_budget(max(1, n_train), cfg).batch_size  # the batch the loop will use
    steps = shape.get("n_steps", 1)
    hidden = getattr(cfg, "hidden", 0)
    filters = tuple(getattr(cfg, "filters", ()))
    width = max(int(max(hidden) if isinstance(hidden, tuple) else hidden), max(filters, default=0),
                int(getattr(cfg, "d_model", 0)), int(getattr(cfg, "ff_dim", 0)),
                2 * shape.get("n_channels", 0), shape.get("n_features", 0))
    if filters:  # cnn: one conv layer per filter (fcn), per kernel of each block (resnet)
        layers = len(filters) * (len(cfg.kernels) + 1 if cfg.arch == "resnet" else 1)
    else:
        layers = int(getattr(cfg, "n_layers", 0) or len(hidden or ()) or 1)
    if getattr(cfg, "bidirectional", False):
        width *= 2
    act = batch * steps * width * layers * 4 * ACT_FACTOR
    if hasattr(cfg, "n_heads"):
        act += batch * cfg.n_heads * steps * steps * layers * 4 * 4
    return {"base": BASE["torch"], "parameters": params * 4 * PARAM_COPIES, "activations": act}


def _gbt_terms(cfg, shape: dict[str, int], n_train: int, n_val: int, n_classes: int) -> dict[str, int]:
    from cis490.models import boost

    f = shape["n_features"]
    budget = boost.memory_budget_bytes()
    per = boost.QUANTISED_BYTES_PER_VALUE
    pages = 4 * boost.ITER_ROWS * f * per  # external memory: pages, not the matrix
    # train and val are judged apart, as quantile_matrix does
    quantised = sum(n * f * per if n * f * per <= budget else pages for n in (n_train, n_val))
    return {
        "base": BASE["xgboost"],
        "quantised": quantised,
        "gradients": n_train * n_classes * 8,
        "prediction_caches": (n_train + n_val) * n_classes * 4 * 2,
        "batch": min(boost.ITER_ROWS, max(n_train, n_val)) * f * 4 * 3,
    }


# minirocket: numpy, pandas, pyarrow, scikit-learn, scipy, numba and aeon (without torch,
# cis490.models.minirocket) with its compiled kernels loaded, measured with the driver
BASE_MINIROCKET = 380 * MIB
MINIROCKET_CHUNK_ROWS, MINIROCKET_COL_BLOCK = 512, 1024  # = minirocket.CHUNK_ROWS, COL_BLOCK


def _minirocket_terms(cfg, shape: dict[str, int], n_train: int, n_val: int,
                      n_classes: int) -> dict[str, int]:
    """Arithmetic only (aeon need not be installed): the fit sample's float32 features, one
    float64 Gram matrix of the smaller side, float64 column blocks of the design, one
    chunk's features in float32 and float64, the prepared inputs and the ridge path."""
    n = min(int(n_train), int(cfg.max_train_windows))
    p = 84 * max(1, int(cfg.n_kernels) // 84)
    m = min(n, p)
    channels = shape["n_channels"] * (2 if cfg.mask_channels else 1)
    return {
        "base": BASE_MINIROCKET,
        "features": n * p * 4,
        "gram": m * m * 8,
        "blocks": 3 * max(n, MINIROCKET_COL_BLOCK) * MINIROCKET_COL_BLOCK * 8,
        "chunk": MINIROCKET_CHUNK_ROWS * p * (4 + 8 + 8),
        "inputs": 2 * n * channels * shape["n_steps"] * 4,
        "ridge": int(cfg.epochs) * (p * n_classes * 8 * 2 + max(n_val, 1) * 8) + n * n_classes * 8 * 4,
    }


def estimate(model_name: str, cfg, shape: dict[str, int], n_train: int, n_val: int,
             n_classes: int) -> Estimate:
    """Peak bytes of training ``model_name`` with ``cfg`` on ``n_train`` + ``n_val`` windows."""
    from cis490 import models
    from cis490.models import configs

    if model_name == "gbt":
        parts = _gbt_terms(cfg, shape, n_train, n_val, n_classes)
    elif model_name == "minirocket":
        parts = _minirocket_terms(cfg, shape, n_train, n_val, n_classes)
    else:
        model = models.create(model_name, n_classes=n_classes, **shape, **configs.config_to_dict(cfg))
        parts = _net_terms(model, cfg, shape, n_train)
    parts["per_window"] = (n_train + n_val) * WINDOW_BYTES
    return Estimate(int(sum(parts.values()) * MARGIN), parts)
