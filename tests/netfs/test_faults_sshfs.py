"""Dropped and hung sshfs connections under running workers.

The bed's mounts run with ``-o reconnect`` and an ``ssh_command`` wrapper that
records the ssh client's pid (``scripts/testbed/sshfs.py``, ``ssh_pid``). 2 + 2
workers (``work --drain``, one slot each) on the two ``nocache`` mounts drain
smoke jobs while the test

- **drops** the connection: SIGKILLs one mount's ssh client or the other's, 30
  times 0.5 s apart. Calls in flight fail with EIO; while sshfs reconnects it
  answers EPERM for files that are there, which the workers wait out
  (``layout.EPERM_GRACE_S``);
- **hangs** it: SIGSTOPs one mount's client — its calls hang, nothing errors —
  for less and for more than ``stale_after_s``.

Each asserts (``tests/chaos/faultbed``): every job done, none failed, each
attempt counted once, every worker exits 0, no orphan job process, ``fsck``
clean without ``--repair`` (read on the server's export).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from cis490.fleet import Spool
from tests.chaos.faultbed import Workers, assert_charged_to_no_job, audit, enqueue_smoke

from .conftest import sshfs_bed

pytestmark = [pytest.mark.slow, pytest.mark.netfs]

DROPS, EVERY_S = 30, 0.5


def test_dropped_sshfs_connections_fail_no_job_and_stop_no_worker(sshfs_nocache, tmp_path):
    pair = sshfs_nocache
    root_a, root_b, export = pair.a / "spool", pair.b / "spool", pair.export / "spool"
    Spool.init(root_a, heartbeat_s=0.3, stale_after_s=20.0, max_attempts=3)
    names = enqueue_smoke(root_a, export, tmp_path, 40, mode="drop", seconds=1.0)
    drops = 0
    with Workers([root_a, root_a, root_b, root_b], tmp_path, "drop") as workers:
        while drops < DROPS and any(p.poll() is None for p in workers.procs):
            time.sleep(EVERY_S)
            pid = sshfs_bed.ssh_pid(pair.root, "a" if drops % 2 == 0 else "b")
            if pid is None:
                continue  # reconnecting, or idle since the last drop: next round
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            drops += 1
        codes = workers.wait(timeout=300)
    fig = audit("sshfs_drops", export, names, workers, codes, drops=drops, every_s=EVERY_S)
    # (28-30 landed in every measured run; a round whose client is reconnecting is skipped)
    assert drops >= DROPS // 2, f"only {drops} connections dropped: the run ended too soon"
    assert_charged_to_no_job(fig, names, workers)


@pytest.mark.parametrize("stop_s", [4.0, 24.0], ids=["shorter-than-stale", "longer-than-stale"])
def test_a_hung_sshfs_connection_fails_no_job_and_stops_no_worker(sshfs_nocache, tmp_path, stop_s):
    """SIGSTOP mount b's ssh client for less, then for more, than ``stale_after_s`` (12 s)
    while 2 + 2 workers train. The hung workers' watchdog logs the hang as an outage once
    a call has run 3 s. Shorter: the hung workers resume where they were. Longer: the
    healthy mount's workers sweep the hung claims and train those jobs again; once the
    connection resumes, the hung workers find their claims gone (a lost lease), stop those
    jobs, record nothing as done, and record the attempt as lost with ``fault:
    spool-unavailable`` — not counted, so no job is charged twice."""
    stale = 12.0
    pair = sshfs_nocache
    root_a, root_b, export = pair.a / "spool", pair.b / "spool", pair.export / "spool"
    Spool.init(root_a, heartbeat_s=0.3, stale_after_s=stale, max_attempts=3)
    # enough work that the healthy mount's workers are still draining when the hung
    # claims go stale (they sweep only while they run)
    names = enqueue_smoke(root_a, export, tmp_path, 24, mode="hang", seconds=2.0)
    stopped = None
    with Workers([root_a, root_a, root_b, root_b], tmp_path, "hang") as workers:
        try:
            workers.wait_first_done(export, limit_s=90)
            claimed_b = [e.name for e in os.scandir(export / "claimed")
                         if "@hang-2-" in e.name or "@hang-3-" in e.name]
            stopped = sshfs_bed.ssh_pid(pair.root, "b")
            assert stopped, "no ssh client for mount b"
            os.kill(stopped, signal.SIGSTOP)
            time.sleep(stop_s)
            os.kill(stopped, signal.SIGCONT)
            stopped = None
            codes = workers.wait(timeout=300)
        finally:
            if stopped:
                os.kill(stopped, signal.SIGCONT)
    fig = audit(f"sshfs_hang_{stop_s:g}s", export, names, workers, codes,
                stop_s=stop_s, stale_after_s=stale, claims_on_hung_mount=len(claimed_b))
    assert_charged_to_no_job(fig, names, workers)          # a swept hung claim is not charged
    assert fig["hangs_logged"] >= 1, workers.tails()[2:]   # the watchdog said so
    if stop_s > stale:
        # the hung claims were swept, and their attempts recorded as lost to the outage
        assert fig["attempts_lost_to_outage"] >= 1, (fig, workers.tails()[2:])
