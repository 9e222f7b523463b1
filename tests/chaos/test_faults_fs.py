"""Real filesystem faults under running workers: a full spool and a read-only remount (issue 15).

The spool lives on its own small tmpfs (a real filesystem with a real size
limit, mounted by the test; root needed, as CI runs). Two worker processes
(`work --drain`, one slot each, scratch on local disk) drain 12 smoke jobs of
about a second; once the first job is done the test injects the fault while
jobs are running, holds it for ``HOLD_S``, then undoes it:

- **full**: a filler file takes every free byte (writes then fail with
  ENOSPC: attempt records, bundles, log tails), then is removed;
- **read-only**: ``mount -o remount,ro`` (every write and utime fails with
  EROFS, heartbeats included), then ``remount,rw``.

Each test asserts: every job done, none failed, each attempt counted once (an
outage is never charged), every worker process exits 0, no orphan job
process, ``fsck`` clean without ``--repair``, and the workers logged the outage's
start and end. The figures go to ``bench/out/faults_<name>.json`` and
``docs/TESTBEDS.md``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cis490.fleet import JobState, Spool
from cis490.fleet.attempts import counted_attempts

from .harness import BIN, OUT, job_processes

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs mounts, /proc")]

JOBS = 12
HOLD_S = 6.0
RECOVERED = re.compile(r"spool available again after ([0-9.]+) s")


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MiB tmpfs of its own at ``tmp_path/fs`` (unmounted afterwards)."""
    if os.geteuid() != 0:
        pytest.fail("the filesystem-fault beds mount a tmpfs: run the tests as root (CI does)")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], capture_output=True)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; the bytes written."""
    n = 0
    block = b"\0" * (1 << 16)
    with open(path, "wb", buffering=0) as fh:
        while True:
            try:
                n += fh.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        for size in (4096, 512, 1):              # the last partial blocks too
            try:
                while True:
                    n += fh.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return n


def run_with_fault(tmp_path: Path, mnt: Path, name: str, inject, undo) -> dict:
    root = mnt / "spool"
    spool = Spool.init(root, heartbeat_s=0.3, stale_after_s=60.0, max_attempts=3)
    jobs = "".join(f'\n[[jobs]]\nmodel = "smoke"\nmode = "fault"\n'
                   f'hyper = {{ seconds = 1.0, payload = "{name}-{i}", epochs = 2 }}\n'
                   for i in range(JOBS))
    (tmp_path / "m.toml").write_text(jobs)
    spool.reload(tmp_path / "m.toml")
    names = {spool.name_of(l) for l in spool.scan(JobState.PENDING)}
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = []
    for i, log in enumerate(logs):
        with open(log, "wb") as fh:
            procs.append(subprocess.Popen(
                [sys.executable, str(BIN), "--spool", str(root), "work", "--drain", "--slots", "1",
                 "--host-id", f"fault-{i}", "--poll-s", "0.2", "--work-dir", str(tmp_path / f"work{i}")],
                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT))
    t0 = time.monotonic()
    try:
        while not list((root / "done").iterdir()):
            assert time.monotonic() - t0 < 60, "no job finished before the fault"
            assert all(p.poll() is None for p in procs), [l.read_text()[-2000:] for l in logs]
            time.sleep(0.1)
        running = len(list((root / "claimed").iterdir()))
        inject()
        time.sleep(HOLD_S)
        undo()
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    text = [log.read_text(errors="replace") for log in logs]
    spool = Spool.open(root)
    done = {spool.name_of(l) for l in spool.scan(JobState.DONE)}
    failed = {spool.name_of(l) for l in spool.scan(JobState.FAILED)}
    recoveries = [float(x) for t in text for x in RECOVERED.findall(t)]
    fsck = subprocess.run([sys.executable, str(BIN), "--spool", str(root), "fsck"],
                          capture_output=True, text=True, timeout=120)
    fig = {
        "fault": name, "hold_s": HOLD_S, "jobs": JOBS, "running_at_fault": running,
        "done": len(done), "failed": len(failed), "lost": len(names - done - failed),
        "attempts_counted": {n: counted_attempts(spool.attempts_dir(n)) for n in sorted(names)},
        "worker_exits": codes, "orphans": len(job_processes(names)),
        "outages_logged": sum(t.count("spool unavailable (") for t in text),
        "longest_recovery_s": max(recoveries) if recoveries else None,
        "fsck_rc": fsck.returncode, "fsck": fsck.stdout.strip().splitlines()[-1:],
        "wall_s": round(time.monotonic() - t0, 1),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"faults_{name}.json").write_text(json.dumps(fig, indent=1))
    print(json.dumps({k: v for k, v in fig.items() if k != "attempts_counted"}))
    assert codes == [0, 0], text
    assert done == names and not failed, (fig, text)
    assert all(c == 1 for c in fig["attempts_counted"].values()), fig["attempts_counted"]
    assert fig["orphans"] == 0
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert fig["outages_logged"] >= 1 and recoveries, text       # start and end were logged
    assert fig["running_at_fault"] >= 1, "the fault hit no running job"
    return fig


def test_a_full_spool_is_waited_out_and_charged_to_no_job(tmp_path, small_fs):
    filler = small_fs / "filler"
    fig = run_with_fault(tmp_path, small_fs, "full", lambda: fill(filler), filler.unlink)
    assert fig["longest_recovery_s"] >= 1.0


def test_a_read_only_remount_is_waited_out_and_charged_to_no_job(tmp_path, small_fs):
    def remount(mode: str):
        return lambda: subprocess.run(["mount", "-o", f"remount,{mode}", str(small_fs)], check=True)

    fig = run_with_fault(tmp_path, small_fs, "readonly", remount("ro"), remount("rw"))
    assert fig["longest_recovery_s"] >= 1.0
