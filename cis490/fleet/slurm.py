"""Slurm pilot jobs on the same spool (docs/SLURM.md).

``cis490-spool slurm submit`` writes an sbatch array script under the spool's
``slurm/`` directory and submits it; each array task ``exec``s a pilot:
``cis490-spool work --drain --slurm`` on the same spool. Nothing but the
shared directory connects the pilots with the rest of the fleet: a pilot
claims, heartbeats and stores exactly as any worker, and the spool alone
decides retries (a Slurm requeue never duplicates a job: the spool's rename
gives each job to one worker).

A pilot (``--slurm``) knows from its environment:

- its ids (``SLURM_JOB_ID``, ``SLURM_ARRAY_JOB_ID``, ``SLURM_ARRAY_TASK_ID``,
  ``SLURM_RESTART_COUNT``, ``SLURMD_NODENAME``), which go into its worker
  record and its attempt records;
- its end: ``SLURM_JOB_END_TIME`` (seconds since the epoch), else
  ``squeue -h -j JOB_TASK -o %e``; its deadline is that end less the signal lead
  (``CIS490_SIGNAL_LEAD``, written into the script), and it claims only jobs
  that fit before it (``cis490.fleet.walltime``).

The script asks for ``--signal=B:USR1@LEAD``: Slurm signals the batch shell
only, which is why the script ``exec``s the pilot. On SIGUSR1 (the time
limit near, or a preemption where the cluster warns with the job's signal), or
its deadline, the pilot stops claiming, its jobs save their resume state and
go back to ``pending/`` (not counted), and then — when claimable work remains
and ``SLURM_RESTART_COUNT`` is below the cap (``CIS490_REQUEUE_CAP``, default
3) — it requeues its own array task only (``scontrol requeue
JOB_TASK``; requeueing ``SLURM_JOB_ID`` of an array task would requeue the
whole array). A SIGTERM (scancel, a preemption without the job's signal) does
the same but never requeues: a task being cancelled may still requeue itself,
and would come back (docs/SLURM.md). It exits 0 either way.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Mapping

from cis490.common import UserError, atomic_write
from cis490.fleet.layout import HOST_RE

__all__ = ["DEFAULT_REQUEUE_CAP", "DEFAULT_SIGNAL_LEAD_S", "JOB_NAME", "PilotOptions", "SlurmError",
           "SlurmTask", "cancel", "pilot_script", "requeue_self", "status", "submit"]

JOB_NAME = "cis490-pilot"
DEFAULT_SIGNAL_LEAD_S = 300
MIN_SIGNAL_LEAD_S = 61         # Slurm may send the signal up to 60 s early
DEFAULT_REQUEUE_CAP = 3
SLURM_DIR = "slurm"
SUBMITTED = "submitted"       # slurm/submitted/JOBID.json: one immutable record per submit
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class SlurmError(UserError):
    """A Slurm command failed or was refused: one line."""


def _run(argv: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 60.0,
         input_text: str | None = None) -> str:
    exe = shutil.which(argv[0], path=(env or os.environ).get("PATH"))
    if exe is None:
        raise SlurmError(f"{argv[0]} not found on PATH: run this on a Slurm login node "
                         f"(or install slurm-client)")
    try:
        out = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout,
                             env=dict(env) if env is not None else None, input=input_text)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{' '.join(argv[:2])} did not answer within {timeout:.0f} s") from None
    if out.returncode != 0:
        msg = (out.stderr or out.stdout).strip().splitlines()
        raise SlurmError(f"{' '.join(argv[:2])} failed (exit {out.returncode}): "
                         f"{msg[-1] if msg else 'no message'}")
    return out.stdout


# --- inside a pilot --------------------------------------------------------------------


def _int(env: Mapping[str, str], key: str) -> int | None:
    v = env.get(key, "").strip()
    return int(v) if v.isdigit() else None


@dataclass(frozen=True)
class SlurmTask:
    """The Slurm job (array task) this process runs in."""

    job_id: str
    array_job_id: str | None = None
    array_task_id: str | None = None
    restart_count: int = 0
    node: str | None = None
    end_time: float | None = None  # SLURM_JOB_END_TIME, when Slurm sets it
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SlurmTask | None":
        env = os.environ if env is None else env
        job = env.get("SLURM_JOB_ID", "").strip()
        if not job:
            return None
        end = _int(env, "SLURM_JOB_END_TIME")
        return cls(job, env.get("SLURM_ARRAY_JOB_ID") or None, env.get("SLURM_ARRAY_TASK_ID") or None,
                   _int(env, "SLURM_RESTART_COUNT") or 0, env.get("SLURMD_NODENAME") or None,
                   float(end) if end else None, dict(env))

    @property
    def task(self) -> str:
        """What ``scontrol requeue`` takes for this task alone: ``ARRAYJOB_TASK`` (or the job)."""
        if self.array_job_id and self.array_task_id is not None:
            return f"{self.array_job_id}_{self.array_task_id}"
        return self.job_id

    def record(self) -> dict:
        """What the worker and attempt records say of it."""
        out: dict = {"job_id": self.job_id, "task": self.task, "restart_count": self.restart_count}
        if self.array_job_id:
            out.update(array_job_id=self.array_job_id, array_task_id=self.array_task_id)
        if self.node:
            out["node"] = self.node
        return out

    def end(self) -> float:
        """The end of this job's walltime (seconds since the epoch)."""
        if self.end_time:
            return self.end_time
        # the task's own id: one task of an array runs under the array's id, and
        # `squeue -j ARRAYID` lists every task of the array
        text = _run(["squeue", "-h", "-j", self.task, "-o", "%e"], env=self.env).strip()
        return parse_slurm_time(text.splitlines()[0] if text else "")


def parse_slurm_time(text: str) -> float:
    """``2026-12-03T18:00:00`` (Slurm prints the local time) -> seconds since the epoch."""
    t = text.strip()
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        raise SlurmError(f"cannot read Slurm's end time {t!r} (no time limit on this job?)") from None


def signal_lead_s(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env.get("CIS490_SIGNAL_LEAD", "").strip()
    return float(raw) if raw.isdigit() else float(DEFAULT_SIGNAL_LEAD_S)


def requeue_cap(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    raw = env.get("CIS490_REQUEUE_CAP", "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_REQUEUE_CAP


def requeue_self(task: SlurmTask, *, work_left: bool, log) -> bool:
    """Requeue this array task alone when work is left and the restart cap allows; True
    if it was requeued. Never raises: a refused requeue leaves the pilot to exit 0."""
    cap = requeue_cap(task.env)
    if not work_left:
        log.info("slurm: no claimable work left: not requeueing %s", task.task)
        return False
    if task.restart_count >= cap:
        log.warning("slurm: %s was restarted %d times (cap %d): not requeueing it again",
                    task.task, task.restart_count, cap)
        return False
    try:
        _run(["scontrol", "requeue", task.task], env=task.env)
    except SlurmError as exc:
        log.warning("slurm: could not requeue %s: %s", task.task, exc)
        return False
    log.info("slurm: requeued %s (restart %d of at most %d)", task.task, task.restart_count + 1, cap)
    return True


# --- on the submit host ----------------------------------------------------------------


@dataclass
class PilotOptions:
    pilots: int = 1
    throttle: int | None = None
    time_min: int = 60
    signal_lead_s: int = DEFAULT_SIGNAL_LEAD_S
    cpus_per_task: int | None = None
    mem: str | None = None
    gres: str | None = None
    partition: str | None = None
    account: str | None = None
    extra: tuple[str, ...] = ()
    python: str = sys.executable
    requeue_cap: int = DEFAULT_REQUEUE_CAP
    slots: int | None = None
    log_dir: str | None = None
    host_id: str | None = None     # the pilots' host id for the manifest's policy (default: node name)

    def validate(self) -> "PilotOptions":
        if not 1 <= self.pilots <= 100000:
            raise SlurmError(f"--pilots {self.pilots}: use 1 to 100000")
        if self.throttle is not None and not 1 <= self.throttle <= self.pilots:
            raise SlurmError(f"--throttle {self.throttle}: use 1 to --pilots ({self.pilots})")
        if self.time_min < 1:
            raise SlurmError(f"--time {self.time_min}: at least 1 minute")
        if self.signal_lead_s < MIN_SIGNAL_LEAD_S:
            raise SlurmError(f"--signal-lead {self.signal_lead_s}: at least {MIN_SIGNAL_LEAD_S} s "
                             f"(Slurm may signal up to 60 s early)")
        if self.signal_lead_s >= self.time_min * 60:
            raise SlurmError(f"--signal-lead {self.signal_lead_s} s leaves nothing of --time "
                             f"{self.time_min} min")
        for name in ("mem", "gres", "partition", "account"):
            v = getattr(self, name)
            if v is not None and not re.fullmatch(r"[A-Za-z0-9_.:,=+\-/%]+", v):
                raise SlurmError(f"--{name.replace('_', '-')} {v!r}: unexpected characters")
        for e in self.extra:
            if not e.startswith("-") or any(ch in e for ch in "\n\r\0"):
                raise SlurmError(f"--extra {e!r}: one sbatch option per --extra, e.g. '--qos=long'")
        if self.host_id is not None and not HOST_RE.match(self.host_id):
            raise SlurmError(f"--host-id {self.host_id!r}: letters, digits, '.', '_', '-'")
        if self.log_dir is not None and _unsafe_path(self.log_dir):
            raise SlurmError(f"--log-dir {self.log_dir!r}: no spaces, quotes, '%' or newlines (an "
                             f"#SBATCH line cannot quote them)")
        if self.requeue_cap < 0:
            raise SlurmError("--requeue-cap must be >= 0")
        return self

    @property
    def wants_gpu(self) -> bool:
        """The pilots get a GPU (``--gres gpu:...``, or a GPU option through ``--extra``)."""
        return ("gpu" in (self.gres or "")) or any(e.startswith(("--gpus", "--gres=gpu", "-G"))
                                                   for e in self.extra)


def _unsafe_path(path) -> bool:
    return any(ch in str(path) for ch in " \t\n\r\"'%\\")


def pilot_script(spool_root: Path, opts: PilotOptions, log_dir: Path) -> str:
    """The sbatch array script (docs/SLURM.md explains every line)."""
    q = shlex.quote
    array = f"0-{opts.pilots - 1}" + (f"%{opts.throttle}" if opts.throttle else "")
    lines = [
        "#!/bin/bash",
        "# cis490 pilot jobs: written by `cis490-spool slurm submit`; see docs/SLURM.md",
        f"#SBATCH --job-name={JOB_NAME}",
        f"#SBATCH --array={array}",
        f"#SBATCH --time={opts.time_min}",
        # B: the batch shell only, which exec's the pilot below; up to 60 s early
        f"#SBATCH --signal=B:USR1@{opts.signal_lead_s}",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={log_dir}/%A_%a.out",
    ]
    if opts.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={opts.cpus_per_task}")
    for name, flag in (("mem", "mem"), ("gres", "gres"), ("partition", "partition"),
                       ("account", "account")):
        v = getattr(opts, name)
        if v:
            lines.append(f"#SBATCH --{flag}={v}")
    lines += [f"#SBATCH {e}" for e in opts.extra]
    argv = [opts.python, "-m", "cis490.spool_cli", "--spool", str(spool_root), "work", "--drain",
            "--slurm"]
    if opts.wants_gpu:
        argv.append("--cuda-only")
    if opts.slots:
        argv += ["--slots", str(opts.slots)]
    if opts.host_id:
        argv += ["--host-id", opts.host_id]
    lines += [
        "",
        # the checkout this was submitted from (on the shared filesystem), for a bare checkout
        f"export PYTHONPATH={q(_PACKAGE_PARENT)}${{PYTHONPATH:+:$PYTHONPATH}}",
        f"export CIS490_SIGNAL_LEAD={opts.signal_lead_s}",
        f"export CIS490_REQUEUE_CAP={opts.requeue_cap}",
        "# a USR1 before the pilot has installed its handler is dropped, not fatal (the",
        "# pilot's deadline, the same moment, stops it anyway); the pilot then handles it",
        "trap '' USR1",
        "# exec: the pilot becomes the batch shell, so it receives Slurm's USR1",
        "exec " + " ".join(q(a) for a in argv),
        "",
    ]
    return "\n".join(lines)


def _slurm_dir(spool) -> Path:
    d = spool.root / SLURM_DIR
    for sub in (d, d / SUBMITTED, d / "logs"):
        sub.mkdir(exist_ok=True)
    return d


def submit(spool, opts: PilotOptions, *, dry_run: bool = False,
           env: Mapping[str, str] | None = None) -> tuple[str | None, Path | None, str]:
    """Write the script (unless ``dry_run``) and submit it: ``(job id, script path, script)``."""
    opts.validate()
    if opts.log_dir is None and _unsafe_path(spool.root):
        raise SlurmError(f"the spool's path {str(spool.root)!r} has a space, quote or '%', which an "
                         f"#SBATCH --output line cannot quote: give --log-dir a plain path")
    if dry_run:
        log_dir = Path(opts.log_dir) if opts.log_dir else spool.root / SLURM_DIR / "logs"
        return None, None, pilot_script(spool.root, opts, log_dir)
    d = _slurm_dir(spool)
    log_dir = Path(opts.log_dir) if opts.log_dir else d / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    text = pilot_script(spool.root, opts, log_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = d / f"pilots-{stamp}-{secrets.token_hex(3)}.sbatch"
    atomic_write(path, text, tmp_dir=spool.tmp, mode=0o755)
    out = _run(["sbatch", "--parsable", str(path)], env=env).strip()
    job_id = out.split(";")[0].strip() if out else ""
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed {out!r}, not a job id")
    record = {"job_id": job_id, "script": path.name, "submitted_at": time.time(),
              "pilots": opts.pilots, "time_min": opts.time_min, "gres": opts.gres}
    atomic_write(d / SUBMITTED / f"{job_id}.json", json.dumps(record, sort_keys=True) + "\n",
                 tmp_dir=spool.tmp)
    return job_id, path, text


def submitted(spool) -> list[dict]:
    """The submit records of this spool, oldest first."""
    d = spool.root / SLURM_DIR / SUBMITTED
    out = []
    try:
        entries = sorted(d.glob("*.json"))
    except OSError:
        return out
    for p in entries:
        try:
            rec = json.loads(p.read_bytes()[:65536])
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and str(rec.get("job_id", "")).isdigit():
            out.append(rec)
    return sorted(out, key=lambda r: r.get("submitted_at", 0))


def status(spool, *, env: Mapping[str, str] | None = None) -> list[dict]:
    """This spool's pilots in ``squeue``: one row per array task still queued or running."""
    ids = [r["job_id"] for r in submitted(spool)]
    if not ids:
        return []
    # only this user's jobs named as pilots: the ids come from a shared directory, and a
    # stray record must not make `slurm cancel` cancel someone's other job
    try:
        text = _run(["squeue", "-h", "-r", "--me", f"--name={JOB_NAME}", "-j", ",".join(ids),
                     "-o", "%i|%T|%M|%l|%R"], env=env)
    except SlurmError as exc:
        if "Invalid job id" in str(exc):  # every listed job ended and the controller forgot it
            return []
        raise
    rows = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5:
            rows.append(dict(zip(("id", "state", "elapsed", "limit", "reason"), parts)))
    return rows


def cancel(spool, *, env: Mapping[str, str] | None = None) -> list[str]:
    """``scancel`` every pilot job of this spool still queued or running; their jobs
    go back to ``pending/`` (SIGTERM: saved, released, not counted)."""
    rows = status(spool, env=env)
    jobs = sorted({r["id"].split("_")[0] for r in rows})
    if jobs:
        _run(["scancel", *jobs], env=env)
    return jobs
