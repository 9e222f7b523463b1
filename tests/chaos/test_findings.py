"""Coordinator bugs found by the chaos runs, as deterministic reproducers.

Each was an xfail reproducer until the coordinator was fixed; now they guard the fixes.
"""

from __future__ import annotations

import time

import pytest

from cis490.fleet.claim import claim_next
from cis490.fleet import Spool
from cis490.fleet.claim import Claimer
from tests.fleet.conftest import smoke_manifest, worker_info


def test_claim_survives_a_sweep_that_takes_the_fresh_claim(tmp_path):
    """Seen in the local-disk chaos run: a worker exited 1 with
    ``cis490-spool work: No such file or directory: …/claimed/NAME@W.json`` right after
    another worker logged ``swept stale claims: requeued [NAME]``.

    Interleaving: W renames pending/NAME → claimed/NAME@W; the renamed file still has the
    spec's enqueue-time mtime, so a sweeper whose stat came before W's first ``utime``
    judges it stale and takes it (rename into tmp/, then → pending/). W's ``read_spec(dst)``
    then raises FileNotFoundError, which nothing in ``Claimer.claim`` or ``Worker._loop``
    catches. The same happens when the sweeper's take-then-judge puts the claim back:
    W reads during the instant the file is parked in tmp/.
    """
    spool = Spool.init(tmp_path / "spool", heartbeat_s=0.2, stale_after_s=2.0)
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    claimer = Claimer(spool, worker_info("h1"))
    real = spool.read_spec

    def read_spec_while_swept(path):
        if path.parent.name == "claimed":
            # the sweeper that saw the enqueue-time mtime acts now
            assert spool.sweep(now=time.time() + 100).requeued
        return real(path)

    spool.read_spec = read_spec_while_swept
    got = claimer.claim()  # expected: None (lost the job to the sweep), not an exception
    assert got is None
    assert spool.counts()["pending"] == 1


def test_lease_lost_during_settle_closes_the_attempt_record(tmp_path):
    """Seen in the Syncthing chaos run (settle 2 s): worker W claimed NAME (attempt 2) while
    the other side finished it; ``done/NAME`` arrived, a sweep's reconcile removed W's
    claim, W's settle heartbeat got ENOENT → LeaseLost, which ``Worker._run_job`` catches
    without ``claim.mark_lost()`` (only ``_supervise`` calls it). The record stays
    ``running`` for good: ``counted_attempts`` counts it, ``show`` says running."""
    import json
    import os
    import threading

    from cis490.fleet.attempts import counted_attempts
    from cis490.fleet.worker import Worker, WorkerOptions

    spool = Spool.init(tmp_path / "spool", heartbeat_s=0.2, stale_after_s=4.0,
                       consistency="eventual", settle_s=1.0)
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    info = worker_info("h1")
    claim = claim_next(spool, info)
    assert claim is not None
    # reconcile on another worker removes our claim (the job is done elsewhere)
    threading.Timer(0.3, lambda: os.unlink(claim.path)).start()
    Worker(spool, info, WorkerOptions(mode="once", work_root=tmp_path / "work"))._run_job(claim)
    rec = json.loads(claim.record_path.read_text())
    assert rec["outcome"] != "running" and "ended_at" in rec, rec
    assert counted_attempts(spool.attempts_dir(claim.name)) == 0


def test_a_sweeper_killed_mid_sweep_loses_no_job(tmp_path, monkeypatch):
    """Seen in the local-disk chaos run: job smoke_chaos.32a1ca253554 ended in no state
    directory at all (the run timed out with 499/500 done, fsck clean); it sat in
    ``tmp/NAME@W.json.sweep-XXXX``. Timeline: W claims (09:47:39.8609) and touches its claim
    (.8601 mtime); sweeper S, whose stat had seen the spec's enqueue-time mtime, takes the
    claim into tmp/ (ctime .8622) to judge it; the killer SIGKILLs S (.866) before it puts
    the claim back. W's next heartbeat: LeaseLost, job stopped. Workers' sweeps recover parked
    files only after 3600 s (``full=False``), ``cis490-spool sweep`` after 60 s, and fsck
    does not look in tmp/: for an hour the job exists nowhere."""
    from pathlib import Path

    spool = Spool.init(tmp_path / "spool", heartbeat_s=0.2, stale_after_s=2.0)
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    claim = claim_next(spool, worker_info("h1"))
    assert claim is not None

    class Killed(BaseException):
        pass

    real_lstat = Path.lstat

    def dying_lstat(self, *a, **k):
        if ".sweep-" in self.name:  # right after the take: the sweeper is SIGKILLed
            raise Killed()
        return real_lstat(self, *a, **k)

    monkeypatch.setattr(Path, "lstat", dying_lstat)
    with pytest.raises(Killed):
        spool.sweep(now=time.time() + 100, full=False)
    monkeypatch.undo()
    assert spool.locate(claim.name) == []          # the job is in no state directory now
    # two minutes later (60 x stale_after_s), the other workers' routine sweeps should have it back
    spool.sweep(now=time.time() + 120, full=False)
    assert [loc.state.value for loc in spool.locate(claim.name)] == ["pending"]
