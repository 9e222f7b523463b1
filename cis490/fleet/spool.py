"""The spool: every job transition (docs/SPOOL.md) as one rename.

Invariant (``atomic`` mode): a job name is in exactly one state directory;
a ``claimed/NAME@W.json`` file is owned by worker W alone, which proves it is
alive by touching the file's mtime. Nothing here keeps state outside the
directory tree: the listing is the index.

Rules every function follows:
- a rename that loses a race (``FileNotFoundError``) is not an error;
- an ambiguous result (a network filesystem retransmitting a rename that
  already succeeded) is resolved by stat-ing source and destination;
- every other errno is re-raised: looping on ENOSPC or EACCES loses jobs;
- time comes from the filesystem's clock (``fs_now``) or is passed in.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cis490.fleet import attempts as att
from cis490.common import atomic_write
from cis490.fleet.layout import (
    DIRS, LATER_DIRS, MANIFEST_COPY, MAX_JSON_BYTES, MAX_TOML_BYTES, PRECEDENCE, SETTINGS_FILE, BadEntry,
    Consistency, JobState, Layout, Settings, SpoolError, entry_problem, is_ambiguous_eperm, is_ignored,
    is_spool_unavailable, job_of, parse_name, read_bounded, split_claimed,
)
from cis490.fleet.manifest import HostPolicy, Manifest, load_manifest, parse_manifest, pin_data_digests
from cis490.fleet.spec import JobSpec, SpecError, SpecTooNew, parse_spec

MANIFEST_SIG = "manifest.toml.sig"
PARKED_SWEEP, PARKED_RELOAD = "sweep", "reload"  # tmp/ names of specs held mid-transition
# A sweep or reload holds a spec in tmp/ for milliseconds; one held longer belongs
# to a process that died there, and any sweep puts it back (no job is lost).
PARKED_GRACE_S = 30.0
STIGNORE = "// written by cis490-spool init: never sync staging or lock files\n/tmp\n*.lock\n"



# errors opening or reading a spec that are the file's own fault (it is quarantined as
# "unreadable"); any other errno is this host's or the spool's, and is raised
FILE_FAULT_ERRNOS = frozenset(getattr(errno, n) for n in ("EACCES", "EPERM", "EISDIR", "ENXIO",
                                                          "ENAMETOOLONG", "EINVAL")
                              if hasattr(errno, n))

class LeaseLost(SpoolError):
    """Our claim file is gone: the job was cancelled or swept. Stop at once."""


class JobNotFound(SpoolError):
    pass


def rename_resolved(src: Path, dst: Path) -> bool:
    """Rename; True if it (or a retransmitted twin) happened, False if we lost.

    Only FileNotFoundError is expected (another process moved ``src`` first).
    On a network filesystem the reply can be lost and the retry report ENOENT
    although the first try succeeded: then ``dst`` exists and ``src`` does not.
    """
    try:
        os.rename(src, dst)
        return True
    except FileNotFoundError:
        return os.path.lexists(dst) and not os.path.lexists(src)


@dataclass(frozen=True)
class ReloadResult:
    new: int = 0
    unchanged: int = 0
    updated: int = 0
    orphaned: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SweepResult:
    requeued: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    quarantined: tuple[str, ...] = ()
    workers_removed: tuple[str, ...] = ()
    reconciled: tuple[str, ...] = ()  # eventual mode: lower-precedence copies removed


@dataclass(frozen=True)
class Location:
    state: JobState
    path: Path
    worker: str | None = None


class Spool(Layout):
    """One spool: its ``Layout`` (every path and name), its settings, and the
    transitions that do not belong to one claim (reload, cancel, requeue, sweep)."""

    def __init__(self, root: Path, settings: Settings):
        super().__init__(root)
        self.settings = settings
        self._manifest_cache: tuple[tuple[int, int], Manifest] | None = None
        self._key = None

    # --- opening -----------------------------------------------------------------

    @classmethod
    def init(cls, path: str | os.PathLike, **settings) -> "Spool":
        root = Path(path).absolute()
        s = Settings(**settings).validate()
        root.mkdir(parents=True, exist_ok=True)
        for d in DIRS:
            (root / d).mkdir(exist_ok=True)
        settings_path = root / SETTINGS_FILE
        text = s.to_toml()
        if settings_path.exists():
            if settings_path.read_text() != text:
                raise SpoolError(
                    f"{root} is already a spool with other settings; edit nothing while "
                    f"workers run, or init a new directory"
                )
        else:
            atomic_write(settings_path, text, tmp_dir=root / "tmp")
        if not (root / ".stignore").exists():
            atomic_write(root / ".stignore", STIGNORE, tmp_dir=root / "tmp")
        spool = cls(root, s)
        if s.operator_group:
            # only the operator group may create/rename entries at the top (spool.toml,
            # manifest.toml) and in cancelled/; workers write the other directories.
            spool._apply_group(root, 0o2775)
            spool._apply_group(root / "cancelled", 0o2775)
            spool._apply_group(settings_path, 0o664)
        return spool

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Spool":
        root = Path(path).absolute()
        try:
            text = read_bounded(root / SETTINGS_FILE, MAX_TOML_BYTES).decode("utf-8")
        except FileNotFoundError:
            raise SpoolError(f"{root} is not a spool (no {SETTINGS_FILE}): run `cis490-spool init` first") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpoolError(f"cannot read {root / SETTINGS_FILE}: {exc}") from None
        missing = [d for d in DIRS if d not in LATER_DIRS and not (root / d).is_dir()]
        if missing:
            raise SpoolError(f"{root} lacks {', '.join(missing)}: run `cis490-spool init` again")
        links = [d for d in DIRS if (root / d).is_symlink()]
        if links:
            raise SpoolError(f"{root}: {', '.join(links)} is a symlink; a spool's directories must be real "
                             f"directories (someone may be redirecting writes outside the spool)")
        return cls(root, Settings.from_toml(text))

    # --- paths and listing -------------------------------------------------------------

    def scan(self, state: JobState) -> list[Location]:
        """Well-formed entries of one state directory (others are left for sweep)."""
        out = []
        for entry in os.scandir(self.state_dir(state)):
            if is_ignored(entry.name):
                continue
            if state is JobState.CLAIMED:
                parsed = split_claimed(entry.name)
                if parsed:
                    out.append(Location(state, Path(entry.path), parsed[1]))
            elif entry.name.endswith(".json") and parse_name(entry.name[:-5]):
                out.append(Location(state, Path(entry.path)))
        return out

    @staticmethod
    def name_of(loc: Location) -> str:
        return job_of(loc.path.name)

    def locate(self, name: str) -> list[Location]:
        """Every place a job name occurs (one in atomic mode, except mid-race)."""
        found = []
        for state in JobState:
            if state is JobState.CLAIMED:
                found += [loc for loc in self.scan(state) if self.name_of(loc) == name]
            else:
                p = self.path_of(state, name)
                if os.path.lexists(p):
                    found.append(Location(state, p))
        return found

    def all_names(self) -> dict[str, JobState]:
        out: dict[str, JobState] = {}
        for state in JobState:
            for loc in self.scan(state):
                out.setdefault(self.name_of(loc), state)
        return out

    def resolve(self, job: str) -> str:
        """A full name, or a unique prefix of a name or of a job id → the name."""
        names = self.all_names()
        if job in names:
            return job
        matches = sorted(n for n in names if n.startswith(job))
        if not matches and len(job) >= 4:
            matches = sorted(n for n in names if n.split(".")[-1].startswith(job[:12]))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise JobNotFound(f"no job matches {job!r}: see `cis490-spool list`")
        raise JobNotFound(f"{job!r} is ambiguous ({', '.join(matches[:5])}…): give more of the name")

    def read_spec(self, path: Path) -> JobSpec:
        """Parse a state file without following symlinks.

        Every fault of the file itself is a SpecError whose message is the
        one-line quarantine reason, kind first: ``oversized (…)``, ``a FIFO
        (never opened)``, ``not a regular file (…)``, ``a symlink (never
        followed)``, ``unreadable (…)``, ``malformed job spec: …`` (bad JSON
        among them), ``signature refused: …`` (unsigned or forged). Not the
        file's fault, so raised as they are: FileNotFoundError (a lost race),
        SpecTooNew (left alone), an OSError for which ``is_spool_unavailable``
        holds (the spool is down, the file is fine), and an EPERM
        (``is_ambiguous_eperm``: what sshfs answers while it reconnects, or a
        real permission error; the claimer skips the file and believes it only
        after ``EPERM_GRACE_S``).
        """
        name = job_of(path.name)
        try:
            data = read_bounded(path, MAX_JSON_BYTES)
        except BadEntry as exc:
            raise SpecError(exc.reason) from None
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or is_spool_unavailable(exc) or is_ambiguous_eperm(exc):
                raise  # EPERM: maybe a reconnecting sshfs mount; the claimer decides (claim.Claimer)
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
                raise SpecError("a symlink (never followed)") from None
            if exc.errno in FILE_FAULT_ERRNOS:  # the file itself: set it aside
                raise SpecError(f"unreadable ({exc.strerror or exc})") from None
            raise  # EMFILE, ENOMEM, EINTR, EWOULDBLOCK (a lease held): this host, not the file
        try:
            spec = parse_spec(data, expected_name=name)
        except SpecTooNew:
            raise
        except SpecError as exc:
            raise SpecError(f"malformed job spec: {exc}") from None
        if self.settings.require_signatures:
            from cis490.fleet.signing import SignatureError, verify

            try:
                verify(spec.signed_message(), spec.signature, self.settings.operator_public_keys)
            except SignatureError as exc:
                raise SpecError(f"signature refused: {exc}") from None
        return spec

    def counts(self) -> dict[str, int]:
        return {state.value: len({self.name_of(l) for l in self.scan(state)}) for state in JobState}

    # --- clock -----------------------------------------------------------------------

    def fs_now(self, probe: str = "clock", *, keep: bool = True) -> float:
        """'Now' by the filesystem's clock, with the heartbeat's own operation.

        On NFS ``utime(path, None)`` is stamped by the server; on sshfs by the
        client (then this equals the local clock, like the heartbeats). Long-
        lived callers (workers) keep their probe file; one-shot verbs remove it.
        """
        p = self.tmp / f".{probe}.{os.getpid()}.probe"
        try:
            os.utime(p, None)
        except FileNotFoundError:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
            os.close(fd)
            os.utime(p, None)
        now = os.stat(p).st_mtime
        if not keep:
            os.unlink(p)
        return now

    # --- manifest and reload -----------------------------------------------------------

    def manifest(self) -> Manifest | None:
        """Host policy and data paths of the last reloaded manifest (cached by
        inode and mtime; its job list is not re-validated here)."""
        p = self.root / MANIFEST_COPY
        try:
            st = os.stat(p)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns)
        if self._manifest_cache is None or self._manifest_cache[0] != key:
            raw = read_bounded(p, MAX_TOML_BYTES)
            if self.settings.require_signatures:
                import json

                from cis490.fleet.signing import verify

                try:
                    sig = json.loads(read_bounded(self.root / MANIFEST_SIG, MAX_JSON_BYTES))
                except (FileNotFoundError, ValueError):
                    sig = None
                from cis490.fleet.signing import SignatureError

                try:
                    verify(raw, sig, self.settings.operator_public_keys)
                except SignatureError as exc:  # refuse a tampered host policy or data path
                    raise SignatureError(f"{MANIFEST_COPY} refused: {exc}; reload it with the operator key") from None
            self._manifest_cache = (key, parse_manifest(raw, jobs=False))
        return self._manifest_cache[1]

    def host_policy(self, host_id: str) -> HostPolicy:
        m = self.manifest()
        return m.host(host_id) if m else HostPolicy()

    def reload(self, manifest_path: str | os.PathLike, *, now_ns: int | None = None,
               signing_key: object = None) -> ReloadResult:
        """Enqueue the manifest's new jobs; idempotent and all-or-nothing.

        Everything is validated before anything is written. Existing jobs keep
        their state; a *pending* job whose non-identity fields changed
        (priority, constraints, data digests) is replaced, keeping its place
        in line; jobs absent from the manifest stay (``orphaned``) until cancelled.
        """
        manifest = load_manifest(manifest_path)
        key = self._signing_key(signing_key)
        digests = pin_data_digests(manifest, self.root)
        now_ns = time.time_ns() if now_ns is None else now_ns
        existing = self.all_names()
        if key is not None:
            import json

            from cis490.fleet.signing import sign

            atomic_write(self.root / MANIFEST_SIG, json.dumps(sign(key, manifest.raw)), tmp_dir=self.tmp)
        atomic_write(self.root / MANIFEST_COPY, manifest.raw, tmp_dir=self.tmp)
        self._apply_group(self.root / MANIFEST_COPY, 0o664)
        new = unchanged = updated = 0
        for spec in manifest.jobs:
            spec = dataclasses.replace(spec, data={**digests, **spec.data}, enqueued_ns=now_ns)
            state = existing.get(spec.name)
            if state is None:
                if self._enqueue(spec):
                    new += 1
                else:  # a concurrent reload enqueued it first
                    unchanged += 1
                continue
            if state is JobState.PENDING and self._update_pending(spec):
                updated += 1
            else:
                unchanged += 1
        wanted = {s.name for s in manifest.jobs}
        orphaned = sum(1 for n, st in existing.items()
                       if n not in wanted and st is not JobState.CANCELLED)
        return ReloadResult(new, unchanged, updated, orphaned)

    def _signing_key(self, given: object):
        """The operator's private key when this spool requires signatures, else None."""
        self._key = None
        if not self.settings.require_signatures:
            return None
        from cis490.fleet.signing import SignatureError, load_private, public_of

        key = given if given is not None and not isinstance(given, (str, os.PathLike)) else load_private(given)
        if public_of(key) not in self.settings.operator_public_keys:
            raise SignatureError("this key's public half is not in spool.toml's operator_public_keys: "
                                 "workers would refuse every spec it signs")
        self._key = key
        return key

    def _apply_group(self, path: Path, mode: int) -> None:
        """init --operator-group: keep operator files owned by that group (see README)."""
        group = self.settings.operator_group
        if not group or os.name == "nt":
            return
        import grp

        os.chown(path, -1, grp.getgrnam(group).gr_gid)
        os.chmod(path, mode)

    def _signed(self, spec: JobSpec) -> JobSpec:
        """The spec as it is written: signed when the spool requires it (the one
        signing site, so only specs actually written are signed, each once)."""
        if self._key is None:
            return spec
        from cis490.fleet.signing import sign

        return dataclasses.replace(spec, signature=sign(self._key, spec.signed_message()))

    def _enqueue(self, spec: JobSpec) -> bool:
        try:
            atomic_write(self.path_of(JobState.PENDING, spec.name), self._signed(spec).to_bytes(),
                         tmp_dir=self.tmp, no_clobber=True)
            return True
        except FileExistsError:
            return False

    def _update_pending(self, spec: JobSpec) -> bool:
        path = self.path_of(JobState.PENDING, spec.name)
        try:
            old = self.read_spec(path)
        except (FileNotFoundError, SpecError):
            return False  # claimed meanwhile, or malformed (sweep quarantines it)
        spec = dataclasses.replace(spec, enqueued_ns=old.enqueued_ns)
        if old.same_job_content(spec):
            return False
        # Take the old spec out of line with a claim-like rename, so a worker
        # can never hold a claim while a second copy reappears in pending/.
        parked = self.tmp / f"{spec.name}.json.{PARKED_RELOAD}-{secrets.token_hex(4)}"
        if not rename_resolved(path, parked):
            return False
        try:
            atomic_write(path, self._signed(spec).to_bytes(), tmp_dir=self.tmp, no_clobber=True)
        except BaseException:
            os.rename(parked, path)  # put the old one back: nothing lost
            raise
        os.unlink(parked)
        return True

    # --- operator transitions -----------------------------------------------------------

    def cancel(self, name: str) -> JobState:
        """pending/claimed → cancelled. A running job's worker sees its lease lost."""
        for _ in range(5):
            locs = self.locate(name)
            if not locs:
                raise JobNotFound(f"no job {name}")
            for loc in locs:
                if loc.state in (JobState.PENDING, JobState.CLAIMED):
                    if rename_resolved(loc.path, self.path_of(JobState.CANCELLED, name)):
                        return loc.state
                    break  # moved meanwhile: look again
            else:
                raise SpoolError(f"{name} is {locs[0].state.value}: only pending or claimed jobs can be cancelled")
        raise SpoolError(f"{name} kept moving; try again")

    def requeue(self, name: str, by: str = "operator") -> JobState:
        """failed/cancelled → pending, with a fresh attempt budget."""
        locs = self.locate(name)
        if not locs:
            raise JobNotFound(f"no job {name}")
        for loc in locs:
            if loc.state in (JobState.FAILED, JobState.CANCELLED):
                att.write_requeue_marker(self.attempts_dir(name), self.tmp, by)
                if rename_resolved(loc.path, self.path_of(JobState.PENDING, name)):
                    return loc.state
        raise SpoolError(f"{name} is {locs[0].state.value}: only failed or cancelled jobs can be requeued")

    # --- worker transitions (the claim itself, and what its owner does: claim.py) ---------

    def sweep(self, now: float | None = None, *, by: str = "sweep", full: bool = True) -> SweepResult:
        """Reclaim claims whose heartbeat is older than ``stale_after_s``.

        → pending/, or → failed/ once ``max_attempts`` attempts are spent.
        Also quarantines malformed files in the state directories (only
        ``claimed/`` when not ``full``: workers sweep often) — bad names,
        symlinks, FIFOs and other non-regular files, judged by
        ``entry_problem`` without opening anything — and forgets worker
        records silent for a day.
        """
        now = self.fs_now(by, keep=False) if now is None else now
        reconciled = self.reconcile(now) if self.settings.consistency == Consistency.EVENTUAL else []
        requeued, failed, quarantined = [], [], []
        for state in (JobState if full else (JobState.CLAIMED,)):
            for entry in os.scandir(self.state_dir(state)):
                if is_ignored(entry.name):
                    continue
                reason = entry_problem(entry, state)  # name and type only: nothing is opened
                if reason:
                    if att.quarantine(self.root, Path(entry.path), reason, by):
                        quarantined.append(f"{state.value}/{entry.name}")
                    continue
                if state is not JobState.CLAIMED:
                    continue  # specs are parsed where they are used (claim, fsck)
                name, _worker = split_claimed(entry.name)  # type: ignore[misc]
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue
                if now - mtime <= self.settings.stale_after_s:
                    continue
                if self.settings.consistency == Consistency.EVENTUAL and any(
                    self.name_of(l) == name and l.path.name != entry.name for l in self.scan(JobState.CLAIMED)
                ):
                    continue  # a rival claim exists: reconcile removes ours once theirs is fresh
                # Take the claim first, then judge it: a heartbeat that landed between
                # our stat and our rename shows in the taken file's mtime, and the
                # claim goes straight back (the owner never notices).
                target = self.take_stale_claim(Path(entry.path), name, now,
                                               fresh_s=self.settings.stale_after_s)
                if target is None:
                    continue
                (failed if target is JobState.FAILED else requeued).append(name)
        requeued += self.recover_parked(now, older_than=PARKED_GRACE_S)
        if full:  # temp files of writers that crashed mid-write, a day ago or more
            for entry in os.scandir(self.tmp):
                try:
                    old = now - entry.stat(follow_symlinks=False).st_mtime > 86400
                    if old and entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                except FileNotFoundError:
                    continue
        removed = []
        for entry in os.scandir(self.workers_dir):
            try:
                if entry.name.endswith(".json") and now - entry.stat(follow_symlinks=False).st_mtime > 86400:
                    os.unlink(entry.path)
                    removed.append(job_of(entry.name))
            except FileNotFoundError:
                continue
        return SweepResult(tuple(requeued), tuple(failed), tuple(quarantined), tuple(removed),
                           tuple(reconciled))

    def take_stale_claim(self, path: Path, name: str, now: float, *, fresh_s: float,
                         alive=lambda: False) -> "JobState | None":
        """Take a claim that looks stale, then judge it: → pending/, or → failed/ once
        ``max_attempts`` attempts are spent; the state it went to, or None when it was
        not ours to move (moved meanwhile, or alive after all: a heartbeat within
        ``fresh_s`` in the taken file's mtime, or ``alive()``, puts it straight back and
        its owner never notices)."""
        taken = self.tmp / f"{path.name}.{PARKED_SWEEP}-{secrets.token_hex(4)}"
        if not rename_resolved(path, taken):
            return None  # moved meanwhile (swept, cancelled, finished)
        try:
            if alive() or now - taken.lstat().st_mtime <= fresh_s:
                os.rename(taken, path)
                return None
            spent = att.counted_attempts(self.attempts_dir(name))
            target = JobState.FAILED if spent >= self.settings.max_attempts else JobState.PENDING
            os.rename(taken, self.path_of(target, name))
        except FileNotFoundError:
            return None  # we stalled past PARKED_GRACE_S and another sweep recovered it
        return target

    def give_back_swept_failure(self, name: str, number: int) -> bool:
        """Undo a failure a sweep charged to attempt ``number`` of ``name`` while its worker
        was cut off from the spool (that worker, back, has since recorded the attempt as
        lost with ``fault: spool-unavailable``, which no count includes): failed/ → pending/
        when that attempt is still the job's latest, no attempt since the last requeue
        failed on its own (a job fault), and the budget is not spent without it. True if
        it went back."""
        src = self.path_of(JobState.FAILED, name)
        if not os.path.lexists(src):
            return False
        attempts, after = att.list_attempts(self.attempts_dir(name))
        if not attempts or max(a.number for a in attempts) != number:
            return False
        if any((a.record or {}).get("outcome") == att.Outcome.FAILED for a in attempts if a.number > after):
            return False
        if att.counted_attempts(self.attempts_dir(name)) >= self.settings.max_attempts:
            return False
        return rename_resolved(src, self.path_of(JobState.PENDING, name))

    def recover_parked(self, now: float, older_than: float) -> list[str]:
        """Specs a sweeper or reload took into tmp/ and then died holding.

        A job must never be lost: such a file goes back to pending/ unless the
        name exists elsewhere by now (then it is a leftover copy and removed).
        ``older_than`` is judged by the file's ctime (a rename updates it).
        """
        recovered = []
        for entry in os.scandir(self.tmp):
            marker = next((m for m in (PARKED_SWEEP, PARKED_RELOAD) if f".{m}-" in entry.name), None)
            if marker is None or entry.name.startswith("."):
                continue
            try:
                if now - entry.stat(follow_symlinks=False).st_ctime < older_than:
                    continue
            except FileNotFoundError:
                continue
            name = job_of(entry.name.split(f".{marker}-")[0])
            if parse_name(name) is None:
                continue
            if self.locate(name):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass  # another worker's recovery (or the sweeper itself) got there first
            elif rename_resolved(Path(entry.path), self.path_of(JobState.PENDING, name)):
                recovered.append(name)
        return recovered

    def reconcile(self, now: float) -> list[str]:
        """Eventual mode: a name seen in several states keeps the copy of highest
        precedence (done > cancelled > failed > claimed > pending); the others
        are removed — including a ``pending/NAME`` that Syncthing brought back
        beside a live claim. Several claims are left to their owners' tie-break,
        except stale ones beside a fresh rival, which are removed.
        """
        seen: dict[str, list[Location]] = {}
        for state in JobState:
            for loc in self.scan(state):
                seen.setdefault(self.name_of(loc), []).append(loc)
        removed = []
        for _name, locs in seen.items():
            if len(locs) < 2:
                continue
            top = min(PRECEDENCE.index(l.state) for l in locs)
            doomed = [l for l in locs if PRECEDENCE.index(l.state) > top]
            claims = [l for l in locs if l.state is JobState.CLAIMED and l not in doomed]
            if len(claims) > 1:
                ages = {}
                for l in claims:
                    try:
                        ages[l] = now - l.path.lstat().st_mtime
                    except FileNotFoundError:
                        continue
                if any(a <= self.settings.stale_after_s for a in ages.values()):
                    doomed += [l for l, a in ages.items() if a > self.settings.stale_after_s]
            for l in doomed:
                try:
                    os.unlink(l.path)
                    removed.append(f"{l.state.value}/{l.path.name}")
                except FileNotFoundError:
                    pass
        return removed
