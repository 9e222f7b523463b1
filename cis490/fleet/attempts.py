"""Attempt records, requeue markers, worker records and quarantine.

    attempts/NAME/N@WORKER.json          one per attempt, written only by WORKER
    attempts/NAME/N@WORKER.progress.json latest progress of that attempt (same writer)
    attempts/NAME/N.requeue.json         operator's requeue: attempts <= N no longer count
    logs/NAME/N@WORKER.log               the job's output, republished by WORKER
    workers/WORKER.json                  capability record; mtime = liveness
    quarantine/STATE--FILE--NONCE        a file moved aside, + .reason.json beside it

Attempt numbers are derived from the directory (max + 1), never from a
counter file. An attempt counts against ``max_attempts`` unless its outcome
is ``released`` (SIGTERM, or the spool stopped it) or ``withdrawn`` (lost a
rival-claim tie-break in eventual mode), or it is ``lost`` with ``fault:
spool-unavailable`` (its worker could not reach the spool past
``stale_after_s``), or it precedes the latest requeue marker; an attempt
whose worker died still says ``running`` and counts.
"""

from __future__ import annotations

import enum
import json
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from cis490.common import atomic_write
from cis490.fleet.faults import Fault
from cis490.fleet.layout import ATTEMPT_RE, MAX_JSON_BYTES, REQUEUE_RE, Layout, SpoolError, read_bounded

class Outcome(str, enum.Enum):
    """An attempt record's ``outcome`` (the value is what the JSON holds)."""

    RUNNING = "running"      # written at claim; a dead worker's record still says so
    DONE = "done"
    FAILED = "failed"
    RELEASED = "released"    # given back (SIGTERM, or stopped by the spool): not counted
    LOST = "lost"            # the lease was lost (swept, cancelled) before the end
    WITHDRAWN = "withdrawn"  # lost an eventual-mode tie-break before training: not counted


NOT_COUNTED = (Outcome.RELEASED, Outcome.WITHDRAWN)


@dataclass(frozen=True)
class AttemptInfo:
    number: int
    worker: str
    record: dict | None  # None when unreadable


def real_dir(root: Path, path: Path, by: str = "spool") -> Path:
    """A per-job directory (attempts/NAME, logs/NAME, models/MODEL_MODE/…) that is
    really a directory: a symlink or file planted there is quarantined, never
    followed, so no write can be redirected outside the spool."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.mkdir(exist_ok=True)
        return real_dir(root, path, by) if path.is_symlink() else path
    if stat.S_ISDIR(st.st_mode):
        return path
    quarantine(root, path, "a symlink or file where a directory belongs (never followed)", by)
    path.mkdir(exist_ok=True)
    return path


def list_attempts(attempts_dir: Path) -> tuple[list[AttemptInfo], int]:
    """All attempt records of one job, and the latest requeue marker number."""
    out: list[AttemptInfo] = []
    requeued_after = 0
    if attempts_dir.is_symlink():
        return out, 0
    try:
        entries = list(os.scandir(attempts_dir))
    except FileNotFoundError:
        return out, 0
    for entry in entries:
        m = ATTEMPT_RE.match(entry.name)
        if m:
            record = None
            if not entry.is_symlink():
                try:
                    record = json.loads(read_bounded(Path(entry.path), MAX_JSON_BYTES))
                except (OSError, ValueError, SpoolError):
                    record = None
            out.append(AttemptInfo(int(m.group(1)), m.group(2), record))
            continue
        m = REQUEUE_RE.match(entry.name)
        if m:
            requeued_after = max(requeued_after, int(m.group(1)))
    out.sort(key=lambda a: (a.number, a.worker))
    return out, requeued_after


# attempts ended by the spool (released or lost with fault spool-unavailable) that are
# forgiven per job; past these they count, so that something that only looks like an
# outage (a store slower than stale_after_s, an EPERM that is real) cannot rerun a job
# forever
FORGIVEN_SPOOL_FAULTS = 5


def is_counted(record: dict | None) -> bool:
    """Whether an attempt record spends the budget on its own: not released or withdrawn,
    and not lost to an outage of the spool (``fault: spool-unavailable``: its worker was
    cut off past ``stale_after_s`` and a sweep took the claim). A record that still says
    ``running`` (a dead worker) or cannot be read counts. (``counted_attempts`` also
    counts spool faults past ``FORGIVEN_SPOOL_FAULTS``.)"""
    record = record or {}
    outcome = record.get("outcome")
    if outcome in NOT_COUNTED:
        return False
    return not (outcome == Outcome.LOST and record.get("fault") == Fault.SPOOL_UNAVAILABLE.value)


def _spool_fault(record: dict | None) -> bool:
    record = record or {}
    return (record.get("outcome") in (Outcome.LOST, Outcome.RELEASED)
            and record.get("fault") == Fault.SPOOL_UNAVAILABLE.value)


def counted_attempts(attempts_dir: Path) -> int:
    """Attempts that spend the budget: since the last requeue, ``is_counted``, plus the
    spool-ended ones past the first ``FORGIVEN_SPOOL_FAULTS``."""
    attempts, after = list_attempts(attempts_dir)
    recent = [a for a in attempts if a.number > after]
    spool_faults = sum(1 for a in recent if _spool_fault(a.record))
    return (sum(1 for a in recent if is_counted(a.record))
            + max(0, spool_faults - FORGIVEN_SPOOL_FAULTS))


def next_attempt_number(attempts_dir: Path) -> int:
    attempts, after = list_attempts(attempts_dir)
    return max([after] + [a.number for a in attempts]) + 1


def write_record(path: Path, record: dict, tmp_dir: Path, *, durable: bool = True) -> None:
    real_dir(tmp_dir.parent, path.parent)
    atomic_write(path, json.dumps(record, sort_keys=True, indent=1) + "\n", tmp_dir=tmp_dir, durable=durable)


def write_requeue_marker(attempts_dir: Path, tmp_dir: Path, by: str) -> int:
    attempts, after = list_attempts(attempts_dir)
    number = max([after] + [a.number for a in attempts])
    write_record(attempts_dir / f"{number}.requeue.json",
                 {"after_attempt": number, "by": by, "at": time.time()}, tmp_dir)
    return number


def quarantine(root: Path, path: Path, reason: str, by: str) -> Path | None:
    """Move ``path`` (never following a symlink) aside with a one-line reason.

    Returns the new path, or None if the file had already gone (someone else
    moved it first: not an error).
    """
    state = path.parent.name
    dest = Layout(root).quarantine_path(state, path.name, secrets.token_hex(3))
    try:
        os.rename(path, dest)
    except FileNotFoundError:
        return None
    atomic_write(
        str(dest) + ".reason.json",
        json.dumps({"from": f"{state}/{path.name}", "reason": reason, "by": by,
                    "at": time.time()}, sort_keys=True) + "\n",
        tmp_dir=root / "tmp",
    )
    return dest
