"""Bootstrap of every job process: dies with its worker, then runs the driver.

    python -m cis490.fleet.child PARENT_PID MODULE [ARGS...]

A SIGKILLed worker cannot clean up, so the child arranges its own death: on
Linux ``PR_SET_PDEATHSIG`` delivers SIGKILL when the parent dies (checked
against the expected parent pid right after, to close the fork/exec race);
elsewhere a daemon thread polls the parent pid every second. Then the driver
module runs in this same process (no extra process, no shell).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(137)
        return

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(137)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    if len(sys.argv) < 3:
        print("usage: python -m cis490.fleet.child PARENT_PID MODULE [ARGS...]", file=sys.stderr)
        sys.exit(2)
    _die_with_parent(int(sys.argv[1]))
    module = sys.argv[2]
    sys.argv = [module] + sys.argv[3:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
