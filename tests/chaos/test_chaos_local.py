"""Chaos on local disk: 8 workers, 500 smoke jobs, a SIGKILL every 2-4 s."""

from __future__ import annotations

import sys

import pytest

from .harness import Chaos, ChaosConfig, assert_clean

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and SIGKILL")]


def test_local_disk_chaos_8_workers_500_jobs(tmp_path):
    cfg = ChaosConfig(name="local", views=[tmp_path / "spool"], workers_per_view=8, jobs=500,
                      seconds=(0.05, 0.3), heartbeat_s=0.2, stale_after_s=2.0, max_attempts=6,
                      kill_every_s=(2.0, 4.0), deadline_s=300)
    fig = Chaos(cfg, tmp_path / "chaos").run()
    assert_clean(fig)
    assert fig.kills >= 10, "the run was too short to mean anything"
    # a killed worker's job is reclaimed after stale_after_s, plus a sweep period and some slack
    assert fig.max_kill_to_reclaim_s is not None
    assert fig.max_kill_to_reclaim_s < cfg.stale_after_s + 10, fig
