"""An unavailable or full spool is waited out, never charged to a job.

The faults are injected at the spool boundary the worker calls (the claimer, a
claim's heartbeat, the artifact store, the self-test) with the errnos a dropped
sshfs mount, a stale NFS handle and a full disk raise. Each test drains real
smoke jobs in a worker running in this process and checks: every job done,
none failed, the worker returned 0 (it never exits for an outage, in
``--drain`` as in the other modes), one log line when the outage starts and one
when it ends, and the attempts charged.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import threading
import time

import pytest

from cis490.fleet.claim import claim_next
from cis490.fleet import JobState, Spool
from cis490.fleet import claim as claim_mod
from cis490.fleet import store as store_mod
from cis490.fleet import worker as worker_mod
from cis490.fleet.attempts import counted_attempts
from cis490.fleet.faults import Fault, Outage, classify
from cis490.fleet.worker import Worker, WorkerOptions

from .conftest import smoke_manifest, worker_info
from .test_bad_pending_entries import run_in_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses process groups")


class Flaky:
    """Wrap ``fn``: its calls raise OSError(``err``) while ``failing`` says so."""

    def __init__(self, fn, err: int, failing):
        self.fn, self.err, self.failing = fn, err, failing
        self.raised = 0

    def __call__(self, *args, **kwargs):
        if self.failing():
            self.raised += 1
            raise OSError(self.err, os.strerror(self.err))
        return self.fn(*args, **kwargs)


def for_seconds(s: float):
    t0 = []

    def failing() -> bool:
        if not t0:
            t0.append(time.monotonic())
        return time.monotonic() - t0[0] < s
    return failing


def first_calls(n: int):
    seen = [0]

    def failing() -> bool:
        seen[0] += 1
        return seen[0] <= n
    return failing


def worker(spool: Spool, tmp_path, mode: str = "drain", slots: int = 2) -> Worker:
    return Worker(Spool.open(spool.root), worker_info("h"),
                  WorkerOptions(mode=mode, slots=slots, poll_s=0.1, work_root=tmp_path / "work",
                                lock_dir=tmp_path / "locks"))


def enqueue(spool: Spool, tmp_path, n: int, seconds: float = 0.0) -> list[str]:
    smoke_manifest(tmp_path / "m.toml", n, seconds=seconds)
    spool.reload(tmp_path / "m.toml")
    return sorted(spool.name_of(l) for l in spool.scan(JobState.PENDING))


def records(spool: Spool, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in
            sorted((spool.root / "attempts" / name).glob("*@*.json")) if "progress" not in p.name]


def outage_lines(caplog) -> tuple[list[str], list[str]]:
    msgs = [r.getMessage() for r in caplog.records if r.name == "cis490.worker"]
    return ([m for m in msgs if m.startswith("spool unavailable")],
            [m for m in msgs if m.startswith("spool available again")])


def assert_all_done(spool: Spool, jobs: list[str]) -> None:
    assert sorted(spool.name_of(l) for l in spool.scan(JobState.DONE)) == jobs
    counts = spool.counts()
    assert counts["failed"] == counts["pending"] == counts["claimed"] == 0, counts


# ------------------------------------------------------------------ classification

@pytest.mark.parametrize("err", ["EIO", "ENOTCONN", "ESTALE", "ETIMEDOUT", "EHOSTDOWN",
                                 "ENETUNREACH", "ENOSPC", "EDQUOT", "EROFS"])
def test_the_spool_unavailable_errnos_are_classified_as_such(err):
    assert classify(OSError(getattr(errno, err), "x")) is Fault.SPOOL_UNAVAILABLE


def test_lost_races_and_bugs_are_told_apart():
    assert classify(FileNotFoundError(errno.ENOENT, "x")) is Fault.LOST_RACE
    assert classify(FileExistsError(errno.EEXIST, "x")) is Fault.LOST_RACE
    assert classify(OSError(errno.EACCES, "x")) is Fault.BUG
    assert classify(KeyError("x")) is Fault.BUG


def test_an_outage_logs_one_line_at_its_start_and_one_at_its_end(caplog):
    caplog.set_level(logging.WARNING, logger="cis490.test")
    o = Outage(logging.getLogger("cis490.test"), first_s=1, max_s=8)
    o.clear("heartbeat")                                  # nothing to end
    for _ in range(5):
        o.hit(OSError(errno.EIO, "Input/output error"), "heartbeat")
    o.hit(OSError(errno.ENOSPC, "No space left on device"), "storing")
    assert o.active and o.backoff("heartbeat") == 8       # 1, 2, 4, 8, 8, …
    assert o.backoff("storing") == 1                      # per site: its first failure
    o.clear("heartbeat")                                  # storing still fails: not over
    assert o.active and o.failing("storing") and not o.failing("heartbeat")
    o.clear("storing")
    o.clear("storing")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("spool unavailable (heartbeat): Input/output error")
    assert lines[1].startswith("spool available again after") and not o.active and o.count == 1


def test_a_claim_is_not_taken_for_lost_while_the_spool_cannot_say(spool, tmp_path, monkeypatch):
    [name] = enqueue(spool, tmp_path, 1)
    c = claim_mod.claim_next(spool, worker_info("h"))
    assert c.alive
    monkeypatch.setattr(claim_mod.os, "lstat", Flaky(os.lstat, errno.EIO, lambda: True))
    with pytest.raises(OSError) as info:              # os.path.lexists would have said False
        _ = c.alive
    assert info.value.errno == errno.EIO


# ------------------------------------------------------------------ the worker rides it out

def test_drain_waits_out_an_unreachable_spool_instead_of_exiting(spool, tmp_path, monkeypatch,
                                                                   caplog):
    caplog.set_level(logging.INFO, logger="cis490.worker")
    jobs = enqueue(spool, tmp_path, 4)
    w = worker(spool, tmp_path)
    flaky = Flaky(w.claimer.claim, errno.ENOTCONN, for_seconds(2.0))
    monkeypatch.setattr(w.claimer, "claim", flaky)
    t0 = time.monotonic()
    assert run_in_thread(w.run, timeout=60) == 0
    assert flaky.raised >= 2 and time.monotonic() - t0 >= 2.0   # it waited, not exited
    assert_all_done(spool, jobs)
    starts, ends = outage_lines(caplog)
    assert len(starts) == 1 and "Transport endpoint is not connected" in starts[0]
    assert len(ends) == 1
    assert all(counted_attempts(spool.attempts_dir(n)) == 1 for n in jobs)


def test_a_running_job_keeps_training_through_a_heartbeat_outage(spool, tmp_path, monkeypatch,
                                                                 caplog):
    caplog.set_level(logging.INFO, logger="cis490.worker")
    [name] = enqueue(spool, tmp_path, 1, seconds=1.5)
    flaky = Flaky(claim_mod.Claim.heartbeat, errno.ESTALE, first_calls(4))
    monkeypatch.setattr(claim_mod.Claim, "heartbeat", lambda self: flaky(self))
    w = worker(spool, tmp_path, slots=1)
    assert run_in_thread(w.run, timeout=60) == 0
    assert flaky.raised == 4                       # the heartbeats failed and the job went on
    assert_all_done(spool, [name])
    [rec] = records(spool, name)
    assert rec["outcome"] == "done" and rec["attempt"] == 1
    starts, ends = outage_lines(caplog)
    assert len(starts) == 1 and "Stale file handle" in starts[0] and len(ends) == 1


def test_storing_on_a_full_spool_is_retried_until_it_succeeds(spool, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="cis490.worker")
    jobs = enqueue(spool, tmp_path, 2)
    flaky = Flaky(store_mod.put, errno.ENOSPC, first_calls(3))
    monkeypatch.setattr(claim_mod.store, "put", flaky)
    w = worker(spool, tmp_path, slots=1)
    assert run_in_thread(w.run, timeout=60) == 0
    assert flaky.raised == 3
    assert_all_done(spool, jobs)                   # never failed because the disk was full
    for n in jobs:
        [rec] = records(spool, n)
        assert rec["outcome"] == "done" and "digest" in rec
    starts, ends = outage_lines(caplog)
    assert len(starts) == 1 and "No space left on device" in starts[0] and len(ends) == 1


def test_a_full_spool_at_the_failure_record_still_fails_the_job_once(spool, tmp_path, monkeypatch):
    m = tmp_path / "m.toml"
    m.write_text('[[jobs]]\nmodel = "smoke"\nmode = "bad"\nhyper = { fail = true }\n')
    spool.reload(m)
    [name] = sorted(spool.name_of(l) for l in spool.scan(JobState.PENDING))
    flaky = Flaky(claim_mod.Claim.fail, errno.ENOSPC, first_calls(2))
    monkeypatch.setattr(claim_mod.Claim, "fail", lambda self, *a, **k: flaky(self, *a, **k))
    w = worker(spool, tmp_path, slots=1)
    assert run_in_thread(w.run, timeout=60) == 0
    assert flaky.raised == 2
    assert [spool.name_of(l) for l in spool.scan(JobState.FAILED)] == [name]
    [rec] = records(spool, name)
    assert rec["outcome"] == "failed" and rec["fault"] == Fault.JOB.value   # the job's own fault
    assert rec["error"].startswith("exit status")


def test_a_job_stopped_by_the_spool_is_released_not_counted(spool, tmp_path, monkeypatch):
    jobs = enqueue(spool, tmp_path, 1)
    # the job's command needs the manifest's data paths: unreadable once, then fine
    real = worker_mod.Worker._data_paths
    flaky = Flaky(real, errno.EIO, first_calls(1))
    monkeypatch.setattr(worker_mod.Worker, "_data_paths", lambda self: flaky(self))
    w = worker(spool, tmp_path, slots=1)
    assert run_in_thread(w.run, timeout=60) == 0
    assert_all_done(spool, jobs)
    first, second = records(spool, jobs[0])
    assert first["outcome"] == "released" and first["fault"] == Fault.SPOOL_UNAVAILABLE.value
    assert second["outcome"] == "done"
    assert counted_attempts(spool.attempts_dir(jobs[0])) == 1   # the outage was not charged


def test_a_worker_starting_on_an_unreachable_spool_waits_for_it(spool, tmp_path, monkeypatch):
    jobs = enqueue(spool, tmp_path, 2)
    flaky = Flaky(worker_mod.self_test, errno.ENOTCONN, first_calls(2))
    monkeypatch.setattr(worker_mod, "self_test", flaky)
    w = worker(spool, tmp_path)
    assert run_in_thread(w.run, timeout=60) == 0     # once: self-test failed -> exit 1
    assert flaky.raised == 2
    assert_all_done(spool, jobs)


def test_a_claim_whose_record_cannot_be_written_goes_back_to_pending_at_once(spool, tmp_path,
                                                                             monkeypatch):
    jobs = enqueue(spool, tmp_path, 1)
    flaky = Flaky(claim_mod.att.write_record, errno.ENOSPC, lambda: True)
    monkeypatch.setattr(claim_mod.att, "write_record", flaky)
    with pytest.raises(OSError) as info:
        claim_mod.claim_next(spool, worker_info("h"))
    assert info.value.errno == errno.ENOSPC and flaky.raised == 1
    # not left in claimed/ without a record for a sweep to find stale_after_s later
    assert sorted(spool.name_of(l) for l in spool.scan(JobState.PENDING)) == jobs
    assert spool.counts()["claimed"] == 0


def test_a_full_local_disk_is_not_taken_for_an_outage_of_the_spool(spool, tmp_path, monkeypatch):
    """ENOSPC in the worker's own scratch directory (outside the spool) is this host's
    problem: the job is failed once as a bug, not released and claimed again forever."""
    jobs = enqueue(spool, tmp_path, 1)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "work" / "x"))
    monkeypatch.setattr(worker_mod.tempfile, "mkdtemp", full)
    w = worker(spool, tmp_path, slots=1)
    assert run_in_thread(w.run, timeout=30) == 0
    [rec] = records(spool, jobs[0])
    assert rec["outcome"] == "failed" and rec["fault"] == Fault.BUG.value
    assert "No space left on device" in rec["error"] and "traceback" in rec


def test_a_job_sites_end_with_its_thread(caplog):
    caplog.set_level(logging.WARNING, logger="cis490.test")
    o = Outage(logging.getLogger("cis490.test"))
    o.hit(OSError(errno.EIO, "Input/output error"), "storing smoke_x.1")
    o.hit(OSError(errno.EIO, "Input/output error"), "publishing smoke_x.1")
    o.clear_job("smoke_x.1")
    assert not o.active and o.backoff("storing smoke_x.1") == 1.0   # the next starts from 1 s


def test_the_watchdog_counts_a_hung_call_as_an_outage_until_it_returns(caplog):
    from cis490.fleet.faults import Watchdog

    caplog.set_level(logging.WARNING, logger="cis490.test")
    o = Outage(logging.getLogger("cis490.test"))
    dog = Watchdog(o, limit_s=3.0)
    t0 = time.monotonic()
    with dog.watch("heartbeat smoke_x.1"):
        dog.check(t0 + 1.0)
        assert not o.active                       # not hung yet
        dog.check(t0 + 3.5)
        assert o.failing("heartbeat smoke_x.1")   # past the limit: an outage, logged once
        dog.check(t0 + 10.0)
    assert not o.active                           # the call came back
    with dog.watch("heartbeat smoke_x.1"):
        pass                                      # a quick call is never flagged
    dog.check(t0 + 100.0)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "a spool call has hung for more than 3 s" in lines[0]
    assert lines[1].startswith("spool available again after")


def test_a_worker_whose_spool_cannot_be_opened_yet_waits_for_it(spool, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="cis490.worker")
    real = worker_mod.Spool.open
    flaky = Flaky(real, errno.EIO, first_calls(2))
    monkeypatch.setattr(worker_mod.Spool, "open", flaky)
    monkeypatch.setattr(Outage, "backoff", lambda self, site: 0.05)
    assert worker_mod.open_spool(spool.root).root == spool.root
    assert flaky.raised == 2
    starts, ends = outage_lines(caplog)
    assert len(starts) == 1 and "opening the spool" in starts[0] and len(ends) == 1


def test_a_replayed_temp_file_create_is_retried_under_a_fresh_name(tmp_path, monkeypatch):
    """sshfs replays an O_EXCL create after a reconnect and answers EPERM for the file
    its first try made: the atomic writer takes a fresh temp name instead of failing."""
    from cis490 import common as atomic

    real_open, calls = os.open, []

    def replayed(path, flags, mode=0o777):
        calls.append(path)
        if len(calls) == 1:                      # the first try creates it, then "fails"
            os.close(real_open(path, flags, mode))
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return real_open(path, flags, mode)
    monkeypatch.setattr(atomic.os, "open", replayed)
    atomic.atomic_write(tmp_path / "rec.json", b"{}", tmp_dir=tmp_path)
    assert (tmp_path / "rec.json").read_bytes() == b"{}"
    assert len([c for c in calls if str(c).endswith(".tmp")]) == 2      # one fresh name more
    monkeypatch.setattr(atomic.os, "open", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(errno.EPERM, "Operation not permitted")))
    with pytest.raises(PermissionError):         # a real permission error still raises
        atomic.atomic_write(tmp_path / "other.json", b"{}", tmp_dir=tmp_path)


# ------------------------------------------------------- a claim swept during an outage

class CutOff:
    """``os.utime`` of the claim files fails with EIO while ``on`` is set: the worker
    cannot heartbeat, so its claim goes stale and a sweep takes it."""

    def __init__(self, spool: Spool):
        self.claimed = str(spool.root / "claimed") + os.sep
        self.real = os.utime
        self.on = threading.Event()
        self.raised = 0

    def __call__(self, path, *args, **kwargs):
        if self.on.is_set() and os.fsdecode(path).startswith(self.claimed):
            self.raised += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO), os.fsdecode(path))
        return self.real(path, *args, **kwargs)


def cut_off_while_running(spool: Spool, tmp_path, monkeypatch, hold_s: float) -> tuple[str, Worker]:
    """One 4-s job; once it runs, its heartbeats fail for ``hold_s`` (> stale_after_s)."""
    [name] = enqueue(spool, tmp_path, 1, seconds=4.0)
    cut = CutOff(spool)
    monkeypatch.setattr(os, "utime", cut)
    w = worker(spool, tmp_path, slots=1)
    result: list = []
    t = threading.Thread(target=lambda: result.append(w.run()), daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not [p for p in (spool.root / "attempts").glob("*/1@*.json") if "progress" not in p.name]:
        assert time.monotonic() < deadline, "never claimed"  # its record is out: the claim
        time.sleep(0.05)                                     # is taken (and touched)
    cut.on.set()
    time.sleep(hold_s)
    cut.on.clear()
    t.join(60)
    assert not t.is_alive() and result == [0], result
    assert cut.raised > 0
    return name, w


def test_a_claim_swept_while_its_worker_was_cut_off_is_not_charged(spool, tmp_path, monkeypatch):
    name, _ = cut_off_while_running(spool, tmp_path, monkeypatch, hold_s=4.0)  # stale after 2 s
    assert_all_done(spool, [name])
    first, second = records(spool, name)
    assert first["outcome"] == "lost" and first["fault"] == Fault.SPOOL_UNAVAILABLE.value
    assert first["unreachable_s"] > spool.settings.stale_after_s
    assert second["outcome"] == "done"
    assert counted_attempts(spool.attempts_dir(name)) == 1      # the outage cost nothing


def test_a_failure_a_sweep_charged_to_a_cut_off_attempt_is_given_back(tmp_path, monkeypatch):
    # one attempt allowed: the sweep fails the job on the attempt it takes ("running"
    # counts: it cannot tell a cut-off worker from a dead one); the worker, back, says
    # the spool cut it off, and the job goes back to pending and is done
    spool = Spool.init(tmp_path / "spool", heartbeat_s=0.2, stale_after_s=2.0, max_attempts=1)
    name, _ = cut_off_while_running(spool, tmp_path, monkeypatch, hold_s=4.0)
    assert_all_done(spool, [name])
    first, second = records(spool, name)
    assert first["outcome"] == "lost" and first["fault"] == Fault.SPOOL_UNAVAILABLE.value
    assert first["given_back"] is True
    assert second["outcome"] == "done"


def test_a_lease_lost_without_an_outage_still_counts(spool, tmp_path):
    # a cancel (or any removal) while the spool answers: the lost attempt counts
    [name] = enqueue(spool, tmp_path, 1, seconds=0.0)
    c = claim_next(spool, worker_info("h"))
    os.unlink(c.path)
    with pytest.raises(claim_mod.LeaseLost):
        c.heartbeat()
    c.mark_lost()
    [rec] = records(spool, name)
    assert rec["outcome"] == "lost" and "fault" not in rec
    assert counted_attempts(spool.attempts_dir(name)) == 1


def test_a_sweep_failure_is_not_given_back_after_a_job_fault_or_a_later_attempt(spool, tmp_path):
    [name] = enqueue(spool, tmp_path, 1)
    c = claim_next(spool, worker_info("h"))
    c.fail("exit status 1: boom")                     # the job's own fault: stays failed
    assert not spool.give_back_swept_failure(name, c.number)
    assert [spool.name_of(l) for l in spool.scan(JobState.FAILED)] == [name]


def write_attempt(spool: Spool, name: str, number: int, worker: str, **record) -> None:
    from cis490.fleet.attempts import write_record

    write_record(spool.attempt_record(name, number, worker),
                 {"name": name, "attempt": number, "worker": worker, **record}, spool.tmp)


@pytest.mark.parametrize("case", ["ours-is-not-the-latest", "budget-spent-without-ours", "ok"])
def test_a_swept_failure_is_given_back_only_when_ours_was_the_last_and_free(case, tmp_path):
    spool = Spool.init(tmp_path / "spool", heartbeat_s=0.2, stale_after_s=2.0, max_attempts=2)
    [name] = enqueue(spool, tmp_path, 1)
    os.rename(spool.path_of(JobState.PENDING, name), spool.path_of(JobState.FAILED, name))
    lost = {"outcome": "lost", "fault": Fault.SPOOL_UNAVAILABLE.value}
    if case == "ours-is-not-the-latest":
        write_attempt(spool, name, 1, "w-a", **lost)
        write_attempt(spool, name, 2, "w-b", outcome="running")
    elif case == "budget-spent-without-ours":      # two dead workers' attempts count
        write_attempt(spool, name, 1, "w-b", outcome="running")
        write_attempt(spool, name, 2, "w-c", outcome="running")
        write_attempt(spool, name, 3, "w-a", **lost)
    else:
        write_attempt(spool, name, 1, "w-b", outcome="running")
        write_attempt(spool, name, 2, "w-a", **lost)
    ours = {"ours-is-not-the-latest": 1, "budget-spent-without-ours": 3, "ok": 2}[case]
    assert spool.give_back_swept_failure(name, ours) is (case == "ok")
    state = JobState.PENDING if case == "ok" else JobState.FAILED
    assert [spool.name_of(l) for l in spool.scan(state)] == [name]


def test_attempts_ended_by_the_spool_are_forgiven_only_so_often(spool, tmp_path):
    from cis490.fleet.attempts import FORGIVEN_SPOOL_FAULTS

    [name] = enqueue(spool, tmp_path, 1)
    for i in range(1, FORGIVEN_SPOOL_FAULTS + 3):
        write_attempt(spool, name, i, "w", outcome="released" if i % 2 else "lost",
                      fault=Fault.SPOOL_UNAVAILABLE.value)
    # past the forgiven ones they count: a fault that only looks like the spool's
    # (a store slower than stale_after_s, a real EPERM) cannot rerun a job forever
    assert counted_attempts(spool.attempts_dir(name)) == 2


# ---------------------------------------- EPERM: what sshfs answers while it reconnects

def eperm(path) -> PermissionError:
    return PermissionError(errno.EPERM, os.strerror(errno.EPERM), os.fsdecode(path))


class EpermAt:
    """Wrap ``fn``: while ``failing`` says so its calls raise EPERM naming ``path(args)``."""

    def __init__(self, fn, path, failing):
        self.fn, self.path, self.failing = fn, path, failing
        self.raised = 0

    def __call__(self, *args, **kwargs):
        if self.failing():
            self.raised += 1
            raise eperm(self.path(*args))
        return self.fn(*args, **kwargs)


def test_an_eperm_run_is_taken_for_an_outage_only_within_its_grace(monkeypatch):
    from cis490.fleet import layout

    assert layout.is_ambiguous_eperm(eperm("/x"))
    assert not layout.is_ambiguous_eperm(PermissionError(errno.EACCES, "denied", "/x"))
    monkeypatch.setattr(layout, "EPERM_GRACE_S", 0.3)
    outage = Outage(logging.getLogger("t"))
    assert outage.eperm_grace("a") and outage.eperm_grace("a")
    time.sleep(0.35)
    assert not outage.eperm_grace("a")           # past its grace: believed
    assert outage.eperm_grace("b")               # per site
    outage.clear("a")
    assert outage.eperm_grace("a")               # a success ended the run


@pytest.mark.parametrize("site", ["clock-probe", "heartbeat", "storing", "spec-open"])
def test_eperm_while_sshfs_reconnects_is_waited_out(site, spool, tmp_path, monkeypatch, caplog):
    """The sites where the dropped-connection runs on the sshfs bed met EPERM: the clock
    probe of a scan, a heartbeat, storing the bundle, opening a pending spec. Each
    answers EPERM three times; nothing is failed, quarantined or charged."""
    caplog.set_level(logging.INFO, logger="cis490.worker")
    jobs = enqueue(spool, tmp_path, 2, seconds=1.0 if site == "heartbeat" else 0.0)
    if site == "clock-probe":
        w = EpermAt(Spool.fs_now, lambda self, *a, **k: self.tmp / "probe", first_calls(3))
        monkeypatch.setattr(Spool, "fs_now", lambda self, *a, **k: w(self, *a, **k))
    elif site == "heartbeat":
        w = EpermAt(claim_mod.Claim.heartbeat, lambda self: self.path, first_calls(3))
        monkeypatch.setattr(claim_mod.Claim, "heartbeat", lambda self: w(self))
    elif site == "storing":
        w = EpermAt(store_mod.put, lambda root, *a, **k: root / "models" / "x.tmp", first_calls(3))
        monkeypatch.setattr(claim_mod.store, "put", w)
    else:
        from cis490.fleet import spool as spool_mod

        real, seen = spool_mod.read_bounded, []

        def flaky_open(path, limit):       # a pending spec: EPERM on its first 3 opens
            if path.parent.name == "pending" and len(seen) < 3:
                seen.append(path)
                raise eperm(path)
            return real(path, limit)
        monkeypatch.setattr(spool_mod, "read_bounded", flaky_open)
        w = type("W", (), {"raised": property(lambda self: len(seen))})()
    monkeypatch.setattr(Outage, "backoff", lambda self, site: 0.05)
    wk = worker(spool, tmp_path, slots=1)
    assert run_in_thread(wk.run, timeout=60) == 0
    assert w.raised == 3
    assert_all_done(spool, jobs)
    assert not list((spool.root / "quarantine").iterdir())
    assert all(counted_attempts(spool.attempts_dir(n)) == 1 for n in jobs)
    if site != "spec-open":          # a skipped spec is no outage: the scan goes on without it
        starts, ends = outage_lines(caplog)
        assert starts and "Operation not permitted" in starts[0] and len(ends) == len(starts)


def test_a_spec_that_keeps_answering_eperm_is_quarantined_after_the_grace(spool, tmp_path,
                                                                         monkeypatch):
    from cis490.fleet import layout
    from cis490.fleet import spool as spool_mod

    monkeypatch.setattr(layout, "EPERM_GRACE_S", 0.5)
    jobs = enqueue(spool, tmp_path, 3)
    bad = jobs[1]
    real = spool_mod.read_bounded

    def forbidden(path, limit):
        if path.name.startswith(bad):
            raise eperm(path)
        return real(path, limit)
    monkeypatch.setattr(spool_mod, "read_bounded", forbidden)
    wk = Worker(Spool.open(spool.root), worker_info("h"),
                WorkerOptions(mode="daemon", slots=1, poll_s=0.1, work_root=tmp_path / "work",
                              lock_dir=tmp_path / "locks"))
    t = threading.Thread(target=wk.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not list((spool.root / "quarantine").glob("*.reason.json")):
        assert time.monotonic() < deadline, "never quarantined"
        time.sleep(0.1)
    wk.stop()
    t.join(30)
    assert sorted(spool.name_of(l) for l in spool.scan(JobState.DONE)) == [jobs[0], jobs[2]]
    [reason] = (spool.root / "quarantine").glob("*.reason.json")
    assert bad in reason.name and "Operation not permitted, for more than" in reason.read_text()


def test_an_eperm_that_outlives_its_grace_is_believed(spool, tmp_path, monkeypatch, caplog):
    from cis490.fleet import layout

    monkeypatch.setattr(layout, "EPERM_GRACE_S", 0.3)
    monkeypatch.setattr(Outage, "backoff", lambda self, site: 0.05)
    enqueue(spool, tmp_path, 1)
    w = EpermAt(Spool.fs_now, lambda self, *a, **k: self.tmp / "probe", lambda: True)
    monkeypatch.setattr(Spool, "fs_now", lambda self, *a, **k: w(self, *a, **k))
    wk = worker(spool, tmp_path, slots=1)
    raised = []

    def run():
        try:
            wk.run()
        except PermissionError as exc:
            raised.append(exc)
        return True
    assert run_in_thread(run, timeout=30)
    assert raised and w.raised >= 3                  # believed after the grace and 3 tries
    assert any("taken for a real permission error" in r.getMessage() for r in caplog.records)


def test_an_eperm_run_needs_its_grace_and_three_tries_and_ends_with_another_error(monkeypatch):
    from cis490.fleet import layout

    monkeypatch.setattr(layout, "EPERM_GRACE_S", 0.2)
    outage = Outage(logging.getLogger("t"))
    assert outage.eperm_grace("s")
    time.sleep(0.25)
    assert outage.eperm_grace("s")               # past the grace, but only the 2nd try
    assert not outage.eperm_grace("s")           # the 3rd: believed
    outage.eperm_reset("s")                      # e.g. EIO in between (a long drop)
    assert outage.eperm_grace("s")
    monkeypatch.setattr(layout, "EPERM_RUN_GAP_S", 0.1)
    monkeypatch.setattr(outage, "max_s", 0.05)
    time.sleep(0.25)
    assert outage.eperm_grace("s") and outage.eperm_grace("s")   # long after: a new run


def test_a_real_eperm_storing_fails_the_job_once_as_a_bug(spool, tmp_path, monkeypatch):
    """Believed at the storing site, the error is not given a fresh grace by the job's
    own site (which would release the job and train it again, forever)."""
    from cis490.fleet import layout

    monkeypatch.setattr(layout, "EPERM_GRACE_S", 0.3)
    monkeypatch.setattr(Outage, "backoff", lambda self, site: 0.05)
    [name] = enqueue(spool, tmp_path, 1)
    w = EpermAt(store_mod.put, lambda root, *a, **k: root / "models" / "x.tmp", lambda: True)
    monkeypatch.setattr(claim_mod.store, "put", w)
    assert run_in_thread(worker(spool, tmp_path, slots=1).run, timeout=60) == 0
    [rec] = records(spool, name)
    assert rec["outcome"] == "failed" and rec["fault"] == Fault.BUG.value
    assert [spool.name_of(l) for l in spool.scan(JobState.FAILED)] == [name]


def test_a_once_worker_is_not_held_by_a_spec_that_answered_eperm(spool, tmp_path, monkeypatch):
    from cis490.fleet import spool as spool_mod

    jobs = enqueue(spool, tmp_path, 2)
    real, seen = spool_mod.read_bounded, []

    def once_eperm(path, limit):            # the second job's spec: EPERM at its first read
        if path.parent.name == "pending" and path.name.startswith(jobs[1]) and not seen:
            seen.append(path)
            raise eperm(path)
        return real(path, limit)
    monkeypatch.setattr(spool_mod, "read_bounded", once_eperm)
    wk = worker(spool, tmp_path, mode="once", slots=1)
    assert run_in_thread(wk.run, timeout=30) == 0         # filled its slot once and left
    assert seen and not list((spool.root / "quarantine").iterdir())
    assert spool.counts()["done"] == 1 and spool.counts()["pending"] == 1


def test_a_deferral_ends_when_the_spec_answers_or_goes_quiet(spool, tmp_path, monkeypatch):
    from cis490.fleet import layout
    from cis490.fleet import spool as spool_mod

    [name] = enqueue(spool, tmp_path, 1)
    path = spool.path_of(JobState.PENDING, name)
    c = claim_mod.Claimer(spool, worker_info("h"))
    c._eperm(path, eperm(path))
    assert c.deferred()
    monkeypatch.setattr(spool_mod, "read_bounded", lambda p, limit: b"{not json")
    assert c._read(path) is None and not c.deferred()      # answered (here: quarantined)
    c._eperm(path, eperm(path))
    monkeypatch.setattr(layout, "EPERM_RUN_GAP_S", 0.1)
    time.sleep(0.15)
    assert not c.deferred()                                  # not read again since: quiet


def test_a_single_eperm_long_after_another_starts_a_new_run(spool, tmp_path, monkeypatch):
    from cis490.fleet import layout

    monkeypatch.setattr(layout, "EPERM_GRACE_S", 0.2)
    monkeypatch.setattr(layout, "EPERM_RUN_GAP_S", 0.1)
    [name] = enqueue(spool, tmp_path, 1)
    path = spool.path_of(JobState.PENDING, name)
    c = claim_mod.Claimer(spool, worker_info("h"))
    assert not c._eperm(path, eperm(path))
    time.sleep(0.3)                                # slots full: not read for a while
    assert not c._eperm(path, eperm(path)) and not c._eperm(path, eperm(path))
    assert not list((spool.root / "quarantine").iterdir())


def test_a_claim_whose_first_record_answers_eperm_goes_back_to_pending(spool, tmp_path,
                                                                       monkeypatch):
    jobs = enqueue(spool, tmp_path, 1)
    real = claim_mod.att.write_record

    def no_record(path, record, tmp_dir, **kw):
        raise eperm(path)
    monkeypatch.setattr(claim_mod.att, "write_record", no_record)
    with pytest.raises(PermissionError):
        claim_mod.claim_next(spool, worker_info("h"))
    monkeypatch.setattr(claim_mod.att, "write_record", real)
    assert sorted(spool.name_of(l) for l in spool.scan(JobState.PENDING)) == jobs
    assert spool.counts()["claimed"] == 0


def test_a_self_test_that_meets_eperm_waits_instead_of_failing(spool, tmp_path, monkeypatch):
    jobs = enqueue(spool, tmp_path, 2)
    real, calls = worker_mod.self_test, []

    def flaky(sp, wid):
        calls.append(1)
        if len(calls) <= 2:
            raise eperm(sp.tmp / "probe")
        return real(sp, wid)
    monkeypatch.setattr(worker_mod, "self_test", flaky)
    monkeypatch.setattr(Outage, "backoff", lambda self, site: 0.05)
    assert run_in_thread(worker(spool, tmp_path).run, timeout=60) == 0
    assert len(calls) == 3
    assert_all_done(spool, jobs)


def test_a_deferred_spec_that_leaves_pending_no_longer_holds_drain(spool, tmp_path, monkeypatch):
    from cis490.fleet import spool as spool_mod

    [name] = enqueue(spool, tmp_path, 1)
    real = spool_mod.read_bounded
    monkeypatch.setattr(spool_mod, "read_bounded", lambda path, limit: (_ for _ in ()).throw(
        eperm(path)) if path.parent.name == "pending" else real(path, limit))
    c = claim_mod.Claimer(spool, worker_info("h"))
    assert c.claim() is None and c.deferred()          # skipped for now, not quarantined
    spool.cancel(name)                                 # gone from pending/ meanwhile
    assert c.claim() is None and not c.deferred()
    assert not list((spool.root / "quarantine").iterdir())


def test_a_claim_whose_first_record_hung_past_a_sweep_is_not_charged(spool, tmp_path,
                                                                    monkeypatch):
    # the claiming worker hangs writing its "running" record (a stopped connection) past
    # stale_after_s; a sweep takes the claim meanwhile. Back, its first heartbeat finds
    # the lease lost, and the attempt is recorded as lost to the outage (not counted)
    [name] = enqueue(spool, tmp_path, 1)
    real = claim_mod.att.write_record

    def stalled(path, record, tmp_dir, **kw):
        if record.get("outcome") == "running" and not getattr(stalled, "done", False):
            stalled.done = True
            time.sleep(3.5)                       # > the hang limit (3 s) and stale (2 s)
            assert spool.sweep(by="rival").requeued == (name,)
        return real(path, record, tmp_dir, **kw)
    monkeypatch.setattr(claim_mod.att, "write_record", stalled)
    c = claim_next(spool, worker_info("h"))
    with pytest.raises(claim_mod.LeaseLost):
        c.heartbeat()
    c.mark_lost()
    [rec] = records(spool, name)
    assert rec["outcome"] == "lost" and rec["fault"] == Fault.SPOOL_UNAVAILABLE.value
    assert counted_attempts(spool.attempts_dir(name)) == 0


def test_a_finish_after_a_hang_past_a_sweep_is_a_lost_lease_not_a_second_done(spool, tmp_path,
                                                                            monkeypatch):
    # the worker hangs storing; a sweep takes the claim and another worker completes the
    # job; back, our rename meets ENOENT beside done/NAME (as a lost reply's retry would):
    # a later attempt by another worker says it is not ours
    [name] = enqueue(spool, tmp_path, 1)
    c = claim_next(spool, worker_info("h"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.bin").write_bytes(b"x")
    real_put, hung = store_mod.put, []

    def put_that_hangs(*a, **k):
        if not hung:                                      # ours: the sweep and the rerun
            hung.append(1)                                # happen while it hangs
            time.sleep(3.1)                               # > the hang limit (3 s), stale (2 s)
            assert spool.sweep(by="rival").requeued == (name,)
            other = claim_next(spool, worker_info("rival"))
            other.complete(out)
        return real_put(*a, **k)
    monkeypatch.setattr(claim_mod.store, "put", put_that_hangs)
    with pytest.raises(claim_mod.LeaseLost):
        c.complete(out)
    mine = [r for r in records(spool, name) if r["worker"] == c.worker.id]
    assert mine[0]["outcome"] == "lost" and mine[0]["fault"] == Fault.SPOOL_UNAVAILABLE.value
    assert mine[0]["lost_after"] == "done"
    assert counted_attempts(spool.attempts_dir(name)) == 1
    assert [spool.name_of(l) for l in spool.scan(JobState.DONE)] == [name]
