"""Enrolment scripts: --dry-run output, and the self-test gate."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cis490.fleet.spool import Spool
from cis490.fleet.worker import WorkerOptions

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-training-worker.sh"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_systemd_dry_run_prints_a_safe_unit(tmp_path):
    Spool.init(tmp_path / "spool")
    r = run("--spool", str(tmp_path / "spool"), "--host-id", "pi", "--slots", "2", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "self-test ok" in r.stdout
    unit = r.stdout
    assert "KillSignal=SIGTERM" in unit and "Restart=on-failure" in unit
    timeout = int(re.search(r"TimeoutStopSec=(\d+)", unit).group(1))
    assert timeout > WorkerOptions().release_grace_s
    exec_line = next(l for l in unit.splitlines() if l.startswith("ExecStart="))
    assert f"--spool {tmp_path / 'spool'} work --host-id pi --slots 2" in exec_line
    assert "@" not in exec_line  # every placeholder filled


def test_cron_dry_run_uses_once(tmp_path):
    Spool.init(tmp_path / "spool")
    r = run("--spool", str(tmp_path / "spool"), "--cron", "--dry-run")
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("*/5 * * * *") and "work --once" in line


def test_install_refuses_when_the_self_test_fails(tmp_path):
    (tmp_path / "notaspool").mkdir()
    r = run("--spool", str(tmp_path / "notaspool"), "--dry-run")
    assert r.returncode == 1
    assert "self-test failed; nothing installed" in r.stderr and "would write" not in r.stdout
    r = run("--spool", str(tmp_path / "missing"), "--dry-run")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_windows_script_runs_the_self_test_before_registering():
    text = (REPO / "scripts" / "install-training-worker-windows.ps1").read_text()
    assert text.index("--self-test") < text.index("Register-ScheduledTask")
    assert "-DryRun" in text or "[switch]$DryRun" in text
