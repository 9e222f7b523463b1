"""A short check of the CUDA paths, for a machine with a GPU (never run by CI).

    .venv/bin/python bench/gpu_check.py

Trains every net for two epochs on a synthetic task, on the CPU and twice on
CUDA (batches from DataLoader workers with pinned memory, copied with
``non_blocking=True``), and prints per model: whether the two CUDA runs gave
the same bytes (they must: deterministic kernels, fixed cuBLAS workspace),
the largest difference between the CPU's and CUDA's validation
probabilities (expected small, not zero), and the seconds. Exits 1 when CUDA
is absent or a CUDA run is not reproducible.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def task(n: int, c: int = 8, t: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    X = rng.normal(size=(n, c, t)).astype(np.float32)
    X[:, 0] += y[:, None] * 0.8
    X[rng.random(X.shape) < 0.05] = np.nan
    return X, y


def fit(name: str, device: str, X, y, Xv, yv, out: Path):
    from cis490 import models

    os.environ["CIS490_DEVICE"] = device
    kw = {"n_features": X.shape[1] * X.shape[2]} if name == "mlp" else {
        "n_channels": X.shape[1], "n_steps": X.shape[2]}
    Xi, Xvi = (X.reshape(len(X), -1), Xv.reshape(len(Xv), -1)) if name == "mlp" else (X, Xv)
    m = models.create(name, n_classes=4, epochs=2, **kw)
    t = time.perf_counter()
    m.fit(Xi, y, Xvi, yv, seed=0)
    secs = time.perf_counter() - t
    m.save(out)
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    return files, m.predict_proba(Xvi), secs


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device visible to torch: nothing to check")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    X, y = task(4000)
    Xv, yv = task(1000, seed=1)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("mlp", "cnn", "gru", "lstm", "transformer"):
            cpu, p_cpu, s_cpu = fit(name, "cpu", X, y, Xv, yv, Path(tmp) / f"{name}-cpu")
            a, p_a, s_a = fit(name, "cuda", X, y, Xv, yv, Path(tmp) / f"{name}-cuda-a")
            b, _, _ = fit(name, "cuda", X, y, Xv, yv, Path(tmp) / f"{name}-cuda-b")
            same = a == b
            bad += not same
            print(f"{name:12s} cuda reproducible: {same}; max |p_cpu - p_cuda| = "
                  f"{float(np.abs(p_cpu - p_a).max()):.2e}; cpu {s_cpu:.1f} s, cuda {s_a:.1f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
