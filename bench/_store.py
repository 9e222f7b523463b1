"""The benchmarks' shared data store: synth → validate → features → tensors, built once
under ``out/data-<episodes>x<duration>`` and reused while complete (bench_train, bench_resume)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _complete(data: Path) -> bool:
    return ((data / "tensors" / "tensors_v1.json").is_file()
            and (data / "features" / "features_window_v1.parquet").exists()
            and (data / "features" / "feature_schema_v1.json").is_file()
            and (data / "validation_v1.parquet").is_file())


def build_store(out: Path, episodes: int, duration: int) -> tuple[Path, float | None]:
    """The store under ``out/data-<episodes>x<duration>`` (reused when complete); (dir, build s or None)."""
    data = out / f"data-{episodes}x{duration}"
    if _complete(data):
        return data, None
    tmp = out / f".{data.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    steps = [
        ["synth", "--out", str(tmp / "store"), "--episodes-per-host", str(episodes),
         "--duration-s", str(duration), "--hosts", "2"],
        ["validate", "--store", str(tmp / "store"), "--out", str(tmp / "validation_v1.parquet")],
        ["features", "--validation", str(tmp / "validation_v1.parquet"), "--store",
         str(tmp / "store"), "--out-dir", str(tmp / "features")],
        ["tensors", "--validation", str(tmp / "validation_v1.parquet"), "--store",
         str(tmp / "store"), "--out-dir", str(tmp / "tensors")],
    ]
    t0 = time.perf_counter()
    for step in steps:
        subprocess.run([sys.executable, "-m", "cis490", *step, "--quiet"], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
    if data.exists():  # an unfinished build
        shutil.rmtree(data)
    tmp.rename(data)
    return data, time.perf_counter() - t0
