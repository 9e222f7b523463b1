"""Benchmark of the demo: wall time by stage, and the coordinator's
overhead per job against the training time.

    .venv/bin/python bench/bench_demo.py [--dir DIR] [--episodes-per-host N] [--duration-s S]

Runs `cis490-spool demo --quiet` from scratch in a scratch directory (so
nothing is reused), then reads the stage timings the demo records and every
attempt record: per job, *claim → start* is the time from the claim's rename
to the training process's start (self-test of the claim, argv, spawn), *run*
is the training process's lifetime (python start-up, imports, data loading,
training, checkpoint), and *end → done* is from the process's exit to the
attempt record saying done (bundling, hashing, storing the artifact, the
record) — the rename into done/ follows at once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--episodes-per-host", type=int, default=None, help="default: the demo's")
    ap.add_argument("--duration-s", type=int, default=None, help="default: the demo's 60-240 s")
    args = ap.parse_args()
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.dir or tempfile.mkdtemp(prefix="demo-", dir=out))
    spool = root / "spool"
    print(f"bench_demo in {root}; {os.cpu_count()} CPUs; load {os.getloadavg()}")
    t0 = time.monotonic()
    world = [a for flag, v in (("--episodes-per-host", args.episodes_per_host),
                               ("--duration-s", args.duration_s)) if v is not None for a in (flag, str(v))]
    r = subprocess.run([sys.executable, str(REPO / "bin" / "cis490-spool"), "--spool", str(spool), "demo",
                        *world, "--quiet"], capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode:
        print(r.stdout[-2000:], r.stderr[-2000:])
        return 1
    stages = json.loads((root / "demo-data" / "demo-timings.json").read_text())
    print(f"\ndemo wall time: {wall:.0f} s  (stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()) + ")")
    rows = []
    for p in sorted((spool / "attempts").glob("*/*@*[0-9a-f].json")):
        rec = json.loads(p.read_text())
        t = rec.get("timings") or {}
        if rec.get("outcome") != "done" or "exited_at" not in t:
            continue
        rows.append((rec["name"], rec["host_id"], t["claim_to_start_s"], t["run_s"], rec["ended_at"] - t["exited_at"]))
    print(f"\n{'job':34s} {'host':8s} {'claim→start':>12s} {'run':>9s} {'end→done':>10s} {'overhead':>9s}")
    for name, host, a, run, c in rows:
        print(f"{name:34s} {host:8s} {a * 1e3:10.1f}ms {run:8.1f}s {c * 1e3:8.1f}ms {(a + c) / run:8.2%}")
    over = [a + c for _, _, a, _, c in rows]
    runs = [run for *_, run, _ in rows]
    print(f"\n{len(rows)} jobs: coordinator overhead median {statistics.median(over) * 1e3:.1f} ms per job, "
          f"total {sum(over):.2f} s against {sum(runs):.0f} s of job run time ({sum(over) / sum(runs):.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
