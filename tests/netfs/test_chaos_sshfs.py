"""Chaos on sshfs (atomic mode): 4 workers on each of two mounts, 300 smoke jobs, kills.

The two mounts are two client views of one sshd export (like two NFS clients).
Progress, attempt records and fsck are read on the server's export (the truth),
the workers only ever see their mount.
"""

from __future__ import annotations

import os

import pytest

from tests.chaos.harness import Chaos, ChaosConfig, assert_clean

pytestmark = [pytest.mark.slow, pytest.mark.netfs]


def _run(pair, tmp_path, *, jobs, heartbeat_s, stale_after_s, deadline_s):
    cfg = ChaosConfig(name=f"sshfs_{pair.profile}", views=[pair.a / "spool", pair.b / "spool"],
                      audit_root=pair.export / "spool", workers_per_view=4, jobs=jobs,
                      seconds=(0.05, 0.3), heartbeat_s=heartbeat_s, stale_after_s=stale_after_s,
                      max_attempts=6, kill_every_s=(2.0, 4.0), deadline_s=deadline_s)
    fig = Chaos(cfg, tmp_path / "chaos").run()
    assert_clean(fig)
    assert fig.kills >= 5, "the run was too short to mean anything"
    assert fig.max_kill_to_reclaim_s is not None and fig.max_kill_to_reclaim_s < stale_after_s + 10, fig
    return fig


def test_sshfs_nocache_chaos_2x4_workers_300_jobs(sshfs_nocache, tmp_path):
    _run(sshfs_nocache, tmp_path, jobs=300, heartbeat_s=0.2, stale_after_s=2.0, deadline_s=300)


def test_sshfs_nfslike_chaos_2x4_workers(sshfs_nfslike, tmp_path):
    # attributes are seen up to ~6 s stale through this profile: a heartbeat can look
    # that old to a sweeper on the other mount, so stale_after_s must exceed it by far
    _run(sshfs_nfslike, tmp_path, jobs=int(os.environ.get("CIS490_CHAOS_NFSLIKE_JOBS", "150")),
         heartbeat_s=0.5, stale_after_s=10.0, deadline_s=400)
