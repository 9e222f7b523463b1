"""Hung sshfs connections under running workers (issue 15).

The bed's mounts run with ``-o reconnect`` and an ``ssh_command`` wrapper that
records the ssh client's pid (``scripts/testbed/sshfs.py``, ``ssh_pid``). The test
SIGSTOPs one mount's client — its calls hang, nothing errors — while 2 + 2 workers
train, for less and for more than ``stale_after_s``, and asserts: every job done,
none failed, every worker exits 0, no orphan job process, ``fsck`` clean.

Dropping the connection instead (SIGKILL of that client, 30 times 0.5 s apart, 40
jobs) is not in the suite yet: while sshfs reconnects it answers EPERM
(SSH_FX_FAILURE) for creates, opens and utimes of files that are there, and one run
in four still failed a job or stopped a worker on one of them (docs/TESTBEDS.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cis490.fleet import JobState, Spool
from cis490.fleet.attempts import counted_attempts
from tests.chaos.harness import BIN, OUT, job_processes

from .conftest import sshfs_bed

pytestmark = [pytest.mark.slow, pytest.mark.netfs]



@pytest.mark.parametrize("stop_s", [4.0, 24.0], ids=["shorter-than-stale", "longer-than-stale"])
def test_a_hung_sshfs_connection_fails_no_job_and_stops_no_worker(sshfs_nocache, tmp_path, stop_s):
    """SIGSTOP one mount's ssh client (its calls hang, nothing errors) for less, then for
    more, than ``stale_after_s`` (12 s), while 2 + 2 workers train. The hung workers'
    watchdog logs the hang as an outage once a call has run 3 s. Shorter: the hung
    workers resume where they were. Longer: the healthy mount's workers sweep the hung
    claims and train those jobs again; once the connection resumes, the hung workers find
    their claims gone (a lost lease), stop those jobs and record nothing as done."""
    stale = 12.0
    pair = sshfs_nocache
    root_a, root_b = pair.a / "spool", pair.b / "spool"
    Spool.init(root_a, heartbeat_s=0.3, stale_after_s=stale, max_attempts=3)
    n_jobs = 16
    jobs = "".join(f'\n[[jobs]]\nmodel = "smoke"\nmode = "hang"\n'
                   f'hyper = {{ seconds = 2.0, payload = "hang-{i}", epochs = 2 }}\n'
                   for i in range(n_jobs))
    (tmp_path / "m.toml").write_text(jobs)
    Spool.open(root_a).reload(tmp_path / "m.toml")
    export = pair.export / "spool"
    names = {Spool.open(export).name_of(l) for l in Spool.open(export).scan(JobState.PENDING)}
    logs, procs = [], []
    for i, root in enumerate([root_a, root_a, root_b, root_b]):
        log = tmp_path / f"worker{i}.log"
        logs.append(log)
        with open(log, "wb") as fh:
            procs.append(subprocess.Popen(
                [sys.executable, str(BIN), "--spool", str(root), "work", "--drain", "--slots", "1",
                 "--host-id", f"hang-{i}", "--poll-s", "0.2", "--work-dir", str(tmp_path / f"work{i}")],
                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT))
    t0 = time.monotonic()
    stopped = None
    try:
        while not list((export / "done").iterdir()):
            assert time.monotonic() - t0 < 90, "no job finished before the fault"
            time.sleep(0.1)
        claimed_b = [e.name for e in os.scandir(export / "claimed") if "@hang-2-" in e.name
                     or "@hang-3-" in e.name]
        stopped = sshfs_bed.ssh_pid(pair.root, "b")
        assert stopped, "no ssh client for mount b"
        os.kill(stopped, signal.SIGSTOP)
        time.sleep(stop_s)
        os.kill(stopped, signal.SIGCONT)
        stopped = None
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    text = [log.read_text(errors="replace") for log in logs]
    truth = Spool.open(export)
    done = {truth.name_of(l) for l in truth.scan(JobState.DONE)}
    failed = {truth.name_of(l) for l in truth.scan(JobState.FAILED)}
    charged = {n: counted_attempts(truth.attempts_dir(n)) for n in sorted(names)}
    fsck = subprocess.run([sys.executable, str(BIN), "--spool", str(export), "fsck"],
                          capture_output=True, text=True, timeout=120)
    fig = {"fault": f"sshfs connection hung (SIGSTOP) {stop_s:g} s, stale_after_s {stale:g}",
           "jobs": n_jobs, "claims_on_hung_mount": len(claimed_b), "done": len(done),
           "failed": len(failed), "lost": len(names - done - failed),
           "attempts_charged_max": max(charged.values()),
           "jobs_charged_twice": sum(1 for c in charged.values() if c > 1),
           "lost_leases_logged": sum(t.count("lost (cancelled or swept)") for t in text),
           "hangs_logged": sum(t.count("a spool call has hung") for t in text),
           "worker_exits": codes, "orphans": len(job_processes(names)),
           "fsck_rc": fsck.returncode, "wall_s": round(time.monotonic() - t0, 1)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"faults_sshfs_hang_{stop_s:g}s.json").write_text(json.dumps(fig, indent=1))
    print(json.dumps(fig))
    assert codes == [0, 0, 0, 0], [t[-3000:] for t in text]
    assert done == names and not failed, (fig, [t[-3000:] for t in text])
    assert fig["orphans"] == 0
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    if stop_s < stale:
        assert all(c == 1 for c in charged.values()), charged   # nothing was swept
    else:
        assert max(charged.values()) <= 2, charged               # a swept claim: one more
        assert fig["hangs_logged"] >= 1, [t[-3000:] for t in text[2:]]   # the watchdog said so
