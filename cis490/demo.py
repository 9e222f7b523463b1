"""``cis490-spool demo``: the whole product on one machine, in one command.

synthetic store → validate → features + tensors → init ./spool → reload the
example manifest → two local workers that behave like two hosts (``pi``:
summary models only, as in the seed's smoke run; ``lab-gpu``: everything)
drain the queue under a live status view → evaluate → the comparison table.

Re-running reuses what is already there and says so: each data stage is
skipped when a stamp records the same inputs and its outputs still hash to
what was recorded; trained models live in the content-addressed store, so
jobs that are done stay done and nothing is retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cis490.common import atomic_write

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "etc" / "training_manifest.toml.example"
DEMO_HOSTS = (("pi", 1), ("lab-gpu", 1))  # (host id, slots): 2 cores, one job each


def say(msg: str) -> None:
    print(f"demo: {msg}", flush=True)


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for p in files:
            if p.name.startswith(".") or p.name.endswith(".stamp.json"):
                continue
            h.update(str(p.relative_to(root.parent)).encode())
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def stage(name: str, stamp_dir: Path, params: dict, inputs: list[Path], outputs: list[Path], args: list[str]) -> bool:
    """Run one pipeline stage unless a stamp shows it is already built. True if it ran."""
    stamp = stamp_dir / f".{name}.stamp.json"
    key = {"params": params, "inputs": _digest(inputs) if inputs else None}
    if stamp.is_file() and all(p.exists() for p in outputs):
        recorded = json.loads(stamp.read_text())
        if recorded.get("key") == key and recorded.get("outputs") == _digest(outputs):
            say(f"{name}: up to date (same inputs, outputs hash to {recorded['outputs'][:12]}…), reused")
            return False
    say(f"{name}: cis490 {' '.join(args)}")
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "cis490", *args], check=True)
    atomic_write(stamp, json.dumps({"key": key, "outputs": _digest(outputs)}, indent=1))
    say(f"{name}: done in {time.monotonic() - t0:.1f} s")
    return True


# The demo's world: the default world (four hosts, benign-only majority, random onsets,
# eight weeks of drift) at a size that trains in a few minutes on 2 cores.
DEMO_WORLD = {"episodes_per_host": 20, "min_duration_s": 60, "max_duration_s": 240, "benign_frac": 0.55}


def build_data(data: Path, world: dict, seed: int, jobs: int) -> dict[str, Path]:
    data.mkdir(parents=True, exist_ok=True)
    store, validation = data / "store", data / "validation_v1.parquet"
    features, tensors = data / "features", data / "tensors"
    from cis490.data.synth import COLLECTOR_VERSION

    flags = [a for k, v in sorted(world.items()) for a in (f"--{k.replace('_', '-')}", str(v))]
    # the generator's version is part of the stamp: a store of an older world is rebuilt
    stage("synth", data, {**world, "seed": seed, "world": COLLECTOR_VERSION}, [], [store],
          ["synth", "--out", str(store), *flags, "--seed", str(seed), "--jobs", str(jobs)])
    # params name the table's version: a table from before onset_ns/collector_version is rebuilt
    stage("validate", data, {"columns": "onset_ns,collector_version"}, [store], [validation],
          ["validate", "--store", str(store), "--out", str(validation), "--jobs", str(jobs)])
    stage("features", data, {}, [store, validation], [features],
          ["features", "--validation", str(validation), "--store", str(store), "--out-dir", str(features),
                "--jobs", str(jobs)])
    stage("tensors", data, {}, [store, validation], [tensors],
          ["tensors", "--validation", str(validation), "--store", str(store), "--out-dir", str(tensors),
                "--jobs", str(jobs)])
    return {"validation": validation, "features": features, "tensors": tensors}


def drain(spool, bin_path: Path, quiet: bool) -> None:
    """Two workers, two 'hosts', under a live view until both have drained."""
    from cis490.fleet import snapshot, tui

    logs = spool.root.parent / "demo-data" / "worker-logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for host, slots in DEMO_HOSTS:
        fh = open(logs / f"{host}.log", "ab")
        procs.append((host, fh, subprocess.Popen(
            [sys.executable, str(bin_path), "--spool", str(spool.root), "work", "--drain", "--host-id", host,
             "--slots", str(slots), "--poll-s", "1"], stdout=fh, stderr=subprocess.STDOUT)))
    say(f"workers: {', '.join(h for h, _ in DEMO_HOSTS)} (logs in {logs})")
    try:
        if quiet or not sys.stdout.isatty():
            last = None
            while any(p.poll() is None for _, _, p in procs):
                counts = spool.counts()
                if counts != last:
                    say("queue: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
                    last = counts
                time.sleep(2)
        else:
            from rich.live import Live

            with Live(tui.render(snapshot.status(spool)), refresh_per_second=2) as live:
                while any(p.poll() is None for _, _, p in procs):
                    time.sleep(1)
                    live.update(tui.render(snapshot.status(spool)))
    except KeyboardInterrupt:
        for _, _, p in procs:
            p.terminate()  # SIGTERM: workers release their claims
        raise
    finally:
        for _, fh, p in procs:
            p.wait()
            fh.close()


def run_demo(spool_path: str, *, world: dict | None = None, seed: int = 0, quiet: bool = False) -> int:
    """The demo; ``world`` overrides keys of ``DEMO_WORLD`` (synth options by their keyword)."""
    import cis490.kinds  # noqa: F401 - registers the model job kinds for the reload
    from cis490.fleet.layout import JobState
    from cis490.fleet.spool import Spool

    t_start = time.monotonic()
    root = Path(spool_path).absolute()
    data = root.parent / "demo-data"  # the example manifest's [data] paths: ../demo-data/…
    timings = {}
    t0 = time.monotonic()
    build_data(data, {**DEMO_WORLD, **(world or {})}, seed, jobs=min(2, os.cpu_count() or 1))
    timings["data"] = time.monotonic() - t0

    spool = Spool.open(root) if (root / "spool.toml").exists() else Spool.init(root)
    result = spool.reload(MANIFEST)
    say(f"spool {root}: reloaded {MANIFEST.name}: {result.new} new, {result.unchanged} unchanged")
    for loc in spool.scan(JobState.FAILED):
        name = spool.name_of(loc)
        spool.requeue(name, by="demo")
        say(f"requeued {name}, which failed in an earlier run")
    before = spool.counts()
    if before["pending"] == 0 and before["claimed"] == 0:
        say(f"all {before['done']} jobs already done: their models are in the content-addressed store, "
            f"nothing to retrain")
    t0 = time.monotonic()
    drain(spool, REPO / "bin" / "cis490-spool", quiet)
    timings["train"] = time.monotonic() - t0
    counts = spool.counts()
    say("queue: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if counts["failed"]:
        say("some jobs failed: `bin/cis490-spool status` shows their errors, `logs JOB` their output")

    reports = root.parent / "reports" / "eval"
    t0 = time.monotonic()
    say("evaluate: every model and four baselines on the held-out host: thresholds fixed on "
        "validation, false alarms, time to detect, 95 % CIs by episode bootstrap")
    r = subprocess.run([sys.executable, "-m", "cis490", "eval", "--spool", str(root),
                        "--validation", str(data / "validation_v1.parquet"),
                        "--summary", str(data / "features" / "features_window_v1.parquet"),
                        "--schema", str(data / "features" / "feature_schema_v1.json"),
                        "--tensors", str(data / "tensors"), "--reports-dir", str(reports)])
    timings["eval"] = time.monotonic() - t0
    timings["total"] = time.monotonic() - t_start
    say("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    atomic_write(data / "demo-timings.json", json.dumps(timings, indent=1))
    say(f"report: {reports / 'comparison.md'} (plots beside it)")
    say(f"models: {root / 'models'}  (bin/cis490-spool models)")
    return 1 if r.returncode or counts["failed"] else 0
