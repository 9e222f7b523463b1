"""Real filesystem faults under running workers: a full spool and a read-only remount.

The spool lives on its own small tmpfs (a real filesystem with a real size
limit, mounted by the test; root needed, as CI runs). Two worker processes
(`work --drain`, one slot each, scratch on local disk) drain 12 smoke jobs of
about a second; once the first job is done the test injects the fault while
jobs are running, holds it for ``HOLD_S``, then undoes it:

- **full**: a filler file takes every free byte (writes then fail with
  ENOSPC: attempt records, bundles, log tails), then is removed;
- **read-only**: ``mount -o remount,ro`` (every write and utime fails with
  EROFS, heartbeats included), then ``remount,rw``.

Each test asserts (``faultbed``): every job done, none failed, each attempt
counted once (an outage is never charged), every worker process exits 0, no
orphan job process, ``fsck`` clean without ``--repair``, and the workers logged
the outage's start and end. The figures go to ``bench/out/faults_<name>.json``
and ``docs/TESTBEDS.md``.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cis490.fleet import Spool

from .faultbed import Workers, assert_charged_to_no_job, audit, enqueue_smoke

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs mounts, /proc")]

JOBS = 12
HOLD_S = 6.0


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
    Spool.init(root, heartbeat_s=0.3, stale_after_s=60.0, max_attempts=3)
    names = enqueue_smoke(root, root, tmp_path, JOBS, mode="fault", seconds=1.0)
    with Workers([root, root], tmp_path, "fault") as workers:
        workers.wait_first_done(root)
        running = len(list((root / "claimed").iterdir()))
        inject()
        time.sleep(HOLD_S)
        undo()
        codes = workers.wait(timeout=180)
    fig = audit(name, root, names, workers, codes, hold_s=HOLD_S, running_at_fault=running)
    assert_charged_to_no_job(fig, names, workers)
    assert fig["outages_logged"] >= 1 and fig["longest_recovery_s"], workers.tails()  # start, end
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
