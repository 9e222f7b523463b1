"""Coordinator bug found with the sshfs bed, as a reproducer (a regression test since the fix)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.chaos.harness import BIN
from tests.fleet.conftest import smoke_manifest

pytestmark = pytest.mark.netfs


def test_concurrent_reloads_from_two_sshfs_mounts_both_succeed(sshfs_nocache, tmp_path):
    """Two hosts reload the same manifest at once (cron on both, say). Measured: one of the
    two exits 1 with ``cis490-spool reload: Operation not permitted: …/tmp/.NAME.json.PID.X.tmp``
    in 3 of 3 tries (300 jobs). ``_enqueue`` only catches FileExistsError; on sshfs the
    server's SSH_FX_FAILURE for an existing link target maps to EPERM (see
    test_exclusive_create_and_link_races_have_one_winner). Resolve like rename_resolved:
    on EPERM/EEXIST, stat the destination."""
    a, b = sshfs_nocache.a / "spool", sshfs_nocache.b / "spool"
    r = subprocess.run([sys.executable, str(BIN), "--spool", str(a), "init"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = smoke_manifest(tmp_path / "m.toml", 300)
    procs = [subprocess.Popen([sys.executable, str(BIN), "--spool", str(v), "reload", str(m)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in (a, b)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert [rc for rc, _ in results] == [0, 0], results
    assert len(list((sshfs_nocache.export / "spool" / "pending").iterdir())) == 300
