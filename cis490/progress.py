"""Progress lines for long work that runs without a terminal (cron, systemd, a worker's log).

On a terminal the CLI verbs show rich bars; when stderr is not a TTY a bar is
invisible until the end, so long steps log **one plain line at least every
``interval`` seconds while they advance** (default 30 s; the environment
variable ``CIS490_PROGRESS_S`` overrides it, 0 = a line on every step), plus
one at the start and one at the end::

    features: 120/1996 episodes (6 %), 14.2/s, ETA 2m12s

The line is checked when the work advances, so a single step longer than the
interval delays the next line to its end. Standard library only: the data,
training and evaluation sides all use it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, TextIO

__all__ = ["DEFAULT_INTERVAL_S", "LineProgress", "interval_s", "fmt_duration"]

DEFAULT_INTERVAL_S = 30.0
ENV = "CIS490_PROGRESS_S"


def interval_s() -> float:
    """Seconds between progress lines: ``$CIS490_PROGRESS_S`` or 30 (a bad value: 30)."""
    try:
        v = float(os.environ.get(ENV, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return v if v >= 0 and v == v else DEFAULT_INTERVAL_S


def fmt_duration(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class LineProgress:
    """``advance(n)`` counts work done; a line goes to ``stream`` when due (see module doc)."""

    def __init__(self, label: str, total: int, *, unit: str = "", stream: TextIO | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic,
                 detail: Callable[[], str] | None = None) -> None:
        self.label, self.total, self.unit = label, max(0, int(total)), unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval_s() if interval is None else float(interval)
        self.clock, self.detail = clock, detail
        self.done = 0
        self.finished = False
        self.t0 = self.last = clock()
        self._emit(self.t0)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval or (self.total and self.done >= self.total):
            self._emit(now)

    def close(self) -> None:
        """The final line ("took …", also when the work ended short of ``total``, e.g. early
        stopping), unless the last line already was it."""
        if self._said != self.done or (self.total and self.done < self.total):
            self.finished = True
            self._emit(self.clock())

    def line(self, now: float) -> str:
        unit = f" {self.unit}" if self.unit else ""
        head = f"{self.label}: {self.done}/{self.total}{unit}" if self.total else \
            f"{self.label}: {self.done}{unit}"
        parts = [head + (f" ({100 * self.done // self.total} %)" if self.total else "")]
        extra = self.detail() if self.detail is not None else ""
        if extra:
            parts.append(extra)
        elapsed = now - self.t0
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            parts.append(f"{rate:.3g}/s")
            if self.total and self.done < self.total and not self.finished:
                parts.append(f"ETA {fmt_duration((self.total - self.done) / rate)}")
            else:
                parts.append(f"took {fmt_duration(elapsed)}")
        return ", ".join(parts)

    def _emit(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self.last, self._said = now, self.done
