#!/usr/bin/env python
"""Benchmark of the spool coordinator: throughput and claim latency.

    .venv/bin/python bench/bench_spool.py            # full run (8-12 min on 2 shared cores)
    .venv/bin/python bench/bench_spool.py --quick    # smoke run (~1 min; latency at 100 and 500)
    .venv/bin/python bench/bench_spool.py --profile  # also cProfile spool worker 0 and a warm claimer
    .venv/bin/python bench/bench_spool.py --only throughput --systems spool,sqlite --workers 8 --rounds 3

Results and their reading: docs/BENCH_SPOOL.md.

Everything runs on one disk, in a fresh temporary directory under ``--dir``
(default /work/benchtmp, or $TMPDIR), removed at the end unless ``--keep``.

Sections (each prints a table):

1. rename floor: ``os.rename`` back and forth, with and without an fsync of
   the directory after each rename;
2. throughput: claims+completes per second with 1, 2 and 8 worker processes
   draining the same queue, in rounds that interleave the systems (the disk
   and the CPUs are shared, and their speed drifts by 10x within minutes), with
   the CPU time (user+sys) each system spends per job, for
   - ``spool``: the public API, ``claim_next(spool, worker)`` then
     ``claim.complete(artifact_dir)`` (attempt record + content-addressed
     store + rename to done/; every file fsynced as atomic_write does);
   - ``spool-renames``: the protocol alone, done by this script: the claim
     rename and the done rename, each followed by an fsync of the
     destination directory (2 durable operations per job, as SQLite's 2
     commits) -- the ceiling of the file protocol without bookkeeping;
   - ``sqlite``: the seed's ``claim_next``: one ``UPDATE ... WHERE id =
     (SELECT ... status='pending' ... LIMIT 1) RETURNING``, then a complete
     ``UPDATE``; WAL, synchronous=FULL, busy_timeout;
   - ``sqlite+store``: the same SQLite queue doing the spool's per-job work
     besides the queue (attempt record written twice, artifact put in the
     same content-addressed store) -- same durable work as ``spool``;
   - ``dirq``: PyPI ``dirq`` QueueSimple, lock/get/remove per element (dirq
     never fsyncs: not durable).
3. claim latency with N pending jobs: the cold first claim of a fresh
   worker process (directory scan + parse of every pending spec) and the
   warm per-claim latency of the same Claimer (each claim released again so
   pending stays N), split into the attempt-record write (Claim.start, two
   fsyncs) and the rest (pick + rename).

Setup (enqueueing jobs) is not measured; it runs with fsync disabled and ends
with one ``os.sync()``. Measured code always runs with fsync on.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import json
import multiprocessing as mp
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cis490.fleet.claim import claim_next, claimer_for
from cis490.fleet import Spool  # noqa: E402
from cis490.fleet import claim as claim_mod  # noqa: E402
from cis490.fleet import store  # noqa: E402
from cis490.common import atomic_write, fsync_dir  # noqa: E402
from cis490.fleet.capability import Capability  # noqa: E402
from cis490.fleet.claim import WorkerInfo  # noqa: E402
from cis490.fleet.spec import build_spec  # noqa: E402

CTX = mp.get_context("fork")


# --- helpers ---------------------------------------------------------------------------


def worker_info(host: str) -> WorkerInfo:
    return WorkerInfo.create(host, Capability(host_id=host, cores=2, ram_gib=16.0))


@contextlib.contextmanager
def no_fsync():
    """Setup only: skip fsync (then one os.sync()). Never around measured code."""
    real = os.fsync
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = real
        os.sync()


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def smoke_specs(n: int, tag: str, t0_ns: int):
    base = build_spec({"model": "smoke", "mode": "check",
                       "hyper": {"seconds": 0.0, "payload": "x", "epochs": 1}})
    for i in range(n):
        yield dataclasses.replace(base, hyper={**base.hyper, "payload": f"{tag}{i}"},
                                  enqueued_ns=t0_ns + i)


def smoke_manifest(path: Path, n: int, tag: str) -> Path:
    path.write_text("".join(
        f'[[jobs]]\nmodel = "smoke"\nmode = "check"\n'
        f'hyper = {{ seconds = 0.0, payload = "{tag}{i}", epochs = 1 }}\n\n' for i in range(n)))
    return path


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs)) - 1))]


def print_profile(prof: cProfile.Profile, title: str, n: int = 18) -> None:
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.sort_stats("tottime").print_stats(n)
    print(f"\n--- profile: {title} (sorted by tottime) ---")
    print("\n".join(line for line in s.getvalue().splitlines() if line.strip())[:6000])


def run_workers(target, n: int, args: tuple, jobs: int, timeout: float = 600) -> dict:
    """Start n processes, release them together, time until the last is done."""
    barrier = CTX.Barrier(n + 1)
    q = CTX.Queue()
    procs = [CTX.Process(target=target, args=(i, barrier, q, *args)) for i in range(n)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.monotonic()
    results = [q.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"{target.__name__} worker exited {p.exitcode}")
    done = sum(r["n"] for r in results)
    elapsed = max(r["end"] for r in results) - t0
    cpu = sum(r["cpu"] for r in results)
    if done != jobs:
        raise RuntimeError(f"{target.__name__}: {done} jobs done, expected {jobs}")
    return {"elapsed": elapsed, "ops": done / elapsed, "per_worker": [r["n"] for r in results],
            "cpu_ms_per_job": 1e3 * cpu / done,
            "extra": {k: sum(r.get(k, 0) for r in results) for k in ("lost", "busy")}}


# --- 1. rename floor -----------------------------------------------------------------------


def bench_rename(root: Path, seconds: float, atomic: bool = True) -> list[tuple[str, float]]:
    d = root / "rename"
    d.mkdir()
    a, b = d / "a", d / "b"
    a.write_bytes(b"x" * 300)
    out = []
    for label, sync in (("rename", False), ("rename + fsync(dir)", True)):
        fd = os.open(d, os.O_RDONLY)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            os.rename(a, b)
            if sync:
                os.fsync(fd)
            os.rename(b, a)
            if sync:
                os.fsync(fd)
            n += 2
        os.close(fd)
        out.append((label, n / (time.perf_counter() - t0)))
    if not atomic:
        return out
    # the spool's own durable publish, for scale: atomic_write of a 300-byte file
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        atomic_write(d / "c", b"x" * 300, tmp_dir=d)
        n += 1
    out.append(("atomic_write (fsync file + dir)", n / (time.perf_counter() - t0)))
    return out


# --- 2. throughput workers ---------------------------------------------------------------


def _spool_worker(i, barrier, q, root, art_root, profile):
    spool = Spool.open(root)
    w = worker_info(f"bench{i}")
    art = Path(art_root) / w.id
    art.mkdir(parents=True)
    prof = cProfile.Profile() if (profile and i == 0) else None
    barrier.wait()
    cpu0 = time.process_time()
    if prof:
        prof.enable()
    n = 0
    while True:
        c = claim_next(spool, w)
        if c is None:
            claimer_for(spool, w).invalidate()  # confirm with a fresh scan before leaving
            c = claim_next(spool, w)
            if c is None:
                break
        (art / "model.json").write_text(c.name)
        c.complete(art)
        n += 1
    end = time.monotonic()
    if prof:
        prof.disable()
        print_profile(prof, "spool worker 0 (claim + complete)")
        sys.stdout.flush()
    q.put({"n": n, "end": end, "cpu": time.process_time() - cpu0})


def setup_spool(root: Path, jobs: int) -> Spool:
    spool = Spool.init(root / "spool", heartbeat_s=30, stale_after_s=600)
    with no_fsync():
        r = spool.reload(smoke_manifest(root / "m.toml", jobs, "t"))
    assert r.new == jobs, r
    return spool


def _renames_worker(i, barrier, q, root):
    root = Path(root)
    pend, claimed, done = root / "pending", root / "claimed", root / "done"
    wid = f"bench{i}-{os.getpid()}"
    barrier.wait()
    cpu0 = time.process_time()
    n = lost = 0
    while True:
        names = sorted(os.listdir(pend))
        if not names:
            break
        for fn in names:
            dst = claimed / f"{fn[:-5]}@{wid}.json"
            try:
                os.rename(pend / fn, dst)
            except FileNotFoundError:
                lost += 1
                continue
            fsync_dir(claimed)
            json.loads(dst.read_bytes())
            os.rename(dst, done / fn)
            fsync_dir(done)
            n += 1
    q.put({"n": n, "end": time.monotonic(), "cpu": time.process_time() - cpu0, "lost": lost})


def setup_renames(root: Path, jobs: int) -> Path:
    d = root / "renames"
    for s in ("pending", "claimed", "done"):
        (d / s).mkdir(parents=True)
    for spec in smoke_specs(jobs, "r", time.time_ns()):
        (d / "pending" / f"{spec.name}.json").write_bytes(spec.to_bytes())
    os.sync()
    return d


SQL_CLAIM = ("UPDATE jobs SET status='claimed', worker=?, claimed_at=? WHERE id = "
             "(SELECT id FROM jobs WHERE status='pending' ORDER BY priority DESC, id LIMIT 1) "
             "RETURNING id, name, spec")
SQL_DONE = "UPDATE jobs SET status='done', finished_at=? WHERE id=? AND worker=? AND status='claimed'"


def _sql(con, sql, args):
    """Execute with a retry on SQLITE_BUSY beyond busy_timeout (counted)."""
    busy = 0
    while True:
        try:
            return con.execute(sql, args).fetchall(), busy
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            busy += 1


def _sqlite_worker(i, barrier, q, db, store_root):
    con = sqlite3.connect(db, isolation_level=None, timeout=60)
    con.execute("PRAGMA busy_timeout=60000")
    con.execute("PRAGMA synchronous=FULL")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    wid = f"bench{i}-{os.getpid()}"
    if store_root:
        sroot = Path(store_root)
        art = sroot / "arts" / wid
        art.mkdir(parents=True)
    barrier.wait()
    cpu0 = time.process_time()
    n = busy = 0
    while True:
        rows, b = _sql(con, SQL_CLAIM, (wid, time.time()))
        busy += b
        if not rows:
            break
        jid, name, spec = rows[0]
        spec = json.loads(spec)
        if store_root:  # the spool's per-job work besides the queue itself
            rec_path = sroot / "attempts" / name / f"1@{wid}.json"
            rec = {"name": name, "worker": wid, "outcome": "running", "claimed_at": time.time()}
            claim_mod.att.write_record(rec_path, rec, sroot / "tmp")
            (art / "model.json").write_text(name)
            stored = store.put(sroot, "smoke_check", art, {"job": name, "spec": spec})
            claim_mod.att.write_record(rec_path, {**rec, "outcome": "done", "digest": stored.digest},
                                       sroot / "tmp")
        _, b = _sql(con, SQL_DONE, (time.time(), jid, wid))
        busy += b
        n += 1
    con.close()
    q.put({"n": n, "end": time.monotonic(), "cpu": time.process_time() - cpu0, "busy": busy})


def setup_sqlite(root: Path, jobs: int, with_store: bool) -> tuple[str, str | None]:
    d = root / "sqlite"
    d.mkdir()
    db = str(d / "jobs.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT UNIQUE, spec TEXT, "
                "status TEXT, priority INTEGER, worker TEXT, claimed_at REAL, finished_at REAL)")
    con.execute("CREATE INDEX jobs_pending ON jobs (status, priority DESC, id)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO jobs (name, spec, status, priority) VALUES (?, ?, 'pending', 0)",
                    ((s.name, s.to_bytes().decode()) for s in smoke_specs(jobs, "s", time.time_ns())))
    con.execute("COMMIT")
    con.close()
    store_root = None
    if with_store:
        store_root = str(d / "store")
        for sub in ("tmp", "models", "attempts"):
            (d / "store" / sub).mkdir(parents=True)
    os.sync()
    return db, store_root


def _dirq_worker(i, barrier, q, path):
    from dirq.QueueSimple import QueueSimple

    dq = QueueSimple(path)
    barrier.wait()
    cpu0 = time.process_time()
    n = lost = 0
    while True:
        got = False
        name = dq.first()
        while name:
            if dq.lock(name):
                json.loads(dq.get(name))
                dq.remove(name)
                n += 1
                got = True
            else:
                lost += 1
            name = dq.next()
        if not got:
            break
    q.put({"n": n, "end": time.monotonic(), "cpu": time.process_time() - cpu0, "lost": lost})


def setup_dirq(root: Path, jobs: int) -> str:
    from dirq.QueueSimple import QueueSimple

    path = str(root / "dirq")
    dq = QueueSimple(path)
    for s in smoke_specs(jobs, "d", time.time_ns()):
        dq.add(s.to_bytes())
    os.sync()
    return path


def fsync_probe(root: Path, seconds: float) -> float:
    """Current rate of rename + fsync(dir): the disk's state right now (it is shared)."""
    return dict(bench_rename_once(root, seconds))["rename + fsync(dir)"]


def bench_rename_once(root: Path, seconds: float) -> list[tuple[str, float]]:
    d = Path(tempfile.mkdtemp(dir=root))
    try:
        return bench_rename(d, seconds, atomic=False)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_system(system: str, n: int, j: int, run_root: Path, profile: bool) -> dict:
    if system == "spool":
        spool = setup_spool(run_root, j)
        r = run_workers(_spool_worker, n, (str(spool.root), str(run_root / "arts"), profile), j)
        c = spool.counts()
        assert c["done"] == j and c["pending"] == c["claimed"] == 0, c
    elif system == "spool-renames":
        r = run_workers(_renames_worker, n, (str(setup_renames(run_root, j)),), j)
    elif system in ("sqlite", "sqlite+store"):
        db, sroot = setup_sqlite(run_root, j, system == "sqlite+store")
        r = run_workers(_sqlite_worker, n, (db, sroot), j)
        con = sqlite3.connect(db)
        assert con.execute("SELECT count(*) FROM jobs WHERE status='done'").fetchone()[0] == j
        con.close()
    elif system == "dirq":
        r = run_workers(_dirq_worker, n, (setup_dirq(run_root, j),), j)
    else:
        raise ValueError(system)
    return r


def bench_throughput(root: Path, systems: list[str], workers: list[int], jobs: dict[str, int],
                     rounds: int, profile: bool) -> list[dict]:
    """Rounds interleave the systems, so a change in the shared disk's speed hits all alike."""
    rows = []
    for rnd in range(rounds):
        probe = fsync_probe(root, 0.5)
        print(f"  round {rnd + 1}/{rounds}: disk now does {probe:.0f} rename+fsync(dir)/s, load {loadavg()}",
              flush=True)
        for n in workers:
            for system in systems:
                run_root = root / f"tp-{system}-{n}-{rnd}"
                run_root.mkdir()
                j = jobs[system]
                r = run_system(system, n, j, run_root, profile and rnd == 0)
                row = {"system": system, "workers": n, "round": rnd, "jobs": j, "probe": probe, **r,
                       "load": loadavg()}
                rows.append(row)
                print(f"    {system:14s} {n} workers: {r['ops']:9.1f} jobs/s  ({j} jobs in {r['elapsed']:.2f} s; "
                      f"CPU {r['cpu_ms_per_job']:.2f} ms/job; "
                      f"per worker {r['per_worker']}; lost races {r['extra']['lost']}, "
                      f"busy retries {r['extra']['busy']}; load {row['load']})", flush=True)
                shutil.rmtree(run_root, ignore_errors=True)
    print(f"\n  summary: jobs/s, median of {rounds} round(s) (min-max)")
    print("  " + f"{'system':14s}" + "".join(f"{str(n) + ' workers':>24s}" for n in workers))
    for system in systems:
        cells = []
        for n in workers:
            xs = [r["ops"] for r in rows if r["system"] == system and r["workers"] == n]
            cells.append(f"{statistics.median(xs):8.1f} ({min(xs):.0f}-{max(xs):.0f})")
        print("  " + f"{system:14s}" + "".join(f"{c:>24s}" for c in cells))
    print(f"\n  summary: CPU ms per job (user+sys of all workers / jobs), median of {rounds} round(s)")
    for system in systems:
        medians = [statistics.median(r['cpu_ms_per_job'] for r in rows
                                     if r['system'] == system and r['workers'] == n) for n in workers]
        cells = [f"{m:8.2f}" for m in medians]
        print("  " + f"{system:14s}" + "".join(f"{c:>24s}" for c in cells))
    return rows


# --- 3. claim latency ----------------------------------------------------------------------


def _latency_child(i, barrier, q, root, warm_claims, profile):
    spool = Spool.open(root)
    w = worker_info(f"lat{i}")
    start_s: list[float] = []
    real_start = claim_mod.Claim.start.__func__

    def timed_start(cls, *a, **k):  # instrumentation only: time the attempt-record write
        t = time.perf_counter()
        try:
            return real_start(cls, *a, **k)
        finally:
            start_s.append(time.perf_counter() - t)

    claim_mod.Claim.start = classmethod(timed_start)
    barrier.wait()
    cold_prof = cProfile.Profile() if profile else None
    t, cpu0 = time.perf_counter(), time.process_time()
    if cold_prof:
        cold_prof.enable()
    c = claim_next(spool, w)
    if cold_prof:
        cold_prof.disable()
    cold, cold_cpu = time.perf_counter() - t, time.process_time() - cpu0
    cold_start = start_s[-1]
    c.release("bench")
    claimer = claimer_for(spool, w)
    scans = [claimer._scanned_at]
    total, rest = [], []
    prof = cProfile.Profile() if profile else None
    t_loop = time.perf_counter()
    for _ in range(warm_claims):
        if prof:
            prof.enable()
        t = time.perf_counter()
        c = claim_next(spool, w)
        dt = time.perf_counter() - t
        if prof:
            prof.disable()
        total.append(dt)
        rest.append(dt - start_s[-1])
        if claimer._scanned_at != scans[-1]:
            scans.append(claimer._scanned_at)
        c.release("bench")
    loop_s = time.perf_counter() - t_loop
    rescan, rescan_cpu = [], []
    scan_prof = cProfile.Profile() if profile else None
    for _ in range(2):
        t, cpu0 = time.perf_counter(), time.process_time()
        if scan_prof:
            scan_prof.enable()
        claimer.scan()
        if scan_prof:
            scan_prof.disable()
        rescan.append(time.perf_counter() - t)
        rescan_cpu.append(time.process_time() - cpu0)
    if prof:
        pending = len(os.listdir(Path(root) / "pending"))
        print_profile(cold_prof, f"cold first claim of a fresh worker, {pending} pending")
        print_profile(prof, f"warm claims of one Claimer, {pending} pending")
        print_profile(scan_prof, f"2 rescans with every spec cached, {pending} pending")
        sys.stdout.flush()
    q.put({"n": 0, "end": time.monotonic(), "cold": cold, "cold_cpu": cold_cpu, "cold_start": cold_start,
           "rescan_cpu": min(rescan_cpu), "total": total,
           "rest": rest, "start": start_s[1:], "rescans": len(scans) - 1, "rescan_s": min(rescan),
           "loop_s": loop_s})


def bench_latency(root: Path, sizes: list[int], warm_claims: int, cold_repeats: int,
                  profile: bool) -> list[dict]:
    rows = []
    for n in sizes:
        d = root / f"lat-{n}"
        spool = Spool.init(d / "spool", heartbeat_s=30, stale_after_s=600)
        t = time.perf_counter()
        with no_fsync():
            for spec in smoke_specs(n, f"l{n}-", time.time_ns()):
                assert spool._enqueue(spec)
        setup_s = time.perf_counter() - t
        colds, cold_cpus, res = [], [], None
        probe = fsync_probe(root, 0.5)
        reps = cold_repeats if n < 50_000 else 1  # a cold claim at 100 000 takes minutes here
        for rep in range(reps):
            # a fresh process each time; only the last one also runs the warm loop
            last = rep == reps - 1
            barrier, q = CTX.Barrier(1), CTX.Queue()
            p = CTX.Process(target=_latency_child,
                            args=(rep, barrier, q, str(spool.root), warm_claims if last else 0,
                                  profile and last and n == sizes[-1]))
            p.start()
            r = q.get(timeout=900)
            p.join(timeout=60)
            colds.append(r["cold"])
            cold_cpus.append(r["cold_cpu"])
            res = r
        assert spool.counts()["pending"] == n
        row = {
            "pending": n, "setup_s": setup_s, "cold_s": statistics.median(colds), "colds": colds,
            "cold_cpu_s": statistics.median(cold_cpus), "rescan_cpu_s": res["rescan_cpu"],
            "cold_start_s": res["cold_start"],
            "warm_median": statistics.median(res["total"]), "warm_p99": pct(res["total"], 99),
            "warm_mean": statistics.fmean(res["total"]), "warm_max": max(res["total"]),
            "pick_median": statistics.median(res["rest"]), "pick_p99": pct(res["rest"], 99),
            "pick_mean": statistics.fmean(res["rest"]),
            "record_median": statistics.median(res["start"]),
            "rescans": res["rescans"], "rescan_s": res["rescan_s"], "claims": len(res["total"]),
            "loop_s": res["loop_s"], "probe": probe, "load": loadavg(),
        }
        rows.append(row)
        print(f"  {n:>7} pending: cold first claim {row['cold_s']*1e3:8.1f} ms "
              f"(runs: {', '.join(f'{c*1e3:.0f}' for c in colds)} ms; CPU {row['cold_cpu_s']*1e3:.0f} ms) "
              f"| warm median "
              f"{row['warm_median']*1e3:.2f} ms, p99 {row['warm_p99']*1e3:.2f} ms, mean "
              f"{row['warm_mean']*1e3:.2f} ms, max {row['warm_max']*1e3:.1f} ms | pick+rename median "
              f"{row['pick_median']*1e3:.3f} ms, p99 {row['pick_p99']*1e3:.3f} ms, mean "
              f"{row['pick_mean']*1e3:.3f} ms | attempt record median {row['record_median']*1e3:.2f} ms | "
              f"{row['rescans']} rescans in {row['claims']} claims ({row['loop_s']:.1f} s), one rescan "
              f"{row['rescan_s']*1e3:.0f} ms (CPU {row['rescan_cpu_s']*1e3:.0f} ms) | setup {setup_s:.0f} s; "
              f"disk {probe:.0f} rename+fsync/s, "
              f"load {row['load']}", flush=True)
        shutil.rmtree(d, ignore_errors=True)
    return rows


# --- report ----------------------------------------------------------------------------------


def machine() -> str:
    df = subprocess.run(["df", "-T", "."], capture_output=True, text=True).stdout.strip().splitlines()
    return (f"{platform.node()} {platform.platform()}; {os.cpu_count()} CPUs; Python "
            f"{platform.python_version()}; SQLite {sqlite3.sqlite_version}; load {loadavg()}\n"
            f"  disk: {df[-1] if df else '?'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (< 1 min)")
    ap.add_argument("--profile", action="store_true", help="cProfile one spool worker and a warm claimer")
    ap.add_argument("--dir", default=os.environ.get("BENCH_DIR", "/work/benchtmp" if Path("/work").is_dir()
                                                     else tempfile.gettempdir()))
    ap.add_argument("--only", choices=("rename", "throughput", "latency"), action="append")
    ap.add_argument("--systems", default="spool,spool-renames,sqlite,sqlite+store,dirq")
    ap.add_argument("--workers", default="1,2,8")
    ap.add_argument("--sizes", default=None, help="pending sizes for latency (default 100,10000,100000)")
    ap.add_argument("--rounds", type=int, help="throughput rounds (default 2; --quick 1)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    q = args.quick
    json_out = Path(args.json).absolute() if args.json else None
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-spool-", dir=args.dir))
    os.chdir(root)
    sections = args.only or ["rename", "throughput", "latency"]
    jobs = ({"spool": 40, "spool-renames": 150, "sqlite": 150, "sqlite+store": 40, "dirq": 400} if q else
            {"spool": 400, "spool-renames": 1000, "sqlite": 1500, "sqlite+store": 300, "dirq": 3000})
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([100, 500] if q else [100, 10_000, 100_000])
    results: dict = {"machine": machine(), "dir": str(root), "quick": q}
    print(f"bench_spool {'--quick ' if q else ''}in {root}\n  {results['machine']}", flush=True)
    t_all = time.perf_counter()
    try:
        if "rename" in sections:
            print("\n[1] rename floor (one file renamed back and forth, same directory)")
            results["rename"] = bench_rename(root, 0.3 if q else 3.0)
            for label, rate in results["rename"]:
                print(f"  {label:34s} {rate:10.0f} /s")
        if "throughput" in sections:
            print("\n[2] throughput: claims+completes per second (all workers drain one queue)")
            results["throughput"] = bench_throughput(
                root, args.systems.split(","), [int(w) for w in args.workers.split(",")], jobs,
                args.rounds or (1 if q else 2), args.profile)
        if "latency" in sections:
            print("\n[3] claim latency (cold = a fresh worker process's first claim; warm = one Claimer, "
                  "each claim then released)")
            results["latency"] = bench_latency(root, sizes, 40 if q else 300, 1 if q else 2, args.profile)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results["total_s"] = time.perf_counter() - t_all
    print(f"\ntotal {results['total_s']:.0f} s")
    if json_out:
        json_out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
