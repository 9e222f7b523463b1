"""Claiming a job, and everything a claim's owner may do with it.

A claim is one rename ``pending/NAME.json → claimed/NAME@W.json``. Picking
*which* job is the expensive part at 100 000 pending jobs, so a ``Claimer``
keeps a sorted candidate list from one directory scan and pops from it; a
candidate that another worker took meanwhile costs one failed rename. Spec
files are immutable, so parsed specs are cached by (name, inode). The list is
rebuilt when empty, after ``rescan_s``, or when the daemon's watcher says
``pending/`` changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from cis490.fleet import attempts as att
from cis490.fleet.attempts import Outcome
from cis490.fleet import layout
from cis490.fleet import store
from cis490.common import atomic_write, fsync_dir
from cis490.fleet.capability import Capability, detect, eligible
from cis490.fleet.faults import Fault, hang_limit_s
from cis490.fleet.layout import (
    MAX_JSON_BYTES, TERMINAL, Consistency, JobState, SpoolError, entry_problem, is_ambiguous_eperm,
    is_ignored, is_spool_unavailable, job_of, split_claimed,
    parse_name, read_bounded,
)
from cis490.fleet import kinds
from cis490.fleet.spec import JobSpec, SpecError, SpecTooNew
from cis490.fleet.spool import LeaseLost, Spool, rename_resolved

LOG_PUBLISH_BYTES = 256 * 1024  # the spool keeps the tail of each attempt's log


def make_worker_id(host_id: str) -> str:
    """host id, pid and a short nonce, in the worker-name grammar."""
    label = re.sub(r"[^a-z0-9-]+", "-", host_id.lower()).strip("-")[:40] or "host"
    return f"{label}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class WorkerInfo:
    id: str
    capability: Capability
    started_at: float = field(default_factory=time.time)
    # where the worker runs beyond its host, e.g. {"slurm": {job_id, task, restart_count, ...}}
    # for a Slurm pilot: in its worker record and in every attempt record
    extra: dict = field(default_factory=dict)

    @classmethod
    def create(cls, host_id: str | None = None, capability: Capability | None = None,
               spool_root: str | os.PathLike | None = None) -> "WorkerInfo":
        cap = capability or detect(host_id, spool_root)
        if host_id and cap.host_id != host_id:
            cap = Capability(**{**cap.__dict__, "host_id": host_id})
        return cls(make_worker_id(cap.host_id), cap)

    def record(self) -> dict:
        return {"worker": self.id, "pid": os.getpid(), "started_at": self.started_at,
                "capability": self.capability.to_dict(), **self.extra}


def register(spool: Spool, worker: WorkerInfo) -> Path:
    path = spool.worker_record(worker.id)
    atomic_write(path, json.dumps(worker.record(), sort_keys=True, indent=1) + "\n", tmp_dir=spool.tmp)
    return path


def live_workers(spool: Spool, now: float) -> list[dict]:
    out = []
    for entry in os.scandir(spool.workers_dir):
        if not entry.name.endswith(".json") or entry.is_symlink():
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            rec = json.loads(read_bounded(Path(entry.path), MAX_JSON_BYTES))
        except (OSError, ValueError, SpoolError):
            continue
        if isinstance(rec, dict):
            rec["age_s"] = age
            rec["live"] = age <= spool.settings.stale_after_s
            out.append(rec)
    return out


class Claimer:
    def __init__(self, spool: Spool, worker: WorkerInfo, *, rescan_s: float = 2.0):
        self.spool, self.worker, self.rescan_s = spool, worker, rescan_s
        # (file name, inode) → (rank key or None, why not, spec if its verdict depends on time)
        self._cache: dict[tuple[str, int], tuple[tuple | None, str, JobSpec | None]] = {}
        self._policy = None
        self._candidates: list[str] = []
        self._scanned_at = float("-inf")
        self._scan_cost = 0.0
        self.skipped: dict[str, str] = {}  # name → why this worker leaves it alone
        # name -> (first, last, count) of its unbroken run of EPERMs (monotonic)
        self._eperm_runs: dict[str, tuple[float, float, int]] = {}
        # a last check of a chosen job before the claiming rename (the worker's memory
        # admission); returns a capability.Verdict
        self.gate = None

    def invalidate(self) -> None:
        self._candidates = []

    def deferred(self) -> bool:
        """Pending specs skipped for now because they answered EPERM (``_eperm``) lately
        (within ``layout.EPERM_RUN_GAP_S``): not judged yet, so ``--drain`` must not take the queue
        for empty. A run that stopped (the spec answered, left pending/, or was not read
        again) defers nothing."""
        now = time.monotonic()
        return any(now - last <= layout.EPERM_RUN_GAP_S for _f, last, _c in self._eperm_runs.values())

    def has_candidates(self) -> bool:
        """Ranked jobs of the last scan not tried yet (a ``claim`` that raises has used one up)."""
        return bool(self._candidates)

    def _read(self, path: Path) -> JobSpec | None:
        """The spec at ``path``, or None: gone (a lost race), too new (skipped), or
        bad — then quarantined with read_spec's reason, and the caller goes on
        with the next entry. An OSError of an unavailable spool propagates: the
        file is fine, and nothing is quarantined for it."""
        try:
            spec = self.spool.read_spec(path)
        except FileNotFoundError:
            self._answered(path)
            return None
        except SpecError as exc:
            self._answered(path)
            self._refuse(path, exc)
            return None
        except PermissionError as exc:
            if not is_ambiguous_eperm(exc):
                raise
            self._eperm(path, exc)
            return None
        self._answered(path)
        return spec

    def _answered(self, path: Path) -> None:
        """The spec at ``path`` answered something other than EPERM: not deferred any more."""
        self._eperm_runs.pop(job_of(path.name), None)

    def _eperm(self, path: Path, exc: OSError) -> bool:
        """An EPERM reading the spec at ``path``: skipped for now (sshfs answers it while it
        reconnects), quarantined as unreadable once the same job has answered nothing else
        for ``EPERM_GRACE_S`` and at least 3 reads, each within ``layout.EPERM_RUN_GAP_S`` of the
        one before. True if it was quarantined."""
        name, now = job_of(path.name), time.monotonic()
        first, last, count = self._eperm_runs.get(name, (now, now, 0))
        if now - last > layout.EPERM_RUN_GAP_S:
            first, count = now, 0          # an EPERM long after the last: a new run
        self._eperm_runs[name] = (first, now, count + 1)
        if now - first < layout.EPERM_GRACE_S or count + 1 < 3:
            self.skipped[name] = f"unreadable for now ({exc.strerror or exc}); tried again later"
            return False
        self._eperm_runs.pop(name, None)
        self._refuse(path, SpecError(f"unreadable ({exc.strerror or exc}, for more than "
                                     f"{layout.EPERM_GRACE_S:.0f} s)"))
        return True

    def _refuse(self, path: Path, exc: SpecError) -> None:
        if isinstance(exc, SpecTooNew):  # a newer operator's job: never quarantined
            self.skipped[job_of(path.name)] = str(exc)
        else:
            att.quarantine(self.spool.root, path, str(exc), self.worker.id)

    def _cuda_peers(self, now: float) -> list[tuple[Capability, object]]:
        peers = []
        for rec in live_workers(self.spool, now):
            cap_raw = rec.get("capability")
            other = rec.get("worker") != self.worker.id
            if rec.get("live") and isinstance(cap_raw, dict) and cap_raw.get("cuda") and other:
                try:
                    cap = Capability.from_dict(cap_raw)
                except (TypeError, ValueError):
                    continue
                peers.append((cap, self.spool.host_policy(cap.host_id)))
        return peers

    def scan(self, now: float | None = None) -> list[str]:
        """Rank the eligible pending jobs. Incremental: a spec file is parsed and
        judged once per (name, inode); only ``prefer_cuda`` verdicts, which
        depend on time and on the live CUDA workers, are judged again."""
        t0 = time.monotonic()
        self._candidates = []  # a scan that fails leaves no stale candidates behind
        spool, cap = self.spool, self.worker.capability
        now = spool.fs_now(self.worker.id) if now is None else now
        policy = spool.host_policy(cap.host_id)
        if policy != self._policy:  # a reload changed the host policy: judge everything again
            self._cache, self._policy = {}, policy
        peers = None
        ranked, cache, self.skipped = [], {}, {}
        here: set[str] = set()
        for entry in os.scandir(spool.state_dir(JobState.PENDING)):
            if is_ignored(entry.name):
                continue
            name = job_of(entry.name)
            here.add(name)
            why = entry_problem(entry, JobState.PENDING)  # bad name, symlink, FIFO, directory: never opened
            if why:
                att.quarantine(spool.root, Path(entry.path), why, self.worker.id)
                continue
            parsed = parse_name(name)  # entry_problem checked the name
            key = (entry.name, entry.inode())
            hit = self._cache.get(key)
            if hit is not None and hit[2] is None:  # a verdict that cannot change
                cache[key] = hit
                if hit[0] is not None:
                    ranked.append(hit[0])
                else:
                    self.skipped[name] = hit[1]
                continue
            if hit is None and not policy.permits(parsed[0], parsed[1]):
                cache[key] = (None, "host policy (allow_jobs/deny_jobs) excludes it", None)
                self.skipped[name] = cache[key][1]
                continue
            spec = hit[2] if hit is not None else self._read(Path(entry.path))
            if spec is None:
                continue
            dynamic = spec.constraints.prefer_cuda and not cap.cuda
            peer_ok = False
            if dynamic:
                if peers is None:
                    peers = self._cuda_peers(now)
                peer_ok = any(eligible(spec, pc, pp).ok for pc, pp in peers)
            verdict = eligible(spec, cap, policy, waited_s=now - spec.enqueued_ns / 1e9,
                               cuda_peer_available=peer_ok,
                               prefer_cuda_grace_s=spool.settings.prefer_cuda_grace_s)
            rank = (-spec.priority, spec.enqueued_ns, spec.name) if verdict.ok else None
            cache[key] = (rank, verdict.reason, spec if dynamic else None)
            if rank is not None:
                ranked.append(rank)
            else:
                self.skipped[spec.name] = verdict.reason
        self._cache = cache
        # a deferred spec that left pending/ (claimed elsewhere, cancelled) is no longer waited for
        self._eperm_runs = {n: r for n, r in self._eperm_runs.items() if n in here}
        ranked.sort()
        self._candidates = [name for *_k, name in reversed(ranked)]  # pop() takes the best
        self._scanned_at = time.monotonic()
        self._scan_cost = self._scanned_at - t0
        return [n for n in reversed(self._candidates)]

    def claim(self, now: float | None = None) -> "Claim | None":
        # Rescan when the list is used up, or periodically to see new jobs (at most
        # ~5 % of the time goes to rescans, however large pending/ grows).
        every = max(self.rescan_s, 20 * self._scan_cost)
        if not self._candidates or time.monotonic() - self._scanned_at > every:
            self.scan(now)
        spool = self.spool
        while self._candidates:
            name = self._candidates.pop()
            src = spool.path_of(JobState.PENDING, name)
            dst = spool.path_of(JobState.CLAIMED, name, self.worker.id)
            if self.gate is not None:  # e.g. memory admission: judged just before the rename
                try:
                    spec = spool.read_spec(src)
                    self._answered(src)
                except FileNotFoundError:
                    spec = None  # gone: the rename below loses the race
                except SpecError as exc:  # too new or bad (replaced since the scan)
                    self._answered(src)
                    self._refuse(src, exc)
                    continue
                except PermissionError as exc:
                    if not is_ambiguous_eperm(exc):
                        raise
                    self._eperm(src, exc)
                    continue
                verdict = self.gate(spec) if spec is not None else None
                if verdict is not None and not verdict.ok:
                    self.skipped[name] = verdict.reason
                    if verdict.later:  # keep the order: ask again about this one first,
                        self._candidates.append(name)  # never start on the ones below it
                        return None
                    continue
            if not rename_resolved(src, dst):
                continue  # another worker won: not an error
            try:
                claim = self._take(src, dst)
            except OSError as exc:
                if is_spool_unavailable(exc) or is_ambiguous_eperm(exc):
                    # nothing ran: give the job back at once (a rename needs no space)
                    # rather than leave a claim without a record for a sweep to find
                    self._give_back(dst, src)
                raise
            if claim is None:
                continue
            if spool.settings.consistency == Consistency.EVENTUAL:
                try:
                    claim.check_rivals()  # at claim, then during settle and every heartbeat
                except LeaseLost:
                    continue
            return claim
        return None

    @staticmethod
    def _give_back(dst: Path, src: Path, tries: int = 3) -> None:
        """claimed/ -> pending/ for a claim nothing ran under; a few tries (a reconnecting
        mount answers the rename with EPERM too), then the sweep (or fsck --repair)."""
        for i in range(tries):
            try:
                rename_resolved(dst, src)
                return
            except OSError:
                if i + 1 < tries:
                    time.sleep(0.2 * (i + 1))

    def _take(self, src: Path, dst: Path) -> "Claim | None":
        """Start the claim just renamed to ``dst``; None if it is not ours to run after all."""
        spool = self.spool
        try:
            # First heartbeat at once: a renamed file keeps its enqueue-time
            # mtime, and a sweeper must not mistake a fresh claim for a stale one.
            os.utime(dst, None)
            spec = spool.read_spec(dst)
        except FileNotFoundError:
            return None  # swept or cancelled in that instant: not ours any more
        except PermissionError as exc:
            if not is_ambiguous_eperm(exc):
                raise
            # maybe a reconnecting sshfs mount: give it back untouched (nothing ran) and
            # skip it for now; after EPERM_GRACE_S of nothing else it is quarantined
            if not self._eperm(dst, exc):
                self._give_back(dst, src)
            return None
        except SpecTooNew:
            self._answered(dst)
            rename_resolved(dst, src)
            return None
        except SpecError as exc:  # bad in any way (read_spec's reason): set aside, go on
            self._answered(dst)
            att.quarantine(spool.root, dst, str(exc), self.worker.id)
            return None
        self._answered(dst)
        if kinds.get(spec.model) is None:  # replaced meanwhile by a kind we cannot run
            rename_resolved(dst, src)
            return None
        return Claim.start(spool, spec, self.worker, dst)


class Claim:
    """A job this worker owns; every method below is one of the spool's transitions
    (docs/SPOOL.md, "Transitions")."""

    def __init__(self, spool: Spool, spec: JobSpec, worker: WorkerInfo, path: Path, number: int):
        self.spool, self.spec, self.worker, self.path, self.number = spool, spec, worker, path, number
        self.name = spec.name
        self.record_path = spool.attempt_record(self.name, number, worker.id)
        self.log_path = spool.attempt_log(self.name, number, worker.id)
        self.progress_path = spool.progress_record(self.name, number, worker.id)
        self.record: dict = {}
        # when this claim last reached the spool, and since when it could not (for
        # telling a lease lost to an outage from one lost to a cancel, see lost_fault)
        self.last_beat = time.monotonic()
        self.unreachable_since: float | None = None
        self._call_started: float | None = None

    @classmethod
    def start(cls, spool: Spool, spec: JobSpec, worker: WorkerInfo, path: Path) -> "Claim":
        number = att.next_attempt_number(spool.attempts_dir(spec.name))
        claim = cls(spool, spec, worker, path, number)
        claim.record = {
            "name": spec.name, "job_id": spec.id, "attempt": number, "worker": worker.id,
            "host_id": worker.capability.host_id, "hostname": socket.gethostname(),
            "pid": os.getpid(), "outcome": Outcome.RUNNING.value, "claimed_at": time.time(),
            **worker.extra,
        }
        # not fsynced: after a power cut a missing "running" record costs at most
        # an attempt that is not counted; every final outcome below is durable
        t0 = time.monotonic()
        claim._write_record(durable=False)
        if time.monotonic() - t0 > hang_limit_s(spool.settings.heartbeat_s):
            claim.note_unreachable(t0)  # it hung: a sweep may have taken the claim meanwhile
        return claim

    def _write_record(self, durable: bool = True, **changes) -> None:
        self.record.update(changes)
        att.write_record(self.record_path, self.record, self.spool.tmp, durable=durable)

    @property
    def alive(self) -> bool:
        """The claim file is still there. An unavailable spool raises (``os.path.lexists``
        would say False, and a worker would drop a job the spool still gives it)."""
        try:
            os.lstat(self.path)
        except FileNotFoundError:
            return False
        return True

    def heartbeat(self) -> None:
        """Touch the claim file; LeaseLost when it is gone (cancelled or swept).

        In eventual mode also look for rival claims and for the job in a
        state of higher precedence (done elsewhere, cancelled).
        """
        self._call_started = time.monotonic()
        try:
            os.utime(self.path, None)
        except FileNotFoundError:
            raise LeaseLost(f"lease on {self.name} lost (cancelled or swept)") from None
        except OSError as exc:
            if is_spool_unavailable(exc) or is_ambiguous_eperm(exc):
                self.note_unreachable(self._call_started)
            raise
        self.last_beat, self.unreachable_since, self._call_started = time.monotonic(), None, None
        if self.spool.settings.consistency == Consistency.EVENTUAL:
            self.check_rivals()

    def note_unreachable(self, since: float) -> None:
        """The owner could not reach the spool from ``since`` (monotonic) on: a call for
        this job failed as unavailable, or hung. The next successful heartbeat ends it."""
        if self.unreachable_since is None:
            self.unreachable_since = since

    def lost_fault(self) -> dict:
        """What a lost lease's record says of whose fault it was: ``spool-unavailable``
        when this worker could not reach the spool for longer than ``stale_after_s``
        (a call for this job failed as unavailable or hung past 3 heartbeats:
        ``note_unreachable``, or the heartbeat under way has hung so long) — a sweep
        then took the claim for a dead worker's, and the attempt is not counted
        (``attempts.counted_attempts``); else nothing (a cancel, an operator's requeue,
        a stall of this host's own): it counts, as before."""
        now = time.monotonic()
        gap = now - self.last_beat
        hung = self._call_started is not None and \
            now - self._call_started > hang_limit_s(self.spool.settings.heartbeat_s)
        if gap > self.spool.settings.stale_after_s and (self.unreachable_since is not None or hung):
            return {"fault": Fault.SPOOL_UNAVAILABLE.value, "unreachable_s": round(gap, 1)}
        return {}

    def _taken_over(self) -> bool:
        """The job was claimed again after us: an attempt file numbered as ours or higher,
        other than our own (by its name: readable or not, any worker — a claim taken
        while our first record hung gets our number, since it could not see ours)."""
        attempts, _ = att.list_attempts(self.spool.attempts_dir(self.name))
        return any(a.number >= self.number and (a.number, a.worker) != (self.number, self.worker.id)
                   for a in attempts)

    def _record_lost(self, **extra) -> None:
        """Record this attempt as lost; when the spool cut us off, also undo a failure a
        sweep charged for it meanwhile (``Spool.give_back_swept_failure``)."""
        fault = self.lost_fault()
        self._write_record(outcome=Outcome.LOST.value, ended_at=time.time(), **fault, **extra)
        if fault and self.spool.give_back_swept_failure(self.name, self.number):
            self._write_record(given_back=True)

    @staticmethod
    def rank(name: str, worker: str) -> str:
        """The deterministic tie-break: the smallest sha256(NAME + WORKER) wins."""
        return hashlib.sha256((name + worker).encode()).hexdigest()

    def check_rivals(self) -> None:
        """Eventual mode: withdraw (LeaseLost) if another claim wins or the job is settled elsewhere."""
        for state in TERMINAL:
            if os.path.lexists(self.spool.path_of(state, self.name)):
                self.withdraw(f"{self.name} is already {state.value} (seen beside our claim)")
        rivals = [parsed[1] for e in os.scandir(self.spool.state_dir(JobState.CLAIMED))
                  if e.name != self.path.name and (parsed := split_claimed(e.name))
                  and parsed[0] == self.name]
        if rivals:
            winner = min([self.worker.id, *rivals], key=lambda w: self.rank(self.name, w))
            if winner != self.worker.id:
                self.withdraw(f"rival claim by {winner} wins the tie-break")

    def withdraw(self, reason: str) -> None:
        """Give up a claim that lost (eventual mode); the attempt does not count."""
        self._write_record(outcome=Outcome.WITHDRAWN.value, error=reason, ended_at=time.time())
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        raise LeaseLost(f"withdrew from {self.name}: {reason}")

    def settle(self, stop=None) -> None:
        """Eventual mode: wait ``settle_s`` watching for rival claims before starting."""
        settle = self.spool.settings.settle_s
        if self.spool.settings.consistency != Consistency.EVENTUAL or settle <= 0:
            return
        deadline = time.monotonic() + settle
        while (left := deadline - time.monotonic()) > 0:
            if stop is not None and stop.is_set():
                return
            time.sleep(min(left, max(0.05, settle / 10)))
            # look, don't touch: Syncthing holds back a file that keeps changing,
            # and a rival must see our claim within the settle window
            if not self.alive:  # nothing ran yet: the attempt does not count (EIO raises)
                self.withdraw("the claim vanished while settling (cancelled, or reconciled away)")
            self.check_rivals()

    def progress(self, event: dict) -> None:
        att.write_record(self.progress_path, {**event, "attempt": self.number}, self.spool.tmp, durable=False)

    def publish_log(self, local_log: Path) -> None:
        """Republish the tail of the job's local log into the spool (atomic)."""
        try:
            with open(local_log, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - LOG_PUBLISH_BYTES))
                data = fh.read()
        except FileNotFoundError:
            return
        att.real_dir(self.spool.root, self.log_path.parent, self.worker.id)
        atomic_write(self.log_path, data, tmp_dir=self.spool.tmp, durable=False)

    def _finish(self, target: JobState, **record) -> None:
        self._call_started = time.monotonic()  # lost_fault: a transition that hung
        self._write_record(ended_at=time.time(), **record)
        dst = self.spool.path_of(target, self.name)
        try:
            os.rename(self.path, dst)
            moved = True
        except FileNotFoundError:
            # our rename's lost reply (a network filesystem) — or a sweep took the claim
            # while we hung, and the job's next attempt got there first: only the
            # first leaves no later attempt by another worker
            moved = os.path.lexists(dst) and not os.path.lexists(self.path) and \
                not self._taken_over()
        if not moved:
            self._record_lost(lost_after=record.get("outcome"))
            raise LeaseLost(f"lease on {self.name} lost before it could be marked {target.value}")
        fsync_dir(self.spool.state_dir(target))  # a finished job stays finished after a power cut

    def complete(self, artifact_dir: str | os.PathLike, *,
                 curves_dir: str | os.PathLike | None = None, **extra) -> store.StoredArtifact:
        """Store the artifact (and its training curves, outside the digest, when
        ``curves_dir`` has files), record the attempt, then claimed → done."""
        t0 = time.monotonic()
        if not self.alive:
            self._record_lost()
            raise LeaseLost(f"lease on {self.name} lost before completion")
        stored = store.put(self.spool.root, f"{self.spec.model}_{self.spec.mode}", artifact_dir,
                           {"job": self.name, "job_id": self.spec.id, "spec": self.spec.to_dict()},
                           curves_dir=curves_dir)
        if time.monotonic() - t0 > hang_limit_s(self.spool.settings.heartbeat_s):
            self.note_unreachable(t0)  # storing hung (or crawled): a sweep may have come
        self._finish(JobState.DONE, outcome=Outcome.DONE.value, digest=stored.digest,
                     artifact_created=stored.created, **extra)
        return stored

    def fail(self, reason: str, *, fault: str = "job", **extra) -> None:
        """claimed → failed; ``fault`` (``faults.Fault``) says whose fault it was."""
        self._finish(JobState.FAILED, outcome=Outcome.FAILED.value, error=reason[-4000:], fault=fault, **extra)

    def release(self, reason: str = "worker stopping (SIGTERM)", *, fault: str | None = None,
                **extra) -> None:
        """Give the job back; this attempt does not count."""
        if fault:
            extra["fault"] = fault
        self._finish(JobState.PENDING, outcome=Outcome.RELEASED.value, error=reason, **extra)

    def mark_lost(self) -> None:
        if self.record.get("outcome") == Outcome.RUNNING:  # a withdrawal already said why
            self._record_lost()


# spool -> worker id -> Claimer (its scan cache), for claim_next
_CLAIMERS: "weakref.WeakKeyDictionary[Spool, dict[str, Claimer]]" = weakref.WeakKeyDictionary()


def claimer_for(spool: Spool, worker: WorkerInfo) -> Claimer:
    """The ``Claimer`` that ``claim_next`` uses for ``worker`` on ``spool``."""
    by_worker = _CLAIMERS.setdefault(spool, {})
    if worker.id not in by_worker:
        by_worker[worker.id] = Claimer(spool, worker)
    return by_worker[worker.id]


def claim_next(spool: Spool, worker: WorkerInfo | str, now: float | None = None) -> Claim | None:
    """Public API: claim the best eligible pending job for ``worker``, or None."""
    if isinstance(worker, str):
        worker = WorkerInfo(worker, detect(spool_root=spool.root))
    return claimer_for(spool, worker).claim(now)
