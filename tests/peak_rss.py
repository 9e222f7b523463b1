"""Peak RSS of a Python module run in a fresh process, measured by that process itself.

``os.wait4``'s ``ru_maxrss`` is no good from inside pytest: Linux carries the
high-water mark across ``exec``, and a child forked (or vforked) from a
parent holding 500 MiB reports at least that. ``VmHWM`` in
``/proc/self/status`` belongs to the process's own address space, which
``exec`` replaces, so the child reads it at exit and writes it to a file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_WRAP = r"""
import atexit, runpy, sys
out, module = sys.argv[1], sys.argv[2]
def _report():
    with open("/proc/self/status") as fh:
        hwm = next(l for l in fh if l.startswith("VmHWM:")).split()[1]
    with open(out, "w") as fh:
        fh.write(hwm)
atexit.register(_report)
sys.argv = [module] + sys.argv[3:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def peak_rss(module: str, args: list[str], workdir: Path, *, env: dict | None = None,
             timeout: float = 600) -> tuple[int, str]:
    """``(peak bytes, stderr)`` of ``python -m module *args``; raises on a non-zero exit."""
    out = Path(workdir) / f"hwm-{os.getpid()}-{len(list(Path(workdir).glob('hwm-*')))}"
    proc = subprocess.run([sys.executable, "-c", _WRAP, str(out), module, *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise AssertionError(f"{module} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return int(out.read_text()) * 1024, proc.stderr
