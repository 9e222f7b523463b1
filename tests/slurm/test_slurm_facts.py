"""What this Slurm really does, measured on the bed (docs/TESTBEDS.md has the figures).

One test, ~100 s (a one-minute time limit is the shortest there is, and the limit
is enforced up to ~30 s late), overlapping:

- a batch job with ``--time=1 --signal=B:USR1@10``: when the batch shell gets USR1
  and SIGTERM relative to the limit (``squeue -o %e`` read inside the job), whether a
  child process gets SIGTERM too, and when it is SIGKILLed (KillWait later);
  whether ``SLURM_JOB_END_TIME`` is in the job's environment;
- an array ``--array=0-1%1`` whose task 0 runs ``scontrol requeue JOB_TASK`` on
  itself (no ``--requeue`` option, ``JobRequeue=1``): the rerun's
  ``SLURM_RESTART_COUNT`` and job id, and the delay until it runs again;
- the same with ``--no-requeue``: refused;

and, ~40 s more, a preemption: a job of the ``urgent`` partition (a higher
PriorityTier) preempts a ``--signal=B:USR1@300`` job of ``debug``
(``PreemptMode=CANCEL``, ``GraceTime``, ``preempt_send_user_signal``): when the
batch shell gets USR1 and SIGTERM, what ``squeue -o %e`` says meanwhile, and the
preempted job's final state.

Figures go to bench/out/slurm_facts.json (and are printed with ``-s``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from cis490.fleet.slurm import parse_slurm_time
from tests.facts import record_fact as _record_fact

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FACTS_JSON = REPO / "bench" / "out" / "slurm_facts.json"

CHILD = """
import json, signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
def ev(what):
    log.write(json.dumps({"t": time.time(), "who": "child", "ev": what}) + "\\n")
for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGCONT):
    signal.signal(s, lambda n, f: ev(signal.Signals(n).name))
while True:
    ev("alive")
    time.sleep(0.25)
"""

SIGNAL_JOB = """#!{python}
import json, os, signal, subprocess, sys, time
log_path = sys.argv[1]
log = open(log_path, "a", buffering=1)
def ev(what, **kw):
    log.write(json.dumps({{"t": time.time(), "who": "batch", "ev": what, **kw}}) + "\\n")
e = subprocess.run(["squeue", "-h", "-j", os.environ["SLURM_JOB_ID"], "-o", "%e"],
                   capture_output=True, text=True).stdout.strip()
ev("start", squeue_e=e, end_epoch=time.mktime(time.strptime(e, "%Y-%m-%dT%H:%M:%S")),
   job_end_time_env=os.environ.get("SLURM_JOB_END_TIME"),
   job_start_time_env=os.environ.get("SLURM_JOB_START_TIME"))
for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGCONT):
    signal.signal(s, lambda n, f: ev(signal.Signals(n).name))
subprocess.Popen([sys.executable, {child!r}, log_path + ".child"])
while True:
    time.sleep(0.25)
"""

REQUEUE_JOB = """#!{python}
import json, os, signal, subprocess, sys, time
tid = os.environ["SLURM_ARRAY_TASK_ID"]
log = open(os.path.join(sys.argv[1], "task-" + tid), "a", buffering=1)
def ev(what, **kw):
    log.write(json.dumps({{"t": time.time(), "ev": what, **kw}}) + "\\n")
ev("start", job_id=os.environ["SLURM_JOB_ID"], array_job_id=os.environ["SLURM_ARRAY_JOB_ID"],
   restart_count=os.environ.get("SLURM_RESTART_COUNT"))
signal.signal(signal.SIGTERM, lambda n, f: (ev("SIGTERM"), sys.exit(143)))
if tid == "0" and os.environ.get("SLURM_RESTART_COUNT") is None:
    r = subprocess.run(["scontrol", "requeue", os.environ["SLURM_ARRAY_JOB_ID"] + "_" + tid],
                       capture_output=True, text=True)
    ev("requeue", rc=r.returncode, out=(r.stdout + r.stderr).strip())
    time.sleep(3)
    ev("still running after requeue")
ev("end")
"""


PREEMPT_JOB = """#!{python}
import json, os, signal, subprocess, sys, time
log = open(sys.argv[1], "a", buffering=1)
def ev(what, t=None, **kw):
    log.write(json.dumps({{"t": t or time.time(), "who": "batch", "ev": what, **kw}}) + "\\n")
def end():
    return subprocess.run(["squeue", "-h", "-j", os.environ["SLURM_JOB_ID"], "-o", "%e"],
                          capture_output=True, text=True).stdout.strip()
def on_signal(n, f):
    t = time.time()  # the signal's time, before squeue (which may take a while under load)
    ev(signal.Signals(n).name, t, squeue_e=end())
ev("start", squeue_e=end())
for s in (signal.SIGTERM, signal.SIGUSR1):
    signal.signal(s, on_signal)
subprocess.Popen([sys.executable, {child!r}, sys.argv[1] + ".child"])
while True:
    time.sleep(0.25)
"""


def record_fact(key: str, value) -> None:
    """Merge one measured figure into bench/out/slurm_facts.json (and print it)."""
    _record_fact(FACTS_JSON, key, value)


def _events(path: Path) -> list[dict]:
    try:
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        return []


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_signal_time_limit_and_requeue(slurm_cluster, tmp_path):
    c = slurm_cluster
    child = tmp_path / "job_child.py"
    child.write_text(CHILD)
    sig_log = tmp_path / "signal.log"
    sig_job = c.sbatch("--time=1", "--signal=B:USR1@10", "--job-name=fact-signal",
                       script=_script(tmp_path / "job_signal.py", SIGNAL_JOB.format(python=sys.executable,
                                                                                  child=str(child))),
                       script_args=(sig_log,))
    rq_dir = tmp_path / "requeue"
    rq_dir.mkdir()
    rq_script = _script(tmp_path / "job_requeue.py", REQUEUE_JOB.format(python=sys.executable))
    rq_job = c.sbatch("--array=0-1%1", "--job-name=fact-requeue", script=rq_script, script_args=(rq_dir,))
    c.wait_gone(rq_job, timeout=c.knobs["cred_expire_s"] + c.knobs["kill_wait_s"] + 40)

    # -- requeue of an array task by itself, JobRequeue=1 and no --requeue option
    t0 = _events(rq_dir / "task-0")
    t1 = _events(rq_dir / "task-1")
    starts = [e for e in t0 if e["ev"] == "start"]
    req = next(e for e in t0 if e["ev"] == "requeue")
    assert req["rc"] == 0, req
    assert len(starts) == 2, t0
    assert [s["restart_count"] for s in starts] == [None, "1"]
    assert starts[0]["job_id"] == starts[1]["job_id"], "a requeued task keeps its job id"
    assert not any(e["ev"] == "still running after requeue" for e in t0), "the requeue did not stop the task"
    term = next(e for e in t0 if e["ev"] == "SIGTERM")
    delay = starts[1]["t"] - req["t"]
    assert delay < c.knobs["cred_expire_s"] + 15, delay  # cred_expire, then the next scheduling pass
    record_fact("requeue_self_array_task", {
        "scontrol_rc": req["rc"], "sigterm_after_s": round(term["t"] - req["t"], 3),
        "rerun_after_s": round(delay, 2), "restart_count_on_rerun": starts[1]["restart_count"],
        "same_job_id": True, "cred_expire_s": c.knobs["cred_expire_s"],
        "other_task_ran_meanwhile": bool(t1) and t1[0]["t"] < starts[1]["t"], "version": c.version})

    # -- the same with --no-requeue: refused, the task runs on
    nr_dir = tmp_path / "norequeue"
    nr_dir.mkdir()
    nr_job = c.sbatch("--array=0", "--no-requeue", "--job-name=fact-norequeue", script=rq_script,
                      script_args=(nr_dir,))
    c.wait_gone(nr_job, timeout=30)
    nr = next(e for e in _events(nr_dir / "task-0") if e["ev"] == "requeue")
    assert nr["rc"] != 0 and "disabled" in nr["out"], nr
    record_fact("requeue_with_no_requeue_option", {"scontrol_rc": nr["rc"], "message": nr["out"]})

    # -- --signal=B:USR1@10 with --time=1, then the time limit
    c.wait_gone(sig_job, timeout=150)
    ev = _events(sig_log)
    child_ev = _events(Path(str(sig_log) + ".child"))
    start = next(e for e in ev if e["ev"] == "start")
    end = start["end_epoch"]
    usr1 = [e["t"] for e in ev if e["ev"] == "SIGUSR1"]
    term_b = [e["t"] for e in ev if e["ev"] == "SIGTERM"]
    term_c = [e["t"] for e in child_ev if e["ev"] == "SIGTERM"]
    usr1_c = [e["t"] for e in child_ev if e["ev"] == "SIGUSR1"]
    last_alive = max(e["t"] for e in child_ev if e["ev"] == "alive")
    assert len(usr1) == 1 and not usr1_c, (ev, "B: signals the batch shell only")
    # at the limit Slurm sends SIGTERM to the job's processes (both, in every run measured
    # on an idle machine); under load one of the two may be SIGKILLed before its handler
    # has run, so at least one must have it (the product handles either case)
    assert term_b or term_c, ("no SIGTERM at the limit", ev, child_ev[-5:])
    child_got_sigterm = bool(term_c)
    term_b = term_b or term_c
    term_c = term_c or term_b
    lead = end - usr1[0]
    # the controller looks every ~30 s and sends the signal once the job is within
    # sig_time + 30 s of its end: between 10 and ~40 s early here
    assert 0 < lead <= 10 + 35, lead
    over = term_b[0] - end
    assert -1 <= over <= 35, over
    kill_after = last_alive - term_c[0]
    assert c.knobs["kill_wait_s"] - 2 <= kill_after <= c.knobs["kill_wait_s"] + 3, kill_after
    info = c.job_info(sig_job)
    record_fact("signal_and_time_limit", {
        "time_limit_s": 60, "signal": "B:USR1@10", "usr1_before_end_s": round(lead, 2),
        "sigterm_after_end_s": round(over, 2), "child_got_sigterm": child_got_sigterm, "child_got_usr1": bool(usr1_c),
        "sigkill_after_sigterm_s": round(kill_after, 2), "kill_wait_s": c.knobs["kill_wait_s"],
        "final_state": info[0]["JobState"] if info else None, "squeue_e": start["squeue_e"],
        "SLURM_JOB_END_TIME": start["job_end_time_env"], "SLURM_JOB_START_TIME": start["job_start_time_env"],
        "version": c.version})
    if info:
        assert info[0]["JobState"] == "TIMEOUT", info


def test_preemption_warns_with_the_job_signal_then_cancels(slurm_cluster, tmp_path):
    c = slurm_cluster
    cpus = c.cpus()
    child = tmp_path / "job_child.py"
    child.write_text(CHILD)
    log = tmp_path / "preempt.log"
    low = c.sbatch(f"--cpus-per-task={cpus}", "--time=10", "--signal=B:USR1@300", "--job-name=fact-preempted",
                   script=_script(tmp_path / "job_preempt.py",
                                  PREEMPT_JOB.format(python=sys.executable, child=str(child))),
                   script_args=(log,))
    t0 = time.monotonic()
    while not (log.exists() and Path(str(log) + ".child").exists()) and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    assert log.exists(), c.squeue()
    time.sleep(1)
    t_urgent = time.time()
    urgent = c.sbatch("-p", "urgent", f"--cpus-per-task={cpus}", "--job-name=fact-preemptor", wrap="sleep 2")
    grace = c.knobs["grace_time_s"]
    c.wait_gone(low, timeout=grace + c.knobs["kill_wait_s"] + 30)
    c.wait_gone(urgent, timeout=30)
    ev = _events(log)
    child_ev = _events(Path(str(log) + ".child"))
    usr1 = [e for e in ev if e["ev"] == "SIGUSR1"]
    term = [e for e in ev if e["ev"] == "SIGTERM"]
    assert len(usr1) == 1 and not any(e["ev"] == "SIGUSR1" for e in child_ev), (ev, "B: the batch shell only")
    warned_after = usr1[0]["t"] - t_urgent
    assert warned_after < 10, warned_after  # at once, not at signal time (300 s before a 10-min limit)
    # the warning sets the end to now + GraceTime
    new_end = parse_slurm_time(usr1[0]["squeue_e"])
    assert abs(new_end - (usr1[0]["t"] + grace)) <= 3, (usr1[0], grace)
    child_term = [e["t"] for e in child_ev if e["ev"] == "SIGTERM"]
    first_term = min([e["t"] for e in term] + child_term)
    cancelled_after = first_term - usr1[0]["t"]
    assert grace - 2 <= cancelled_after <= grace + 10, cancelled_after
    info = c.job_info(low)
    record_fact("preemption", {
        "preempt_mode": "CANCEL", "grace_time_s": grace, "preempt_send_user_signal": True,
        "usr1_after_preemptor_submitted_s": round(warned_after, 2),
        "end_after_usr1_s": round(new_end - usr1[0]["t"], 2), "sigterm_after_usr1_s": round(cancelled_after, 2),
        "batch_got_sigterm": bool(term), "child_got_sigterm": bool(child_term), "child_got_usr1": False,
        "final_state": info[0]["JobState"] if info else None, "version": c.version})
    if info:
        assert info[0]["JobState"] == "PREEMPTED", info
