"""Memory admission: claim a job only when its estimated peak fits this host's free share.

A job kind may estimate its own peak memory: the worker runs the job's
driver with ``--estimate-memory`` (it prints ``{"peak_bytes": N, ...}``) before
the claiming rename, and leaves the job pending, with the reason in
``status``, when ``N`` exceeds the *free share*:

    free share = MemAvailable − Σ over this worker's running jobs of
                 max(0, their estimate − their resident set now)

so the memory a running job will still grow into is held for it, and two
slots of one worker never over-commit (reservations are per worker process:
two ``work`` processes on one host see each other only through
MemAvailable). The estimate runs in a background thread, one at a time;
until it is ready the worker claims nothing (the best job stays first in
line: estimates are made for the jobs it is about to claim, one at a time,
not for the whole queue) and ``--drain`` / ``--once`` wait for it. ``smoke`` has no estimate. The estimate is cached per
(job, data files' sizes and mtimes); a driver that cannot estimate (missing
data, an old driver) does not block the claim — the job then runs and fails
or succeeds as it would have. Hosts without ``/proc/meminfo`` (macOS,
Windows) skip the check: ``min_ram_gib`` in the manifest still applies.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from typing import Callable, Mapping, Sequence

log = logging.getLogger("cis490.worker")

__all__ = ["PENDING", "MemoryGate", "mem_available", "rss_of"]

PENDING = object()  # an estimate under way

ESTIMATE_TIMEOUT_S = 300.0


def _proc_kib(path: str, key: bytes) -> int | None:
    """The ``key:`` line of a /proc status file, in bytes; None where there is none."""
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def mem_available(meminfo: str = "/proc/meminfo") -> int | None:
    """The kernel's MemAvailable in bytes, or None where there is no /proc."""
    return _proc_kib(meminfo, b"MemAvailable:")


def rss_of(pid: int) -> int | None:
    """Resident set of process ``pid`` in bytes (Linux), or None."""
    return _proc_kib(f"/proc/{pid}/status", b"VmRSS:")


def _stamp(paths: Sequence[str]) -> tuple:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((p, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((p, None, None))
    return tuple(out)


class MemoryGate:
    """Estimates (cached), reservations of running jobs, and the verdict."""

    def __init__(self, *, available: Callable[[], int | None] = mem_available,
                 rss: Callable[[int], int | None] = rss_of) -> None:
        self._available, self._rss = available, rss
        self._cache: dict[tuple, int | None] = {}
        self._inflight: set[tuple] = set()
        self._one_at_a_time = threading.Lock()
        self._reserved: dict[str, list] = {}  # job name -> [estimate bytes, pid or None]
        self._lock = threading.Lock()

    def estimate(self, name: str, argv: Sequence[str], data_files: Sequence[str],
                 on_done: Callable[[], None] | None = None,
                 env: Mapping[str, str] | None = None) -> "int | None | object":
        """Peak bytes by the driver's own estimate, None when it cannot tell, or
        :data:`PENDING` while it is being computed — in a background thread, one
        estimate at a time, so the worker's loop (liveness, sweeps, signals) never
        waits on it; ``on_done`` is called when it is ready. ``env``: the driver's
        environment (the job kind's, as for a run; default this process's)."""
        key = (name, tuple(argv), _stamp(data_files))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            if key in self._inflight:
                return PENDING
            self._inflight.add(key)
        job_env = dict(env) if env is not None else dict(os.environ)
        threading.Thread(target=self._compute, args=(key, name, list(argv), on_done, job_env),
                         name=f"estimate-{name}", daemon=True).start()
        return PENDING

    def busy(self) -> bool:
        """An estimate is under way (its job may become claimable)."""
        with self._lock:
            return bool(self._inflight)

    def _compute(self, key: tuple, name: str, argv: list[str], on_done, env: dict) -> None:
        with self._one_at_a_time:
            value = self._run_estimate(name, argv, env)
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = value
            self._inflight.discard(key)
        if on_done is not None:
            on_done()

    def _run_estimate(self, name: str, argv: list[str], env: dict) -> int | None:
        try:
            proc = subprocess.run([sys.executable, "-m", *argv, "--estimate-memory"],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=ESTIMATE_TIMEOUT_S, env=env)
            if proc.returncode == 0:
                return int(json.loads(proc.stdout)["peak_bytes"])
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            log.warning("memory estimate of %s failed (%s); claiming without it", name, tail)
        except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as exc:
            log.warning("memory estimate of %s failed (%s); claiming without it", name, exc)
        return None

    def free_share(self) -> int | None:
        avail = self._available()
        if avail is None:
            return None
        with self._lock:
            held = [(est, pid) for est, pid in self._reserved.values()]
        still = 0
        for est, pid in held:
            rss = self._rss(pid) if pid is not None else None
            still += max(0, est - (rss or 0))
        return avail - still

    def available(self) -> int | None:
        return self._available()

    def fits(self, needed: int | None) -> tuple[bool, str]:
        """``(ok, reason)`` for a job needing ``needed`` bytes."""
        if needed is None:
            return True, ""
        share = self.free_share()
        if share is None or needed <= share:
            return True, ""
        return False, (f"needs ~{needed / 2**30:.2f} GiB by its memory estimate, "
                       f"{max(share, 0) / 2**30:.2f} GiB free for it on this host")

    def reserve(self, name: str, needed: int | None) -> None:
        if needed is not None:
            with self._lock:
                self._reserved[name] = [needed, None]

    def attach(self, name: str, pid: int) -> None:
        with self._lock:
            if name in self._reserved:
                self._reserved[name][1] = pid

    def release(self, name: str) -> None:
        with self._lock:
            self._reserved.pop(name, None)
