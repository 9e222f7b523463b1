"""Helpers shared by the loopback test beds (sshfs.py, syncthing.py, slurm.py).

Everything a bed starts is recorded in ``DIR/state.json`` so that ``down``
can tear it down from another process, and ``up`` run twice is a no-op.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


class BedError(RuntimeError):
    """A test bed could not be started; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def which(name: str, *extra_dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def read_state(root: Path) -> dict | None:
    try:
        return json.loads((root / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_state(root: Path, state: dict) -> None:
    tmp = root / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, root / "state.json")


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return ") Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True


def stop_pid(pid: int | None, *, group: bool = False, grace: float = 5.0) -> None:
    """SIGTERM ``pid`` (or its process group), then SIGKILL after ``grace``."""
    if not pid:
        return
    kill = os.killpg if group else os.kill
    try:
        kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if group:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
        elif not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    time.sleep(0.05)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our child (when the bed runs inside pytest)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_until(pred, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = pred()
        except Exception as exc:  # noqa: BLE001 - reported on timeout
            last, value = exc, None
        if value:
            return value
        time.sleep(step)
    raise BedError(f"timed out after {timeout:g}s waiting for {what}" + (f" (last error: {last})" if last else ""))


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""
