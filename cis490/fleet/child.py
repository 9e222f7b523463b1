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


def _parent_alive_windows(parent: int) -> bool:
    import ctypes

    SYNCHRONIZE, WAIT_TIMEOUT = 0x00100000, 0x00000102
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(SYNCHRONIZE, False, parent)
    if not handle:
        return False
    try:
        return kernel32.WaitForSingleObject(handle, 0) == WAIT_TIMEOUT
    finally:
        kernel32.CloseHandle(handle)


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
            # Windows never re-parents an orphan: ask whether the parent still runs
            alive = _parent_alive_windows(parent) if os.name == "nt" else os.getppid() == parent
            if not alive:
                os._exit(137)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    if len(sys.argv) < 3:
        print("usage: python -m cis490.fleet.child PARENT_PID MODULE [ARGS...]", file=sys.stderr)
        sys.exit(2)
    _die_with_parent(int(sys.argv[1]))
    module = sys.argv[2]
    args = sys.argv[3:]
    if os.name == "nt" and "--progress-fd" in args:
        # the worker passed an inherited pipe *handle*; drivers expect a C fd
        import msvcrt

        i = args.index("--progress-fd") + 1
        args[i] = str(msvcrt.open_osfhandle(int(args[i]), os.O_WRONLY))
    sys.argv = [module] + args
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
