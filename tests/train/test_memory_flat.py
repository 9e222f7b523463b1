"""Peak RSS of a training job does not grow with the store.

Two small stores (``SMALL`` and ``BIG`` episodes per host, 2 hosts, 120-s
episodes) are built once; ``python -m cis490.train.run`` trains on each in a
child process reaped with ``os.wait4``, so ``ru_maxrss`` is that job's peak
alone. The assertion is on the **growth** ``peak(BIG) - peak(SMALL)``: it
must stay under half of the big store's train set as float32 (windows x
channels x steps x 4), which a job that holds its train set in memory
cannot meet (it grows by at least the difference of the two train sets,
~0.9 of the bound's base).

Only cnn is checked. gbt is not, because at these sizes it cannot be flat
by design: its whole train set (11 k rows) is smaller than one batch of
``boost.ITER_ROWS`` (16 384) rows, and under the in-memory budget
(``CIS490_XGB_MEMORY_GIB``) the quantised matrix is held whole, at 4-7
bytes a value (measured), no less than the float32 features: gbt grew
~32-36 MiB here against a 4.5 MiB bound, in memory and external alike. Its flatness past the
batch is what ``bench/bench_memory.py`` measures at 250 -> 2000 episodes
per host, and its peak is bounded by ``tests/train/test_memory_estimate.py``.

Why not the issue's "ratio <= 1.3": at sizes that build in seconds the train
set (tens of MiB) is small beside the ~400 MiB of a process that has
imported torch, so a job that materialises it still has a ratio of ~1.1 and
that check could not fail; the ratio is what ``bench/bench_memory.py``
prints at 250 -> 2000 episodes per host.

Each job is started by a small helper process (``REAP``) that reaps it: a
child's ``ru_maxrss`` starts at the peak of the memory image it was exec'd
from, and a child spawned straight from pytest (vfork + exec, with torch
imported here) would report at least pytest's own RSS. The driver pins
glibc's mmap threshold itself (``cis490/heap.py``); without that the same
job's peak varies by tens of MiB from run to run.

The split is ``time`` over both hosts, which gives train the largest share
of the store (56 % of the episodes). Checked when written: cnn grows
by ~8 MiB (bound ~15 MiB); the same measurement with ``np.asarray`` of the
train and val windows grows by ~42 MiB and fails.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


pytestmark = pytest.mark.slow

SMALL, BIG = 20, 200  # episodes per host
MIB = 1 << 20
COUNTS = re.compile(r"(\d+) train windows \((\d+) episodes\), (\d+) val windows")


@dataclass(frozen=True)
class Store:
    root: Path

    def argv(self, model: str, mode: str, out: Path, *hyper: str) -> list[str]:
        r = self.root
        return [sys.executable, "-m", "cis490.train.run", "--model", model, "--mode", mode,
                "--validation", str(r / "validation_v1.parquet"),
                "--summary", str(r / "features" / "features_window_v1.parquet"),
                "--tensors", str(r / "tensors"),
                "--schema", str(r / "features" / "feature_schema_v1.json"),
                "--split-recipe", "time", "--seed", "0", "--out", str(out),
                *(a for h in hyper for a in ("--hyper", h))]

    def row_bytes(self, mode: str) -> int:
        """float32 bytes of one tensor window of ``mode`` (before the nets' mask channels)."""
        from cis490.data.channels import REGISTRY

        manifest = json.loads((self.root / "tensors" / "tensors_v1.json").read_text())
        steps = int(manifest["window"]["length_s"] * manifest["window"]["grid_hz"])
        return 4 * len(REGISTRY.channels_for(mode)) * steps


def _cis490(*args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "cis490", *args, "--quiet"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"cis490 {' '.join(args)} failed:\n{res.stdout}{res.stderr}")


def _build(root: Path, episodes: int) -> None:
    store, val = root / "store", root / "validation_v1.parquet"
    _cis490("synth", "--out", str(store), "--episodes-per-host", str(episodes), "--hosts", "2",
            "--min-duration-s", "120", "--max-duration-s", "120", "--jobs", "2")
    _cis490("validate", "--store", str(store), "--out", str(val), "--jobs", "2")
    for stage in ("features", "tensors"):
        _cis490(stage, "--validation", str(val), "--store", str(store),
                "--out-dir", str(root / stage), "--jobs", "2")


def built_stores(tmp_path_factory) -> dict[int, Store]:
    """Both stores, built once per pytest session (``tests/evaluate/test_eval_memory_flat.py``
    uses them too)."""
    base = tmp_path_factory.getbasetemp() / "memory-flat-stores"
    stores = {}
    for n in (SMALL, BIG):
        root = base / f"eph{n}"
        if not (root / ".built").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            _build(root, n)
            (root / ".built").touch()
        stores[n] = Store(root)
    return stores


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[int, Store]:
    return built_stores(tmp_path_factory)


# spawns argv[2:] with stderr to argv[1] and prints "<exit code> <ru_maxrss KiB>"
REAP = """import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], dict(os.environ), file_actions=[
    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_DUP2, fd, 2)])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def _peaks(jobs: dict[int, list[str]], tmp: Path) -> dict[int, tuple[float, int]]:
    """Run the jobs at once (one per store); ``{size: (peak RSS MiB, train windows)}``."""
    logs = {n: tmp / f"job-{n}.log" for n in jobs}
    procs = {n: subprocess.Popen([sys.executable, "-c", REAP, str(logs[n]), *argv],
                                 stdout=subprocess.PIPE, text=True) for n, argv in jobs.items()}
    out = {}
    for n, proc in procs.items():
        code, maxrss = proc.communicate()[0].split()
        text = logs[n].read_text(errors="replace")
        assert code == "0", text[-3000:]
        m = COUNTS.search(text)
        assert m, text[-3000:]
        out[n] = (int(maxrss) / 1024, int(m.group(1)))
    return out


def _check(stores, tmp_path, model: str, mode: str, *hyper: str) -> None:
    jobs = {n: s.argv(model, mode, tmp_path / f"out-{n}", *hyper) for n, s in stores.items()}
    peaks = _peaks(jobs, tmp_path)
    (small, n_small), (big, n_big) = peaks[SMALL], peaks[BIG]
    train_mib = n_big * stores[BIG].row_bytes(mode) / MIB
    growth = big - small
    msg = (f"{model}/{mode}: peak RSS {small:.1f} MiB ({n_small} train windows) -> "
           f"{big:.1f} MiB ({n_big}): +{growth:.1f} MiB; the big train set is "
           f"{train_mib:.1f} MiB of float32, the bound half of it")
    print(msg)
    assert n_big >= 8 * n_small  # the sizes differ as meant
    assert growth < 0.5 * train_mib, msg


def test_cnn_peak_rss_does_not_grow_with_the_store(stores, tmp_path):
    # one batch size for both stores (the automatic one grows with the train set, and the
    # activations with it) and one epoch (min_steps would give the small store many)
    _check(stores, tmp_path, "cnn", "oracle", "epochs=1", "batch_size=64", "min_steps=0")
