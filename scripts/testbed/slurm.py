#!/usr/bin/env python3
"""Loopback Slurm test bed: one munged, one slurmctld, one slurmd, no systemd, no slurmdbd.

    scripts/testbed/slurm.py up     DIR   → JSON on stdout (then: export SLURM_CONF=DIR/slurm.conf)
    scripts/testbed/slurm.py status DIR
    scripts/testbed/slurm.py down   DIR

``up`` creates, under DIR (a throwaway directory; every ancestor must be
searchable by all, munged checks that — /tmp/NAME is, a pytest ``tmp_path`` is not):

    munge/munge.key           a fresh key (mungekey, else 1 KiB from /dev/urandom)
    munge/munge.socket        munged's socket (AuthInfo=socket=... points Slurm at it)
    slurm.conf                generated: one node (from ``slurmd -C``), partitions ``debug``
                              (the default) and ``urgent`` (a higher tier: its jobs preempt
                              debug's, PreemptMode=CANCEL after GraceTime, with the job's
                              own --signal as the warning)
    state/                    StateSaveLocation
    spool/                    SlurmdSpoolDir
    log/{munged,slurmctld,slurmd}.log    the daemons' logs; log/*.out their stdout/stderr
    state.json                ports, pids, paths: what ``down`` undoes

The daemons run in the foreground (``munged -F``, ``slurmctld -D -i``, ``slurmd -D``),
each in its own session, as root; ports are picked free on 127.0.0.1. Nothing in
/etc/slurm, /etc/munge or /run/munge is read or written: clients find this cluster
only through ``SLURM_CONF=DIR/slurm.conf`` (``env()`` gives that environment).
``up`` returns once ``sinfo`` shows the node ``idle`` (~2 s here).

``down`` cancels every job, kills what is left of them (every process whose
environment holds this bed's ``SLURM_CONF``: slurmstepd and the jobs' own
processes), then stops slurmd, slurmctld and munged; a no-op on a directory that
is not up. It leaves DIR in place (the logs are there).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BedError, free_ports, pid_alive, read_state, run, stop_pid, tail, wait_until, which, write_state,
)

SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
INSTALL = "Debian: apt-get install slurmctld slurmd slurm-client munge"
PARTITION = "debug"
URGENT = "urgent"  # a higher PriorityTier on the same node: its jobs preempt debug's (CANCEL)

# knobs that make the bed fast; docs/TESTBEDS.md has what each one changes
DEFAULTS = {
    "cred_expire_s": 10,     # also how long a requeued job waits before it may start again (Slurm: 120)
    "kill_wait_s": 5,        # SIGTERM → SIGKILL at the time limit / on scancel (Slurm: 30)
    "min_job_age_s": 10,     # a finished job stays visible to scontrol this long (Slurm: 300)
    "grace_time_s": 30,      # a preempted debug job's warning → its cancel (Slurm: 0)
}


def binaries() -> dict[str, str | None]:
    return {
        "munged": which("munged", *SBIN),
        "slurmctld": which("slurmctld", *SBIN),
        "slurmd": which("slurmd", *SBIN),
        "sbatch": which("sbatch"),
        "squeue": which("squeue"),
        "sinfo": which("sinfo"),
        "scontrol": which("scontrol"),
        "scancel": which("scancel"),
    }


def missing_binaries() -> list[str]:
    missing = [k for k, v in binaries().items() if v is None]
    if os.geteuid() != 0:
        missing.append("root (munged, slurmctld and slurmd run as root here)")
    return missing


def env(root: Path) -> dict[str, str]:
    """os.environ plus this bed's SLURM_CONF: what sbatch/squeue/scontrol/scancel need."""
    e = dict(os.environ)
    e["SLURM_CONF"] = str(Path(root).absolute() / "slurm.conf")
    return e


def node_facts() -> dict[str, str]:
    """``slurmd -C``'s node line as a dict (NodeName, CPUs, ..., RealMemory)."""
    r = run([binaries()["slurmd"] or "slurmd", "-C"], timeout=30)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("NodeName=")), None)
    if r.returncode or not line:
        raise BedError(f"slurmd -C failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-500:]}")
    return dict(kv.split("=", 1) for kv in line.split())


def _make_key(path: Path) -> None:
    mk = which("mungekey", *SBIN)
    if mk:
        r = run([mk, "--create", f"--keyfile={path}"], timeout=30)
        if r.returncode == 0 and path.exists():
            os.chmod(path, 0o400)
            return
    with open(path, "wb") as fh:
        fh.write(os.urandom(1024))
    os.chmod(path, 0o400)


def _spawn(cmd: list[str], out: Path, extra_env: dict | None = None) -> int:
    e = dict(os.environ)
    e.update(extra_env or {})
    with open(out, "ab") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, env=e)
    return proc.pid


def _start_munged(root: Path) -> tuple[int, Path]:
    m = root / "munge"
    m.mkdir(exist_ok=True)
    os.chmod(m, 0o755)
    key, sock = m / "munge.key", m / "munge.socket"
    if not key.exists():
        _make_key(key)
    log = root / "log" / "munged.log"
    pid = _spawn([binaries()["munged"], "-F", "--force", f"--socket={sock}", f"--key-file={key}",
                  f"--pid-file={m / 'munged.pid'}", f"--log-file={log}", f"--seed-file={m / 'munged.seed'}",
                  "--num-threads=4"], root / "log" / "munged.out")
    try:
        wait_until(lambda: sock.exists() or not pid_alive(pid), 15, "munged's socket")
    except BedError:
        pass
    if not (pid_alive(pid) and sock.exists()):
        stop_pid(pid)
        raise BedError(f"munged did not start: {log_tails(root, 'munged')}")
    return pid, sock


def write_conf(root: Path, node: dict, ports: tuple[int, int], sock: Path, knobs: dict) -> Path:
    host = socket.gethostname().split(".")[0]
    name = node.get("NodeName", host)
    # RealMemory a little under what slurmd measures: a node that reports less than its
    # configured memory is drained as invalid
    mem = max(1, int(int(node.get("RealMemory", "1024")) * 0.95))
    hw = " ".join(f"{k}={node[k]}" for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                             "ThreadsPerCore") if k in node)
    lines = [
        "# generated by scripts/testbed/slurm.py: a single-node Slurm on loopback for the tests",
        "ClusterName=cis490bed",
        f"SlurmctldHost={name}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={sock},cred_expire={knobs['cred_expire_s']}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=1,bf_interval=1,sched_min_interval=100000",
        f"MinJobAge={knobs['min_job_age_s']}",
        f"KillWait={knobs['kill_wait_s']}",
        "OverTimeLimit=0",
        "MessageTimeout=10",
        "InactiveLimit=0",
        "JobRequeue=1",
        # preemption as many clusters have it: a job of the higher tier cancels a debug job
        # after GraceTime, and the job's own --signal (the pilots' USR1) is its warning
        "PreemptType=preempt/partition_prio",
        "PreemptMode=CANCEL",
        "SlurmctldParameters=preempt_send_user_signal",
        "ReturnToService=2",
        "SlurmdTimeout=300",
        "SlurmctldTimeout=300",
        f"NodeName={name} NodeAddr=127.0.0.1 NodeHostname={host} {hw} RealMemory={mem} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={name} Default=YES MaxTime=INFINITE State=UP PriorityTier=1 "
        f"PreemptMode=CANCEL GraceTime={knobs['grace_time_s']}",
        f"PartitionName={URGENT} Nodes={name} Default=NO MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF",
        "",
    ]
    conf = root / "slurm.conf"
    conf.write_text("\n".join(lines))
    return conf


def log_tails(root: Path, *names: str, n: int = 1500) -> str:
    names = names or ("munged", "slurmctld", "slurmd")
    parts = []
    for name in names:
        for suffix in ("log", "out"):
            text = tail(root / "log" / f"{name}.{suffix}", n).strip()
            if text:
                parts.append(f"--- {name}.{suffix} ---\n{text}")
    return "\n".join(parts) or "no logs"


def node_state(root: Path) -> str:
    # -p: the node is in both partitions, and `sinfo -N` prints it once per partition
    r = run([binaries()["sinfo"], "-h", "-N", "-p", PARTITION, "-o", "%T"], env=env(root), timeout=15)
    return r.stdout.strip() if r.returncode == 0 else ""


def version(root: Path) -> str:
    r = run([binaries()["sinfo"], "-V"], env=env(root), timeout=15)
    return r.stdout.strip()


def status(root: Path) -> dict | None:
    root = Path(root).absolute()
    st = read_state(root)
    if not st:
        return None
    st["alive"] = {k: pid_alive(st.get(f"{k}_pid")) for k in ("munged", "slurmctld", "slurmd")}
    st["node_state"] = node_state(root) if st["alive"]["slurmctld"] else ""
    st["healthy"] = all(st["alive"].values()) and st["node_state"] in ("idle", "mixed", "allocated")
    return st


def up(root: Path, *, timeout: float = 45.0, **knobs) -> dict:
    root = Path(root).absolute()
    missing = missing_binaries()
    if missing:
        raise BedError(f"the Slurm test bed needs {', '.join(missing)} ({INSTALL})")
    unknown = set(knobs) - set(DEFAULTS)
    if unknown:
        raise BedError(f"unknown Slurm bed settings: {sorted(unknown)}")
    knobs = {**DEFAULTS, **knobs}
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # munged wants every directory above its socket searchable by all
    st = status(root)
    if st and st["healthy"]:
        return st
    if st:
        down(root)
    for d in ("log", "state", "spool"):
        (root / d).mkdir(exist_ok=True)
    t0 = time.monotonic()
    state: dict = {"bed": "slurm", "root": str(root), "conf": str(root / "slurm.conf"),
                   "partition": PARTITION, "knobs": knobs,
                   "logs": {k: str(root / "log" / f"{k}.log") for k in ("munged", "slurmctld", "slurmd")}}
    try:
        state["munged_pid"], sock = _start_munged(root)
        write_state(root, state)
        node = node_facts()
        ctld_port, d_port = free_ports(2)
        conf = write_conf(root, node, (ctld_port, d_port), sock, knobs)
        state.update(node=node.get("NodeName"), ports={"slurmctld": ctld_port, "slurmd": d_port})
        e = {"SLURM_CONF": str(conf)}
        # -i: ignore (and so never trip over) saved state from an earlier bed in DIR
        state["slurmctld_pid"] = _spawn([binaries()["slurmctld"], "-D", "-i", "-f", str(conf)],
                                        root / "log" / "slurmctld.out", e)
        write_state(root, state)
        state["slurmd_pid"] = _spawn([binaries()["slurmd"], "-D", "-f", str(conf)], root / "log" / "slurmd.out", e)
        write_state(root, state)

        def ready():
            for k in ("slurmctld", "slurmd"):
                if not pid_alive(state[f"{k}_pid"]):
                    raise BedError(f"{k} exited")
            return node_state(root) == "idle"

        try:
            wait_until(ready, timeout, "the node to be idle in sinfo", step=0.2)
        except BedError as exc:
            raise BedError(f"{exc}; node state {node_state(root)!r}\n{log_tails(root)}") from None
        state["version"] = version(root)
        state["up_s"] = round(time.monotonic() - t0, 2)
        write_state(root, state)
    except BaseException:
        down(root)
        raise
    return status(root)


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _ancestors() -> set[int]:
    """This process and its parents (never to be killed, whatever their environment)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        pid = _ppid(pid)
    return pids


def _processes() -> dict[int, int]:
    """pid → parent pid of every process."""
    procs = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            procs[int(p.name)] = _ppid(int(p.name))
    return procs


def _bed_pids(conf: str, spare: set[int]) -> list[int]:
    """The processes of this bed: every process whose environment says SLURM_CONF=conf
    (slurmstepd, the jobs' processes) and all their descendants (a job started with
    ``--export=NONE`` has no SLURM_CONF), but the ``spare`` ones and their children,
    this process and its parents."""
    want = f"SLURM_CONF={conf}".encode()
    ours = _ancestors()
    procs = _processes()
    found = set()
    for pid, ppid in procs.items():
        if pid in ours or pid in spare or ppid in spare:
            continue
        try:
            if want in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.add(pid)
        except OSError:
            continue
    grew = True
    while grew:
        more = {pid for pid, ppid in procs.items() if ppid in found and pid not in found and pid not in ours}
        found |= more
        grew = bool(more)
    return sorted(found)


def _kill_strays(conf: str, spare: set[int]) -> None:
    for _ in range(5):  # re-read: a job may fork while we look
        stray = _bed_pids(conf, spare)
        if not stray:
            return
        for p in stray:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.1)


def down(root: Path) -> None:
    root = Path(root).absolute()
    st = read_state(root)
    if not st:
        return
    conf = st.get("conf", str(root / "slurm.conf"))
    if pid_alive(st.get("slurmctld_pid")) and binaries()["scancel"]:
        run([binaries()["scancel"], "--full", "--quiet", "-u", getpass.getuser()], env=env(root), timeout=15)
    daemons = {st.get(f"{k}_pid") for k in ("slurmd", "slurmctld", "munged")} - {None}
    # what outlives scancel (slurmstepd gives a job KillWait before its SIGKILL, and slurmd's
    # shutdown waits for it): every process of this bed but the daemons and their helpers
    # (slurmctld's slurmscriptd), SIGKILLed; then the daemons; then anything left
    _kill_strays(conf, daemons)
    for k in ("slurmd", "slurmctld"):
        stop_pid(st.get(f"{k}_pid"))
    _kill_strays(conf, set())
    stop_pid(st.get("munged_pid"))
    os.unlink(root / "state.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("up", "down", "status"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("--cred-expire-s", type=int, default=DEFAULTS["cred_expire_s"])
    ap.add_argument("--kill-wait-s", type=int, default=DEFAULTS["kill_wait_s"])
    ap.add_argument("--min-job-age-s", type=int, default=DEFAULTS["min_job_age_s"])
    ap.add_argument("--grace-time-s", type=int, default=DEFAULTS["grace_time_s"])
    args = ap.parse_args(argv)
    try:
        if args.action == "up":
            st = up(args.dir, cred_expire_s=args.cred_expire_s, kill_wait_s=args.kill_wait_s,
                    min_job_age_s=args.min_job_age_s, grace_time_s=args.grace_time_s)
            print(json.dumps(st, indent=1, sort_keys=True))
        elif args.action == "down":
            down(args.dir)
        else:
            st = status(args.dir)
            print(json.dumps(st, indent=1, sort_keys=True))
            return 0 if st and st["healthy"] else 1
    except BedError as exc:
        print(f"Slurm test bed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
