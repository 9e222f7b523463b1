"""Walltime-aware claiming: a worker with a deadline claims only jobs that fit.

A worker may be given a deadline (``work --deadline``, or a Slurm pilot's
end of walltime less its signal lead: ``cis490.fleet.slurm``). Before it
claims a job it asks :meth:`Durations.verdict`:

- the job's expected duration is the spec's ``expected_minutes`` (the
  manifest's), else the longest completed attempt (``timings.run_s``) of any
  job of the same model and mode on this spool, else unknown;
- a job of a kind that cannot resume (it restarts from scratch) needs more
  than the longest run of it that a deadline or a signal cut short
  (``interrupted_run_s`` of its released attempts), by ``CUT_SHORT_MARGIN``:
  a window about as long as the one that cut it short does not take it
  again, so a job that cannot fit a walltime is not claimed again and again;
- a known duration fits when it is at most the time left before the deadline;
  an unknown one is claimed only in the first half of the worker's window
  (from its start to its deadline), and so is a job of a resumable kind
  longer than the whole window (it continues from its state on the next
  worker: a long job still progresses on a fleet of short pilots).

The lookups read attempt records only (``attempts/NAME/N@W.json``), cached
for ``CACHE_S`` per model and mode.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cis490.fleet import attempts as att
from cis490.fleet import kinds
from cis490.fleet.capability import Verdict

__all__ = ["CACHE_S", "Durations", "parse_deadline"]

CACHE_S = 300.0
CUT_SHORT_MARGIN = 1.25  # a job cut short after T seconds is expected to need 1.25 T


def parse_deadline(text: str, now: float | None = None) -> float:
    """``--deadline``: seconds since the epoch, ``+MINUTES`` from now, or an ISO 8601
    time (local time when it names no zone) -> seconds since the epoch."""
    from datetime import datetime

    now = time.time() if now is None else now
    raw = text.strip()
    try:
        if raw.startswith("+"):
            value = now + float(raw[1:]) * 60
        elif raw.replace(".", "", 1).isdigit():
            value = float(raw)
        else:
            value = datetime.fromisoformat(raw).timestamp()
    except ValueError:
        raise ValueError(f"--deadline {text!r}: use +MINUTES, seconds since the epoch, "
                         f"or an ISO time such as 2026-12-03T18:00") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"--deadline {text!r} is not a time")
    return value


def _records(attempts_dir: Path):
    for a in att.list_attempts(attempts_dir)[0]:
        if isinstance(a.record, dict):
            yield a.record


def _run_s(record: dict) -> float | None:
    t = record.get("timings")
    v = t.get("run_s") if isinstance(t, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None


class Durations:
    """Expected job durations on one spool (see the module doc)."""

    def __init__(self, spool, *, cache_s: float = CACHE_S):
        self.spool, self.cache_s = spool, cache_s
        self._longest: dict[str, tuple[float, float | None]] = {}  # "model_mode" -> (at, s)

    def longest_done(self, model: str, mode: str) -> float | None:
        """The longest ``run_s`` of a completed attempt of any ``model``/``mode`` job."""
        key = f"{model}_{mode}"
        hit = self._longest.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.cache_s:
            return hit[1]
        best: float | None = None
        try:
            entries = [e for e in os.scandir(self.spool.root / "attempts")
                       if e.name.startswith(key + ".") and e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            entries = []
        for entry in entries:
            for rec in _records(Path(entry.path)):
                if rec.get("outcome") == att.Outcome.DONE.value:
                    s = _run_s(rec)
                    if s is not None and (best is None or s > best):
                        best = s
        self._longest[key] = (time.monotonic(), best)
        return best

    def interrupted(self, name: str) -> float:
        """The longest run of job ``name`` cut short by a deadline or a signal (0: none)."""
        out = 0.0
        for rec in _records(self.spool.attempts_dir(name)):
            v = rec.get("interrupted_run_s")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out = max(out, float(v))
        return out

    def expected_s(self, spec) -> tuple[float | None, str]:
        """``(seconds or None, where the number comes from)``."""
        kind = kinds.get(spec.model)
        floor = 0.0 if kind is not None and kind.resumes(spec) else self.interrupted(spec.name)
        if spec.expected_minutes is not None:
            est, why = spec.expected_minutes * 60, "expected_minutes"
        else:
            est = self.longest_done(spec.model, spec.mode)
            why = f"longest completed {spec.model}/{spec.mode} attempt"
        floor *= CUT_SHORT_MARGIN
        if floor and (est is None or floor > est):
            return floor, (f"an earlier attempt was cut short after {floor / CUT_SHORT_MARGIN / 60:.1f} min "
                           f"and it cannot resume")
        return est, why

    def verdict(self, spec, *, now: float, started: float, deadline: float) -> Verdict:
        """Does ``spec`` fit before ``deadline`` (all in seconds since the epoch)?"""
        left = deadline - now
        est, why = self.expected_s(spec)
        kind = kinds.get(spec.model)
        if est is not None and est > deadline - started and kind is not None and kind.resumes(spec):
            est = None  # longer than any window like this one: it goes on from its state next time
        if est is None:
            half = started + (deadline - started) / 2
            if now <= half:
                return Verdict(True)
            return Verdict(False, f"its duration is unknown and the first half of this worker's "
                                  f"walltime is over ({left / 60:.1f} min left)")
        if est <= left:
            return Verdict(True)
        return Verdict(False, f"expected to take {est / 60:.1f} min ({why}), "
                              f"{max(0.0, left) / 60:.1f} min left before the deadline")

