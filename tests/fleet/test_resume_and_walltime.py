"""Resume state carried through the spool, walltime-aware claiming, GPU-only pilots.

The worker runs for real (``cis490-spool work``) on smoke jobs, which keep a
resume state like the training driver (``--resume-dir``, exit 75 on SIGTERM).
The training driver's own byte-identical resume is tested in tests/train.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from cis490.fleet import JobState
from cis490.fleet.attempts import counted_attempts
from cis490.fleet.spec import build_spec
from cis490.fleet.walltime import Durations, parse_deadline

from .conftest import cli
from .test_worker import job_pids, names, start_worker, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and process groups")


def smoke_job(spool, tmp_path, *, seconds: float, epochs: int, expected: float | None = None,
              payload: str = "r", mode: str = "check", resume: bool = True) -> str:
    """A smoke job; ``resume=False``: one of a kind that cannot resume (restarts from scratch)."""
    m = tmp_path / f"m-{payload}.toml"
    extra = f"expected_minutes = {expected}\n" if expected is not None else ""
    no_resume = "" if resume else ", resume = false"
    m.write_text(f'[[jobs]]\nmodel = "smoke"\nmode = "{mode}"\n{extra}'
                 f'hyper = {{ seconds = {seconds}, epochs = {epochs}, payload = "{payload}"{no_resume} }}\n')
    before = set(names(spool, JobState.PENDING))
    spool.reload(m)
    [name] = set(names(spool, JobState.PENDING)) - before
    return name


def records(spool, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(spool.attempts_dir(name).glob("*@*[0-9a-f].json"))]


def signal_mid_job(spool, proc, name: str, sig, *, min_epoch: int = 0, then=None) -> str:
    """Once job ``name`` of worker ``proc`` has published a resume state of epoch >=
    ``min_epoch``, send ``sig`` to the worker (and ``then`` 0.2 s later, if given); -> its
    output. Checks that it exited 0 leaving no job process, the job back in ``pending/``
    with no attempt counted."""
    state = spool.resume_dir(name) / "resume.ckpt"
    try:
        wait_for(lambda: job_pids(name), timeout=30)
        wait_for(lambda: state.exists() and json.loads(state.read_text())["epoch"] >= min_epoch, timeout=30)
        proc.send_signal(sig)
        if then is not None:  # a second signal while it stops (the limit's SIGTERM, say)
            time.sleep(0.2)
            proc.send_signal(then)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert not job_pids(name)
    assert names(spool, JobState.PENDING) == [name]
    assert counted_attempts(spool.attempts_dir(name)) == 0
    return out


def test_a_stopped_job_leaves_its_state_in_the_spool_and_the_next_attempt_resumes_from_it(spool, tmp_path):
    name = smoke_job(spool, tmp_path, seconds=16, epochs=40)  # 0.4 s an epoch
    state = spool.resume_dir(name) / "resume.ckpt"
    signal_mid_job(spool, start_worker(spool.root), name, signal.SIGTERM, min_epoch=2)
    [first] = records(spool, name)
    assert first["outcome"] == "released" and first["resume_saved"] is True
    assert first["interrupted_run_s"] > 1
    saved = json.loads(state.read_text())["epoch"]
    assert saved >= 2

    # the next attempt starts from that epoch (the job log says so) and finishes
    done = cli("--spool", str(spool.root), "work", "--drain", "--poll-s", "0.2", "--host-id", "h2",
               timeout=120)
    assert done.returncode == 0, done.stderr
    assert names(spool, JobState.DONE) == [name]
    second = records(spool, name)[-1]
    assert second["outcome"] == "done" and second["resumed_from"]["bytes"] > 0
    log = next(spool.logs_dir(name).glob("2@*.log")).read_text()
    assert f"smoke: resuming from epoch {saved}" in log
    assert f"smoke: epoch {saved}/40" not in log and "smoke: epoch 40/40" in log
    assert not spool.resume_dir(name).exists()  # done: the state is removed


def test_a_job_interrupted_by_its_own_signal_is_released_not_failed(spool, tmp_path):
    name = smoke_job(spool, tmp_path, seconds=8, epochs=8, payload="own")
    state = spool.resume_dir(name) / "resume.ckpt"
    proc = start_worker(spool.root, "--drain")
    try:
        [pid] = wait_for(lambda: job_pids(name))
        wait_for(lambda: state.exists(), timeout=30)
        os.kill(pid, signal.SIGTERM)  # as Slurm signals every process of a job at its limit
        out, _ = proc.communicate(timeout=90)  # the same worker claims it again and finishes it
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    first, second = records(spool, name)
    assert first["outcome"] == "released" and "interrupted (exit 75)" in first["error"]
    assert first["resume_saved"] is True
    assert second["outcome"] == "done" and second["resumed_from"]["bytes"] > 0
    assert counted_attempts(spool.attempts_dir(name)) == 1
    assert names(spool, JobState.DONE) == [name]


def test_a_worker_with_a_deadline_claims_only_what_fits_and_exits(spool, tmp_path):
    too_long = smoke_job(spool, tmp_path, seconds=0.1, epochs=1, expected=10, payload="long", resume=False)
    short = smoke_job(spool, tmp_path, seconds=0.1, epochs=1, expected=0.5, payload="short")
    t0 = time.monotonic()
    r = cli("--spool", str(spool.root), "work", "--drain", "--poll-s", "0.2", "--deadline", "+2",
            timeout=60)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 30  # it left: nothing else fits (it did not wait for the deadline)
    assert names(spool, JobState.DONE) == [short]
    assert names(spool, JobState.PENDING) == [too_long]
    assert records(spool, too_long) == []  # never claimed, so nothing to loop on
    assert "expected to take 10.0 min (expected_minutes)" in r.stderr


def test_the_deadline_stops_a_running_job_and_gives_it_back_with_its_state(spool, tmp_path):
    name = smoke_job(spool, tmp_path, seconds=120, epochs=120, payload="dl")  # unknown duration
    r = cli("--spool", str(spool.root), "work", "--drain", "--poll-s", "0.2", "--deadline", "+0.1",
            timeout=90)
    assert r.returncode == 0, r.stderr
    assert "deadline reached" in r.stderr
    assert names(spool, JobState.PENDING) == [name]
    [rec] = records(spool, name)
    assert rec["outcome"] == "released" and "deadline" in rec["error"] and rec["resume_saved"]
    assert (spool.resume_dir(name) / "resume.ckpt").exists()


def test_a_cuda_only_worker_leaves_cpu_jobs_alone(spool, tmp_path):
    name = smoke_job(spool, tmp_path, seconds=0.1, epochs=1, payload="cpu")
    r = cli("--spool", str(spool.root), "work", "--drain", "--poll-s", "0.2", "--cuda-only", timeout=60)
    assert r.returncode == 0, r.stderr
    assert names(spool, JobState.PENDING) == [name] and records(spool, name) == []


def _record(run_s: float, outcome: str = "done", **extra) -> dict:
    return {"outcome": outcome, "timings": {"run_s": run_s}, **extra}


def _write_attempt(spool, name: str, number: int, rec: dict) -> None:
    d = spool.attempts_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{number}@w-1-abcdef.json").write_text(json.dumps(rec))


def test_expected_durations_come_from_the_spec_then_the_longest_done_attempt(spool):
    spec = build_spec({"model": "smoke", "mode": "check", "hyper": {"payload": "a"}})
    d = Durations(spool, cache_s=0)
    assert d.expected_s(spec) == (None, "longest completed smoke/check attempt")
    _write_attempt(spool, "smoke_check.aaaaaaaaaaaa", 1, _record(30.0))
    _write_attempt(spool, "smoke_check.bbbbbbbbbbbb", 1, _record(90.0))
    _write_attempt(spool, "smoke_check.bbbbbbbbbbbb", 2, _record(500.0, outcome="failed"))  # not done
    _write_attempt(spool, "smoke_other.cccccccccccc", 1, _record(900.0))                   # other mode
    assert d.expected_s(spec)[0] == 90.0
    with_minutes = build_spec({"model": "smoke", "mode": "check", "hyper": {"payload": "a"},
                               "expected_minutes": 2})
    assert d.expected_s(with_minutes) == (120.0, "expected_minutes")
    assert with_minutes.id == spec.id  # not part of the job's identity


def test_fit_verdicts_known_unknown_and_first_half_rule(spool):
    d = Durations(spool, cache_s=0)
    started, deadline = 1000.0, 1000.0 + 3600
    spec = build_spec({"model": "smoke", "mode": "check", "expected_minutes": 30})
    assert d.verdict(spec, now=started + 1000, started=started, deadline=deadline).ok       # 43 min left
    no = d.verdict(spec, now=started + 2000, started=started, deadline=deadline)             # 26 min left
    assert not no.ok and "30.0 min" in no.reason and not no.later
    unknown = build_spec({"model": "smoke", "mode": "unk"})
    assert d.verdict(unknown, now=started + 1799, started=started, deadline=deadline).ok
    late = d.verdict(unknown, now=started + 1801, started=started, deadline=deadline)
    assert not late.ok and "first half" in late.reason


def test_a_job_that_cannot_resume_needs_more_than_its_longest_cut_short_run(spool):
    spec = build_spec({"model": "smoke", "mode": "check", "expected_minutes": 1,
                       "hyper": {"resume": False}})
    _write_attempt(spool, spec.name, 1, {"outcome": "released", "interrupted_run_s": 300.0})
    d = Durations(spool, cache_s=0)
    est, why = d.expected_s(spec)
    assert est == 375.0 and "cut short after 5.0 min" in why  # 1.25 x the run that was cut short
    # a window as long as the one that cut it short (300 s and a bit) does not take it again
    assert not d.verdict(spec, now=1000.0, started=1000.0, deadline=1000.0 + 330).ok
    resumable = build_spec({"model": "smoke", "mode": "check", "expected_minutes": 1})
    _write_attempt(spool, resumable.name, 1, {"outcome": "released", "interrupted_run_s": 300.0})
    assert d.expected_s(resumable)[0] == 60.0  # it resumes: its progress is kept, no floor


def test_a_resumable_job_longer_than_any_window_is_taken_early_in_one_and_goes_on_in_the_next(spool):
    d = Durations(spool, cache_s=0)
    started, deadline = 1000.0, 1000.0 + 3600
    long_resumable = build_spec({"model": "smoke", "mode": "check", "expected_minutes": 120})
    assert d.verdict(long_resumable, now=started + 60, started=started, deadline=deadline).ok
    late = d.verdict(long_resumable, now=started + 1900, started=started, deadline=deadline)
    assert not late.ok and "first half" in late.reason
    long_restarting = build_spec({"model": "smoke", "mode": "check", "expected_minutes": 120,
                                  "hyper": {"resume": False}})
    assert not d.verdict(long_restarting, now=started + 60, started=started, deadline=deadline).ok


def test_a_job_that_cannot_resume_stopped_at_the_deadline_is_released_and_not_retaken(spool, tmp_path):
    name = smoke_job(spool, tmp_path, seconds=60, epochs=60, payload="nr", resume=False)
    r = cli("--spool", str(spool.root), "work", "--drain", "--poll-s", "0.2", "--deadline", "+0.1",
            timeout=90)
    assert r.returncode == 0, r.stderr
    [rec] = records(spool, name)
    assert rec["outcome"] == "released" and rec["resume_saved"] is False  # it died of the SIGTERM
    assert not spool.resume_dir(name).exists()
    assert counted_attempts(spool.attempts_dir(name)) == 0
    # a second worker with a window of the same length does not take it again
    r = cli("--spool", str(spool.root), "work", "--drain", "--poll-s", "0.2", "--deadline", "+0.1",
            timeout=90)
    assert r.returncode == 0 and len(records(spool, name)) == 1, r.stderr
    assert "cut short" in r.stderr


def test_deadline_parsing():
    assert parse_deadline("+90", now=1000.0) == 1000.0 + 5400
    assert parse_deadline("1700000000") == 1700000000.0
    assert parse_deadline("2026-12-03T18:00:00+00:00") == 1796320800.0
    with pytest.raises(ValueError, match="--deadline"):
        parse_deadline("tomorrow")


def test_expected_minutes_in_the_manifest_is_validated(spool, tmp_path):
    m = tmp_path / "bad.toml"
    m.write_text('[[jobs]]\nmodel = "smoke"\nmode = "check"\nexpected_minutes = -5\n')
    r = cli("--spool", str(spool.root), "reload", str(m))
    assert r.returncode == 1 and "expected_minutes must be in (0, 525600]" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_fsck_reports_and_repair_removes_the_resume_state_of_a_done_job(spool, tmp_path):
    from cis490.fleet.fsck import fsck, repair

    name = smoke_job(spool, tmp_path, seconds=0.1, epochs=1, payload="fsck")
    r = cli("--spool", str(spool.root), "work", "--drain", "--poll-s", "0.2", timeout=60)
    assert r.returncode == 0 and names(spool, JobState.DONE) == [name]
    assert not spool.resume_dir(name).exists()
    spool.resume_dir(name).mkdir()  # as a worker that died between storing and removing leaves it
    (spool.resume_dir(name) / "resume.ckpt").write_text("{}")
    findings, _ = fsck(spool)
    assert [f.where for f in findings if "resume state" in f.what] == [f"attempts/{name}/resume"]
    assert any(x.repaired and "resume state" in x.action for x in repair(spool))
    assert not spool.resume_dir(name).exists()
    assert not [f for f in fsck(spool)[0] if "resume state" in f.what]


def test_a_crashed_workers_job_is_swept_and_its_next_attempt_resumes_from_the_last_published_state(
        spool, tmp_path):
    name = smoke_job(spool, tmp_path, seconds=12, epochs=40, payload="crash")
    state = spool.resume_dir(name) / "resume.ckpt"
    proc = start_worker(spool.root, "--drain")
    try:
        wait_for(lambda: state.exists() and json.loads(state.read_text())["epoch"] >= 3, timeout=30)
        proc.kill()  # SIGKILL: nothing released, the job dies with its worker
        proc.wait()
    finally:
        proc.kill()
    wait_for(lambda: not job_pids(name), timeout=5)
    saved = json.loads(state.read_text())["epoch"]
    wait_for(lambda: spool.sweep().requeued == (name,), timeout=15)  # stale after 2 s
    done = cli("--spool", str(spool.root), "work", "--drain", "--poll-s", "0.2", "--host-id", "h2", timeout=120)
    assert done.returncode == 0, done.stderr
    assert names(spool, JobState.DONE) == [name]
    first, second = records(spool, name)
    assert first["outcome"] == "running"  # what a dead worker leaves (it counts, as any crash)
    assert second["outcome"] == "done" and second["resumed_from"]["bytes"] > 0
    log = next(spool.logs_dir(name).glob("2@*.log")).read_text()
    assert f"smoke: resuming from epoch {saved}" in log
