"""Which errors are whose fault: classified at the spool boundary, in one place.

- **Lost race** — ``ENOENT`` / ``EEXIST`` where another worker can win (a file
  renamed or removed by someone else in between). Not an error.
- **Spool unavailable** — the filesystem, not the job: ``EIO``, ``ENOTCONN``,
  ``ESTALE``, ``ETIMEDOUT``, ``EHOSTDOWN``, ``ENETUNREACH``, ``ENOSPC``,
  ``EDQUOT``, ``EROFS`` (``layout.SPOOL_UNAVAILABLE_ERRNOS``), and a call that
  hangs past the ``Watchdog``'s limit; and an ``EPERM`` for up to
  ``layout.EPERM_GRACE_S`` (what sshfs answers while it reconnects). Waited out:
  the worker never exits for one, keeps its running jobs training, claims
  nothing new and retries with backoff; never charged to a job.
- **Job fault** — the training process exits non-zero, writes no output, or
  its command cannot be built from the spec. The only kind that fails a job.
- **Bug** — everything else: logged with its traceback and recorded as the
  attempt's ``fault``.

``Outage`` is the worker's view of one outage: a line when it starts, one when
it ends (with its duration), and the backoff between retries in between.
"""

from __future__ import annotations

import enum
import logging
import threading
import time

from cis490.fleet import layout
from cis490.fleet.layout import is_spool_unavailable

__all__ = ["Fault", "Outage", "Watchdog", "classify", "hang_limit_s"]


class Fault(str, enum.Enum):
    """What ended an attempt (the attempt record's ``fault``), or what an error means."""

    LOST_RACE = "lost-race"
    SPOOL_UNAVAILABLE = "spool-unavailable"
    JOB = "job"
    BUG = "bug"


def classify(exc: BaseException) -> Fault:
    if isinstance(exc, (FileNotFoundError, FileExistsError)):
        return Fault.LOST_RACE
    if is_spool_unavailable(exc):
        return Fault.SPOOL_UNAVAILABLE
    return Fault.BUG


class Outage:
    """The spool's availability as one worker sees it (shared by its threads).

    An outage is the time during which at least one *site* (the worker loop, a
    job's heartbeat, storing a job's bundle, …) fails with a spool-unavailable
    error: ``hit(exc, site)`` after a failure, ``clear(site)`` after that site's
    operation succeeded again. One line is logged when the first site fails and
    one, with the duration, when the last recovers — a full disk fails writes
    while reads still work, so a success elsewhere does not end it.
    ``backoff(site)`` is the wait before that site's next try: 1, 2, 4 … up to ``max_s``.
    """

    def __init__(self, log: logging.Logger, *, first_s: float = 1.0, max_s: float = 30.0):
        self.log, self.first_s, self.max_s = log, first_s, max_s
        self._lock = threading.Lock()
        self._sites: set[str] = set()
        # site -> (first, last, tries) of its unbroken run of EPERMs (monotonic)
        self._eperm_since: dict[str, tuple[float, float, int]] = {}
        self.since: float | None = None     # monotonic start of the current outage
        self._tries: dict[str, int] = {}            # site -> failures in a row there
        self.count = 0                      # outages seen
        self.longest_s = 0.0

    @property
    def active(self) -> bool:
        return bool(self._sites)

    def failing(self, site: str) -> bool:
        return site in self._sites

    def eperm_grace(self, site: str) -> bool:
        """True while ``site``'s EPERMs (``layout.is_ambiguous_eperm``) are still taken for an
        outage: its unbroken run of EPERMs began less than ``layout.EPERM_GRACE_S`` ago, or
        has had fewer than 3 tries. A success (``clear``) or another error at the site
        (``eperm_reset``) ends the run."""
        now = time.monotonic()
        with self._lock:
            first, last, count = self._eperm_since.get(site, (now, now, 0))
            if now - last > max(layout.EPERM_RUN_GAP_S, 2 * self.max_s):
                first, count = now, 0  # long after the last one (retries are at most max_s
            self._eperm_since[site] = (first, now, count + 1)   # apart): a new run
        return now - first < layout.EPERM_GRACE_S or count + 1 < 3

    def eperm_reset(self, site: str) -> None:
        with self._lock:
            self._eperm_since.pop(site, None)

    def hit(self, exc: BaseException, site: str) -> None:
        with self._lock:
            self._tries[site] = self._tries.get(site, 0) + 1
            started = not self._sites
            self._sites.add(site)
            if started:
                self.since = time.monotonic()
                self.count += 1
        if started:
            self.log.warning("spool unavailable (%s): %s — waiting; running jobs keep training, "
                             "nothing new is claimed", site, getattr(exc, "strerror", None) or exc)

    def clear(self, site: str) -> None:
        with self._lock:
            self._eperm_since.pop(site, None)
            self._tries.pop(site, None)
            if site not in self._sites:
                return
            self._sites.discard(site)
            if self._sites:
                return
            took = time.monotonic() - (self.since or time.monotonic())
            self.since = None
            self.longest_s = max(self.longest_s, took)
        self.log.warning("spool available again after %.1f s", took)

    def clear_job(self, name: str) -> None:
        """Forget every site of job ``name`` (its thread is over: nothing of it waits)."""
        # (not "job NAME": that EPERM run spans attempts, see Worker._run_job)
        for site in [x for x in list(self._sites | set(self._eperm_since))
                     if x.endswith(f" {name}") and x != f"job {name}"]:
            self.clear(site)

    def backoff(self, site: str) -> float:
        """The wait before ``site`` tries again: doubling with its own failures in a row
        (a job's heartbeats failing every period must not stretch the worker's pass's
        wait, or the spool's return would be noticed late)."""
        with self._lock:
            n = max(0, self._tries.get(site, 0) - 1)
        return min(self.max_s, self.first_s * (2 ** min(n, 16)))


def hang_limit_s(heartbeat_s: float) -> float:
    """How long a spool call may run before it counts as hung: 3 heartbeats, at least 3 s."""
    return max(3.0, 3 * heartbeat_s)


class Watchdog:
    """Times out hung spool calls — as far as a thread can: it cannot interrupt a call
    blocked in the kernel (a stopped sshfs connection), but it can say so.

    ``with watchdog.watch(site): <spool calls>`` registers the calls' start; a
    background thread checks every ``tick_s`` and, once they have run ``limit_s``, counts
    them as a spool-unavailable error (ETIMEDOUT) at ``site`` in the ``Outage`` — one
    start line — and clears the site when they return. A job keeps training meanwhile
    (it is another process); a claim that outlived ``stale_after_s`` during the hang is
    found swept when the call returns (a lost lease), as after any outage.
    """

    def __init__(self, outage: Outage, limit_s: float, *, tick_s: float = 0.5):
        self.outage, self.limit_s, self.tick_s = outage, float(limit_s), float(tick_s)
        self._lock = threading.Lock()
        self._open: dict[int, tuple[str, float]] = {}    # token -> (site, monotonic start)
        self._flagged: set[int] = set()
        self._next = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Watchdog":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="spool-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.check()

    def check(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            late = [(t, site) for t, (site, t0) in self._open.items()
                    if t not in self._flagged and now - t0 >= self.limit_s]
            self._flagged.update(t for t, _ in late)
        for _, site in late:
            import errno

            self.outage.hit(TimeoutError(errno.ETIMEDOUT, f"a spool call has hung for more than "
                                                          f"{self.limit_s:g} s"), site)

    class _Watch:
        def __init__(self, dog: "Watchdog", site: str):
            self.dog, self.site = dog, site

        def __enter__(self):
            with self.dog._lock:
                self.token = self.dog._next
                self.dog._next += 1
                self.dog._open[self.token] = (self.site, time.monotonic())
            return self

        def __exit__(self, *exc) -> None:
            with self.dog._lock:
                self.dog._open.pop(self.token, None)
                flagged = self.token in self.dog._flagged
                self.dog._flagged.discard(self.token)
            if flagged:
                self.dog.outage.clear(self.site)  # the call came back: that hang is over

    def watch(self, site: str) -> "Watchdog._Watch":
        return Watchdog._Watch(self, site)
