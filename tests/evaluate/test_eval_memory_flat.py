"""Peak RSS of ``cis490 eval`` does not grow with the store.

The same two stores as ``tests/train/test_memory_flat.py`` (``SMALL`` and
``BIG`` episodes per host, 2 hosts, 120-s episodes), a one-epoch cnn and a
5-round gbt trained on each (oracle, host split, train host
``elliott-thinkpad``: the other host's episodes are the test set), then
``cis490 eval`` on each store in a child process whose peak RSS its own
reaper reads (``REAP``: see that module for why not straight from pytest).
The growth ``peak(BIG) - peak(SMALL)`` must stay under half of the float32
tensor bytes of the big store's val + test windows, the windows eval
predicts: an eval that holds them (as it did) grows by at least that much.

Importance and the baselines are off (``--importance none --baselines
none``): each works within a bound these sizes do not reach, so each grows
here by design until it does. Importance runs on a bounded sample of test
episodes (``EvalSettings.importance_max_episodes``, 200;
``tests/evaluate/test_eval_streaming.py`` checks the sample's bound). The
baselines fit on at most ``run.BASELINE_MAX_TRAIN_WINDOWS`` (40 000) train
windows and score val and test ``baselines.CHUNK_ROWS`` (16 384) windows at
a time: the big store here has 8 058 train and 12 138 val + test windows, so
with them eval grows by ~35 MiB, all of it in the baselines (measured: 522 →
528 MiB without, 513 → 553 MiB with them). ``bench/bench_memory.py``
measures the whole eval, baselines and importance included, at 250 and
2 000 episodes per host, past those bounds. Plots are off and the resamples
few, for time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


from tests.train.test_memory_flat import BIG, MIB, REAP, SMALL, Store, built_stores

pytestmark = pytest.mark.slow

MODELS = {"cnn": "epochs=1", "gbt": "epochs=5"}


def _data(root: Path) -> list[str]:
    return ["--validation", str(root / "validation_v1.parquet"),
            "--summary", str(root / "features" / "features_window_v1.parquet"),
            "--tensors", str(root / "tensors"),
            "--schema", str(root / "features" / "feature_schema_v1.json")]


def _train(root: Path) -> subprocess.Popen:
    """Both checkpoints of one store, one after the other, in the background."""
    script = " && ".join(
        f"{sys.executable} -m cis490.train.run --model {m} --mode oracle "
        + " ".join(_data(root)) + " --train-hosts elliott-thinkpad --split-recipe host"
        f" --seed 0 --hyper {h} --out {root / 'artifacts' / (m + '_oracle')}"
        for m, h in MODELS.items())
    return subprocess.Popen(["bash", "-c", script], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[int, Store]:
    built = built_stores(tmp_path_factory)
    procs = {n: _train(s.root) for n, s in built.items()}
    for _n, p in procs.items():
        err = p.communicate()[1]
        assert p.returncode == 0, err[-3000:]
    return built


def _eval_window_mib(store: Store) -> tuple[int, float]:
    """``(val + test windows, their oracle tensors as float32 MiB)`` from the eval report."""
    comp = json.loads((store.root / "reports" / "comparison.json").read_text())
    n_test = comp["models"][0]["n_windows"]
    ckpt = json.loads(next((store.root / "artifacts" / "cnn_oracle").glob("*.ckpt.json"))
                      .read_text())
    n = n_test + int(ckpt["val_metrics"]["n_val"])
    return n, n * store.row_bytes("oracle") / MIB


def test_eval_peak_rss_does_not_grow_with_the_store(stores):
    procs, logs = {}, {}
    for n, s in stores.items():
        logs[n] = s.root / "eval.log"
        argv = [sys.executable, "-m", "cis490", "eval", *_data(s.root),
                "--artifacts", str(s.root / "artifacts"), "--train-hosts", "elliott-thinkpad",
                "--importance", "none", "--baselines", "none", "--no-plots", "--n-resamples", "200",
                "--reports-dir", str(s.root / "reports")]
        procs[n] = subprocess.Popen([sys.executable, "-c", REAP, str(logs[n]), *argv],
                                    stdout=subprocess.PIPE, text=True)
    peaks = {}
    for n, p in procs.items():
        code, maxrss = p.communicate()[0].split()
        assert code == "0", logs[n].read_text(errors="replace")[-3000:]
        peaks[n] = int(maxrss) / 1024
    (n_small, _), (n_big, big_mib) = _eval_window_mib(stores[SMALL]), _eval_window_mib(stores[BIG])
    growth = peaks[BIG] - peaks[SMALL]
    msg = (f"cis490 eval (cnn + gbt, oracle): peak RSS {peaks[SMALL]:.1f} MiB ({n_small} val + "
           f"test windows) -> {peaks[BIG]:.1f} MiB ({n_big}): +{growth:.1f} MiB; the big "
           f"store's val + test tensors are {big_mib:.1f} MiB of float32, the bound half of it")
    print(msg)
    assert n_big >= 8 * n_small
    assert growth < 0.5 * big_mib, msg
