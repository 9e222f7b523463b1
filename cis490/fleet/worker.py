"""The worker: self-test → register → claim → spawn → heartbeat → store → done.

Modes: ``daemon`` (wakes on watchdog events in ``pending/``, with a polling
fallback because inotify never sees another NFS client's changes), ``once``
(claim up to ``slots`` jobs, finish them, exit — for cron) and ``drain``
(keep going until no eligible job is left). A host-local lock per slot keeps
overlapping cron runs from oversubscribing the host.

Each job runs as ``python -m cis490.fleet.child <worker pid> <driver> ...``:
no shell, argv built from the validated spec only, its own process group,
and it dies with the worker. Every ``heartbeat_s`` the slot touches its claim;
a vanished claim (cancel or sweep) is a lost lease and kills the job at once.
SIGTERM or SIGUSR1 (a Slurm pilot's time-limit warning), or the worker's
``deadline`` passing: stop claiming, ask the jobs to stop (SIGTERM: a
resumable job saves its resume state and exits ``EXIT_RESUMABLE``), release
their claims (not counted). With a deadline the worker claims only jobs that
fit before it (``cis490.fleet.walltime``).

Resume state (docs/SPOOL.md): a resumable kind's job runs with
``--resume-dir WORKDIR/resume``; before the job starts the worker copies the
spool's ``attempts/NAME/resume/resume.ckpt`` (left by an earlier attempt)
there, after every heartbeat it publishes a changed local state back to the
spool (the claim's owner is its one writer), and when the job is done it
removes the spool's copy.

An unavailable spool (``cis490.fleet.faults``: EIO, ENOTCONN, ESTALE, ENOSPC,
EROFS, …) is waited out in every mode: the worker never exits for one, keeps
its jobs training, claims nothing new, retries its heartbeats and records with
backoff and logs one line when the outage starts and one when it ends. A
finished job's bundle stays in the local work directory until storing it
succeeds or the lease is lost; an attempt ended by the spool, not the job, is
released (not counted), never failed.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from cis490.common import EXIT_RESUMABLE, atomic_writer
from cis490.fleet.capability import Verdict
from cis490.fleet.claim import Claim, Claimer, WorkerInfo, register
from cis490.fleet.faults import Fault, Outage, Watchdog, hang_limit_s
from cis490.fleet import kinds, layout
from cis490.fleet import attempts as att
from cis490.fleet.attempts import Outcome
from cis490.fleet.layout import SpoolError, is_ambiguous_eperm, is_spool_unavailable
from cis490.fleet.memory import PENDING, MemoryGate
from cis490.fleet.spec import SpecError, driver_argv
from cis490.fleet.spool import LeaseLost, Spool
from cis490.fleet.walltime import Durations

log = logging.getLogger("cis490.worker")
LOOP = "worker loop"  # the outage site of the worker's own pass (sweep, liveness, claims)
STOP_POLL_S = 0.5     # how often a job's supervisor looks for a stop between heartbeats
RELEASE_RETRY_S = 60.0  # how long a stopping worker retries giving a job back through an outage
MAX_RESUME_BYTES = 8 << 30  # a resume state larger than this is not read (quarantined)


# what a progress record may hold (the driver's --progress-fd lines)
PROGRESS_KEYS = ("epoch", "epochs", "loss", "val_macro_f1", "epoch_fraction")


class WorkerMode(str, enum.Enum):
    """How long a worker runs (``work``, ``work --drain``, ``work --once``)."""

    DAEMON = "daemon"  # until stopped: waits for new jobs (filesystem events + polling)
    DRAIN = "drain"    # until no claimable job remains and its jobs are done
    ONCE = "once"      # fills its slots once, finishes those jobs, exits (cron)


@dataclass
class WorkerOptions:
    mode: str = WorkerMode.DAEMON.value  # a WorkerMode value
    slots: int | None = None         # None: the host's manifest policy (default 1)
    poll_s: float = 5.0              # polling fallback for network filesystems
    release_grace_s: float = 30.0    # SIGTERM → SIGKILL of a job when stopping (it saves its state)
    max_jobs: int | None = None      # stop after this many jobs (tests, benchmarks)
    work_root: Path | None = None    # local scratch for job outputs
    lock_dir: Path | None = None     # host-local slot locks
    watch: bool = True               # use watchdog in daemon mode
    deadline: float | None = None    # seconds since the epoch: claim only what fits, stop then
    cuda_only: bool = False          # claim only jobs that use or want a GPU (a GPU pilot)


def self_test(spool: Spool, worker_id: str) -> list[str]:
    """Problems that make this host unfit to work on the spool (empty: fit)."""
    problems = []
    probe = spool.tmp / f".selftest-{worker_id}"
    moved = spool.tmp / f".selftest-{worker_id}.renamed"
    try:
        t0 = time.time()
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b"probe")
        os.fsync(fd)
        os.close(fd)
        created = os.stat(probe).st_mtime          # stamped by the file server
        os.rename(probe, moved)
        if not moved.exists() or probe.exists():
            problems.append("rename did not move the probe file")
        os.utime(moved, None)                      # the heartbeat's own operation
        touched = os.stat(moved).st_mtime
        t1 = time.time()
        bound = spool.settings.stale_after_s / 4
        for what, stamp in (("file creation", created), ("utime (heartbeat)", touched)):
            # the true skew lies within [stamp - t1, stamp - t0]; allow 2 s of mtime granularity
            skew = min(abs(stamp - t0), abs(stamp - t1))
            if skew > bound + 2:
                problems.append(
                    f"clock skew {skew:.0f} s between this host and the spool ({what}) exceeds "
                    f"stale_after_s/4 = {bound:.0f} s: fix NTP on this host or the server"
                )
    except OSError as exc:
        if is_spool_unavailable(exc) or is_ambiguous_eperm(exc):
            raise  # the spool, not this host (EPERM: maybe sshfs reconnecting): the caller waits
        problems.append(f"spool not usable: {exc.strerror or exc} ({exc.filename})")
    finally:
        for p in (probe, moved):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
            except OSError:
                pass
    return problems



class Worker:
    def __init__(self, spool: Spool, info: WorkerInfo, options: WorkerOptions | None = None):
        self.spool, self.info = spool, info
        self.opts = options or WorkerOptions()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.claimer = Claimer(spool, info)
        self.memory = MemoryGate()
        self.claimer.gate = self._gate
        self.durations = Durations(spool)
        self.stopped_by: str | None = None  # SIGTERM, SIGUSR1, deadline (None: it ran out of work)
        self.released: list[str] = []       # jobs given back because the worker stopped
        self.worked = False                 # it got its slots and went to work
        self._estimates: dict[str, int | None] = {}
        self._refused: set[str] = set()  # jobs whose refusal was logged
        self.running: dict[str, threading.Thread] = {}
        self.completed = 0
        self.outcomes: dict[str, str] = {}
        self._lock = threading.Lock()
        self._locks: list[FileLock] = []
        self.outage = Outage(log)
        # a spool call that hangs (a stopped connection) for 3 heartbeats counts as an outage
        self.watchdog = Watchdog(self.outage, hang_limit_s(spool.settings.heartbeat_s))

    # --- lifecycle ---------------------------------------------------------------------

    def _acquire_slots(self, wanted: int) -> int:
        lock_dir = self.opts.lock_dir or Path(tempfile.gettempdir()) / "cis490-locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{self.spool.root}|{self.info.capability.host_id}".encode()).hexdigest()[:16]
        for k in range(wanted):
            lock = FileLock(str(lock_dir / f"{key}-slot{k}.lock"))
            try:
                lock.acquire(timeout=0)
                self._locks.append(lock)
            except Timeout:
                continue
        return len(self._locks)

    def stop(self, signum=None, _frame=None, *, why: str | None = None) -> None:
        if self.stopped_by is None:
            if why is None and signum is not None:
                why = signal.Signals(signum).name
            self.stopped_by = why
        self.stopping.set()
        self.wake.set()

    def _until_available(self, what: str, fn):
        """``fn()``, retried with backoff while the spool is unavailable; None if stopped."""
        while True:
            try:
                out = fn()
            except OSError as exc:
                if not self._spool_down(exc, what):
                    raise
                self.outage.hit(exc, what)
                if self.stopping.wait(self.outage.backoff(what)):
                    return None
                continue
            self.outage.clear(what)
            return out

    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            if hasattr(signal, "SIGUSR1"):  # a Slurm pilot's warning before its time limit
                signal.signal(signal.SIGUSR1, self.stop)
        problems = self._until_available("self-test", lambda: self_test(self.spool, self.info.id))
        if problems is None:
            return 0  # stopped while the spool was unavailable
        if problems:
            for p in problems:
                log.error("self-test failed: %s", p)
            return 1
        wanted = self.opts.slots or self.spool.host_policy(self.info.capability.host_id).slots
        slots = self._acquire_slots(wanted)
        if slots == 0:
            log.warning("all %d slot(s) of this host are held by another worker run; exiting", wanted)
            return 0
        self.worked = True
        self.watchdog.start()
        record = self._until_available("registering", lambda: register(self.spool, self.info))
        if record is None:
            self.watchdog.stop()
            for lock in self._locks:
                lock.release()
            return 0
        observer = self._start_watch() if self.opts.mode == WorkerMode.DAEMON and self.opts.watch else None
        log.info("worker %s up: %d slot(s), mode %s, spool %s", self.info.id, slots,
                 self.opts.mode, self.spool.root)
        try:
            self._loop(slots, record)
        finally:
            self.stopping.set()
            for t in list(self.running.values()):
                t.join()
            self.watchdog.stop()
            if observer is not None:
                observer.stop()
            try:
                leftovers = [record, *self.spool.tmp.glob(f".{self.info.id}.*.probe")]
            except OSError:
                leftovers = [record]
            for leftover in leftovers:
                try:
                    os.unlink(leftover)
                except OSError:  # gone, or the spool is unavailable: the sweep ages it out
                    pass
            for lock in self._locks:
                lock.release()
        log.info("worker %s stopped after %d job(s)", self.info.id, self.completed)
        return 0

    def _start_watch(self):
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # polling alone still works
            return None
        worker = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                worker.claimer.invalidate()
                worker.wake.set()

        observer = Observer()
        observer.schedule(Handler(), str(self.spool.root / "pending"), recursive=False)
        observer.daemon = True
        observer.start()
        return observer

    def _budget_left(self) -> bool:
        return self.opts.max_jobs is None or self.completed + len(self.running) < self.opts.max_jobs

    def _loop(self, slots: int, record: Path) -> None:
        hb = self.spool.settings.heartbeat_s
        claiming = True  # `once` stops claiming after its first fill
        while not self.stopping.is_set():
            if self.opts.deadline is not None and time.time() >= self.opts.deadline:
                log.warning("deadline reached: stopping (running jobs save their state and go back)")
                self.stop(why="deadline")
                break
            try:
                with self.watchdog.watch(LOOP):
                    record, claiming = self._step(slots, record, claiming, hb)
            except OSError as exc:
                if not self._spool_down(exc, LOOP):
                    raise
                # the spool is unavailable: claim nothing, keep the jobs running, retry
                self.outage.hit(exc, LOOP)
                self._reap()
                self.wake.wait(timeout=self.outage.backoff(LOOP))
                self.wake.clear()
                continue
            if record is None:
                return
            self.wake.wait(timeout=min(self.opts.poll_s, hb) if self.running else self.opts.poll_s)
            self.wake.clear()

    def _step(self, slots: int, record: Path, claiming: bool, hb: float):
        """One pass of the loop: liveness + sweep when due, then claim. ``(record, claiming)``,
        record None when the worker is done; OSError when the spool is unavailable."""
        if time.monotonic() >= self._next_sweep:
            try:
                os.utime(record, None)  # worker liveness
            except FileNotFoundError:  # removed by hand (or by a far-off sweep): register again
                record = register(self.spool, self.info)
            swept = self.spool.sweep(by=self.info.id, full=False)
            if swept.requeued or swept.failed or swept.quarantined:
                log.warning("swept stale claims: requeued %s, failed %s, quarantined %s",
                            list(swept.requeued), list(swept.failed), list(swept.quarantined))
                self.claimer.invalidate()
            self._next_sweep = time.monotonic() + hb
        self._reap()
        while True:
            if claiming and len(self.running) < slots and self._budget_left():
                try:
                    got = self.claimer.claim()  # None only after a fresh scan found nothing
                except SpoolError as exc:  # e.g. a manifest copy whose signature fails: refuse, keep going
                    if str(exc) != self._last_error:
                        log.error("not claiming: %s", exc)
                        self._last_error = str(exc)
                    got = None
                    if self.claimer.has_candidates():
                        # one candidate's error says nothing about the others (each error
                        # used one up): try them before --drain/--once judge the queue empty
                        continue
                if got is not None:
                    self._start(got)
                    continue
                if self.opts.mode == WorkerMode.ONCE and not self.memory.busy():
                    claiming = False
            elif self.opts.mode == WorkerMode.ONCE and len(self.running) >= slots:
                claiming = False
            break
        self.outage.clear(LOOP)  # the whole pass went through: the spool answers again
        if not self.running and (self.opts.mode != WorkerMode.DAEMON or not self._budget_left()):
            if not ((self.memory.busy() or (claiming and self.claimer.deferred()))
                    and self._budget_left()):
                # (an estimate under way, or a spec that answered EPERM, may still make a
                # job claimable)
                return None, claiming
        return record, claiming

    _last_error = ""
    _next_sweep = 0.0

    def work_left(self) -> bool:
        """After stopping: would a fresh run of this worker (a requeued pilot, with a window
        as long as this one's) find a job to claim? Judged by a fresh scan, with the GPU
        filter and the expected durations; unknown (the spool did not answer): yes."""
        try:
            names = Claimer(self.spool, self.info).scan()
            window = (None if self.opts.deadline is None
                      else self.opts.deadline - self.info.started_at)
            for name in names:
                try:
                    spec = self.spool.read_spec(self.spool.path_of(layout.JobState.PENDING, name))
                except (SpecError, FileNotFoundError):
                    continue
                if self.opts.cuda_only and not self._gpu_job(spec):
                    continue
                if window is not None:
                    est, _why = self.durations.expected_s(spec)
                    kind = kinds.get(spec.model)
                    resumes = kind is not None and kind.resumes(spec)
                    if est is not None and est > window and not resumes:
                        continue  # could not fit a whole walltime: not a reason to come back
                return True
            return False
        except OSError:
            return True

    def _reap(self) -> None:
        with self._lock:
            for name, t in list(self.running.items()):
                if not t.is_alive():
                    del self.running[name]

    def _gate(self, spec) -> Verdict:
        """The last checks before claiming ``spec``: a GPU pilot's kind filter, the
        deadline, then memory admission."""
        if self.opts.cuda_only and not self._gpu_job(spec):
            return Verdict(False, "this worker takes only GPU jobs (--cuda-only)")
        if self.opts.deadline is not None:
            verdict = self.durations.verdict(spec, now=time.time(), started=self.info.started_at,
                                             deadline=self.opts.deadline)
            if not verdict.ok:
                if spec.name not in self._refused:
                    log.info("not claiming %s: %s", spec.name, verdict.reason)
                    self._refused.add(spec.name)
                return verdict
        return self._memory_verdict(spec)

    @staticmethod
    def _gpu_job(spec) -> bool:
        """A job for a GPU pilot: its kind trains on a GPU, or its constraints ask for CUDA."""
        kind, c = kinds.get(spec.model), spec.constraints
        return c.require_cuda or c.prefer_cuda or (kind is not None and kind.uses_cuda)

    def _memory_verdict(self, spec) -> Verdict:
        """Memory admission (cis490.fleet.memory): the job's estimate against the free share."""
        kind = kinds.get(spec.model)
        if kind is None or not kind.estimates_memory or self.memory.available() is None:
            return Verdict(True)  # a kind without estimates (smoke); no /proc/meminfo: nothing to judge
        paths = self._data_paths()
        try:
            argv = driver_argv(spec, str(Path(tempfile.gettempdir()) / "cis490-estimate"), paths)
        except SpecError:
            return Verdict(True)  # the run itself reports the missing data paths
        needed = self.memory.estimate(spec.name, argv, sorted(paths.values()),
                                      on_done=self.wake.set, env=kind.env(os.environ))
        if needed is PENDING:
            return Verdict(False, "estimating its memory needs", later=True)
        self._estimates[spec.name] = needed
        ok, reason = self.memory.fits(needed)
        if not ok and spec.name not in self._refused:
            log.info("not claiming %s: %s", spec.name, reason)
        if not ok:
            self._refused.add(spec.name)  # logged once until it is claimed
        return Verdict(ok, reason)

    def _start(self, claim: Claim) -> None:
        log.info("claimed %s (attempt %d)", claim.name, claim.number)
        self.memory.reserve(claim.name, self._estimates.pop(claim.name, None))
        self._refused.discard(claim.name)
        t = threading.Thread(target=self._run_job, args=(claim,), name=f"job-{claim.name}", daemon=True)
        with self._lock:
            self.running[claim.name] = t
        t.start()

    # --- one job ------------------------------------------------------------------------

    def _spool_down(self, exc: BaseException, site: str | None = None) -> bool:
        """``exc`` says the spool is unavailable — not this host's own disk: an error that
        names a path outside the spool (the local work directory, a temp file) is the
        host's, and is not waited out as an outage. An EPERM on a spool path counts too,
        while ``site``'s unbroken run of EPERMs is younger than ``layout.EPERM_GRACE_S`` or
        shorter than 3 tries (sshfs answers it while it reconnects); after that it is
        believed, once: the exception is marked so that no outer site waits for it again."""
        names = [f for f in (getattr(exc, "filename", None), getattr(exc, "filename2", None)) if f]
        root = os.path.realpath(self.spool.root)
        in_spool = all(os.path.realpath(os.fsdecode(f)).startswith(root + os.sep) for f in names)
        if is_spool_unavailable(exc):
            if in_spool and site is not None:
                self.outage.eperm_reset(site)  # another error in between: a new EPERM run
            return in_spool
        if (is_ambiguous_eperm(exc) and names and in_spool and site is not None
                and not getattr(exc, "cis490_believed", False)):
            if self.outage.eperm_grace(site):
                return True
            log.error("%s: EPERM for more than %.0f s: taken for a real permission error",
                      site, layout.EPERM_GRACE_S)
            exc.cis490_believed = True  # an outer site must not give it a fresh grace
        return False

    def _quietly(self, claim: Claim, fn, *args) -> None:
        """A best-effort spool write (a log tail, a lost-lease mark): an unavailable
        spool skips it (the next one catches up), never stops the job."""
        site = f"publishing {claim.name}"
        t0 = time.monotonic()
        try:
            fn(*args)
        except OSError as exc:
            if self._spool_down(exc, site):
                claim.note_unreachable(t0)
                self.outage.hit(exc, site)
            else:  # best effort: a log tail never fails a job (the next one replaces it)
                log.warning("%s: could not publish (%s: %s)", claim.name, type(exc).__name__, exc)
        else:
            self.outage.clear(site)
        finally:
            if time.monotonic() - t0 > self.watchdog.limit_s:
                claim.note_unreachable(t0)  # it hung: the heartbeats waited behind it

    def _data_paths(self) -> dict[str, str]:
        m = self.spool.manifest()
        paths = m.data_paths(self.info.capability.host_id) if m else {}
        return {k: str(Path(v) if Path(v).is_absolute() else (self.spool.root / v).resolve())
                for k, v in paths.items()}

    def _settle_on_spool(self, claim: Claim, what: str, fn) -> bool:
        """``fn()`` (a transition of ``claim``: complete, fail, release), retried with
        backoff while the spool is unavailable, heartbeating in between so the lease
        holds. True once done; False if the worker stops first (the claim then stays,
        and a sweep gives the job back). LeaseLost when the claim is gone."""
        site = f"{what} {claim.name}"
        while True:
            try:
                with self.watchdog.watch(site):
                    fn()
            except OSError as exc:
                if not self._spool_down(exc, site):
                    raise  # this host's own disk, or a bug: the job's thread reports it
                claim.note_unreachable(time.monotonic())
                self.outage.hit(exc, site)
                # wait out the backoff heartbeating as usual (the lease must hold)
                until = time.monotonic() + self.outage.backoff(site)
                while (left := until - time.monotonic()) > 0:
                    if self.stopping.wait(min(left, self.spool.settings.heartbeat_s)):
                        self.outage.clear(site)  # given up: no longer waited for
                        return False
                    try:
                        claim.heartbeat()
                    except OSError as again:
                        if not self._spool_down(again, f"heartbeat {claim.name}"):
                            raise
                    else:
                        self.outage.clear(f"heartbeat {claim.name}")
                continue
            self.outage.clear(site)
            return True

    def _run_job(self, claim: Claim) -> None:
        outcome = Outcome.FAILED.value
        try:
            outcome = self._execute(claim)
        except LeaseLost as exc:
            log.warning("%s", exc)
            self._quietly(claim, claim.mark_lost)  # no-op when a withdrawal already recorded why
            outcome = claim.record.get("outcome", Outcome.LOST.value)
        except Exception as exc:  # never let one job take the worker down
            if isinstance(exc, OSError) and self._spool_down(exc, f"job {claim.name}"):
                # the spool's fault: give the job back (not counted)
                log.warning("job %s stopped by the spool (%s): releasing it, not counted",
                            claim.name, exc)
                outcome, why = Outcome.RELEASED.value, f"spool unavailable: {exc}"
                try:
                    self._settle_on_spool(claim, "releasing", lambda: claim.release(
                        why, fault=Fault.SPOOL_UNAVAILABLE.value))
                except (LeaseLost, OSError):
                    pass
            else:
                log.exception("job %s crashed in the worker", claim.name)
                import traceback

                try:
                    claim.fail(f"worker error: {type(exc).__name__}: {exc}", fault=Fault.BUG.value,
                               traceback=traceback.format_exc()[-4000:])
                except (LeaseLost, OSError):
                    pass
        finally:
            self.outage.clear_job(claim.name)  # the job is over: none of its sites waits
            if outcome == Outcome.DONE:
                # the EPERM run of "job NAME" outlives an attempt (a release loop on a
                # real EPERM is bounded by the grace); a job done ends it
                self.outage.eperm_reset(f"job {claim.name}")
            self.memory.release(claim.name)
            with self._lock:
                self.outcomes[claim.name] = outcome
                self.completed += 1
            self.wake.set()

    def _execute(self, claim: Claim) -> str:
        t_claim = time.monotonic()
        claim.settle(self.stopping)  # eventual mode: rival claims withdraw here (LeaseLost)
        if self.stopping.is_set():
            claim.release()
            return Outcome.RELEASED.value
        base = self.opts.work_root or Path(tempfile.gettempdir()) / "cis490-work"
        base.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"{claim.name}.{claim.number}.", dir=base))
        try:
            out_dir = workdir / "out"
            local_log = workdir / "job.log"
            try:
                argv = driver_argv(claim.spec, str(out_dir), self._data_paths(),
                                   str(workdir / "curves"))
            except SpecError as exc:
                why = f"cannot build the job's command: {exc}"
                self._settle_on_spool(claim, "failing", lambda: claim.fail(why, fault=Fault.JOB.value))
                return Outcome.FAILED.value
            kind = kinds.get(claim.spec.model)
            resume = None
            if kind is not None and kind.resumes(claim.spec):
                resume = Resume(self.spool, claim, workdir / "resume")
                t0 = time.monotonic()
                try:
                    with self.watchdog.watch(f"fetching the resume state of {claim.name}"):
                        fetched = resume.fetch()  # an unavailable spool raises: released, not counted
                finally:
                    if time.monotonic() - t0 > self.watchdog.limit_s:
                        claim.note_unreachable(t0)  # it hung: a sweep may have taken the claim
                if fetched:
                    claim.record["resumed_from"] = fetched
                    log.info("%s: continuing from the resume state of an earlier attempt (%d bytes)",
                             claim.name, fetched["bytes"])
                argv += ["--resume-dir", str(resume.local_dir)]
            return self._supervise(claim, argv, workdir, out_dir, local_log, t_claim, resume)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _spawn(self, claim: Claim, argv: list[str], workdir: Path, logfh) -> tuple[subprocess.Popen, int]:
        r, w = os.pipe()
        kind = kinds.get(claim.spec.model)  # known: the claim checked it
        env = kind.env(os.environ) if kind is not None else dict(os.environ)
        env.update(CIS490_JOB=claim.name, CIS490_ATTEMPT=str(claim.number), PYTHONUNBUFFERED="1")
        kwargs: dict = {}
        if os.name == "nt":  # pass the pipe as an inheritable handle; the child turns it into an fd
            import msvcrt

            handle = msvcrt.get_osfhandle(w)
            os.set_handle_inheritable(handle, True)
            channel = str(handle)
            kwargs["startupinfo"] = subprocess.STARTUPINFO(lpAttributeList={"handle_list": [handle]})
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            channel = str(w)
            kwargs.update(pass_fds=(w,), start_new_session=True)
        cmd = [sys.executable, "-m", "cis490.fleet.child", str(os.getpid()), *argv, "--progress-fd", channel]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logfh, stderr=subprocess.STDOUT,
                                    cwd=workdir, env=env, **kwargs)
        finally:
            os.close(w)
        return proc, r

    def _relay_progress(self, claim: Claim, fd: int) -> None:
        """Republish the driver's progress lines as the attempt's progress record.

        An epoch's line (``epoch`` done, ``loss``, ``val_macro_f1``) and, between them,
        lines of the epoch in progress (``epoch``, ``epochs``, ``epoch_fraction``) are
        merged, so the record keeps the last epoch's scores while it says how far the
        current one has got; an epoch's line clears the fraction."""
        latest: dict = {}
        with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(event, dict):
                    continue
                if "epoch_fraction" not in event:
                    latest.pop("epoch_fraction", None)
                latest.update({k: event[k] for k in PROGRESS_KEYS if k in event})
                try:
                    claim.progress(dict(latest))
                except OSError:
                    pass

    def _kill(self, proc: subprocess.Popen, grace: float) -> None:
        """Stop the job's whole process group: SIGTERM, then SIGKILL after ``grace``."""
        def signal_group(sig: int) -> None:
            if os.name == "nt":
                proc.terminate()  # TerminateProcess: Windows has no gentler equivalent here
            else:
                os.killpg(proc.pid, sig)
        try:
            signal_group(signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                signal_group(getattr(signal, "SIGKILL", signal.SIGTERM))
            except ProcessLookupError:
                pass
            proc.wait()

    def _supervise(self, claim, argv, workdir, out_dir, local_log, t_claim, resume=None) -> str:
        hb = self.spool.settings.heartbeat_s
        claim.record["training_started"] = True  # a later withdrawal counts as a duplicate run
        with open(local_log, "wb") as logfh:
            proc, rfd = self._spawn(claim, argv, workdir, logfh)
        self.memory.attach(claim.name, proc.pid)
        t_start = time.monotonic()
        relay = threading.Thread(target=self._relay_progress, args=(claim, rfd), daemon=True)
        relay.start()
        next_beat = time.monotonic() + hb
        while True:
            try:
                # short waits: a stop is acted on within STOP_POLL_S, not a heartbeat later
                code = proc.wait(timeout=max(0.01, min(STOP_POLL_S, next_beat - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + hb
                try:
                    with self.watchdog.watch(f"heartbeat {claim.name}"):
                        claim.heartbeat()
                except LeaseLost:
                    self._kill(proc, 0)  # lost lease or withdrawn: stop at once
                    relay.join(timeout=5)
                    self._quietly(claim, claim.publish_log, local_log)
                    self._quietly(claim, claim.mark_lost)
                    raise
                except OSError as exc:
                    if not self._spool_down(exc, f"heartbeat {claim.name}"):
                        self._kill(proc, 0)  # the job must not outlive its supervisor's error
                        relay.join(timeout=5)
                        raise
                    # the spool is unavailable: the job keeps training (it needs the spool
                    # only when it ends); the heartbeat is retried next period
                    self.outage.hit(exc, f"heartbeat {claim.name}")
                else:
                    self.outage.clear(f"heartbeat {claim.name}")
                    self._quietly(claim, claim.publish_log, local_log)
                    if resume is not None:
                        self._quietly(claim, resume.publish)
            if self.stopping.is_set():
                self._kill(proc, self.opts.release_grace_s)
                relay.join(timeout=5)
                return self._release_stopped(claim, local_log, resume, time.monotonic() - t_start)
        t_end = time.monotonic()
        relay.join(timeout=5)
        self._quietly(claim, claim.publish_log, local_log)
        timings = {"claim_to_start_s": round(t_start - t_claim, 4),
                   "run_s": round(t_end - t_start, 4)}
        if code != 0 and self.stopping.is_set():
            # the job ended while its worker stops: signalled with it (Slurm and systemd signal
            # every process; a kind without a resume state dies of the SIGTERM): not its fault
            return self._release_stopped(claim, local_log, resume, t_end - t_start,
                                         why=f"worker stopping ({self.stopped_by or 'SIGTERM'}); "
                                             f"the job ended with exit {code}")
        if code == EXIT_RESUMABLE and resume is not None:
            # stopped by a signal of its own (Slurm signals every process at its time limit,
            # a person's kill): its state is saved, so the job goes back, not counted
            return self._release_stopped(claim, local_log, resume, t_end - t_start,
                                         why=f"the job was interrupted (exit {code}) and saved its state")
        if code != 0:
            tail = local_log.read_bytes()[-2000:].decode("utf-8", "replace").strip()
            last = tail.splitlines()[-1] if tail else "(no output)"
            if not self._settle_on_spool(claim, "failing", lambda: claim.fail(
                    f"exit status {code}: {last}", fault=Fault.JOB.value, exit_code=code,
                    log_tail=tail, timings=timings)):
                return Outcome.RELEASED.value  # stopped before the failure could be recorded: a sweep decides
            log.warning("failed %s (exit %d)", claim.name, code)
            return Outcome.FAILED.value
        if not out_dir.is_dir():
            self._settle_on_spool(claim, "failing", lambda: claim.fail(
                "the job exited 0 but wrote no output", fault=Fault.JOB.value, exit_code=0,
                timings=timings))
            return Outcome.FAILED.value
        timings["exited_at"] = time.time()  # ended_at - exited_at = store + record overhead
        # the curves (metrics.jsonl, TensorBoard events) are stored beside the bundle,
        # outside its digest: they hold wall-clock times
        # the bundle stays in the local work directory until it is stored: a full or
        # unreachable spool is retried until storing succeeds or the lease is lost
        stored = []
        if not self._settle_on_spool(claim, "storing", lambda: stored.append(claim.complete(
                out_dir, curves_dir=workdir / "curves", exit_code=0, timings=timings))):
            return Outcome.RELEASED.value  # stopped meanwhile: the claim stays; a sweep gives the job back
        log.info("done %s → %s%s", claim.name, stored[-1].digest[:12],
                 "" if stored[-1].created else " (identical artifact already stored)")
        if resume is not None:
            self._quietly(claim, resume.discard)  # done: nothing to resume (fsck removes a leftover)
        return Outcome.DONE.value

    def _release_stopped(self, claim: Claim, local_log: Path, resume: "Resume | None", run_s: float,
                         why: str | None = None) -> str:
        """Give back a job stopped mid-run (the worker stops, or the job was signalled): its
        last resume state goes to the spool first; not counted. The state and the release
        are retried while the spool is unavailable, for ``RELEASE_RETRY_S`` even when the
        worker is stopping (else the claim stays and a sweep, much later, counts it)."""
        self._quietly(claim, claim.publish_log, local_log)
        reason = why or f"worker stopping ({self.stopped_by or 'SIGTERM'})"
        site = f"releasing {claim.name}"
        until = time.monotonic() + RELEASE_RETRY_S
        while True:
            try:
                with self.watchdog.watch(site):
                    # our lease first: a worker cut off from the spool must not overwrite
                    # the state of the job's next owner (LeaseLost: _run_job records it)
                    claim.heartbeat()
                    if resume is not None:
                        resume.publish()
                    extra = {"interrupted_run_s": round(run_s, 3),
                             "resume_saved": resume is not None and resume.published is not None,
                             "resume_progress": resume is not None and resume.progressed}
                    claim.release(reason, **extra)
                break
            except LeaseLost:
                raise
            except OSError as exc:
                if not self._spool_down(exc, site) or time.monotonic() > until:
                    raise
                claim.note_unreachable(time.monotonic())
                self.outage.hit(exc, site)
                time.sleep(min(self.outage.backoff(site), max(0.1, until - time.monotonic())))
        self.outage.clear(site)
        log.info("released %s%s", claim.name, " (resume state saved)" if extra["resume_saved"] else "")
        with self._lock:
            self.released.append(claim.name)
        return Outcome.RELEASED.value


class Resume:
    """One attempt's resume state: the job's local ``resume.ckpt`` and the spool's copy
    (``attempts/NAME/resume/resume.ckpt``), whose one writer is the claim's owner."""

    FILE = "resume.ckpt"

    def __init__(self, spool: Spool, claim: Claim, local_dir: Path):
        self.spool, self.claim, self.local_dir = spool, claim, local_dir
        self.remote = spool.resume_dir(claim.name) / self.FILE
        self.published: tuple[int, int] | None = None  # (mtime_ns, size) of the last copy
        self.progressed = False  # this attempt published a state of its own

    def fetch(self) -> dict | None:
        """Copy the spool's state (if any) into the local directory: ``{"bytes", "sha256"}``.
        Read without following a link or blocking on a FIFO, at most ``MAX_RESUME_BYTES``;
        anything else where the state belongs is quarantined and the job starts afresh."""
        self.local_dir.mkdir(parents=True, exist_ok=True)
        root, by = self.spool.root, self.claim.worker.id
        att.real_dir(root, self.remote.parent.parent, by)  # attempts/NAME, attempts/NAME/resume:
        att.real_dir(root, self.remote.parent, by)         # directories, never links
        try:
            fd = os.open(self.remote, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.EACCES):
                raise  # the spool's answer (EIO, ENOTCONN, ...): the caller releases the job
            fd = None
        digest = hashlib.sha256()
        local = self.local_dir / self.FILE
        try:
            st = os.fstat(fd) if fd is not None else None
            if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > MAX_RESUME_BYTES:
                what = (f"larger than {MAX_RESUME_BYTES} bytes" if st is not None and stat.S_ISREG(st.st_mode)
                        else "not a regular file")
                att.quarantine(root, self.remote, f"a resume state that is {what}", by)
                return None
            with os.fdopen(fd, "rb", closefd=True) as src, atomic_writer(local, durable=False) as dst:
                fd = None
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
        finally:
            if fd is not None:
                os.close(fd)
        st_local = os.stat(local)
        self.published = (st_local.st_mtime_ns, st_local.st_size)  # the spool has it already
        return {"bytes": st_local.st_size, "sha256": digest.hexdigest()}

    def publish(self) -> None:
        """Copy a changed local state to the spool (atomically; a reader sees a whole file)."""
        local = self.local_dir / self.FILE
        try:
            st = os.stat(local)
        except FileNotFoundError:
            return
        if (st.st_mtime_ns, st.st_size) == self.published:
            return
        att.real_dir(self.spool.root, self.remote.parent.parent, self.claim.worker.id)
        att.real_dir(self.spool.root, self.remote.parent, self.claim.worker.id)
        with open(local, "rb") as src, atomic_writer(self.remote, tmp_dir=self.spool.tmp) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        self.published = (st.st_mtime_ns, st.st_size)
        self.progressed = True

    def discard(self) -> None:
        """Remove the spool's copy (the job is done)."""
        try:
            shutil.rmtree(self.remote.parent)
        except FileNotFoundError:
            pass


def open_spool(spool_path: str | os.PathLike) -> Spool:
    """``Spool.open``, waited out while the spool is unavailable (a worker started by cron
    or systemd while the mount is down or reconnecting waits for it, never exits)."""
    outage = Outage(log)
    while True:
        try:
            spool = Spool.open(spool_path)
        except OSError as exc:
            if not (is_spool_unavailable(exc) or
                    (is_ambiguous_eperm(exc) and outage.eperm_grace("opening the spool"))):
                raise
            outage.hit(exc, "opening the spool")
            time.sleep(outage.backoff("opening the spool"))
            continue
        outage.clear("opening the spool")
        return spool


def run_worker(spool_path: str | os.PathLike, *, host_id: str | None = None, **opts) -> int:
    spool = open_spool(spool_path)
    info = WorkerInfo.create(host_id, spool_root=spool.root)
    return Worker(spool, info, WorkerOptions(**opts)).run()
