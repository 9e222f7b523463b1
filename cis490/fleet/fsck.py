"""``fsck``: re-hash every bundle and cross-check jobs, attempts and bundles;
``fsck --repair``: heal what a dead writer left behind.

A bundle's stored training curves (``curves.tar.zst``) are checked against
the listing in its ``record.json`` when the record has one (``store.verify``).

``fsck`` is read-only. Each finding is (severity, where, what): ``error``
means the spool breaks a guarantee (a corrupt store entry, a done job
without its artifact, a name in two states in atomic mode); ``warning`` is
worth a look (a claim without an attempt record, quarantined files) or is
repairable. The store's entries are classified by ``store.inspect``:

- ok: nothing is said;
- ``incomplete (repairable)``: no ``record.json`` (its writer died) and a
  bundle that is absent, partial, or verifies. A warning: the next writer of
  the same digest completes it, and ``--repair`` completes or removes it;
- ``corrupt``: a bundle whose hash does not match its name, a published
  entry that does not verify. An error, which ``--repair`` never touches.

Stray temp files (the atomic writer's ``.DEST.PID.NONCE.tmp``) untouched for
``older_than_s`` belong to dead writers: warnings, removed by ``--repair``.

``repair`` (``--repair``), one ``Repair`` per thing it looked at:

- an incomplete entry untouched for ``older_than_s`` (default
  ``store.STALE_WRITE_S``, an hour: a live writer touches its entry within
  minutes) is completed, when its bundle verifies and a done job's attempt
  record names its digest (the record is that job's provenance, exactly as
  the worker would have written it), else removed (moved aside into
  ``tmp/`` in one rename, then deleted): its job never became done, so it is
  pending, claimed or failed, and running it stores the same digest again;
- stray temp files older than ``older_than_s`` are removed;
- a claim (``claimed/NAME@WORKER.json``) without an attempt record that
  nobody has heartbeated for ``claim_grace_s`` (3 heartbeats, at least 10 s)
  goes back to ``pending/`` (``failed/`` once its attempts are spent), by
  the sweep's own transition: attempt records are written only by their
  worker, and this one's worker died between its claiming rename and its
  record. The job is never lost: a crash mid-repair leaves the spec parked in
  ``tmp/``, and the next sweep puts it back;
- the resume state of a done job (``attempts/NAME/resume/``: its worker died
  between storing the artifact and removing the state) is removed;
- a corrupt entry is left as it is, and said so.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from cis490.fleet import attempts as att
from cis490.fleet import store
from cis490.fleet.layout import Consistency, JobState, is_ignored
from cis490.fleet.spec import SpecError
from cis490.fleet.spool import PARKED_RELOAD, PARKED_SWEEP, Spool

INCOMPLETE = "incomplete (repairable)"
CLAIM_GRACE_MIN_S = 10.0


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    where: str
    what: str

    def to_dict(self) -> dict:
        return {"severity": self.severity, "where": self.where, "what": self.what}


@dataclass(frozen=True)
class Repair:
    where: str
    action: str     # what was done, or why nothing was
    repaired: bool  # False: left as it is

    def to_dict(self) -> dict:
        return {"where": self.where, "action": self.action, "repaired": self.repaired}

    def line(self) -> str:
        return f"{'repaired' if self.repaired else 'not repaired'}: {self.where}: {self.action}"


def claim_grace_s(spool: Spool) -> float:
    """A claim nobody touched for this long has no live worker heartbeating it."""
    return max(3 * spool.settings.heartbeat_s, CLAIM_GRACE_MIN_S)


def _entry_advice(state: store.EntryState) -> str:
    if state.bundle == "verified":
        return "the next writer of this digest completes it; so does `fsck --repair` (or removes it)"
    return "the next writer of this digest completes it; `fsck --repair` removes it"


def _done_digests(spool: Spool) -> dict[str, tuple[str, object]]:
    """digest → (job name, spec) of every done job whose final attempt names it."""
    out: dict[str, tuple[str, object]] = {}
    for loc in spool.scan(JobState.DONE):
        name = spool.name_of(loc)
        try:
            spec = spool.read_spec(loc.path)
        except (SpecError, OSError):
            continue
        attempts, _ = att.list_attempts(spool.attempts_dir(name))
        done = [a for a in attempts if (a.record or {}).get("outcome") == att.Outcome.DONE]
        if done and isinstance(done[-1].record.get("digest"), str):  # type: ignore[union-attr]
            out[done[-1].record["digest"]] = (name, spec)  # type: ignore[index]
    return out


def fsck(spool: Spool, *, older_than_s: float = store.STALE_WRITE_S,
         now: float | None = None) -> tuple[list[Finding], dict]:
    now = time.time() if now is None else now
    findings: list[Finding] = []
    stats = {"bundles": 0, "jobs": 0, "incomplete": 0, "corrupt": 0}
    digests: dict[str, set[str]] = {}
    repairable: dict[str, set[str]] = {}  # incomplete, with a bundle that verifies
    for mm, d in store.iter_artifacts(spool.root):
        stats["bundles"] += 1
        where = f"models/{mm}/{d.name}"
        state = store.inspect(d)
        if state.status == store.CORRUPT:
            stats["corrupt"] += 1
            findings.append(Finding("error", where, f"corrupt: {state.what}"))
        elif state.status == store.INCOMPLETE:
            stats["incomplete"] += 1
            age = now - state.newest_mtime
            fresh = (f" (touched {age:.0f} s ago: perhaps still being written; --repair waits "
                     f"until it is {older_than_s:.0f} s old)") if age <= older_than_s else ""
            findings.append(Finding("warning", where, f"{INCOMPLETE}: {state.what}; {_entry_advice(state)}{fresh}"))
            if state.bundle == "verified":
                repairable.setdefault(mm, set()).add(d.name)
        else:
            digests.setdefault(mm, set()).add(d.name)
        for path in state.stray:
            _stray(findings, f"{where}/{path.name}", path, now, older_than_s)

    seen: dict[str, list[str]] = {}
    for state in JobState:
        for loc in spool.scan(state):
            name = spool.name_of(loc)
            seen.setdefault(name, []).append(state.value)
            try:
                spec = spool.read_spec(loc.path)
            except (SpecError, OSError) as exc:
                findings.append(Finding("error", f"{state.value}/{loc.path.name}", f"bad spec: {exc}"))
                continue
            attempts, _ = att.list_attempts(spool.attempts_dir(name))
            if state is JobState.DONE:
                done = [a for a in attempts if (a.record or {}).get("outcome") == att.Outcome.DONE]
                if not done:
                    findings.append(Finding("error", f"done/{loc.path.name}", "no attempt record says done"))
                    continue
                digest = done[-1].record.get("digest")  # type: ignore[union-attr]
                mm = f"{spec.model}_{spec.mode}"
                if digest in repairable.get(mm, set()):
                    findings.append(Finding("warning", f"done/{loc.path.name}",
                                            f"its artifact models/{mm}/{str(digest)[:12]}… is {INCOMPLETE}: "
                                            f"`fsck --repair` publishes its record.json"))
                elif digest not in digests.get(mm, set()):
                    findings.append(Finding("error", f"done/{loc.path.name}",
                                            f"its artifact models/{mm}/{str(digest)[:12]}… is missing or corrupt"))
                if os.path.lexists(spool.resume_dir(name)):
                    findings.append(Finding("warning", f"attempts/{name}/resume",
                                            "resume state of a done job (its worker stopped before removing "
                                            "it); `fsck --repair` removes it"))
            elif state is JobState.CLAIMED and not any(a.worker == loc.worker for a in attempts):
                findings.append(Finding("warning", f"claimed/{loc.path.name}",
                                        "no attempt record for this claim (worker died right after claiming?); "
                                        "`fsck --repair` requeues it once nobody heartbeats it"))
    stats["jobs"] = len(seen)
    if spool.settings.consistency == Consistency.ATOMIC:
        for name, states in sorted(seen.items()):
            if len(states) > 1:
                findings.append(Finding("error", name, f"in several states at once: {', '.join(states)}"))
    for state in JobState:
        wellformed = {loc.path.name for loc in spool.scan(state)}
        for entry in os.scandir(spool.state_dir(state)):
            if not is_ignored(entry.name) and entry.name not in wellformed:
                findings.append(Finding("warning", f"{state.value}/{entry.name}",
                                        "not a job file (the next sweep quarantines it)"))
    for entry in os.scandir(spool.tmp):
        if f".{PARKED_SWEEP}-" in entry.name or f".{PARKED_RELOAD}-" in entry.name:
            findings.append(Finding("warning", f"tmp/{entry.name}",
                                    "a job spec held mid-transition; if its holder died, the next sweep "
                                    "(within 30 s) puts it back in pending/"))
    for path, age in store.stale_temp_files(spool.tmp, older_than_s, now):
        findings.append(Finding("warning", f"tmp/{path.name}", _stray_what(age)))
    for path in store.leftover_removals(spool.root):
        findings.append(Finding("warning", f"tmp/{path.name}",
                                "what is left of a removed incomplete store entry; `fsck --repair` deletes it"))
    quarantined = [e.name for e in os.scandir(spool.root / "quarantine") if e.name.endswith(".reason.json")]
    if quarantined:
        findings.append(Finding("warning", "quarantine/",
                        f"{len(quarantined)} file(s) set aside; see their .reason.json"))
    stats["quarantined"] = len(quarantined)
    return findings, stats


def _stray_what(age: float) -> str:
    return f"stray temp file of a dead writer ({age:.0f} s old); `fsck --repair` removes it"


def _stray(findings: list[Finding], where: str, path, now: float, older_than_s: float) -> None:
    try:
        age = now - path.lstat().st_mtime
    except FileNotFoundError:
        return
    if age > older_than_s:
        findings.append(Finding("warning", where, _stray_what(age)))


# --- repair -----------------------------------------------------------------------------


def repair(spool: Spool, *, older_than_s: float = store.STALE_WRITE_S,
           now: float | None = None) -> list[Repair]:
    """Heal what dead writers left (see the module doc); one Repair per thing acted on
    or deliberately left. Never touches a corrupt entry."""
    now = spool.fs_now("fsck", keep=False) if now is None else now
    out: list[Repair] = []
    provenance = None
    for mm, d in store.iter_artifacts(spool.root):
        where = f"models/{mm}/{d.name}"
        state = store.inspect(d)
        if state.status == store.CORRUPT:
            out.append(Repair(where, f"corrupt ({state.what}): left as it is; fsck never repairs "
                                     f"corruption (restore the bundle, or remove the directory and "
                                     f"requeue its job)", False))
            continue
        for path in state.stray:
            out += _remove_stray(f"{where}/{path.name}", path, now, older_than_s)
        if state.status != store.INCOMPLETE:
            continue
        age = now - state.newest_mtime
        if age <= older_than_s:
            out.append(Repair(where, f"{INCOMPLETE}, touched {age:.0f} s ago: left for its writer "
                                     f"(acted on after {older_than_s:.0f} s)", False))
            continue
        if state.bundle == "verified":
            if provenance is None:
                provenance = _done_digests(spool)
            job = provenance.get(d.name)
            if job is not None:
                name, spec = job
                done = store.complete_entry(spool.root, d, {
                    "job": name, "job_id": spec.id, "spec": spec.to_dict(),  # type: ignore[attr-defined]
                    "completed_by": "fsck --repair"})
                out += [Repair(where, f"{what}, from done job {name}", True) for what in done]
                if done:
                    continue
                if store.inspect(d).status != store.INCOMPLETE:
                    continue  # a writer completed it meanwhile
        if store.remove_entry(spool.root, d):
            out.append(Repair(where, f"removed the {INCOMPLETE} entry ({state.what}; no done job "
                                     f"names it, so its job stores it again when it runs)", True))
    for path, _age in store.stale_temp_files(spool.tmp, older_than_s, now):
        out += _remove_stray(f"tmp/{path.name}", path, now, older_than_s)
    import shutil

    for path in store.leftover_removals(spool.root):
        shutil.rmtree(path, ignore_errors=True)
        out.append(Repair(f"tmp/{path.name}", "deleted what was left of a removed store entry", True))
    out += _repair_claims(spool, now)
    for loc in spool.scan(JobState.DONE):
        leftover = spool.resume_dir(spool.name_of(loc))
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
            out.append(Repair(f"attempts/{spool.name_of(loc)}/resume",
                              "removed the resume state of a done job", True))
    return out


def _remove_stray(where: str, path, now: float, older_than_s: float) -> list[Repair]:
    try:
        age = now - path.lstat().st_mtime
        if age <= older_than_s:
            return []
        os.unlink(path)
    except FileNotFoundError:
        return []
    return [Repair(where, f"removed a stray temp file of a dead writer ({age:.0f} s old)", True)]


def _repair_claims(spool: Spool, now: float) -> list[Repair]:
    """Claims without an attempt record whose worker is gone → pending/ (or failed/
    when attempts are spent), by the sweep's take-then-judge transition."""
    out: list[Repair] = []
    grace = claim_grace_s(spool)
    for loc in spool.scan(JobState.CLAIMED):
        name = spool.name_of(loc)
        where = f"claimed/{loc.path.name}"
        if any(a.worker == loc.worker for a in att.list_attempts(spool.attempts_dir(name))[0]):
            continue
        try:
            age = now - loc.path.lstat().st_mtime
        except FileNotFoundError:
            continue
        if age <= grace:
            out.append(Repair(where, f"no attempt record, but heartbeated {age:.0f} s ago: left to its "
                                     f"worker (acted on after {grace:.0f} s without a heartbeat)", False))
            continue
        others = [l for l in spool.locate(name) if l.path != loc.path]
        if others:
            out.append(Repair(where, f"no attempt record, and the job is also in "
                                     f"{', '.join(sorted({l.state.value for l in others}))}/: left for the "
                                     f"sweep and fsck's error above", False))
            continue
        target = spool.take_stale_claim(  # not ours to fix if moved or alive meanwhile
            loc.path, name, now, fresh_s=grace,
            alive=lambda loc=loc, name=name: any(a.worker == loc.worker
                              for a in att.list_attempts(spool.attempts_dir(name))[0]))
        if target is None:
            continue
        spent = att.counted_attempts(spool.attempts_dir(name))
        why = (f"its {spent} counted attempt(s) are spent" if target is JobState.FAILED
               else "runnable again")
        out.append(Repair(where, f"no attempt record and no heartbeat for {age:.0f} s (its worker died "
                                 f"between claiming and recording): moved to {target.value}/ ({why})", True))
    return out
