"""The eventual (Syncthing) mode, simulated on one disk: rival claims, settle,
reconciliation by precedence, conflict files. The real two-device runs live
in tests/netfs."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
import time

import pytest

from cis490.fleet.claim import claim_next
from cis490.fleet import JobState, LeaseLost, Spool, SpoolError
from cis490.fleet.attempts import counted_attempts
from cis490.fleet.claim import Claim

from .conftest import cli, smoke_manifest, worker_info


@pytest.fixture
def espool(tmp_path) -> Spool:
    return Spool.init(tmp_path / "spool", consistency="eventual", heartbeat_s=0.1, stale_after_s=2.0,
                      settle_s=0.3)


def one_job(spool, tmp_path) -> str:
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    return spool.name_of(spool.scan(JobState.PENDING)[0])


def fake_rival_claim(spool, name: str, worker: str) -> os.PathLike:
    """What Syncthing delivers when another device claimed the same job."""
    src = next((spool.root / "claimed").glob(f"{name}@*.json"), None) or spool.path_of(JobState.PENDING, name)
    dst = spool.path_of(JobState.CLAIMED, name, worker)
    shutil.copyfile(src, dst)
    return dst


def test_eventual_mode_needs_a_settle_period(tmp_path):
    with pytest.raises(SpoolError, match="settle_s"):
        Spool.init(tmp_path / "s", consistency="eventual", heartbeat_s=1, stale_after_s=10, settle_s=0)


def test_init_writes_stignore_for_tmp_and_locks(espool):
    text = (espool.root / ".stignore").read_text()
    assert "/tmp" in text.splitlines() and "*.lock" in text.splitlines()


def test_rival_claim_loser_withdraws_and_winner_keeps_it(espool, tmp_path):
    name = one_job(espool, tmp_path)
    me = worker_info("a")
    claim = claim_next(espool, me)
    assert claim is not None
    # our worker id is random, so its rank may beat (or lose to) any short list of rivals:
    # draw rival names until there is one of each
    rivals = (f"rival-{i}" for i in itertools.count())
    mine = Claim.rank(name, me.id)
    winner_rival = next(r for r in rivals if Claim.rank(name, r) < mine)
    rivals = (f"rival-{i}" for i in itertools.count())
    loser_rival = next(r for r in rivals if Claim.rank(name, r) > mine)
    fake_rival_claim(espool, name, loser_rival)
    claim.heartbeat()  # we win against this one: no exception, our file stays
    assert claim.path.exists()
    fake_rival_claim(espool, name, winner_rival)
    with pytest.raises(LeaseLost, match="rival claim"):
        claim.heartbeat()
    assert not claim.path.exists()
    rec = json.loads(claim.record_path.read_text())
    assert rec["outcome"] == "withdrawn"
    assert counted_attempts(espool.attempts_dir(name)) == 0  # a withdrawal does not count


def test_rival_appearing_during_settle_is_detected(espool, tmp_path):
    name = one_job(espool, tmp_path)
    me = worker_info("a")
    claim = claim_next(espool, me)
    winner = next(f"r{i}" for i in range(100) if Claim.rank(name, f"r{i}") < Claim.rank(name, me.id))
    timer = threading.Timer(0.1, fake_rival_claim, (espool, name, winner))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(LeaseLost):
        claim.settle()
    assert time.monotonic() - t0 < espool.settings.settle_s + 0.2


def test_settle_without_rivals_waits_the_settle_period(espool, tmp_path):
    one_job(espool, tmp_path)
    claim = claim_next(espool, worker_info("a"))
    t0 = time.monotonic()
    claim.settle()
    assert time.monotonic() - t0 >= espool.settings.settle_s - 0.01
    assert claim.path.exists()


def test_done_elsewhere_stops_a_duplicate_run(espool, tmp_path):
    name = one_job(espool, tmp_path)
    claim = claim_next(espool, worker_info("a"))
    shutil.copyfile(claim.path, espool.path_of(JobState.DONE, name))  # the other device finished it
    with pytest.raises(LeaseLost, match="already done"):
        claim.heartbeat()


def test_reconcile_removes_a_pending_copy_beside_a_live_claim(espool, tmp_path):
    name = one_job(espool, tmp_path)
    claim = claim_next(espool, worker_info("a"))
    shutil.copyfile(claim.path, espool.path_of(JobState.PENDING, name))  # Syncthing brought it back
    result = espool.sweep()
    assert result.reconciled == (f"pending/{name}.json",)
    assert espool.counts()["pending"] == 0 and claim.path.exists()


@pytest.mark.parametrize("states, keep", [
    (("done", "failed"), "done"),
    (("cancelled", "failed"), "cancelled"),
    (("failed", "pending"), "failed"),
    (("done", "cancelled", "pending"), "done"),
])
def test_reconcile_keeps_the_highest_precedence(espool, tmp_path, states, keep):
    name = one_job(espool, tmp_path)
    src = espool.path_of(JobState.PENDING, name)
    data = src.read_bytes()
    src.unlink()
    for st in states:
        espool.path_of(JobState(st), name).write_bytes(data)
    espool.sweep()
    left = [st.value for st in JobState if espool.path_of(st, name).exists()]
    assert left == [keep]


def test_stale_claim_beside_a_fresh_rival_is_removed_not_requeued(espool, tmp_path):
    name = one_job(espool, tmp_path)
    claim = claim_next(espool, worker_info("a"))
    old = fake_rival_claim(espool, name, "dead-1")
    os.utime(old, (time.time() - 100, time.time() - 100))
    result = espool.sweep()
    assert f"claimed/{name}@dead-1.json" in result.reconciled
    assert result.requeued == () and claim.path.exists() and espool.counts()["pending"] == 0


def test_sync_conflict_files_are_quarantined_and_syncthing_temps_ignored(espool, tmp_path):
    name = one_job(espool, tmp_path)
    pending = espool.root / "pending"
    (pending / f"{name}.sync-conflict-20261129-101010-ABCDEFG.json").write_text("{}")
    (pending / f".syncthing.{name}.json.tmp").write_text("partial")
    (pending / f"~syncthing~{name}.json.tmp").write_text("partial")
    result = espool.sweep()
    assert len(result.quarantined) == 1 and "sync-conflict" in result.quarantined[0]
    reason = json.loads(next((espool.root / "quarantine").glob("*.reason.json")).read_text())
    assert "Syncthing conflict copy" in reason["reason"]
    assert (pending / f".syncthing.{name}.json.tmp").exists() and (pending / f"~syncthing~{name}.json.tmp").exists()
    assert espool.counts()["pending"] == 1


def test_worker_in_eventual_mode_settles_then_runs(tmp_path):
    root = tmp_path / "spool"
    r = cli("--spool", str(root), "init", "--consistency", "eventual", "--heartbeat-s", "0.2",
            "--stale-after-s", "4")
    assert r.returncode == 0, r.stderr
    assert Spool.open(root).settings.settle_s == 1.0  # default min(30, stale/4)
    cli("--spool", str(root), "reload", str(smoke_manifest(tmp_path / "m.toml", 2)), check=True)
    r = cli("--spool", str(root), "work", "--drain", "--host-id", "h")
    assert r.returncode == 0, r.stderr
    assert Spool.open(root).counts()["done"] == 2
