"""Every transition of the spool (docs/SPOOL.md), driven through the public Python API."""

from __future__ import annotations

import json
import os

import pytest

from cis490.fleet.claim import claim_next
from cis490.fleet import JobState, LeaseLost, Spool, SpoolError
from cis490.fleet.attempts import counted_attempts
from cis490.fleet.spool import rename_resolved

from .conftest import artifact_dir, smoke_manifest, worker_info


def only(spool: Spool, state: JobState) -> list[str]:
    return sorted(spool.name_of(l) for l in spool.scan(state))


def test_init_then_open_round_trips_settings(tmp_path):
    s = Spool.init(tmp_path / "s", heartbeat_s=1, stale_after_s=20, max_attempts=5)
    again = Spool.open(tmp_path / "s")
    assert again.settings == s.settings
    assert again.settings.max_attempts == 5
    for d in ("pending", "claimed", "done", "failed", "cancelled", "attempts", "logs", "workers",
              "models", "tmp", "quarantine"):
        assert (tmp_path / "s" / d).is_dir()


def test_init_refuses_a_stale_after_below_ten_heartbeats(tmp_path):
    with pytest.raises(SpoolError, match="10 x heartbeat_s"):
        Spool.init(tmp_path / "s", heartbeat_s=30, stale_after_s=60)


def test_open_of_a_plain_directory_says_run_init(tmp_path):
    with pytest.raises(SpoolError, match="cis490-spool init"):
        Spool.open(tmp_path)


def test_enqueue_claim_heartbeat_complete(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    assert spool.reload(tmp_path / "m.toml").new == 1
    [name] = only(spool, JobState.PENDING)
    w = worker_info()
    claim = claim_next(spool, w)
    assert claim is not None and claim.name == name
    assert only(spool, JobState.PENDING) == []
    assert claim.path == spool.root / "claimed" / f"{name}@{w.id}.json"
    # same bytes in claimed/ as were enqueued
    assert json.loads(claim.path.read_bytes())["name"] == name
    os.utime(claim.path, (1, 1))
    claim.heartbeat()
    assert claim.path.stat().st_mtime > 1000
    stored = claim.complete(artifact_dir(tmp_path))
    assert only(spool, JobState.DONE) == [name] and only(spool, JobState.CLAIMED) == []
    assert (stored.path / "bundle.tar.zst").is_file() and (stored.path / "record.json").is_file()
    rec = json.loads(claim.record_path.read_text())
    assert rec["outcome"] == "done" and rec["digest"] == stored.digest


def test_fail_moves_to_failed_with_reason(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    claim = claim_next(spool, worker_info())
    claim.fail("boom: exit 3")
    assert only(spool, JobState.FAILED) == [claim.name]
    assert json.loads(claim.record_path.read_text())["error"] == "boom: exit 3"


def test_release_returns_to_pending_without_spending_an_attempt(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    claim = claim_next(spool, worker_info())
    claim.release()
    assert only(spool, JobState.PENDING) == [claim.name]
    assert counted_attempts(spool.attempts_dir(claim.name)) == 0
    again = claim_next(spool, worker_info("other"))
    assert again.name == claim.name and again.number == 2


def test_lost_race_claim_returns_none(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    a, b = worker_info("a"), worker_info("b")
    from cis490.fleet.claim import Claimer

    ca, cb = Claimer(spool, a), Claimer(spool, b)
    ca.scan()
    cb.scan()  # both saw the same single candidate
    assert ca.claim() is not None
    assert cb.claim() is None  # FileNotFoundError on its rename: not an error


def test_rename_resolved_treats_retransmitted_success_as_success(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    dst.write_text("x")  # the first (lost-reply) rename already happened
    assert rename_resolved(src, dst) is True
    src.write_text("y")
    other = tmp_path / "c"
    os.rename(src, tmp_path / "elsewhere")  # someone else took src
    assert rename_resolved(src, other) is False


def test_stale_sweep_uses_injected_now(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    claim = claim_next(spool, worker_info())
    mtime = claim.path.stat().st_mtime
    assert spool.sweep(now=mtime + 1.0).requeued == ()  # fresh heartbeat: left alone
    result = spool.sweep(now=mtime + spool.settings.stale_after_s + 0.5)
    assert result.requeued == (claim.name,)
    assert only(spool, JobState.PENDING) == [claim.name]
    with pytest.raises(LeaseLost):
        claim.heartbeat()  # the dead-looking worker finds out at its next heartbeat


def test_max_attempts_spent_goes_to_failed(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    for attempt in range(1, spool.settings.max_attempts + 1):
        claim = claim_next(spool, worker_info(f"h{attempt}"))
        assert claim is not None and claim.number == attempt
        now = claim.path.stat().st_mtime + spool.settings.stale_after_s + 1
        result = spool.sweep(now=now)
    assert result.failed == (claim.name,)
    assert only(spool, JobState.FAILED) == [claim.name]
    assert claim_next(spool, worker_info("late")) is None


def test_cancel_pending_and_claimed(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 2)
    spool.reload(tmp_path / "m.toml")
    first, second = only(spool, JobState.PENDING)
    claim = claim_next(spool, worker_info())
    running = claim.name
    idle = second if running == first else first
    assert spool.cancel(idle) is JobState.PENDING
    assert spool.cancel(running) is JobState.CLAIMED
    assert only(spool, JobState.CANCELLED) == sorted([first, second])
    with pytest.raises(LeaseLost):
        claim.heartbeat()
    with pytest.raises(SpoolError, match="only pending or claimed"):
        spool.cancel(running)


def test_requeue_gives_a_fresh_attempt_budget(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    for i in range(spool.settings.max_attempts):
        claim = claim_next(spool, worker_info(f"h{i}"))
        spool.sweep(now=claim.path.stat().st_mtime + 100)
    name = claim.name
    assert only(spool, JobState.FAILED) == [name]
    assert counted_attempts(spool.attempts_dir(name)) == 3
    assert spool.requeue(name) is JobState.FAILED
    assert only(spool, JobState.PENDING) == [name]
    assert counted_attempts(spool.attempts_dir(name)) == 0
    claim = claim_next(spool, worker_info("again"))
    assert claim.number == 4  # numbering continues; the budget is fresh
    with pytest.raises(SpoolError, match="only failed or cancelled"):
        spool.requeue(name)


def test_complete_after_lease_loss_raises_and_records_lost(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    claim = claim_next(spool, worker_info())
    spool.cancel(claim.name)
    with pytest.raises(LeaseLost):
        claim.complete(artifact_dir(tmp_path))
    assert only(spool, JobState.DONE) == []
    assert json.loads(claim.record_path.read_text())["outcome"] == "lost"


def test_counts_and_resolve_by_prefix(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 3)
    spool.reload(tmp_path / "m.toml")
    assert spool.counts() == {"pending": 3, "claimed": 0, "done": 0, "failed": 0, "cancelled": 0}
    name = only(spool, JobState.PENDING)[0]
    assert spool.resolve(name[:-3]) == name
    with pytest.raises(SpoolError, match="ambiguous"):
        spool.resolve("smoke_check")
    with pytest.raises(SpoolError, match="no job matches"):
        spool.resolve("nope")


def test_claim_prefers_priority_then_age(spool, tmp_path):
    m = tmp_path / "m.toml"
    m.write_text(
        '[[jobs]]\nmodel = "smoke"\nmode = "low"\npriority = -5\n'
        '[[jobs]]\nmodel = "smoke"\nmode = "high"\npriority = 50\n'
    )
    spool.reload(m, now_ns=1)
    smoke_manifest(tmp_path / "m2.toml", 1, prefix="later")
    m2 = tmp_path / "m2.toml"
    m2.write_text(m.read_text() + m2.read_text())
    spool.reload(m2, now_ns=2)  # the priority-0 job is newer
    w = worker_info()
    order = []
    while (c := claim_next(spool, w)) is not None:
        order.append(c.spec.mode if c.spec.mode != "check" else "mid")
        c.complete(artifact_dir(tmp_path, c.name))
    assert order == ["high", "mid", "low"]


def test_spec_from_a_newer_version_is_left_alone_not_quarantined(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    [loc] = spool.scan(JobState.PENDING)
    raw = json.loads(loc.path.read_text())
    raw["format"] = 99
    loc.path.write_text(json.dumps(raw))
    from cis490.fleet.claim import Claimer

    c = Claimer(spool, worker_info())
    assert c.scan() == [] and "newer" in c.skipped[spool.name_of(loc)]
    assert loc.path.exists() and list((spool.root / "quarantine").iterdir()) == []


def test_status_and_cli_clock_probes_leave_nothing_behind(spool):
    from cis490.fleet.snapshot import status

    status(spool)
    spool.fs_now("cli", keep=False)
    assert list(spool.tmp.iterdir()) == []


def test_claim_of_a_long_pending_job_is_not_mistaken_for_stale(spool, tmp_path):
    """Regression: a rename keeps the enqueue-time mtime, so a job that waited
    longer than stale_after_s was swept right after being claimed."""
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    [loc] = spool.scan(JobState.PENDING)
    os.utime(loc.path, (1, 1))  # enqueued long ago
    claim = claim_next(spool, worker_info())
    assert spool.sweep().requeued == ()
    claim.heartbeat()


def test_sweep_puts_back_a_claim_whose_heartbeat_raced_it(spool, tmp_path, monkeypatch):
    import cis490.fleet.spool as spool_mod

    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    claim = claim_next(spool, worker_info())
    os.utime(claim.path, (1, 1))  # looks dead to the sweeper's stat…
    real = spool_mod.rename_resolved

    def heartbeat_then_rename(src, dst):
        if src == claim.path:
            claim.heartbeat()  # …but the owner heartbeats just before the sweeper's rename
        return real(src, dst)

    monkeypatch.setattr(spool_mod, "rename_resolved", heartbeat_then_rename)
    result = spool.sweep()
    assert result.requeued == () and claim.path.exists()
    claim.heartbeat()  # the owner never noticed


def test_a_spec_parked_by_a_crashed_sweeper_is_recovered(spool, tmp_path):
    import time

    smoke_manifest(tmp_path / "m.toml", 2)
    spool.reload(tmp_path / "m.toml")
    a, b = (spool.name_of(l) for l in spool.scan(JobState.PENDING))
    # a sweeper died holding a's claim in tmp/; b is parked but also still pending (leftover copy)
    os.rename(spool.path_of(JobState.PENDING, a), spool.tmp / f"{a}@dead-1.json.sweep-0001")
    (spool.tmp / f"{b}.json.reload-0002").write_bytes(spool.path_of(JobState.PENDING, b).read_bytes())
    assert spool.recover_parked(time.time(), older_than=60) == []  # too recent: maybe still in flight
    assert spool.recover_parked(time.time() + 120, older_than=60) == [a]
    assert sorted(spool.name_of(l) for l in spool.scan(JobState.PENDING)) == sorted([a, b])
    assert [p.name for p in spool.tmp.iterdir()] == []


def test_two_workers_recovering_the_same_parked_leftover_do_not_crash(spool, tmp_path, monkeypatch):
    """Regression (sshfs chaos run): two workers' sweeps found the same leftover copy in
    tmp/; the second one's unlink raised ENOENT and its worker exited."""
    import time

    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    (b,) = (spool.name_of(l) for l in spool.scan(JobState.PENDING))
    leftover = spool.tmp / f"{b}.json.reload-0003"
    leftover.write_bytes(spool.path_of(JobState.PENDING, b).read_bytes())
    real = spool.locate

    def locate_while_a_rival_removes_it(name):
        found = real(name)
        leftover.unlink()                  # the other worker's recovery wins the race
        return found

    monkeypatch.setattr(spool, "locate", locate_while_a_rival_removes_it)
    assert spool.recover_parked(time.time() + 120, older_than=60) == []
    assert [spool.name_of(l) for l in spool.scan(JobState.PENDING)] == [b]
