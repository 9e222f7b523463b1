"""Benchmark: ``cis490 eval`` end to end — time and peak RSS for all 14 (model, mode) jobs at two store sizes.

    .venv/bin/python bench/bench_eval_store.py [--sizes 40,160] [--duration-s 120]
        [--compare-commit REV] [--out bench/out/eval_store]

For each size (episodes per host, two hosts): synthesise a store, validate,
build features and tensors (``--jobs 2``), train the 14 (model, mode) jobs
with short budgets (the numbers are not the point, the eval's cost is), then
run ``cis490 eval`` in a fresh process — the whole thing: predictions of every
val and test window, four baselines, thresholds, detection statistics with
2000 episode resamples, importance, plots — and read its wall time and peak
RSS from ``os.wait4``. ``--compare-commit`` also times the evaluation of an
older checkout (a git worktree) on the same checkpoints, so the growth can
be put beside what it was. Everything is written under ``--out`` (git-ignored).
Prints one table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = ("gbt", "mlp", "cnn", "gru", "lstm", "transformer", "minirocket")
SHORT = {"gbt": ["--hyper", "epochs=30"], "mlp": ["--hyper", "epochs=3", "--hyper", "min_steps=0"],
         "minirocket": []}  # minirocket at its defaults: seconds


def run(argv: list[str]) -> None:
    """Run a preparation step; one line and exit on failure."""
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise SystemExit(f"{' '.join(argv[2:5])}… failed ({proc.returncode}): {tail}")


def run_rss(argv: list[str], env=None) -> tuple[float, float]:
    """Like ``run`` but reaps the child itself so ru_maxrss is that child's alone."""
    t = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, dict(env or os.environ),
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                                       (os.POSIX_SPAWN_OPEN, 2, "/tmp/bench_eval_store.err",
                                        os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status):
        tail = Path("/tmp/bench_eval_store.err").read_text(errors="replace").strip().splitlines()
        raise SystemExit(f"{' '.join(argv[2:5])}… failed: {tail[-1:] }")
    return wall, usage.ru_maxrss / 1024


def build(root: Path, episodes: int, duration: int) -> dict[str, Path]:
    py = sys.executable
    d = {"store": root / "store", "validation": root / "validation_v1.parquet",
         "features": root / "features", "tensors": root / "tensors"}
    if not (root / ".built").exists():
        root.mkdir(parents=True, exist_ok=True)
        for argv in (["synth", "--out", str(d["store"]), "--episodes-per-host", str(episodes),
                      "--duration-s", str(duration), "--hosts", "2", "--jobs", "2"],
                     ["validate", "--store", str(d["store"]), "--out", str(d["validation"]),
                      "--jobs", "2"],
                     ["features", "--validation", str(d["validation"]), "--store", str(d["store"]),
                      "--out-dir", str(d["features"]), "--jobs", "2"],
                     ["tensors", "--validation", str(d["validation"]), "--store", str(d["store"]),
                      "--out-dir", str(d["tensors"]), "--jobs", "2"]):
            run([py, "-m", "cis490", *argv, "--quiet"])
        (root / ".built").touch()
    return d


def data_args(d: dict[str, Path]) -> list[str]:
    return ["--validation", str(d["validation"]),
            "--summary", str(d["features"] / "features_window_v1.parquet"),
            "--tensors", str(d["tensors"]), "--schema", str(d["features"] / "feature_schema_v1.json")]


def train(root: Path, d: dict[str, Path]) -> Path:
    arts = root / "artifacts"
    for model in MODELS:
        for mode in ("realistic", "oracle"):
            out = arts / f"{model}_{mode}"
            if any(out.glob("*.ckpt.json")):
                continue
            hyper = SHORT.get(model, ["--hyper", "epochs=1", "--hyper", "min_steps=0"])
            run([sys.executable, "-m", "cis490.train.run", "--model", model, "--mode", mode,
                 *data_args(d), "--train-hosts", "elliott-thinkpad", *hyper, "--out", str(out)])
    return arts


def worktree(rev: str, out: Path) -> Path:
    path = out / f"worktree-{rev[:12]}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=REPO,
                       check=True, capture_output=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="40,160", help="episodes per host, comma-separated")
    ap.add_argument("--duration-s", type=int, default=120)
    ap.add_argument("--compare-commit", default=None, metavar="REV")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "eval_store"))
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        root = out / f"eph{n}"
        t0 = time.perf_counter()
        d = build(root, n, args.duration_s)
        arts = train(root, d)
        prep = time.perf_counter() - t0
        common = [*data_args(d), "--artifacts", str(arts), "--train-hosts", "elliott-thinkpad",
                  "--quiet"]
        wall, rss = run_rss([sys.executable, "-m", "cis490", "eval", *common,
                             "--reports-dir", str(root / "reports")])
        comp = json.loads((root / "reports" / "comparison.json").read_text())
        n_test = comp["models"][0]["n_windows"]
        row = {"episodes/host": n, "test windows": n_test, "test episodes": comp["models"][0]["n_episodes"],
               "eval s": wall, "eval peak MiB": rss, "prep s": prep}
        wall2, rss2 = run_rss([sys.executable, "-m", "cis490", "eval", *common, "--baselines", "none",
                               "--importance", "none", "--no-plots",
                               "--reports-dir", str(root / "reports-min")])
        row.update({"no baselines/importance/plots s": wall2, "its peak MiB": rss2})
        if args.compare_commit:
            wt = worktree(args.compare_commit, out)
            env = {**os.environ, "PYTHONPATH": str(wt)}
            wall3, rss3 = run_rss([sys.executable, "-m", "cis490", "eval", *common,
                                   "--reports-dir", str(root / "reports-old")], env=env)
            row.update({f"{args.compare_commit[:8]} s": wall3, f"{args.compare_commit[:8]} MiB": rss3})
        rows.append(row)
        print("  ".join(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}"
                        for k, v in row.items()), flush=True)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k])
                                for k in keys) + " |")


if __name__ == "__main__":
    main()
