"""Training benchmark: throughput per model and wall time of all fourteen jobs.

    python bench/bench_train.py                 # demo scale (cis490 synth defaults)
    python bench/bench_train.py --episodes-per-host 120 --duration-s 180   # bigger
    python bench/bench_train.py --slots 2       # two jobs at a time (2 cores)

Builds the data once under ``bench/out/data-<episodes>x<duration>/`` with the
``cis490`` data stages, then runs ``python -m cis490.train.run`` for every
(model, mode) pair exactly as a worker would (default hyper, host split,
train host ``elliott-thinkpad``), ``--slots`` at a time. Prints, per job:
wall and CPU seconds of the process (imports + loading + fit + save), wall
and CPU seconds of the fit alone, train throughput (train windows x epochs
run / fit seconds, per wall second and per CPU second; it includes the
per-epoch val pass), epochs run / best epoch, and val macro F1; then the
total wall. Every job runs with ``threads = 1``, so on a shared machine the
CPU-second figures are the ones to compare (they are what an idle core
would take); wall seconds include waiting for the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _store import ROOT, build_store  # bench/ is this script's own directory

MODELS = ("gbt", "mlp", "cnn", "gru", "lstm", "transformer", "minirocket")
MODES = ("realistic", "oracle")
FIT_LINE = re.compile(r"fit ([0-9.]+) s wall, ([0-9.]+) s CPU, ([0-9]+) train windows/s")
COUNT_LINE = re.compile(r"([0-9]+) train windows .* ([0-9]+) val windows")


def build_data(out: Path, episodes: int, duration: int) -> Path:
    data, built_s = build_store(out, episodes, duration)
    if built_s is not None:
        print(f"data built in {built_s:.1f} s -> {data}")
    return data


def run_job(data: Path, out: Path, model: str, mode: str, hyper: list[str]) -> dict:
    job_out = out / "ckpt" / f"{model}_{mode}"
    argv = [sys.executable, "-m", "cis490.train.run", "--model", model, "--mode", mode,
            "--validation", str(data / "validation_v1.parquet"),
            "--summary", str(data / "features" / "features_window_v1.parquet"),
            "--tensors", str(data / "tensors"),
            "--schema", str(data / "features" / "feature_schema_v1.json"),
            "--train-hosts", "elliott-thinkpad", "--split-recipe", "host", "--seed", "0",
            "--out", str(job_out), *hyper]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own CPU time, imports included
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    cpu = usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        return {"model": model, "mode": mode, "error": stderr.strip().splitlines()[-1]}
    meta = json.loads((job_out / f"{model}_{mode}.ckpt.json").read_bytes())
    fit = FIT_LINE.search(stderr)
    counts = COUNT_LINE.search(stderr)
    return {
        "model": model, "mode": mode, "wall_s": wall,
        "fit_s": float(fit.group(1)), "fit_cpu_s": float(fit.group(2)),
        "windows_per_s": int(fit.group(3)),
        "windows_per_cpu_s": int(int(counts.group(1)) * meta["fit"]["epochs_run"]
                                 / max(float(fit.group(2)), 1e-9)),
        "cpu_s": cpu,
        "n_train": int(counts.group(1)), "n_val": int(counts.group(2)),
        "epochs_run": meta["fit"]["epochs_run"], "best_epoch": meta["fit"]["best_epoch"],
        "val_macro_f1": meta["val_metrics"]["macro_f1"],
        "input": meta["input"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes-per-host", type=int, default=40)
    p.add_argument("--duration-s", type=int, default=120)
    p.add_argument("--slots", type=int, default=1, help="jobs run at once")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--hyper", action="append", default=[], metavar="KEY=JSON",
                   help="passed to every job")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    args = p.parse_args()
    out = Path(args.out)
    data = build_data(out, args.episodes_per_host, args.duration_s)
    hyper = [a for h in args.hyper for a in ("--hyper", h)]
    jobs = [(m, mode) for m in args.models.split(",") for mode in MODES]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.slots) as pool:
        results = list(pool.map(lambda j: run_job(data, out, j[0], j[1], hyper), jobs))
    total = time.perf_counter() - t0

    print(f"\n{'model':<12}{'mode':<10}{'input':<8}{'train':>6}{'val':>5}{'wall s':>8}"
          f"{'cpu s':>7}{'fit s':>7}{'fit cpu':>8}{'win/s':>7}{'win/cpu-s':>10}"
          f"{'epochs':>7}{'best':>5}{'val F1':>8}")
    for r in results:
        if "error" in r:
            print(f"{r['model']:<12}{r['mode']:<10}FAILED: {r['error']}")
            continue
        shape = "x".join(str(v) for v in r["input"].values())
        print(f"{r['model']:<12}{r['mode']:<10}{shape:<8}{r['n_train']:>6}{r['n_val']:>5}"
              f"{r['wall_s']:>8.1f}{r['cpu_s']:>7.1f}{r['fit_s']:>7.1f}{r['fit_cpu_s']:>8.1f}"
              f"{r['windows_per_s']:>7}{r['windows_per_cpu_s']:>10}"
              f"{r['epochs_run']:>7}{r['best_epoch']:>5}{r['val_macro_f1']:>8.3f}")
    done = [r for r in results if "error" not in r]
    print(f"\nall {len(jobs)} jobs, {args.slots} at a time: {total:.1f} s wall, "
          f"{sum(r['cpu_s'] for r in done):.1f} s CPU in the driver processes "
          f"({sum(r['fit_cpu_s'] for r in done):.1f} s of it fitting)")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
