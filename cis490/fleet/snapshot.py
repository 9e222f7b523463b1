"""Read-only views of a spool: job listing, job detail, workers, models, status.

Everything here reads; nothing writes. ``status(spool, now)`` is the
snapshot both ``status --json`` and the TUI render from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cis490.fleet import attempts as att
from cis490.fleet.claim import live_workers
from cis490.fleet.layout import MAX_JSON_BYTES, JobState, SpoolError, job_of, parse_name, read_bounded
from cis490.fleet.spec import SpecError
from cis490.fleet.spool import Spool
from cis490.fleet.store import iter_artifacts


def job_row(spool: Spool, state: JobState, path: Path, worker: str | None) -> dict:
    name = job_of(path.name)
    model, mode, _ = parse_name(name) or (name, "", "")
    try:
        spec = spool.read_spec(path)
        job_id, priority = spec.id, spec.priority
    except (SpecError, OSError):
        job_id, priority = None, None
    return {"name": name, "id": job_id, "state": state.value, "model": model, "mode": mode,
            "worker": worker, "priority": priority,
            "attempts": att.counted_attempts(spool.attempts_dir(name))}


def list_jobs(spool: Spool, state: JobState | None = None) -> list[dict]:
    rows = []
    for st in ([state] if state else list(JobState)):
        for loc in spool.scan(st):
            rows.append(job_row(spool, st, loc.path, loc.worker))
    rows.sort(key=lambda r: (list(s.value for s in JobState).index(r["state"]), r["name"]))
    return rows


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(read_bounded(path, MAX_JSON_BYTES))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError, SpoolError):
        return None


def show_job(spool: Spool, name: str) -> dict:
    locs = spool.locate(name)
    if not locs:
        raise SpoolError(f"no job {name}")
    loc = locs[0]
    try:
        spec = spool.read_spec(loc.path).to_dict()
    except (SpecError, OSError) as exc:
        spec = {"error": str(exc)}
    attempts, requeued_after = att.list_attempts(spool.attempts_dir(name))
    rows = []
    for a in attempts:
        progress = _read_json(spool.attempts_dir(name) / f"{a.number}@{a.worker}.progress.json")
        rows.append({**(a.record or {"attempt": a.number, "worker": a.worker, "outcome": "unreadable"}),
                     "progress": progress})
    return {"name": name, "state": loc.state.value, "worker": loc.worker,
            "states_seen": [l.state.value for l in locs], "spec": spec,
            "attempts": rows, "requeued_after_attempt": requeued_after,
            "counted_attempts": att.counted_attempts(spool.attempts_dir(name))}


def read_log(path: Path, limit: int = 1 << 20) -> str:
    """A log file's text, never following a symlink (bounded)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - limit))
        return fh.read().decode("utf-8", "replace")


def logs_of(spool: Spool, name: str) -> list[Path]:
    d = spool.logs_dir(name)
    if d.is_symlink() or not d.is_dir():
        return []
    def key(p: Path):
        n = job_of(p.name)  # N@WORKER.log -> N
        return (int(n) if n.isdigit() else 0, p.name)
    return sorted((p for p in d.iterdir() if p.name.endswith(".log") and not p.is_symlink()), key=key)


def workers(spool: Spool, now: float) -> list[dict]:
    out = []
    for rec in live_workers(spool, now):
        cap = rec.get("capability") or {}
        out.append({"worker": rec.get("worker"), "host_id": cap.get("host_id"),
                    "live": rec.get("live"), "age_s": round(rec.get("age_s", 0), 1),
                    "cuda": cap.get("cuda"), "cores": cap.get("cores"), "ram_gib": cap.get("ram_gib"),
                    "gpus": cap.get("gpus"), "os": cap.get("os")})
    return sorted(out, key=lambda r: (not r["live"], str(r["worker"])))


def models(spool: Spool) -> list[dict]:
    out = []
    for mm, d in iter_artifacts(spool.root):
        rec = _read_json(d / "record.json") or {}
        try:
            size = os.stat(d / "bundle.tar.zst").st_size
        except OSError:
            size = None
        out.append({"model_mode": mm, "digest": d.name, "job": rec.get("job"),
                    "bundle_bytes": size, "complete": bool(rec), "path": str(d),
                    "curves": isinstance(rec.get("curves"), list)})
    return out


def epoch_cell(r: dict) -> str:
    """``17/60``, or ``18/60, 41 %`` while epoch 18 is under way; ``–`` before any."""
    if not r.get("epoch"):
        return "–"
    frac = r.get("epoch_fraction")
    if isinstance(frac, (int, float)) and 0 <= frac < 1:
        return f"{r['epoch']}/{r['epochs']}, {int(100 * frac)} %"
    return f"{r['epoch']}/{r['epochs']}"


def running(spool: Spool, now: float) -> list[dict]:
    out = []
    for loc in spool.scan(JobState.CLAIMED):
        name = spool.name_of(loc)
        attempts, _ = att.list_attempts(spool.attempts_dir(name))
        mine = [a for a in attempts if a.worker == loc.worker]
        current = mine[-1] if mine else None
        progress = (_read_json(spool.attempts_dir(name) / f"{current.number}@{current.worker}.progress.json")
                    if current else None) or {}
        try:
            age = now - os.lstat(loc.path).st_mtime
        except FileNotFoundError:
            continue
        out.append({"name": name, "worker": loc.worker,
                    "host_id": (current.record or {}).get("host_id") if current else None,
                    "attempt": current.number if current else None,
                    "heartbeat_age_s": round(age, 1),
                    "epoch": progress.get("epoch"), "epochs": progress.get("epochs"),
                    "epoch_fraction": progress.get("epoch_fraction"),
                    "val_macro_f1": progress.get("val_macro_f1")})
    return out


def recent_failures(spool: Spool, limit: int = 5) -> list[dict]:
    rows = []
    for loc in spool.scan(JobState.FAILED):
        name = spool.name_of(loc)
        attempts, _ = att.list_attempts(spool.attempts_dir(name))
        last = attempts[-1].record if attempts else None
        rows.append({"name": name, "mtime": loc.path.lstat().st_mtime,
                     "error": (last or {}).get("error") or "stale: worker stopped heartbeating",
                     "log_tail": (last or {}).get("log_tail", "")[-600:]})
    rows.sort(key=lambda r: -r["mtime"])
    return rows[:limit]


def status(spool: Spool, now: float | None = None) -> dict:
    if now is None:
        try:
            now = spool.fs_now("status", keep=False)
        except OSError:  # a read-only operator: the local clock will do for display
            import time

            now = time.time()
    return {"spool": str(spool.root), "consistency": spool.settings.consistency,
            "counts": spool.counts(), "workers": workers(spool, now),
            "running": running(spool, now), "failures": recent_failures(spool),
            "models": models(spool), "now": now}
