"""Claim races between real processes: every job done exactly once."""

from __future__ import annotations

import json
import multiprocessing as mp
from collections import Counter
from pathlib import Path

import pytest

from cis490.fleet.claim import claim_next, claimer_for
from cis490.fleet import Spool

from .conftest import smoke_manifest, worker_info


def _drain(root: str, host: str, out_dir: str, barrier) -> None:
    spool = Spool.open(root)
    w = worker_info(host)
    art = Path(out_dir) / w.id
    art.mkdir(parents=True)
    barrier.wait()
    while True:
        claim = claim_next(spool, w)
        if claim is None:
            # confirm with a fresh scan before leaving
            claimer_for(spool, w).invalidate()
            claim = claim_next(spool, w)
            if claim is None:
                return
        (art / "model.json").write_text(claim.name)
        claim.heartbeat()
        claim.complete(art)


def _race(tmp_path, spool: Spool, n_workers: int, n_jobs: int) -> None:
    smoke_manifest(tmp_path / "m.toml", n_jobs)
    assert spool.reload(tmp_path / "m.toml").new == n_jobs
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(n_workers)
    procs = [ctx.Process(target=_drain, args=(str(spool.root), f"h{i}", str(tmp_path / "arts"), barrier))
             for i in range(n_workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    counts = spool.counts()
    assert counts == {"pending": 0, "claimed": 0, "done": n_jobs, "failed": 0, "cancelled": 0}
    # derive "never claimed by two workers" from the attempt records
    per_job = Counter()
    workers_used = set()
    intervals: dict[str, list[tuple[float, float, str]]] = {}
    for rec_path in (spool.root / "attempts").glob("*/*@*.json"):
        if rec_path.name.endswith(".progress.json"):
            continue
        rec = json.loads(rec_path.read_text())
        per_job[rec["name"]] += 1
        workers_used.add(rec["worker"])
        assert rec["outcome"] == "done"
        intervals.setdefault(rec["name"], []).append((rec["claimed_at"], rec["ended_at"], rec["worker"]))
    assert len(per_job) == n_jobs
    assert set(per_job.values()) == {1}, "a job was claimed more than once"
    assert len(workers_used) == n_workers, "every worker should have won some claims"
    for name, spans in intervals.items():
        spans.sort()
        for (_a0, a1, wa), (b0, _b1, wb) in zip(spans, spans[1:]):
            assert b0 >= a1, f"{name} held by {wa} and {wb} at once"
    # every done job has exactly one artifact record naming it
    names_in_store = Counter(json.loads(p.read_text())["job"] for p in (spool.root / "models").glob("*/*/record.json"))
    assert sum(names_in_store.values()) == n_jobs


def test_two_process_claim_race_every_job_done_once(spool, tmp_path):
    _race(tmp_path, spool, 2, 300)


@pytest.mark.slow
def test_eight_process_claim_race_every_job_done_once(spool, tmp_path):
    _race(tmp_path, spool, 8, 400)
