#!/usr/bin/env python
"""Benchmark of the data stages: builder throughput vs the decode floor, RSS.

    .venv/bin/python bench/bench_data.py                  # ~3-5 min on 2 idle cores
    .venv/bin/python bench/bench_data.py --episodes-per-host 30 --sizes 10,30   # quick

Sections:

1. throughput over one generated store (``--episodes-per-host`` x 2 hosts (``--hosts 2``),
   ``--duration-s`` each): episodes/s of the decode floor (decompress + tar +
   JSON parse of the same tarballs, nothing else), of the summary-feature
   builder and of the tensor builder, each at ``--jobs 1`` and ``--jobs 2``
   (best of ``--repeat`` interleaved rounds; builders include their
   parquet/npy writes), and CPU ms per episode (the process and its pool
   workers: steadier than wall time on a VM whose speed drifts);
2. peak RSS of ``cis490 features`` and ``cis490 tensors`` (one fresh process
   each; at ``--jobs 2`` the largest of the parent and its two workers) at
   two store sizes (``--sizes``): it must stay flat.
   Both sizes should be past the first ~300 episodes, over which the
   allocators warm up (+10-20 MiB, whatever the store size);
1b. the same comparisons, paired: the floor and each builder's per-part
   function on the same block of episodes back to back, in this process and
   in a warm pool of 2 -- the numbers to trust on a VM whose speed drifts;
3. extrapolation to the seed's full scale (~48 k episodes, ~12 GB tensors).

Everything runs in a temporary directory (``--dir``), removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL_EPISODES = 48_000
FULL_TENSOR_GB = 12.0


def _decode_one(args):
    from cis490.data.episode import read_episode

    store, path = args
    ep = read_episode(os.path.join(store, path))
    return sum(len(v) for v in ep.streams.values())


def _cli(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", "cis490", *argv, "--quiet"], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def make_data(base: Path, per_host: int, duration: int) -> Path:
    d = base / f"store-{per_host}x{duration}"
    if not (d / "validation_v1.parquet").exists():
        _cli("synth", "--out", str(d / "store"), "--episodes-per-host", str(per_host),
             "--duration-s", str(duration), "--hosts", "2", "--jobs", "2")
        _cli("validate", "--store", str(d / "store"), "--out", str(d / "validation_v1.parquet"), "--jobs", "2")
    return d


def _cpu_s() -> float:
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def throughput(d: Path, repeat: int) -> dict:
    """End-to-end and steady-state episodes/s of each stage at jobs 1 and 2.

    Steady state = episodes done between the first progress report and the
    last / the time between them: it leaves out the fixed costs (pool
    start-up: two spawned interpreters importing numpy and pyarrow; reading
    the validation table; the final writes), which a full-scale build
    amortises. The feature builder reports once per part (64 episodes).
    """
    from cis490.data.features import build_features, usable_episodes
    from cis490.data.parallel import pmap
    from cis490.data.tensors import build_tensors

    refs, _ = usable_episodes(d / "validation_v1.parquet")
    store, val = str(d / "store"), d / "validation_v1.parquet"
    n = len(refs)
    items = [(store, r.path) for r in refs]
    stages = {
        # chunks of 32: the floor pays as little per-task overhead as the builders (a part/shard per task)
        "floor": lambda j, p: sum(pmap(_decode_one, items, jobs=j, progress=p, chunksize=32)),
        "features": lambda j, p: build_features(val, store, d / f"feat-j{j}", jobs=j, progress=p),
        "tensors": lambda j, p: build_tensors(val, store, d / f"tens-j{j}", jobs=j, progress=p),
    }
    # Interleaved rounds, best of each: the machine is shared, so a stage's
    # best run is the closest to its cost; interleaving keeps the ratios fair.
    # CPU seconds (this process + the pool workers it reaped) are steadier
    # than wall time on a VM whose speed drifts: they compare the work done.
    e2e: dict[str, float] = {}
    steady: dict[str, float] = {}
    cpu_ms: dict[str, float] = {}
    for _ in range(repeat):
        for jobs in (1, 2):
            for name, fn in stages.items():
                stamps: list[tuple[float, int]] = []  # (time, episodes done so far)
                c0 = _cpu_s()
                t = time.perf_counter()
                fn(jobs, lambda k=1, stamps=stamps: stamps.append(
                    (time.perf_counter(), (stamps[-1][1] if stamps else 0) + k)))
                key = f"{name}_j{jobs}"
                e2e[key] = max(e2e.get(key, 0.0), n / (time.perf_counter() - t))
                cpu_ms[key] = min(cpu_ms.get(key, float("inf")), (_cpu_s() - c0) / n * 1e3)
                (t0, c0_), (t1, c1) = stamps[0], stamps[-1]
                if len(stamps) >= 8:  # the builders report per part/shard: too few reports say nothing
                    steady[key] = max(steady.get(key, 0.0), (c1 - c0_) / max(t1 - t0, 1e-9))
    out: dict = {"episodes": n, "e2e": e2e, "steady": steady, "cpu_ms_per_episode": cpu_ms}
    tensor_bytes = sum(p.stat().st_size for p in (d / "tens-j1").rglob("*.npy"))
    out["tensor_bytes_per_episode"] = tensor_bytes / n
    out["identical_across_jobs"] = all(_tree(d / f"{k}-j1") == _tree(d / f"{k}-j2") for k in ("feat", "tens"))
    return out


def _floor_chunk(items) -> int:
    return sum(_decode_one(it) for it in items)


def paired(d: Path, rounds: int, block: int = 4) -> dict:
    """Drift-robust ratios: the same episodes, back to back.

    For each block of ``block`` parts (features) or shards (tensors): the
    decode floor of those episodes and the builder's own per-part function
    (what ``build_features``/``build_tensors`` run per task), first in this
    process (jobs 1), then in a warm pool of 2 (jobs 2; no start-up). Sums
    over all blocks and ``rounds``: a drift of the VM's speed hits both sides
    of every ratio alike.
    """
    import multiprocessing as mp

    from cis490.data.channels import DEFAULT_WINDOW
    from cis490.common import sha256_file
    from cis490.data.features import FEATURES_NAME, PART_EPISODES, EpisodeIndex, _features_part
    from cis490.data.tensors import SHARD_EPISODES, _host_chunks, _tensors_shard

    store, val = str(d / "store"), d / "validation_v1.parquet"
    refs = list(EpisodeIndex(val))
    parts = [refs[i:i + PART_EPISODES] for i in range(0, len(refs), PART_EPISODES)]
    shards = list(_host_chunks(refs, SHARD_EPISODES))
    fdir = d / "paired-f" / FEATURES_NAME
    fdir.mkdir(parents=True, exist_ok=True)
    vsha = sha256_file(val)
    stages = {
        "features": ([[(store, r.path) for r in c] for c in parts], _features_part,
                     [(store, fdir, k, c, DEFAULT_WINDOW, vsha, "bench") for k, c in enumerate(parts)]),
        "tensors": ([[(store, r.path) for r in c] for _, _, c in shards], _tensors_shard,
                    [(store, d / "paired-t" / f"host={h}", f"shard-{k:05d}", c, DEFAULT_WINDOW) for h, k, c in shards]),
    }
    t = {(st, side, j): 0.0 for st in stages for side in ("floor", "build") for j in (1, 2)}
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_floor_chunk, [stages["features"][0][0][:1]] * 2)  # both workers started and warm
        for _ in range(rounds):
            for name, (floor_tasks, fn, tasks) in stages.items():
                for b in range(0, len(tasks), block):
                    pair = (("floor", _floor_chunk, floor_tasks[b:b + block]), ("build", fn, tasks[b:b + block]))
                    for side, f, ts in pair:
                        t0 = time.perf_counter()
                        for task in ts:
                            f(task)
                        t1 = time.perf_counter()
                        pool.map(f, ts, chunksize=1)
                        t[(name, side, 1)] += t1 - t0
                        t[(name, side, 2)] += time.perf_counter() - t1
    return {name: {"of_floor_j1": t[(name, "floor", 1)] / t[(name, "build", 1)],
                   "scaling": t[(name, "build", 1)] / t[(name, "build", 2)],
                   "floor_scaling": t[(name, "floor", 1)] / t[(name, "floor", 2)]} for name in stages}


def peak_rss_mib(verb: str, d: Path, jobs: int) -> float:
    """Peak RSS of one ``cis490 VERB`` process or of its largest worker (a fresh parent
    reads RUSAGE_CHILDREN, which covers every descendant it waited for)."""
    args = [sys.executable, "-m", "cis490", verb, "--validation", str(d / "validation_v1.parquet"),
            "--store", str(d / "store"), "--out-dir", str(d / f"rss-{verb}"), "--quiet", "--jobs", str(jobs)]
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
             "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    res = subprocess.run([sys.executable, "-c", probe, *args], check=True, capture_output=True, text=True, cwd=ROOT)
    return int(res.stdout.strip()) / 1024.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes-per-host", type=int, default=1000)
    ap.add_argument("--duration-s", type=int, default=120)
    ap.add_argument("--sizes", default="250,1000", help="two episodes-per-host values for the RSS check")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    a = ap.parse_args()
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # what the cis490 builder verbs use
    base = Path(tempfile.mkdtemp(prefix="bench-data-", dir=a.dir))
    try:
        t = time.perf_counter()
        d = make_data(base, a.episodes_per_host, a.duration_s)
        print(f"store: {a.episodes_per_host} episodes/host x 2 hosts x {a.duration_s} s "
              f"(synth + validate {time.perf_counter() - t:.1f} s)")
        r = throughput(d, a.repeat)
        print(f"\n1. throughput over {r['episodes']} usable episodes (episodes/s, best of {a.repeat} "
              "interleaved rounds)")
        print(f"   {'':<10}{'end-to-end':^30}{'steady state':^30}")
        print(f"   {'stage':<10}" + f"{'jobs 1':>8}{'jobs 2':>8}{'x':>6}{'/floor':>8}" * 2 + f"{'e2e x/floor x':>15}")
        for k in ("floor", "features", "tensors"):
            cells = ""
            for kind in ("e2e", "steady"):
                j1, j2 = r[kind].get(f"{k}_j1"), r[kind].get(f"{k}_j2")
                if j1 is None or j2 is None or "floor_j1" not in r[kind]:
                    cells += f"{'(store too small)':>30}"
                    continue
                cells += f"{j1:>8.1f}{j2:>8.1f}{j2 / j1:>6.2f}{j1 / r[kind]['floor_j1']:>8.0%}"
            e = r["e2e"]
            print(f"   {k:<10}{cells}{(e[f'{k}_j2'] / e[f'{k}_j1']) / (e['floor_j2'] / e['floor_j1']):>11.0%}")
        cpu = r["cpu_ms_per_episode"]
        print("   CPU ms per episode (this process + its workers, start-up included; least of the rounds):")
        for k in ("floor", "features", "tensors"):
            j1, j2 = cpu[f"{k}_j1"], cpu[f"{k}_j2"]
            print(f"   {k:<10}jobs 1 {j1:5.2f}  jobs 2 {j2:5.2f} (+{j2 / j1 - 1:.0%} for parallelism)"
                  f"   floor / this at jobs 1: {cpu['floor_j1'] / j1:.0%}")
        print(f"   outputs byte-identical across jobs: {r['identical_across_jobs']}; "
              f"load average after the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

        pr = paired(d, a.repeat // 2 or 1)
        print(f"\n1b. paired: the same episodes back to back, block by block ({a.repeat // 2 or 1} round(s)), "
              "warm pool of 2 for jobs 2")
        for k, v in pr.items():
            print(f"   {k:<10}jobs 1 at {v['of_floor_j1']:.0%} of the floor;  jobs 2 / jobs 1 x{v['scaling']:.2f}"
                  f"  (the floor's x{v['floor_scaling']:.2f} on the same episodes: "
                  f"{v['scaling'] / v['floor_scaling']:.0%})")

        sizes = [int(s) for s in a.sizes.split(",")]
        print("\n2. peak RSS (MiB) of one process: --jobs 1, and the largest process of --jobs 2")
        rss = {}
        for s in sizes:
            ds = make_data(base, s, a.duration_s)
            rss[s] = {f"{v}_j{j}": peak_rss_mib(v, ds, j) for v in ("features", "tensors") for j in (1, 2)}
            print(f"   {s:>5} episodes/host ({2 * s:>5} episodes): "
                  + "   ".join(f"{v} {rss[s][f'{v}_j1']:6.1f} / {rss[s][f'{v}_j2']:6.1f}"
                               for v in ("features", "tensors")))

        per_ep = r["tensor_bytes_per_episode"]
        f2, t2 = (r["steady"].get(k, r["e2e"][k]) for k in ("features_j2", "tensors_j2"))
        print(f"\n3. full scale ({FULL_EPISODES} episodes of {a.duration_s} s), at the steady jobs-2 rates above")
        print(f"   features {FULL_EPISODES / f2 / 3600:5.2f} h   tensors {FULL_EPISODES / t2 / 3600:5.2f} h   "
              f"decode floor {FULL_EPISODES / r['steady'].get('floor_j2', r['e2e']['floor_j2']) / 3600:5.2f} h")
        print(f"   tensor shards {per_ep / 1e3:.0f} kB/episode -> {per_ep * FULL_EPISODES / 1e9:.1f} GB "
              f"(seed: ~{FULL_TENSOR_GB:.0f} GB, i.e. ~{FULL_TENSOR_GB * 1e9 / FULL_EPISODES / 1e3:.0f} kB/episode;"
              f" time scales with episode duration)")
        if a.json:
            print(json.dumps({"throughput": r, "paired": pr, "rss_mib": rss}, indent=1))
    finally:
        if a.keep:
            print(f"\nkept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
