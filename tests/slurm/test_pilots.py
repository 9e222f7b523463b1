"""Slurm pilots on a real single-node Slurm (the ``slurm_cluster`` bed): they drain a spool
and leave the queue; 1-minute pilots warned 40 s early give their long job back with its
resume state, and the next pilot continues it; a job that fits no walltime is never
claimed; a pilot requeues its own array task when work is left (slow: two pilot runs);
a pilot preempted by the bed's ``urgent`` partition (warned with its USR1) gives its job
back with its state and requeues itself, and its rerun continues the job.

The jobs are smoke jobs, which keep a resume state exactly as the training driver does
(``--resume-dir``, exit 75): what is tested here is the pilots and the spool, not the
models (the driver's byte-identical resume is tested in tests/train).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from cis490.fleet import JobState, Spool
from cis490.fleet import slurm
from cis490.fleet.attempts import counted_attempts
from tests.fleet.test_worker import job_pids as job_processes  # processes running job NAME

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin" / "cis490-spool"


def make_spool(tmp_path: Path, jobs: list[dict]) -> Spool:
    """A spool with smoke jobs: each dict holds its hyper (and optionally expected_minutes)."""
    spool = Spool.init(tmp_path / "spool", heartbeat_s=0.5, stale_after_s=20.0, max_attempts=3)
    text = ""
    for job in jobs:
        hyper = ", ".join(f"{k} = {json.dumps(v)}" for k, v in job["hyper"].items())
        extra = f"expected_minutes = {job['expected_minutes']}\n" if "expected_minutes" in job else ""
        text += f'[[jobs]]\nmodel = "smoke"\nmode = "pilot"\n{extra}hyper = {{ {hyper} }}\n\n'
    (tmp_path / "m.toml").write_text(text)
    spool.reload(tmp_path / "m.toml")
    return spool


def names(spool: Spool, state: JobState) -> list[str]:
    return sorted(spool.name_of(loc) for loc in spool.scan(state))


def records(spool: Spool, name: str) -> list[dict]:
    out = [json.loads(p.read_text()) for p in spool.attempts_dir(name).glob("*@*[0-9a-f].json")]
    return sorted(out, key=lambda r: r["attempt"])


def submit_script(cluster, spool: Spool, opts: slurm.PilotOptions) -> str:
    """sbatch the pilot script of ``opts`` as written (no option check: the tests use
    leads a real submit refuses), with the cluster's environment; -> the array job id."""
    log_dir = spool.root / "slurm" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    script = spool.root / "slurm" / "test-pilots.sbatch"
    script.write_text(slurm.pilot_script(spool.root, opts, log_dir))
    # sbatch itself, not cluster.sbatch: that one puts an --output on the command line,
    # which would override the script's own
    return cluster.run(["sbatch", "--parsable", str(script)]).stdout.strip().split(";")[0]


def pilot_logs(spool: Spool) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}"
                     for p in sorted((spool.root / "slurm" / "logs").glob("*.out")))


def wait_until(pred, timeout: float, what: str, spool: Spool, cluster, step: float = 0.5):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = pred()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout:g}s: {what}\n{pilot_logs(spool)}\n{cluster.squeue()}", pytrace=False)


def test_pilots_drain_the_spool_and_leave_the_queue(slurm_cluster, tmp_path):
    spool = make_spool(tmp_path, [{"hyper": {"seconds": 2, "epochs": 2, "payload": f"d{i}"}} for i in range(4)])
    r = slurm_cluster.run([sys.executable, str(BIN), "--spool", str(spool.root), "slurm", "submit",
                           "--pilots", "2", "--time", "10", "--python", sys.executable])
    job = r.stdout.strip()
    assert job.isdigit(), r.stdout + r.stderr
    slurm_cluster.wait_gone(job, timeout=90)
    done = names(spool, JobState.DONE)
    assert len(done) == 4, pilot_logs(spool)
    assert names(spool, JobState.PENDING) == names(spool, JobState.CLAIMED) == []
    tasks = set()
    for name in done:
        [rec] = records(spool, name)
        assert rec["outcome"] == "done"
        assert rec["slurm"]["array_job_id"] == job and rec["slurm"]["restart_count"] == 0
        tasks.add(rec["slurm"]["task"])
    # both pilots worked (two pilots on one node each have their own slot locks)
    assert tasks == {f"{job}_0", f"{job}_1"}, pilot_logs(spool)
    st = slurm_cluster.run([sys.executable, str(BIN), "--spool", str(spool.root), "slurm", "status"])
    assert "no pilots of this spool in the Slurm queue" in st.stdout
    info = slurm_cluster.job_info(job)
    assert {i["JobState"] for i in info} == {"COMPLETED"} and {i["Restarts"] for i in info} == {"0"}, \
        f"{info}\n{pilot_logs(spool)}"
    assert not list(spool.workers_dir.glob("*.json"))  # each pilot removed its worker record


def test_one_minute_pilots_warned_40_s_early_hand_their_long_job_on_with_its_state(slurm_cluster, tmp_path):
    # A 1-minute pilot gets USR1 at Slurm's first timer check after its start (the lead
    # plus Slurm's ~30 s anticipation exceed its walltime), and its deadline is 20 s in:
    # each pilot trains the job for under 20 s, the job needs 30 s. Eight pilots one after
    # the other (%1), no self-requeue (cap 0): the job moves from pilot to pilot through
    # its state.
    spool = make_spool(tmp_path, [{"hyper": {"seconds": 30, "epochs": 120, "payload": "long"}}])
    [name] = names(spool, JobState.PENDING)
    opts = slurm.PilotOptions(pilots=8, throttle=1, time_min=1, signal_lead_s=40, python=sys.executable,
                              requeue_cap=0)
    job = submit_script(slurm_cluster, spool, opts)
    wait_until(lambda: names(spool, JobState.DONE) == [name], 420, "the long job done by the pilots",
               spool, slurm_cluster)
    slurm_cluster.wait_gone(job, timeout=120)  # the pilots after it find nothing and leave
    recs = records(spool, name)
    released = [r for r in recs if r["outcome"] == "released"]
    assert released, f"no pilot was stopped mid-job: {recs}\n{pilot_logs(spool)}"
    for r in released:
        assert r["resume_saved"] is True and r["interrupted_run_s"] > 0
        assert "SIGUSR1" in r["error"] or "deadline" in r["error"], r
        assert r["slurm"]["array_job_id"] == job
    assert [r["outcome"] for r in recs][-1] == "done"
    assert counted_attempts(spool.attempts_dir(name)) == 1  # only the attempt that finished
    # every attempt after a released one continued from a state (none restarted at 0)
    for prev, nxt in zip(recs, recs[1:]):
        if prev["outcome"] == "released":
            assert nxt.get("resumed_from"), (prev, nxt)
    resumed = [r for r in recs if r.get("resumed_from")]
    log = next(spool.logs_dir(name).glob(f"{resumed[0]['attempt']}@*.log")).read_text()
    assert "smoke: resuming from epoch" in log and "resuming from epoch 0" not in log
    assert len({r["slurm"]["task"] for r in recs}) == len(recs)  # one attempt per pilot
    assert not spool.resume_dir(name).exists()
    assert job_processes(name) == []  # no orphan


def test_a_job_that_fits_no_walltime_is_never_claimed(slurm_cluster, tmp_path):
    # a job of a kind that cannot resume (a resumable one longer than a walltime is taken
    # early in each and goes on from its state: tests/fleet/test_resume_and_walltime.py)
    spool = make_spool(tmp_path, [{"hyper": {"seconds": 1, "payload": "never", "resume": False},
                                   "expected_minutes": 30}])
    [name] = names(spool, JobState.PENDING)
    r = slurm_cluster.run([sys.executable, str(BIN), "--spool", str(spool.root), "slurm", "submit",
                           "--pilots", "3", "--throttle", "1", "--time", "2", "--signal-lead", "61",
                           "--python", sys.executable])
    job = r.stdout.strip()
    took = slurm_cluster.wait_gone(job, timeout=60)
    assert took < 45, f"the pilots took {took:.0f} s to give up\n{pilot_logs(spool)}"
    assert names(spool, JobState.PENDING) == [name]
    assert records(spool, name) == []
    assert "expected to take 30.0 min (expected_minutes)" in pilot_logs(spool)
    info = slurm_cluster.job_info(job)
    assert {i["Restarts"] for i in info} == {"0"}  # nothing to come back for: no requeue


@pytest.mark.slow
def test_a_warned_pilot_requeues_its_own_task_and_the_rerun_resumes_the_job(slurm_cluster, tmp_path):
    # a 2-minute pilot, warned 40 s early: USR1 when <= ~70 s are left (50-80 s in), its
    # deadline 80 s in; the job needs 100 s. It is released with its state, the pilot
    # requeues ITS task (work is left, restarts 0 < cap 1), the task runs again ~cred_expire
    # later with SLURM_RESTART_COUNT=1 and continues the job; at the next warning the cap
    # is reached: no second requeue.
    spool = make_spool(tmp_path, [{"hyper": {"seconds": 100, "epochs": 200, "payload": "rq"}}])
    [name] = names(spool, JobState.PENDING)
    opts = slurm.PilotOptions(pilots=1, time_min=2, signal_lead_s=40, python=sys.executable, requeue_cap=1)
    job = submit_script(slurm_cluster, spool, opts)
    wait_until(lambda: any(r.get("slurm", {}).get("restart_count") == 1 for r in records(spool, name)),
               200, "an attempt by the requeued pilot", spool, slurm_cluster)
    slurm_cluster.wait_gone(job, timeout=200)
    recs = records(spool, name)
    first, second = recs[0], recs[1]
    assert first["outcome"] == "released" and first["resume_saved"], first
    assert first["slurm"]["task"] == f"{job}_0" and first["slurm"]["restart_count"] == 0
    assert second["slurm"]["task"] == f"{job}_0" and second["slurm"]["restart_count"] == 1
    assert second["resumed_from"]["bytes"] > 0
    log = next(spool.logs_dir(name).glob("2@*.log")).read_text()
    assert "smoke: resuming from epoch" in log
    assert counted_attempts(spool.attempts_dir(name)) == (1 if second["outcome"] == "done" else 0)
    logs = pilot_logs(spool)
    assert f"requeued {job}_0 (restart 1 of at most 1)" in logs
    if second["outcome"] != "done":
        assert "restarted 1 times (cap 1)" in logs
    info = slurm_cluster.job_info(job)
    assert {i["Restarts"] for i in info} == {"1"}
    assert job_processes(name) == []


def test_slurm_cancel_gives_the_job_back_with_its_state_and_the_pilot_does_not_come_back(slurm_cluster, tmp_path):
    spool = make_spool(tmp_path, [{"hyper": {"seconds": 120, "epochs": 240, "payload": "cancel"}}])
    [name] = names(spool, JobState.PENDING)
    cli = [sys.executable, str(BIN), "--spool", str(spool.root)]
    job = slurm_cluster.run([*cli, "slurm", "submit", "--time", "10", "--python", sys.executable]).stdout.strip()
    state = spool.resume_dir(name) / "resume.ckpt"
    wait_until(state.exists, 60, "the pilot's job to save a state", spool, slurm_cluster)
    st = slurm_cluster.run([*cli, "slurm", "status"])
    assert f"{job}_0" in st.stdout and "RUNNING" in st.stdout, st.stdout
    c = slurm_cluster.run([*cli, "slurm", "cancel"])
    assert job in c.stdout
    slurm_cluster.wait_gone(job, timeout=60)
    time.sleep(3)  # a requeue would show the task pending again
    assert slurm_cluster.squeue(job) == []
    assert names(spool, JobState.PENDING) == [name], pilot_logs(spool)
    [rec] = records(spool, name)
    assert rec["outcome"] == "released" and rec["resume_saved"], rec
    assert counted_attempts(spool.attempts_dir(name)) == 0
    assert f"stopped by SIGTERM (scancel, a preemption or the hard limit): not requeueing {job}_0" \
        in pilot_logs(spool)
    assert {i["Restarts"] for i in slurm_cluster.job_info(job)} == {"0"}
    assert job_processes(name) == []


def test_a_preempted_pilot_gives_its_job_back_and_requeues_itself(slurm_cluster, tmp_path):
    # The bed's `urgent` partition preempts `debug` (PreemptMode=CANCEL after GraceTime,
    # preempt_send_user_signal): the pilot, holding the whole node, gets its USR1 at once,
    # hands its job back with its state, requeues its task, and the rerun (once the urgent
    # job is done) continues the job where the preempted pilot stopped.
    c = slurm_cluster
    cpus = c.cpus()
    spool = make_spool(tmp_path, [{"hyper": {"seconds": 120, "epochs": 240, "payload": "preempt"}}])
    [name] = names(spool, JobState.PENDING)
    opts = slurm.PilotOptions(pilots=1, time_min=10, signal_lead_s=300, cpus_per_task=cpus,
                              python=sys.executable, requeue_cap=1)
    job = submit_script(c, spool, opts)
    state = spool.resume_dir(name) / "resume.ckpt"
    wait_until(state.exists, 60, "the pilot's job to save a state", spool, c)
    urgent = c.sbatch("-p", "urgent", "-c", str(cpus), "--job-name=urgent", wrap="sleep 3")
    # the preemptor runs (the node is the pilot's until the preemption) and completes; read
    # it now, before the controller forgets it (MinJobAge after its end)
    done = wait_until(lambda: [i for i in c.job_info(urgent) if i["JobState"] == "COMPLETED"], 60,
                      "the preemptor to run and complete", spool, c, step=0.2)
    urgent_end = slurm.parse_slurm_time(done[0]["EndTime"])
    wait_until(lambda: any(r.get("slurm", {}).get("restart_count") == 1 for r in records(spool, name)),
               c.knobs["grace_time_s"] + c.knobs["cred_expire_s"] + 60, "an attempt by the requeued pilot",
               spool, c)
    rerun_t = time.time()
    # the rerun waited its turn behind the preemptor
    rerun = next(r for r in records(spool, name) if r.get("slurm", {}).get("restart_count") == 1)
    assert urgent_end <= rerun["claimed_at"] + 1, (done, rerun)
    # the rerun trains on: it publishes a newer state (at its heartbeats) than the one it got
    wait_until(lambda: state.exists() and state.stat().st_mtime > rerun_t, 60,
               "the rerun to publish a newer state", spool, c)
    c.run(["scancel", job])  # (`slurm cancel` knows only what `slurm submit` submitted)
    c.wait_gone(job, timeout=60)
    first, second = records(spool, name)[:2]
    assert first["outcome"] == "released" and first["resume_saved"] and "SIGUSR1" in first["error"], first
    assert first["slurm"]["task"] == second["slurm"]["task"] == f"{job}_0"
    assert second["resumed_from"]["bytes"] > 0, second
    assert second["outcome"] in ("released", "done"), second
    assert f"requeued {job}_0 (restart 1 of at most 1)" in pilot_logs(spool)
    assert names(spool, JobState.CLAIMED) == []
    # neither the preemption nor the cancel spent an attempt (unless the rerun finished it)
    assert counted_attempts(spool.attempts_dir(name)) == (1 if second["outcome"] == "done" else 0)
    assert job_processes(name) == []
