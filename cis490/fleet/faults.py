"""Which errors are whose fault: classified at the spool boundary, in one place.

- **Lost race** — ``ENOENT`` / ``EEXIST`` where another worker can win (a file
  renamed or removed by someone else in between). Not an error.
- **Spool unavailable** — the filesystem, not the job: ``EIO``, ``ENOTCONN``,
  ``ESTALE``, ``ETIMEDOUT``, ``EHOSTDOWN``, ``ENETUNREACH``, ``ENOSPC``,
  ``EDQUOT``, ``EROFS`` (``layout.SPOOL_UNAVAILABLE_ERRNOS``). Waited out:
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

from cis490.fleet.layout import is_spool_unavailable

__all__ = ["Fault", "Outage", "classify"]


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
    ``backoff()`` is the wait before the next try: 1, 2, 4 … up to ``max_s``.
    """

    def __init__(self, log: logging.Logger, *, first_s: float = 1.0, max_s: float = 30.0):
        self.log, self.first_s, self.max_s = log, first_s, max_s
        self._lock = threading.Lock()
        self._sites: set[str] = set()
        self.since: float | None = None     # monotonic start of the current outage
        self._tries = 0
        self.count = 0                      # outages seen
        self.longest_s = 0.0

    @property
    def active(self) -> bool:
        return bool(self._sites)

    def failing(self, site: str) -> bool:
        return site in self._sites

    def hit(self, exc: BaseException, site: str) -> None:
        with self._lock:
            self._tries += 1
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
            if site not in self._sites:
                return
            self._sites.discard(site)
            if self._sites:
                return
            took = time.monotonic() - (self.since or time.monotonic())
            self.since, self._tries = None, 0
            self.longest_s = max(self.longest_s, took)
        self.log.warning("spool available again after %.1f s", took)

    def clear_job(self, name: str) -> None:
        """Forget every site of job ``name`` (its thread is over: nothing of it waits)."""
        for site in [x for x in list(self._sites) if x.endswith(f" {name}")]:
            self.clear(site)

    def backoff(self) -> float:
        with self._lock:
            n = max(0, self._tries - 1)
        return min(self.max_s, self.first_s * (2 ** min(n, 16)))
