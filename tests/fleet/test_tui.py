"""The status screen: a pure render of a fixed snapshot, and once in a real terminal."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time

from rich.console import Console

from cis490.fleet.tui import render

from .conftest import BIN, smoke_manifest

SNAPSHOT = {
    "spool": "/srv/cis490/spool", "consistency": "atomic", "now": 1000.0,
    "counts": {"pending": 7, "claimed": 2, "done": 3, "failed": 1, "cancelled": 0},
    "running": [
        {"name": "cnn_oracle.a9819bac7d3a", "worker": "lab-gpu-41-abc123", "host_id": "lab-gpu", "attempt": 2,
         "heartbeat_age_s": 3.0, "epoch": 17, "epochs": 60, "val_macro_f1": 0.6543},
        {"name": "gbt_realistic.a2323100365e", "worker": "pi-7-def456", "host_id": "pi", "attempt": 1,
         "heartbeat_age_s": 1.0, "epoch": None, "epochs": None, "val_macro_f1": None},
    ],
    "workers": [
        {"worker": "lab-gpu-41-abc123", "host_id": "lab-gpu", "live": True, "age_s": 2.0, "cuda": True,
         "cores": 16, "ram_gib": 64.0, "gpus": [{"name": "RTX", "vram_gib": 12}], "os": "Linux"},
        {"worker": "pi-3-000001", "host_id": "pi", "live": False, "age_s": 900.0, "cuda": False,
         "cores": 4, "ram_gib": 4.0, "gpus": [], "os": "Linux"},
    ],
    "failures": [{"name": "lstm_oracle.344c9dc3eaad", "mtime": 990.0, "error": "exit status 1: CUDA out of memory",
                  "log_tail": "epoch 3/60\nTraceback (most recent call last):\nRuntimeError: CUDA out of memory"}],
    "models": [{"model_mode": "gbt_oracle", "digest": "85bcec75b041" + "0" * 52, "job": "gbt_oracle.24d100acd267",
                "bundle_bytes": 20480, "complete": True, "path": "x"}],
}


def screen(snap) -> str:
    buf = io.StringIO()
    Console(file=buf, width=100, color_system=None).print(render(snap))
    return buf.getvalue()


def test_render_shows_counts_running_workers_failures_artifacts():
    text = screen(SNAPSHOT)
    assert "pending 7" in text and "claimed 2" in text and "done 3" in text and "failed 1" in text
    assert "cnn_oracle.a9819bac7d3a" in text and "17/60" in text and "0.654" in text and "lab-gpu" in text
    assert "silent 900s" in text and "live" in text
    assert "CUDA out of memory" in text and "RuntimeError" in text
    assert "gbt_oracle" in text and "85bcec75b041" in text and "20.0 KiB" in text


def test_render_is_a_pure_function_of_the_snapshot():
    assert screen(SNAPSHOT) == screen(SNAPSHOT)
    changed = {**SNAPSHOT, "counts": {**SNAPSHOT["counts"], "done": 4}}
    assert screen(changed) != screen(SNAPSHOT)


def test_watch_in_a_real_terminal_redraws_on_changes(spool, tmp_path):
    assert shutil.which("tmux"), "needs tmux: `make test` installs it (scripts/testbed-packages)"
    session = f"cis490-test-{int(time.time() * 1000)}"
    cmd = f"{sys.executable} {BIN} --spool {spool.root} status --watch --poll-s 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "50", cmd], check=True)
    try:
        def pane() -> str:
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout

        deadline = time.monotonic() + 20
        while "pending 0" not in pane() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "pending 0" in pane()
        smoke_manifest(tmp_path / "m.toml", 3)
        spool.reload(tmp_path / "m.toml")  # a filesystem event: no 30 s poll needed
        deadline = time.monotonic() + 15
        while "pending 3" not in pane() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "pending 3" in pane()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
