"""The worker as a real process: spawn, heartbeat, lease loss, SIGTERM, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cis490.fleet import JobState, Spool
from cis490.fleet.attempts import counted_attempts
from cis490.fleet.worker import self_test

from .conftest import BIN, cli, smoke_manifest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and process groups")


def wait_for(pred, timeout=20.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {pred}")


def job_pids(name: str) -> list[int]:
    """Processes whose environment says they run job ``name`` (the job's children)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes()
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if f"CIS490_JOB={name}".encode() in env.split(b"\0") and ") Z " not in stat:
            pids.append(int(d.name))
    return pids


def start_worker(root: Path, *args: str, host: str = "h1") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(BIN), "--spool", str(root), "work", "--host-id", host,
                             "--poll-s", "0.2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def names(spool: Spool, state: JobState) -> list[str]:
    return sorted(spool.name_of(l) for l in spool.scan(state))


@pytest.fixture
def long_job(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1, seconds=60)
    spool.reload(tmp_path / "m.toml")
    return names(spool, JobState.PENDING)[0]


def test_drain_runs_smoke_jobs_and_records_progress_and_logs(spool, tmp_path):
    m = tmp_path / "m.toml"
    m.write_text('[[jobs]]\nmodel = "smoke"\nmode = "ok"\nhyper = { seconds = 0.3, epochs = 3, payload = "p" }\n'
                 '[[jobs]]\nmodel = "smoke"\nmode = "bad"\nhyper = { fail = true }\n')
    spool.reload(m)
    proc = start_worker(spool.root, "--drain")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    [ok] = names(spool, JobState.DONE)
    [bad] = names(spool, JobState.FAILED)
    assert ok.startswith("smoke_ok.") and bad.startswith("smoke_bad.")
    progress = json.loads(next((spool.root / "attempts" / ok).glob("1@*.progress.json")).read_text())
    assert progress["epoch"] == 3 and progress["epochs"] == 3
    log = next((spool.root / "logs" / ok).glob("1@*.log")).read_text()
    assert "epoch 3/3" in log
    rec = json.loads(next((spool.root / "attempts" / bad).glob("1@*[0-9a-f].json")).read_text())
    assert rec["outcome"] == "failed" and rec["exit_code"] == 3 and "failing on purpose" in rec["error"]
    assert not list((spool.root / "workers").iterdir()), "a clean exit unregisters the worker"


def test_cancel_of_a_running_job_stops_it_through_lease_loss(spool, long_job):
    proc = start_worker(spool.root, "--drain")
    try:
        [pid] = wait_for(lambda: job_pids(long_job))
        r = cli("--spool", str(spool.root), "cancel", long_job[:14])
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        wait_for(lambda: not job_pids(long_job), timeout=10)
        stopped_in = time.monotonic() - t0
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert stopped_in < 5 * spool.settings.heartbeat_s + 2
    assert names(spool, JobState.CANCELLED) == [long_job]
    rec = json.loads(next((spool.root / "attempts" / long_job).glob("1@*[0-9a-f].json")).read_text())
    assert rec["outcome"] == "lost"
    assert "lost" in out


def test_sigterm_releases_the_claim_without_spending_an_attempt(spool, long_job):
    proc = start_worker(spool.root)  # daemon mode
    try:
        wait_for(lambda: job_pids(long_job))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert not job_pids(long_job)
    assert names(spool, JobState.PENDING) == [long_job]
    assert counted_attempts(spool.attempts_dir(long_job)) == 0
    rec = json.loads(next((spool.root / "attempts" / long_job).glob("1@*[0-9a-f].json")).read_text())
    assert rec["outcome"] == "released"


def test_sigkilled_worker_leaves_no_orphan_and_job_is_recovered(spool, long_job, tmp_path):
    proc = start_worker(spool.root, "--drain")
    [child] = wait_for(lambda: job_pids(long_job))
    proc.kill()
    proc.wait()
    killed_at = time.time()
    wait_for(lambda: not job_pids(long_job), timeout=5)  # parent-death signal took the child
    assert names(spool, JobState.CLAIMED) == [long_job]
    # not stale yet: a sweep leaves it alone
    assert spool.sweep().requeued == ()
    # once stale_after_s has passed by the filesystem's clock, any sweeper reclaims it
    wait_for(lambda: spool.fs_now() - killed_at > spool.settings.stale_after_s, timeout=10)
    assert spool.sweep().requeued == (long_job,)
    assert names(spool, JobState.PENDING) == [long_job]
    assert counted_attempts(spool.attempts_dir(long_job)) == 1  # the dead attempt counts


def test_once_mode_does_one_job_per_slot_and_exits(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 3)
    spool.reload(tmp_path / "m.toml")
    proc = start_worker(spool.root, "--once")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert spool.counts()["done"] == 1 and spool.counts()["pending"] == 2


def test_slots_run_jobs_concurrently(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 2, seconds=1.0)
    spool.reload(tmp_path / "m.toml")
    proc = start_worker(spool.root, "--drain", "--slots", "2")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    recs = [json.loads(p.read_text()) for p in (spool.root / "attempts").glob("*/1@*[0-9a-f].json")]
    assert len(recs) == 2
    (a0, a1), (b0, b1) = sorted((r["claimed_at"], r["ended_at"]) for r in recs)
    assert b0 < a1, "with two slots both jobs should run at the same time"


def test_host_local_lock_stops_overlapping_cron_runs(spool, long_job, tmp_path):
    first = start_worker(spool.root, "--once", "--slots", "1")
    try:
        wait_for(lambda: job_pids(long_job))
        second = subprocess.run([sys.executable, str(BIN), "--spool", str(spool.root), "work", "--once",
                                 "--host-id", "h1", "--slots", "1"], capture_output=True, text=True, timeout=30)
        assert second.returncode == 0
        assert "held by another worker run" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)


def test_daemon_wakes_on_filesystem_events(spool, tmp_path):
    proc = subprocess.Popen([sys.executable, str(BIN), "--spool", str(spool.root), "work", "--host-id", "h1",
                             "--poll-s", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.5)  # let it go idle: its polling fallback is a minute away
        smoke_manifest(tmp_path / "m.toml", 1)
        t0 = time.monotonic()
        spool.reload(tmp_path / "m.toml")
        wait_for(lambda: spool.counts()["done"] == 1, timeout=20)
        assert time.monotonic() - t0 < 15
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_self_test_passes_here_and_refuses_clock_skew(spool, monkeypatch):
    assert self_test(spool, "w-1") == []
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    problems = self_test(spool, "w-2")
    assert problems and "clock skew" in problems[0]


def test_worker_keeps_serving_good_jobs_beside_bad_files(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 2)
    spool.reload(tmp_path / "m.toml")
    pending = spool.root / "pending"
    (pending / "garbage.txt").write_text("not a job")
    (pending / "smoke_check.000000000000.json").write_text("{not json")
    forged = json.loads(next(pending.glob("*.json")).read_text())
    forged["hyper"]["payload"] = "tampered"
    (pending / f"{forged['name'][:-12]}111111111111.json").write_text(json.dumps(forged))
    os.symlink("/etc/passwd", pending / "smoke_check.222222222222.json")
    proc = start_worker(spool.root, "--drain")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert spool.counts()["done"] == 2
    reasons = sorted(json.loads(p.read_text())["reason"] for p in (spool.root / "quarantine").glob("*.reason.json"))
    assert len(reasons) == 4, reasons
    assert any("symlink" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)
    assert any("name grammar" in r for r in reasons)
    assert any("do not match" in r or "file name says" in r for r in reasons)
    assert list(pending.iterdir()) == []


def test_a_removed_worker_record_is_registered_again(spool):
    proc = start_worker(spool.root)  # daemon
    try:
        record = wait_for(lambda: next((spool.root / "workers").glob("*.json"), None))
        record.unlink()
        wait_for(record.exists, timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
