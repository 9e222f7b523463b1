"""Benchmark: peak RSS of training jobs and of ``cis490 eval`` at two store sizes.

    .venv/bin/python bench/bench_memory.py [--sizes 250,2000] [--hosts 2]
        [--duration-s 120] [--jobs 2] [--no-train] [--no-eval]
        [--models gbt,mlp,cnn,gru,lstm,transformer] [--full-tensor-gb 12]
        [--out bench/out/memory]

For each size (episodes per host): synthesise a store (``--min-duration-s =
--max-duration-s = --duration-s``), validate, build features and tensors
(``--jobs``), reused from ``--out/eph<N>/`` when already built (the build
times are kept in its ``build.json``). Then:

- **training**: ``python -m cis490.train.run`` for every model in
  ``realistic`` mode and ``cnn`` also in ``oracle`` (the most channels),
  with a short budget (``epochs=1``, gbt ``epochs=20``: memory does not
  depend on how long a job trains, every epoch reads the same batches), each
  in its own process reaped with ``os.wait4``, so ``ru_maxrss`` is that
  child's peak alone;
- **eval**: the 12 (model, mode) checkpoints (the same short budgets), then
  ``cis490 eval`` on them in a fresh process, measured the same way.

Prints the build, per (model, mode) the train/val windows, peak RSS at each
size, the ratio big/small and wall seconds, the same for eval, and a
full-scale projection: the bytes per window measured in the tensor shards
(x + mask) give the windows of the seed's full store (``--full-tensor-gb``,
~12 GB), and each job's RSS is extrapolated along the line through its two
measurements (intercept + slope per train window; eval: per store window).
Everything is written under ``--out`` (git-ignored), the numbers also to
``results.json``. Nothing is asserted.

This script must stay a light process (no torch, numpy or pyarrow imported
here): Linux starts a child's ``ru_maxrss`` at the peak of the image it was
exec'd from, so a heavy parent would raise every measurement to its own size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = ("gbt", "mlp", "cnn", "gru", "lstm", "transformer", "minirocket")
SUMMARY = ("gbt", "mlp")
COUNTS = re.compile(r"(\d+) train windows \((\d+) episodes\), (\d+) val windows")
MIB = 1 << 20


def hyper(model: str) -> list[str]:
    return ["--hyper", "epochs=20" if model == "gbt" else "epochs=1"]


def spawn(argv: list[str], log: Path, env: dict | None = None) -> tuple[float, float]:
    """Run ``argv`` (stdout discarded, stderr to ``log``), reaped with ``os.wait4`` so
    ``ru_maxrss`` is this child's alone; ``(wall s, peak RSS MiB)``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, dict(env or os.environ),
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                                       (os.POSIX_SPAWN_OPEN, 2, str(log),
                                        os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status):
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise SystemExit(f"{' '.join(argv[1:5])}… failed (log {log}):\n" + "\n".join(tail))
    return wall, usage.ru_maxrss / 1024


def paths(root: Path) -> dict[str, Path]:
    return {"store": root / "store", "validation": root / "validation_v1.parquet",
            "features": root / "features", "tensors": root / "tensors"}


def build(root: Path, episodes: int, args) -> dict:
    """Build the store at ``root`` once; return its build record (times, bytes, windows)."""
    rec_path = root / "build.json"
    if rec_path.exists():
        return json.loads(rec_path.read_text())
    d = paths(root)
    if root.exists():
        shutil.rmtree(root)  # a build that did not finish
    root.mkdir(parents=True)
    py, jobs = sys.executable, str(args.jobs)
    steps = {
        "synth": ["synth", "--out", str(d["store"]), "--episodes-per-host", str(episodes),
                  "--hosts", str(args.hosts), "--min-duration-s", str(args.duration_s),
                  "--max-duration-s", str(args.duration_s), "--jobs", jobs],
        "validate": ["validate", "--store", str(d["store"]), "--out", str(d["validation"]),
                     "--jobs", jobs],
        "features": ["features", "--validation", str(d["validation"]), "--store",
                     str(d["store"]), "--out-dir", str(d["features"]), "--jobs", jobs],
        "tensors": ["tensors", "--validation", str(d["validation"]), "--store", str(d["store"]),
                    "--out-dir", str(d["tensors"]), "--jobs", jobs],
    }
    rec: dict = {"episodes_per_host": episodes, "hosts": args.hosts,
                 "duration_s": args.duration_s, "seconds": {}, "peak_mib": {}}
    for name, argv in steps.items():
        wall, rss = spawn([py, "-m", "cis490", *argv, "--quiet"], root / "logs" / f"{name}.log")
        rec["seconds"][name], rec["peak_mib"][name] = wall, rss
        print(f"  eph{episodes}: {name} {wall:.1f} s, peak {rss:.0f} MiB", flush=True)
    manifest = json.loads((d["tensors"] / "tensors_v1.json").read_text())
    rec["windows"] = sum(int(h["windows"]) for h in manifest["hosts"].values())
    rec["channels"] = len(manifest["channels"])
    rec["steps"] = int(manifest["window"]["length_s"] * manifest["window"]["grid_hz"])
    files = list(d["tensors"].rglob("*.npy"))
    rec["tensor_x_bytes"] = sum(f.stat().st_size for f in files if f.name.endswith(".x.npy"))
    rec["tensor_mask_bytes"] = sum(f.stat().st_size for f in files if f.name.endswith(".mask.npy"))
    rec["tensor_bytes"] = sum(f.stat().st_size for f in d["tensors"].rglob("*") if f.is_file())
    rec["feature_bytes"] = sum(f.stat().st_size for f in d["features"].rglob("*") if f.is_file())
    rec["store_bytes"] = sum(f.stat().st_size for f in d["store"].rglob("*") if f.is_file())
    schema = json.loads((d["features"] / "feature_schema_v1.json").read_text())
    rec["summary_features"] = {m: len(v) for m, v in schema["summary"]["modes"].items()}
    rec_path.write_text(json.dumps(rec, indent=1, sort_keys=True))
    return rec


def data_args(d: dict[str, Path]) -> list[str]:
    return ["--validation", str(d["validation"]),
            "--summary", str(d["features"] / "features_window_v1.parquet"),
            "--tensors", str(d["tensors"]), "--schema", str(d["features"] / "feature_schema_v1.json")]


def train_job(root: Path, model: str, mode: str, *, measure: bool) -> dict:
    """Train one (model, mode) into ``root/artifacts``; with ``measure`` always (fresh),
    else only when its checkpoint is missing. Returns the measurement (or {})."""
    out = root / "artifacts" / f"{model}_{mode}"
    if not measure and any(out.glob("*.ckpt.json")):
        return {}
    shutil.rmtree(out, ignore_errors=True)
    log = root / "logs" / f"train-{model}-{mode}.log"
    argv = [sys.executable, "-m", "cis490.train.run", "--model", model, "--mode", mode,
            *data_args(paths(root)), "--train-hosts", "elliott-thinkpad",
            "--split-recipe", "host", "--seed", "0", *hyper(model), "--out", str(out)]
    wall, rss = spawn(argv, log)
    m = COUNTS.search(log.read_text())
    return {"wall_s": wall, "peak_mib": rss, "train_windows": int(m.group(1)),
            "train_episodes": int(m.group(2)), "val_windows": int(m.group(3)),
            "estimate_mib": estimate_mib(argv)}


def estimate_mib(argv: list[str]) -> float | None:
    """The driver's own estimate of the job's peak (``--estimate-memory``), MiB; None
    when this checkout's driver has no such option."""
    proc = subprocess.run([*argv, "--estimate-memory"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        return None
    return json.loads(proc.stdout)["peak_bytes"] / MIB


def fit_line(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float]:
    slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 0.0
    return y0 - slope * x0, slope


def fmt_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:,.1f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="250,2000", help="episodes per host, two, comma-separated")
    ap.add_argument("--hosts", type=int, default=2)
    ap.add_argument("--duration-s", type=int, default=120, help="every episode this long")
    ap.add_argument("--jobs", type=int, default=2, help="builder processes")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--no-train", action="store_true", help="skip the training measurements")
    ap.add_argument("--no-eval", action="store_true", help="skip the eval measurement")
    ap.add_argument("--full-tensor-gb", type=float, default=12.0,
                    help="tensor bytes (x + mask) of the full-scale store, GB (default 12)")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "memory"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if len(sizes) != 2 or sizes[0] >= sizes[1]:
        ap.error("--sizes: two sizes, small first")
    models = [m for m in args.models.split(",") if m]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(m, "realistic") for m in models] + ([("cnn", "oracle")] if "cnn" in models else [])
    res: dict = {"sizes": sizes, "builds": {}, "train": {}, "eval": {}}

    for n in sizes:
        res["builds"][n] = build(out / f"eph{n}", n, args)
    print("\n## Build (" + f"{args.hosts} hosts, {args.duration_s} s episodes, --jobs {args.jobs})")
    rows = []
    for n in sizes:
        b = res["builds"][n]
        s = b["seconds"]
        rows.append([n, b["windows"], s["synth"], s["validate"], s["features"], s["tensors"],
                     max(b["peak_mib"].values()), b["store_bytes"] / MIB, b["feature_bytes"] / MIB,
                     b["tensor_x_bytes"] / MIB, b["tensor_mask_bytes"] / MIB,
                     b["tensor_bytes"] / b["windows"]])
    print(fmt_table(["episodes/host", "windows", "synth s", "validate s", "features s",
                     "tensors s", "builder peak MiB", "store MiB", "features MiB",
                     "tensors x MiB", "tensors mask MiB", "tensor B/window"], rows))

    if not args.no_train:
        for n in sizes:
            for model, mode in jobs:
                r = train_job(out / f"eph{n}", model, mode, measure=True)
                res["train"].setdefault(f"{model}/{mode}", {})[n] = r
                print(f"  eph{n} {model}/{mode}: {r['train_windows']} train / {r['val_windows']} "
                      f"val windows, peak {r['peak_mib']:.0f} MiB, {r['wall_s']:.1f} s", flush=True)
    if not args.no_eval:
        for n in sizes:
            root = out / f"eph{n}"
            for model in models:
                for mode in ("realistic", "oracle"):
                    train_job(root, model, mode, measure=False)
            reports = root / "reports"
            shutil.rmtree(reports, ignore_errors=True)
            wall, rss = spawn([sys.executable, "-m", "cis490", "eval", *data_args(paths(root)),
                               "--artifacts", str(root / "artifacts"),
                               "--train-hosts", "elliott-thinkpad", "--quiet",
                               "--reports-dir", str(reports)], root / "logs" / "eval.log")
            comp = json.loads((reports / "comparison.json").read_text())
            res["eval"][n] = {"wall_s": wall, "peak_mib": rss, "models": len(comp["models"]),
                              "test_windows": comp["models"][0]["n_windows"]}
            print(f"  eph{n} eval: {len(comp['models'])} models, peak {rss:.0f} MiB, "
                  f"{wall:.1f} s", flush=True)
    # a run with --no-train / --no-eval keeps the other part of an earlier run's file
    path = out / "results.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved.update({k: v for k, v in res.items() if v or k not in saved})
    path.write_text(json.dumps(saved, indent=1, sort_keys=True, default=str))

    small, big = sizes
    bs, bb = res["builds"][small], res["builds"][big]
    per_window = bb["tensor_bytes"] / bb["windows"]
    full_windows = args.full_tensor_gb * 1e9 / per_window
    scale = full_windows / bb["windows"]
    if res["train"]:
        print(f"\n## Training peak RSS (epochs=1, gbt 20; {small} -> {big} episodes/host)")
        rows = []
        for key, by in res["train"].items():
            a, b = by[small], by[big]
            est = [x.get("estimate_mib") for x in (a, b)]
            rows.append([key, f"{a['train_windows']:,} / {a['val_windows']:,}",
                         f"{b['train_windows']:,} / {b['val_windows']:,}",
                         a["peak_mib"], b["peak_mib"], f"{b['peak_mib'] / a['peak_mib']:.2f}",
                         " / ".join("-" if e is None else f"{e:,.0f}" for e in est),
                         a["wall_s"], b["wall_s"]])
        print(fmt_table(["model/mode", f"train/val windows @{small}", f"@{big}",
                         f"peak MiB @{small}", f"@{big}", "ratio", "driver's estimate MiB",
                         f"wall s @{small}", f"@{big}"], rows))
    if res["eval"]:
        a, b = res["eval"][small], res["eval"][big]
        print(f"\n## `cis490 eval`, {b['models']} models")
        print(fmt_table(["", f"@{small}", f"@{big}", "ratio"],
                        [["test windows", a["test_windows"], b["test_windows"], ""],
                         ["peak MiB", a["peak_mib"], b["peak_mib"],
                          f"{b['peak_mib'] / a['peak_mib']:.2f}"],
                         ["wall s", a["wall_s"], b["wall_s"], ""]]))

    print(f"\n## Full-scale projection ({args.full_tensor_gb:g} GB of tensors)")
    print(f"tensor bytes per window measured: {per_window:,.0f} B (x + mask + index, "
          f"{bb['channels']} channels x {bb['steps']} steps) -> {full_windows:,.0f} windows "
          f"in the full store, x{scale:,.0f} the {big}-episode store's {bb['windows']:,}")
    rows = []
    for key, by in res["train"].items():
        model, mode = key.split("/")
        a, b = by[small], by[big]
        icpt, slope = fit_line(a["train_windows"], a["peak_mib"], b["train_windows"], b["peak_mib"])
        n_full = b["train_windows"] * scale
        row_bytes = (4 * bb["summary_features"][mode] if model in SUMMARY
                     else 4 * channels(mode) * bb["steps"])
        rows.append([key, int(n_full), icpt, slope * MIB, (icpt + slope * n_full) / 1024,
                     n_full * row_bytes / (1 << 30)])
    if rows:
        print("(a line through the two peaks: an upper bound where a buffer capped in rows "
              "fills between the sizes, e.g. gbt's 16 384-row batches and 4 096-row statistics "
              "chunks)")
        print(fmt_table(["model/mode", "full-scale train windows", "intercept MiB",
                         "slope B/train window", "projected peak GiB",
                         "train set float32 GiB (if loaded)"], rows))
    if res["eval"]:
        a, b = res["eval"][small], res["eval"][big]
        icpt, slope = fit_line(bs["windows"], a["peak_mib"], bb["windows"], b["peak_mib"])
        print(f"eval: intercept {icpt:,.0f} MiB, slope {slope * MIB:,.0f} B per store window "
              f"-> {(icpt + slope * full_windows) / 1024:,.1f} GiB projected at full scale")


def channels(mode: str) -> int:
    """Tensor channels of ``mode`` (realistic: the registry's prefix without proc.*)."""
    from cis490.data.channels import REGISTRY

    return len(REGISTRY.channels_for(mode))


if __name__ == "__main__":
    main()
