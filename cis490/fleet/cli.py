"""``cis490-spool``: the operator's and the worker's entry point.

This module only parses and prints. Library errors (``SpoolError`` and its
kin) become one line on stderr here, in one place: exit 1 for operational
errors; argparse exits 2 for usage errors. Every read verb has ``--json``.

Examples:
    cis490-spool init --heartbeat-s 30 --stale-after-s 600
    cis490-spool reload etc/training_manifest.toml.example
    cis490-spool status
    cis490-spool work --drain --host-id elliott-thinkpad
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import time
from typing import Callable, Sequence
from pathlib import Path

from cis490.common import UserError, os_error_line
from cis490.fleet.layout import Consistency, JobState, SpoolError

OPERATOR_ENV = "CIS490_OPERATOR_TOKEN"


def token_hash(token: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    return f"{salt}${hashlib.sha256((salt + token).encode()).hexdigest()}"


def check_operator(spool) -> None:
    recorded = spool.settings.operator_token_hash
    if not recorded:
        return
    token = os.environ.get(OPERATOR_ENV)
    if not token:
        raise SpoolError(f"this verb needs ${OPERATOR_ENV} (set at init): run it from the operator's shell")
    salt, _, _ = recorded.partition("$")
    if not hmac.compare_digest(token_hash(token, salt), recorded):
        raise SpoolError(f"${OPERATOR_ENV} does not match the token recorded at init")


def _print(args, obj, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(obj, indent=1, sort_keys=True, default=str))
    else:
        print(text)


def _open(args):
    from cis490.fleet.spool import Spool

    return Spool.open(args.spool)


# --- verbs -------------------------------------------------------------------------


def cmd_init(args) -> int:
    from cis490.fleet.spool import Spool

    settings = {"heartbeat_s": args.heartbeat_s, "stale_after_s": args.stale_after_s,
                "max_attempts": args.max_attempts, "consistency": args.consistency}
    if args.settle_s is not None:
        settings["settle_s"] = args.settle_s
    elif args.consistency == Consistency.EVENTUAL:
        settings["settle_s"] = min(30.0, args.stale_after_s / 4)
    token = os.environ.get(OPERATOR_ENV)
    if token:
        settings["operator_token_hash"] = token_hash(token)
    if args.operator_group:
        settings["operator_group"] = args.operator_group
    if args.require_signatures:
        from cis490.fleet.signing import load_private, public_of

        keys = list(args.public_key or [])
        if not keys:
            keys.append(public_of(load_private(args.key)))
        settings.update(require_signatures=True, operator_public_keys=tuple(keys))
    spool = Spool.init(args.spool, **settings)
    guard = ("operator token recorded" if token
             else f"no operator token (set ${OPERATOR_ENV} at init to guard cancel/requeue/reload)")
    print(f"spool ready at {spool.root} ({spool.settings.consistency}; heartbeat {spool.settings.heartbeat_s:g}s, "
          f"stale after {spool.settings.stale_after_s:g}s, {spool.settings.max_attempts} attempts; {guard})")
    return 0


def cmd_reload(args) -> int:
    spool = _open(args)
    check_operator(spool)
    result = spool.reload(args.manifest, signing_key=args.key)
    r = result.to_dict()
    _print(args, r, f"reloaded {args.manifest}: {r['new']} new, {r['unchanged']} unchanged, "
                    f"{r['updated']} updated, {r['orphaned']} orphaned (not in the manifest; cancel to remove)")
    return 0


def cmd_status(args) -> int:
    from cis490.fleet import snapshot, tui

    spool = _open(args)
    if args.watch:
        tui.watch(spool, poll_s=args.poll_s)
        return 0
    snap = snapshot.status(spool)
    if args.json:
        print(json.dumps(snap, indent=1, sort_keys=True, default=str))
        return 0
    from rich.console import Console

    Console().print(tui.render(snap))
    return 0


def cmd_list(args) -> int:
    from cis490.fleet import snapshot

    rows = snapshot.list_jobs(_open(args), JobState(args.state) if args.state else None)
    lines = [f"{r['state']:<10} {r['name']:<32} attempts {r['attempts']}"
             + (f"  on {r['worker']}" if r["worker"] else "") for r in rows]
    _print(args, rows, "\n".join(lines) if lines else "no jobs")
    return 0


def cmd_show(args) -> int:
    from cis490.fleet import snapshot

    spool = _open(args)
    info = snapshot.show_job(spool, spool.resolve(args.job))
    lines = [f"{info['name']}: {info['state']}" + (f" on {info['worker']}" if info["worker"] else ""),
             f"spec: {json.dumps(info['spec'], sort_keys=True)}"]
    for a in info["attempts"]:
        p = a.get("progress") or {}
        lines.append(f"  attempt {a.get('attempt')} by {a.get('worker')}: {a.get('outcome')}"
                     + (f", epoch {snapshot.epoch_cell(p)}" if p.get("epoch") else "")
                     + (f", digest {a['digest'][:12]}" if a.get("digest") else "")
                     + (f" — {a['error']}" if a.get("error") else ""))
    _print(args, info, "\n".join(lines))
    return 0


def cmd_logs(args) -> int:
    from cis490.fleet import snapshot

    spool = _open(args)
    name = spool.resolve(args.job)
    paths = snapshot.logs_of(spool, name)
    if not paths:
        raise SpoolError(f"{name} has no logs yet")
    chosen = paths if args.all else paths[-1:]
    if args.json:
        print(json.dumps([{"file": p.name, "text": snapshot.read_log(p)} for p in chosen], indent=1))
        return 0
    for p in chosen:
        if len(chosen) > 1:
            print(f"==> {p.name} <==")
        sys.stdout.write(snapshot.read_log(p))
    return 0


def cmd_cancel(args) -> int:
    spool = _open(args)
    check_operator(spool)
    name = spool.resolve(args.job)
    was = spool.cancel(name)
    tail = "; its worker stops it at the next heartbeat)" if was is JobState.CLAIMED else ")"
    print(f"cancelled {name} (was {was.value}" + tail)
    return 0


def cmd_requeue(args) -> int:
    spool = _open(args)
    check_operator(spool)
    name = spool.resolve(args.job)
    was = spool.requeue(name)
    print(f"requeued {name} (was {was.value}; fresh attempt budget)")
    return 0


def cmd_workers(args) -> int:
    from cis490.fleet import snapshot

    spool = _open(args)
    rows = snapshot.workers(spool, spool.fs_now("cli", keep=False))
    lines = [f"{'live ' if r['live'] else 'SILENT'} {r['worker']:<40} host {r['host_id']} cores {r['cores']} "
             f"ram {r['ram_gib']} GiB cuda {'yes' if r['cuda'] else 'no'} (seen {r['age_s']:.0f}s ago)" for r in rows]
    _print(args, rows, "\n".join(lines) if lines else "no workers registered")
    return 0


def cmd_models(args) -> int:
    from cis490.fleet import snapshot

    rows = snapshot.models(_open(args))
    if args.tensorboard is not None:
        return _models_tensorboard(args, rows)
    lines = [f"{r['model_mode']:<22} {r['digest'][:16]}  {r['job']}  {r['bundle_bytes']} B"
             + ("" if r["curves"] else "  (no curves)") for r in rows]
    _print(args, rows, "\n".join(lines) if lines else "no models stored")
    return 0


def _models_tensorboard(args, rows: list[dict]) -> int:
    """``models --tensorboard DIR``: every stored model's curves (metrics.jsonl and its
    tensorboard/ events, verified against record.json) in DIR/MODEL_MODE/DIGEST12/, so
    ``tensorboard --logdir DIR`` shows them all. A corrupt one is named and skipped (exit 1)."""
    from cis490.fleet import store
    from cis490.fleet.layout import DIGEST_RE

    base = Path(args.tensorboard)
    base.mkdir(parents=True, exist_ok=True)
    out, lines, errors = [], [], 0
    for r in rows:
        if not (r["complete"] and r["curves"] and DIGEST_RE.match(r["digest"])):
            continue                      # unfinished, without curves, or not a digest
        target = base / r["model_mode"] / r["digest"][:12]
        try:
            written = store.extract_curves(Path(r["path"]), target)
        except store.StoreError as exc:
            errors += 1
            print(f"cis490-spool models: {r['model_mode']}/{r['digest'][:12]}: {exc}; "
                  f"run `cis490-spool fsck`", file=sys.stderr)
            continue
        rel = [w.relative_to(target).as_posix() for w in written]
        events = sum(1 for f in rel if f.startswith(f"{store.TENSORBOARD}/"))
        out.append({"model_mode": r["model_mode"], "digest": r["digest"], "dir": str(target),
                    "files": rel})
        lines.append(f"wrote {target}/: {', '.join(f for f in rel if f == store.METRICS) or 'no metrics'}"
                     f", {events} event file(s)")
    without = len(rows) - len(out) - errors
    lines.append(f"{len(out)} model(s) with curves under {base}"
                 + (f"; {without} without (smoke jobs, older workers, unfinished)" if without else "")
                 + (f"; view them: tensorboard --logdir {base}" if out else ""))
    _print(args, out, "\n".join(lines))
    return 1 if errors else 0


def cmd_sweep(args) -> int:
    spool = _open(args)
    r = spool.sweep()
    obj = {"requeued": list(r.requeued), "failed": list(r.failed), "quarantined": list(r.quarantined),
           "workers_removed": list(r.workers_removed)}
    _print(args, obj, f"swept: {len(r.requeued)} requeued, {len(r.failed)} failed (attempts spent), "
                      f"{len(r.quarantined)} quarantined, {len(r.workers_removed)} old worker records removed")
    return 0


def cmd_fsck(args) -> int:
    """Exit 1 when an error remains (corruption, a done job without its artifact, a
    name in two states); warnings (incomplete entries, stray temp files, a claim
    without an attempt record) alone exit 0. With --repair: repair first, one line
    each, then report what is left (a corrupt entry is never repaired: still exit 1)."""
    from cis490.fleet.fsck import fsck, repair
    from cis490.fleet.store import STALE_WRITE_S

    older = STALE_WRITE_S if args.older_than_s is None else args.older_than_s
    spool = _open(args)
    floor = 3 * spool.settings.stale_after_s  # a live writer's files are never that old
    if args.repair and older < floor:
        raise SpoolError(f"--older-than-s must be at least 3 x stale_after_s = {floor:g} s with "
                         "--repair (younger files may belong to a writer still at work)")
    if older < 0:
        raise SpoolError("--older-than-s must be 0 or more")
    repairs = []
    now = None
    if args.repair:
        now = spool.fs_now("fsck", keep=False)
        repairs = repair(spool, older_than_s=older, now=now)
    findings, stats = fsck(spool, older_than_s=older, now=now)
    errors = [f for f in findings if f.severity == "error"]
    obj = {"ok": not errors, "stats": stats, "findings": [f.to_dict() for f in findings]}
    lines = [r.line() for r in repairs]
    lines += [f"{f.severity}: {f.where}: {f.what}" for f in findings]
    summary = (f"fsck: {stats['bundles']} bundles re-hashed, {stats['jobs']} jobs checked, "
               f"{len(errors)} error(s), {len(findings) - len(errors)} warning(s)")
    if args.repair:
        obj["repairs"] = [r.to_dict() for r in repairs]
        summary += f", {sum(r.repaired for r in repairs)} repaired"
    lines.append(summary)
    _print(args, obj, "\n".join(lines))
    return 1 if errors else 0


def cmd_work(args) -> int:
    from cis490.fleet.claim import WorkerInfo
    from cis490.fleet.spool import Spool
    from cis490.fleet.worker import Worker, WorkerMode, WorkerOptions, open_spool, self_test

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    spool = Spool.open(args.spool) if args.self_test else open_spool(args.spool)
    info = WorkerInfo.create(args.host_id, spool_root=spool.root)
    if args.self_test:
        problems = self_test(spool, info.id)
        for p in problems:
            print(f"self-test: {p}", file=sys.stderr)
        if not problems:
            print(f"self-test ok: {info.capability.host_id} can work on {spool.root} "
                  f"(cores {info.capability.cores}, RAM {info.capability.ram_gib} GiB, "
                  f"CUDA {'yes' if info.capability.cuda else 'no'})")
        return 1 if problems else 0
    mode = (WorkerMode.ONCE if args.once else WorkerMode.DRAIN if args.drain else WorkerMode.DAEMON).value
    deadline, task = None, None
    if args.deadline is not None:
        from cis490.fleet.walltime import parse_deadline

        try:
            deadline = parse_deadline(args.deadline)
        except ValueError as exc:
            raise SpoolError(str(exc)) from None
    if args.slurm:
        from cis490.fleet import slurm

        task = slurm.SlurmTask.from_env()
        if task is None:
            raise SpoolError("--slurm: no SLURM_JOB_ID here (run it from an sbatch script: "
                             "`cis490-spool slurm submit`)")
        info.extra["slurm"] = task.record()
        end = task.end() - slurm.signal_lead_s()
        deadline = end if deadline is None else min(deadline, end)
        logging.getLogger("cis490.worker").info(
            "slurm pilot %s (restart %d) on %s: claiming what fits before %s", task.task,
            task.restart_count, task.node or "?", time.strftime("%H:%M:%S", time.localtime(deadline)))
    lock_dir = None
    if task is not None:
        # the host-local slot locks keep overlapping cron runs apart; pilots sharing a node
        # each have their own allocation, so each Slurm job has its own locks
        import tempfile

        lock_dir = Path(tempfile.gettempdir()) / "cis490-locks" / f"slurm-{task.job_id}"
    opts = WorkerOptions(mode=mode, slots=args.slots, poll_s=args.poll_s, max_jobs=args.max_jobs,
                         work_root=Path(args.work_dir) if args.work_dir else None,
                         deadline=deadline, cuda_only=args.cuda_only,
                         release_grace_s=args.release_grace_s, lock_dir=lock_dir)
    worker = Worker(spool, info, opts)
    code = worker.run()
    if task is not None and code == 0 and worker.worked:
        # the time limit is near, or what is left did not fit the rest of this walltime:
        # come back (a fresh walltime) for work a whole one could take (the spool decides
        # who runs what, so a requeue never duplicates a job). A preemption that warns
        # with the job's signal is a USR1 too. Never after a SIGTERM that came first:
        # scancel sends one, and Slurm lets a task being cancelled requeue itself
        # (measured on 22.05), so a cancelled pilot would come back; the limit's own
        # SIGTERM finds the pilot already stopping for its deadline or USR1
        wlog = logging.getLogger("cis490.worker")
        if worker.stopped_by in ("SIGUSR1", "deadline", None):
            slurm.requeue_self(task, work_left=worker.work_left(), log=wlog)
        else:
            wlog.info("slurm: stopped by %s (scancel, a preemption or the hard limit): not "
                      "requeueing %s", worker.stopped_by, task.task)
    return code


def cmd_slurm(args) -> int:
    from cis490.fleet import slurm

    spool = _open(args)
    if args.slurm_verb == "submit":
        opts = slurm.PilotOptions(
            pilots=args.pilots, throttle=args.throttle, time_min=args.time,
            signal_lead_s=args.signal_lead, cpus_per_task=args.cpus_per_task, mem=args.mem,
            gres=args.gres, partition=args.partition, account=args.account,
            extra=tuple(args.extra or ()), python=args.python, requeue_cap=args.requeue_cap,
            slots=args.slots, log_dir=args.log_dir, host_id=args.host_id)
        job_id, path, text = slurm.submit(spool, opts, dry_run=args.dry_run)
        if args.dry_run:
            print(text, end="")
            return 0
        print(job_id)
        print(f"submitted {opts.pilots} pilot(s) as Slurm job {job_id} ({path}); "
              f"`cis490-spool slurm status` lists them", file=sys.stderr)
        return 0
    if args.slurm_verb == "status":
        rows = slurm.status(spool)
        lines = [f"{r['id']:<16} {r['state']:<12} elapsed {r['elapsed']:>10} of {r['limit']:<10} {r['reason']}"
                 for r in rows]
        _print(args, rows, "\n".join(lines) if lines else "no pilots of this spool in the Slurm queue")
        return 0
    jobs = slurm.cancel(spool)
    print(f"cancelled Slurm job(s) {', '.join(jobs)}; their running jobs go back to pending/"
          if jobs else "no pilots of this spool in the Slurm queue")
    return 0


def cmd_keygen(args) -> int:
    from cis490.fleet.signing import DEFAULT_KEY, keygen

    path = Path(args.out).expanduser() if args.out else DEFAULT_KEY
    public = keygen(path, Path(args.spool).absolute())
    print(f"wrote {path} (keep it secret, outside the spool)\npublic key: {public}\n"
          f"use it: cis490-spool init --require-signatures --public-key {public}")
    return 0


# --- parser --------------------------------------------------------------------------


def build_parser(extra_verbs: Sequence[Callable] = ()) -> argparse.ArgumentParser:
    """The parser; each of ``extra_verbs`` is called with ``verb(name, func, help,
    json_flag=False) -> subparser`` to add its own verbs."""
    p = argparse.ArgumentParser(prog="cis490-spool", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spool", default=os.environ.get("CIS490_SPOOL", "spool"),
                   help="spool directory (default: $CIS490_SPOOL, else ./spool)")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    def verb(name, func, help, json_flag=False):
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        return sp

    sp = verb("init", cmd_init, "create a spool (e.g. `init --stale-after-s 600`)")
    sp.add_argument("--heartbeat-s", type=float, default=30.0)
    sp.add_argument("--stale-after-s", type=float, default=600.0)
    sp.add_argument("--max-attempts", type=int, default=3)
    sp.add_argument("--consistency", choices=[c.value for c in Consistency], default=Consistency.ATOMIC.value)
    sp.add_argument("--settle-s", type=float, default=None,
                    help="eventual mode: wait after a claim before training (default min(30, stale-after/4))")
    sp.add_argument("--operator-group", default=None,
                    help="only this group may write cancelled/, manifest.toml, spool.toml")
    sp.add_argument("--require-signatures", action="store_true",
                    help="workers run only specs signed by the operator key")
    sp.add_argument("--public-key", action="append",
                    help="operator public key (base64; repeatable); default: from --key")
    sp.add_argument("--key", default=None,
                    help="operator private key (default $CIS490_OPERATOR_KEY, ~/.config/cis490/operator.key)")
    sp = verb("reload", cmd_reload,
              "enqueue a manifest's new jobs (e.g. `reload etc/training_manifest.toml.example`)", True)
    sp.add_argument("manifest")
    sp.add_argument("--key", default=None, help="operator private key, when the spool requires signatures")
    sp = verb("keygen", cmd_keygen, "create the operator's Ed25519 key (outside the spool)")
    sp.add_argument("--out", default=None, help="where to write it (default ~/.config/cis490/operator.key)")
    sp = verb("status", cmd_status, "counts, running jobs, workers, failures, artifacts", True)
    sp.add_argument("--watch", action="store_true", help="live view, refreshed on changes")
    sp.add_argument("--poll-s", type=float, default=2.0)
    sp = verb("list", cmd_list, "list jobs (e.g. `list --state failed`)", True)
    sp.add_argument("--state", choices=[s.value for s in JobState])
    for name, func, help in (("show", cmd_show, "a job's spec and attempts (JOB: name or unique prefix)"),
                             ("logs", cmd_logs, "a job's latest log (e.g. `logs gbt_real`)")):
        sp = verb(name, func, help, True)
        sp.add_argument("job")
        if name == "logs":
            sp.add_argument("--all", action="store_true", help="every attempt's log")
    for name, func, help in (("cancel", cmd_cancel, "cancel a pending or running job (operator)"),
                             ("requeue", cmd_requeue, "requeue a failed or cancelled job (operator)")):
        sp = verb(name, func, help)
        sp.add_argument("job")
    verb("workers", cmd_workers, "registered workers and their liveness", True)
    sp = verb("models", cmd_models, "stored artifacts (e.g. `models --tensorboard tb/`)", True)
    sp.add_argument("--tensorboard", default=None, metavar="DIR",
                    help="write every model's curves to DIR/MODEL_MODE/DIGEST12/ for "
                         "`tensorboard --logdir DIR`")
    verb("sweep", cmd_sweep, "reclaim stale claims now; quarantine malformed files", True)
    sp = verb("fsck", cmd_fsck, "re-hash bundles and cross-check jobs/attempts (exit 1 on errors; "
                                "warnings alone exit 0)", True)
    sp.add_argument("--repair", action="store_true",
                    help="complete or remove incomplete store entries, remove stray temp files, requeue "
                         "claims without an attempt record; never touches a corrupt entry")
    sp.add_argument("--older-than-s", type=float, default=None, metavar="S",
                    help="an incomplete entry or temp file untouched this long has no live writer "
                         "(default 3600)")
    sp = verb("work", cmd_work, "run a worker (e.g. `work --drain --slots 2`)")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--once", action="store_true", help="claim up to --slots jobs, finish them, exit (cron)")
    g.add_argument("--drain", action="store_true", help="work until no eligible job is left")
    g.add_argument("--self-test", action="store_true", help="check this host can work on the spool, then exit")
    sp.add_argument("--slots", type=int, default=None,
                    help="parallel jobs (default: manifest's hosts.NAME.slots, else 1)")
    sp.add_argument("--host-id", default=None, help="host id used for policy (default: hostname)")
    sp.add_argument("--poll-s", type=float, default=5.0, help="polling fallback interval")
    sp.add_argument("--max-jobs", type=int, default=None)
    sp.add_argument("--work-dir", default=None, help="local scratch directory for job outputs")
    sp.add_argument("--deadline", default=None, metavar="WHEN",
                    help="claim only jobs expected to finish before WHEN (+MINUTES, epoch seconds or "
                         "ISO time), then stop: running jobs save their state and go back to pending/")
    sp.add_argument("--slurm", action="store_true",
                    help="a Slurm pilot: deadline from the job's walltime less CIS490_SIGNAL_LEAD; "
                         "on SIGUSR1 requeue this array task if work is left (docs/SLURM.md)")
    sp.add_argument("--cuda-only", action="store_true",
                    help="claim only jobs that use a GPU or ask for CUDA (a GPU pilot)")
    sp.add_argument("--release-grace-s", type=float, default=30.0, metavar="S",
                    help="when stopping, how long a job may take to save its state before SIGKILL")
    sp.add_argument("--quiet", action="store_true")
    sp = verb("slurm", cmd_slurm, "Slurm pilot jobs on this spool: submit, status, cancel (docs/SLURM.md)")
    ssub = sp.add_subparsers(dest="slurm_verb", metavar="ACTION")
    ssub.required = True
    sb = ssub.add_parser("submit", help="write an sbatch array script under slurm/ and submit it")
    sb.add_argument("--pilots", type=int, default=1, metavar="N", help="array tasks (default 1)")
    sb.add_argument("--throttle", type=int, default=None, metavar="K", help="at most K pilots at once (%%K)")
    sb.add_argument("--time", type=int, default=60, metavar="MINUTES", help="walltime per pilot (default 60)")
    sb.add_argument("--signal-lead", type=int, default=300, metavar="SECONDS",
                    help="USR1 this long before the time limit (default 300, more than 60)")
    sb.add_argument("--cpus-per-task", type=int, default=None, metavar="C")
    sb.add_argument("--mem", default=None, metavar="M", help="e.g. 16G")
    sb.add_argument("--gres", default=None, metavar="G", help="e.g. gpu:1 (such pilots claim only GPU jobs)")
    sb.add_argument("--partition", default=None, metavar="P")
    sb.add_argument("--account", default=None, metavar="A")
    sb.add_argument("--extra", action="append", metavar="OPTION",
                    help="a raw sbatch option, e.g. --extra=--qos=long (repeatable)")
    sb.add_argument("--slots", type=int, default=None, help="parallel jobs per pilot (default: the host policy)")
    sb.add_argument("--requeue-cap", type=int, default=3, metavar="N",
                    help="a pilot requeues itself at most N times (SLURM_RESTART_COUNT; default 3)")
    sb.add_argument("--python", default=sys.executable,
                    help="the Python the pilots run (a venv on the shared filesystem; default: this one)")
    sb.add_argument("--log-dir", default=None, help="Slurm's output files (default: SPOOL/slurm/logs)")
    sb.add_argument("--host-id", default=None,
                    help="the pilots' host id, for [hosts.ID] in the manifest (default: each node's name)")
    sb.add_argument("--dry-run", action="store_true", help="print the script; submit nothing")
    st = ssub.add_parser("status", help="this spool's pilots in squeue")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    ssub.add_parser("cancel", help="scancel this spool's pilots (their jobs go back to pending/)")
    for add in extra_verbs:  # verbs of the layers above the coordinator (cis490.spool_cli: demo)
        add(verb)
    return p


def main(argv: list[str] | None = None, extra_verbs: Sequence[Callable] = ()) -> int:
    args = build_parser(extra_verbs).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cis490-spool: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:  # SpoolError and every other user error: one line
        print(f"cis490-spool {args.verb}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the environment's answer (no such file, permission, disk full)
        print(f"cis490-spool {args.verb}: {os_error_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
