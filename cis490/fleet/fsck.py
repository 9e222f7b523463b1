"""``fsck``: re-hash every bundle and cross-check jobs, attempts and bundles.

A bundle's stored training curves (``curves.tar.zst``) are checked against
the listing in its ``record.json`` when the record has one (``store.verify``).

Read-only. Each finding is (severity, where, what): ``error`` means the
spool breaks a guarantee (a corrupt bundle, a done job without its artifact,
a name in two states in atomic mode); ``warning`` is worth a look (a claim
without an attempt record, quarantined files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cis490.fleet import attempts as att
from cis490.fleet.layout import JobState, is_ignored
from cis490.fleet.spec import SpecError
from cis490.fleet.spool import Spool
from cis490.fleet.store import iter_artifacts, verify


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    where: str
    what: str

    def to_dict(self) -> dict:
        return {"severity": self.severity, "where": self.where, "what": self.what}


def fsck(spool: Spool) -> tuple[list[Finding], dict]:
    findings: list[Finding] = []
    stats = {"bundles": 0, "jobs": 0}
    digests: dict[str, set[str]] = {}
    for mm, d in iter_artifacts(spool.root):
        stats["bundles"] += 1
        problem = verify(d)
        if problem:
            findings.append(Finding("error", f"models/{mm}/{d.name}", problem))
        else:
            digests.setdefault(mm, set()).add(d.name)

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
                done = [a for a in attempts if (a.record or {}).get("outcome") == "done"]
                if not done:
                    findings.append(Finding("error", f"done/{loc.path.name}", "no attempt record says done"))
                    continue
                digest = done[-1].record.get("digest")  # type: ignore[union-attr]
                mm = f"{spec.model}_{spec.mode}"
                if digest not in digests.get(mm, set()):
                    findings.append(Finding("error", f"done/{loc.path.name}",
                                            f"its artifact models/{mm}/{str(digest)[:12]}… is missing or corrupt"))
            elif state is JobState.CLAIMED and not any(a.worker == loc.worker for a in attempts):
                findings.append(Finding("warning", f"claimed/{loc.path.name}",
                                        "no attempt record for this claim (worker died right after claiming?)"))
    stats["jobs"] = len(seen)
    if spool.settings.consistency == "atomic":
        for name, states in sorted(seen.items()):
            if len(states) > 1:
                findings.append(Finding("error", name, f"in several states at once: {', '.join(states)}"))
    for state in JobState:
        wellformed = {loc.path.name for loc in spool.scan(state)}
        for entry in os.scandir(spool.state_dir(state)):
            if not is_ignored(entry.name) and entry.name not in wellformed:
                findings.append(Finding("warning", f"{state.value}/{entry.name}",
                                        "not a job file (the next sweep quarantines it)"))
    from cis490.fleet.spool import PARKED_RELOAD, PARKED_SWEEP

    for entry in os.scandir(spool.tmp):
        if f".{PARKED_SWEEP}-" in entry.name or f".{PARKED_RELOAD}-" in entry.name:
            findings.append(Finding("warning", f"tmp/{entry.name}",
                                    "a job spec held mid-transition; if its holder died, the next sweep "
                                    "(within 30 s) puts it back in pending/"))
    quarantined = [e.name for e in os.scandir(spool.root / "quarantine") if e.name.endswith(".reason.json")]
    if quarantined:
        findings.append(Finding("warning", "quarantine/", f"{len(quarantined)} file(s) set aside; see their .reason.json"))
    stats["quarantined"] = len(quarantined)
    return findings, stats
