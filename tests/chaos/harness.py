"""Chaos runs: real worker processes over smoke jobs while a killer SIGKILLs them.

One run = init a spool, enqueue N distinct smoke jobs, start workers
(``bin/cis490-spool work`` daemons, one slot each, each with its own host id
so the host-local slot locks do not serialise them) on one or more *views*
of the spool (the same local directory; two sshfs mounts; two Syncthing
copies), SIGKILL a random worker every few seconds and start a fresh one in
its place, stop everything (SIGTERM) once every job is terminal, then audit.

What "live" means in the audit (docs/SPOOL.md: "a job is never claimed by two
live workers at once"): a worker is live while its process runs AND its
claim is still its own. An attempt's live interval is therefore
[claimed_at, end] where end is

- ``ended_at`` of its record when the worker finished it (done, failed,
  released, or ``lost`` — see below);
- the time we SIGKILLed its worker, when the record still says ``running``
  (the kill is recorded by the killer; the job process dies with the worker
  through the parent-death signal, which the orphan check verifies).

Two intervals of one job that overlap are a **duplicated run**, with one
exception that the design allows and the audit counts separately: the
earlier attempt's outcome is ``lost`` (its heartbeat looked older than
``stale_after_s`` — e.g. a starved process — so a sweeper took the claim
back and the worker found out at its next heartbeat and killed its job). Such
a worker was not live by the design's definition; the overlap is bounded by
one heartbeat period, and the audit reports how many and how long.

A claim whose worker died before it wrote an attempt record leaves no
interval at all; it is reclaimed like any other stale claim.

``done_twice`` counts jobs with two attempt records saying ``done``. The
worker writes its record (outcome ``done``, ``ended_at``) *before* the rename
``claimed → done`` (docs/SPOOL.md: the record is durable first), so a SIGKILL
between the two leaves a record saying done beside a claim that is later
reclaimed and run again. Its interval ended before the next claim, so it is
not a duplicated run; it is reported, not failed.

In ``eventual`` mode rival claims overlap by design: the audit then counts
``duplicate_trainings`` (trainings beyond one per job, including reruns after
kills) and ``concurrent_trainings`` (jobs trained by two workers at
overlapping times) instead of failing on overlaps.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin" / "cis490-spool"
OUT = REPO / "bench" / "out"
STATES = ("pending", "claimed", "done", "failed", "cancelled")
TERMINAL = ("done", "failed", "cancelled")


@dataclass
class ChaosConfig:
    name: str                              # figures go to bench/out/chaos_<name>.json
    views: list[Path]                      # one spool path per view (same spool)
    workers_per_view: int
    jobs: int
    seconds: tuple[float, float] = (0.05, 0.3)   # smoke job length, uniform
    heartbeat_s: float = 0.2
    stale_after_s: float = 2.0
    max_attempts: int = 6
    consistency: str = "atomic"
    settle_s: float | None = None
    kill_every_s: tuple[float, float] | None = (2.0, 4.0)   # None: no kills
    deadline_s: float = 240.0              # hard bound of the run (workers stopped then)
    poll_s: float = 0.2
    seed: int = 490
    # eventual mode: called after init/reload (before workers start) and before the audit
    sync: object = None
    audit_views: list[Path] | None = None  # copies whose states are audited (default: [audit_root])
    audit_root: Path | None = None         # where progress is watched and attempts/fsck are read
                                           # (default views[0]; sshfs: the server's export)


@dataclass
class WorkerRun:
    slot: str
    view: int
    pid: int
    started_at: float
    killed_at: float | None = None
    exit_code: int | None = None
    stopped: bool = False                  # SIGTERMed by the harness at the end
    log_offset: int = 0                    # where its output starts in the slot's log


@dataclass
class Figures:
    fs: str
    jobs: int
    workers: int
    kills: int = 0
    wall_s: float = 0.0
    terminal: dict = field(default_factory=dict)
    lost: int = 0
    not_terminal: int = 0
    multi_state: int = 0
    duplicated: int = 0                    # jobs run by two live workers at once
    done_twice: int = 0                    # jobs with >1 attempt record saying done (see module doc)
    trainings: int = 0                     # attempts whose job process started training
    duplicate_trainings: int = 0           # trainings beyond one per job (kills' reruns included)
    concurrent_trainings: int = 0          # jobs trained by two workers at overlapping times
    withdrawn: int = 0                     # eventual mode: attempts that lost the tie-break
    records_left_running: int = 0          # eventual mode: lease lost in settle, record not closed
    lease_lost_overlaps: int = 0           # allowed: see the module doc
    max_lease_lost_overlap_s: float = 0.0
    attempts: int = 0
    reruns: int = 0                        # attempts beyond the first
    killed_running_jobs: int = 0           # kills that hit a worker with a job
    max_kill_to_reclaim_s: float | None = None
    mean_kill_to_reclaim_s: float | None = None
    orphans: int = 0
    fsck_ok: bool | None = None
    fsck_errors: list = field(default_factory=list)
    fsck_warnings: int = 0
    anomalies: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    kill_log: list = field(default_factory=list)  # [pid, slot, time] of every SIGKILL


def cli(view: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BIN), "--spool", str(view), *args], capture_output=True,
                          text=True, timeout=timeout)


def manifest_text(cfg: ChaosConfig) -> str:
    rng = random.Random(cfg.seed)
    lo, hi = cfg.seconds
    jobs = []
    for i in range(cfg.jobs):
        s = round(rng.uniform(lo, hi), 3)
        jobs.append(f'\n[[jobs]]\nmodel = "smoke"\nmode = "chaos"\n'
                    f'hyper = {{ seconds = {s}, payload = "{cfg.name}-{i}", epochs = 1 }}\n')
    return "".join(jobs)


def job_processes(names: set[str]) -> list[int]:
    """Live processes whose environment says they run one of ``names``."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if ") Z " in stat:
            continue
        for item in env:
            if item.startswith(b"CIS490_JOB=") and item[11:].decode(errors="replace") in names:
                pids.append(int(d.name))
                break
    return pids


def pid_of_worker(worker_id: str) -> int | None:
    m = re.match(r"^.*-([0-9]+)-[0-9a-f]{6}$", worker_id)
    return int(m.group(1)) if m else None


class Chaos:
    def __init__(self, cfg: ChaosConfig, workdir: Path):
        self.cfg = cfg
        self.workdir = workdir
        self.rng = random.Random(cfg.seed + 1)
        self.slots: dict[str, subprocess.Popen] = {}
        self.runs: dict[int, WorkerRun] = {}
        self.kills: list[tuple[int, float]] = []
        self.names: set[str] = set()
        (workdir / "logs").mkdir(parents=True, exist_ok=True)

    # --- processes -----------------------------------------------------------------

    def start(self, slot: str, view: int) -> None:
        log = open(self.workdir / "logs" / f"{slot}.log", "ab")
        offset = log.tell()
        proc = subprocess.Popen(
            [sys.executable, str(BIN), "--spool", str(self.cfg.views[view]), "work",
             "--host-id", f"chaos-{slot}", "--slots", "1", "--poll-s", str(self.cfg.poll_s),
             "--work-dir", str(self.workdir / "scratch" / slot)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.slots[slot] = proc
        self.runs[proc.pid] = WorkerRun(slot, view, proc.pid, time.time(), log_offset=offset)

    def kill_one(self) -> None:
        alive = [s for s, p in self.slots.items() if p.poll() is None]
        if not alive:
            return
        slot = self.rng.choice(alive)
        proc = self.slots[slot]
        proc.send_signal(signal.SIGKILL)
        t = time.time()
        proc.wait()
        self.runs[proc.pid].killed_at = t
        self.runs[proc.pid].exit_code = proc.returncode
        self.kills.append((proc.pid, t))
        self.start(slot, self.runs[proc.pid].view)

    def stop_all(self) -> None:
        for p in self.slots.values():
            if p.poll() is None:
                self.runs[p.pid].stopped = True
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in self.slots.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            self.runs[p.pid].exit_code = p.returncode

    # --- spool views ------------------------------------------------------------------

    def states(self, view: Path) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = defaultdict(list)
        for st in STATES:
            for entry in os.scandir(view / st):
                if not entry.name.endswith(".json"):
                    continue
                seen[entry.name[:-5].split("@")[0]].append(st)
        return seen

    @property
    def root(self) -> Path:
        return self.cfg.audit_root or self.cfg.views[0]

    def terminal_count(self) -> int:
        seen = self.states(self.root)
        return sum(1 for n in self.names if any(s in TERMINAL for s in seen.get(n, [])))

    # --- the run ----------------------------------------------------------------------

    def run(self) -> Figures:
        cfg = self.cfg
        v0 = cfg.views[0]
        init = ["init", "--heartbeat-s", str(cfg.heartbeat_s), "--stale-after-s", str(cfg.stale_after_s),
                "--max-attempts", str(cfg.max_attempts), "--consistency", cfg.consistency]
        if cfg.settle_s is not None:
            init += ["--settle-s", str(cfg.settle_s)]
        r = cli(v0, *init)
        assert r.returncode == 0, r.stderr
        mpath = self.workdir / "manifest.toml"
        mpath.write_text(manifest_text(cfg))
        r = cli(v0, "reload", "--json", str(mpath))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["new"] == cfg.jobs, r.stdout
        self.names = {e.name[:-5] for e in os.scandir(v0 / "pending") if e.name.endswith(".json")}
        assert len(self.names) == cfg.jobs
        if cfg.sync:
            cfg.sync()
        for view in cfg.views[1:]:  # every host runs init (idempotent; writes its own .stignore)
            if not (view / "spool.toml").exists():
                raise AssertionError(f"{view} has no spool.toml: the spool did not reach this view")
            r = cli(view, *init)
            assert r.returncode == 0, r.stderr
        t0 = time.time()
        n = 0
        for vi in range(len(cfg.views)):
            for k in range(cfg.workers_per_view):
                self.start(f"v{vi}w{k}", vi)
                n += 1
        next_kill = time.monotonic() + (self.rng.uniform(*cfg.kill_every_s) if cfg.kill_every_s else 1e9)
        deadline = time.monotonic() + cfg.deadline_s
        try:
            while time.monotonic() < deadline:
                if self.terminal_count() >= cfg.jobs:
                    break
                if time.monotonic() >= next_kill:
                    self.kill_one()
                    next_kill = time.monotonic() + self.rng.uniform(*cfg.kill_every_s)
                for slot, p in list(self.slots.items()):  # a worker that exited on its own: note, restart
                    if p.poll() is not None and self.runs[p.pid].killed_at is None:
                        self.runs[p.pid].exit_code = p.returncode
                        self.start(slot, self.runs[p.pid].view)
                time.sleep(0.2)
        finally:
            self.stop_all()
        wall = time.time() - t0
        if cfg.sync:
            cfg.sync()
        fig = self.audit(wall, n)
        self.write(fig)
        return fig

    # --- the audit ---------------------------------------------------------------------

    def audit(self, wall: float, n_workers: int) -> Figures:
        cfg = self.cfg
        fig = Figures(fs=cfg.name, jobs=cfg.jobs, workers=n_workers, kills=len(self.kills), wall_s=round(wall, 1),
                      kill_log=[[pid, self.runs[pid].slot, round(t, 3)] for pid, t in self.kills],
                      settings={"heartbeat_s": cfg.heartbeat_s, "stale_after_s": cfg.stale_after_s,
                                "max_attempts": cfg.max_attempts, "consistency": cfg.consistency,
                                "settle_s": cfg.settle_s, "kill_every_s": cfg.kill_every_s,
                                "views": len(cfg.views), "workers_per_view": cfg.workers_per_view,
                                "smoke_seconds": cfg.seconds})
        for p, run in self.runs.items():
            if run.killed_at is None and not run.stopped and run.exit_code not in (0, None):
                fig.anomalies.append(f"worker {run.slot} pid {p} exited {run.exit_code} unasked; "
                                     f"its last output: {self.log_tail(run)!r}")
        # 1. states: every job in exactly one terminal state, none lost
        for view in (cfg.audit_views or [self.root]):
            seen = self.states(view)
            terminal = Counter()
            for name in self.names:
                st = seen.get(name, [])
                if not st:
                    fig.lost += 1
                elif len(st) > 1:
                    fig.multi_state += 1
                    fig.anomalies.append(f"{name} in {st} on {view}")
                elif st[0] not in TERMINAL:
                    fig.not_terminal += 1
                else:
                    terminal[st[0]] += 1
            extra = set(seen) - self.names
            if extra:
                fig.anomalies.append(f"unknown names in {view}: {sorted(extra)[:5]}")
            fig.terminal = dict(terminal)
        # 2. attempts: intervals of live workers must not overlap
        killed = {pid: t for pid, t in self.kills}
        v0 = self.root
        reclaim = []
        for name in sorted(self.names):
            recs = []
            d = v0 / "attempts" / name
            if not d.is_dir():
                continue
            for p in d.iterdir():
                if not re.match(r"^[0-9]+@[a-z0-9-]+\.json$", p.name):
                    continue
                try:
                    recs.append(json.loads(p.read_text()))
                except ValueError as exc:
                    fig.anomalies.append(f"unreadable attempt record {p}: {exc}")
            fig.attempts += len(recs)
            fig.reruns += max(0, len(recs) - 1)
            if sum(1 for r in recs if r.get("outcome") == "done") > 1:
                fig.done_twice += 1
            spans = []
            for r in recs:
                pid = pid_of_worker(r["worker"])
                end = r.get("ended_at")
                if end is None:
                    if pid in killed:
                        end = killed[pid]
                    elif cfg.consistency == "eventual" and not self.trained(name, r, killed):
                        # a lease lost during settle leaves its record saying "running"
                        # (coordinator bug, see tests/chaos/test_findings.py): report it
                        fig.records_left_running += 1
                        end = r["claimed_at"] + (cfg.settle_s or 0)
                    else:
                        fig.anomalies.append(f"{name} attempt {r['attempt']} by {r['worker']} has no end "
                                             f"and its worker was not killed (outcome {r.get('outcome')})")
                        end = float("inf")
                spans.append((r["claimed_at"], end, r))
            spans.sort(key=lambda s: s[0])
            trained = [self.trained(name, r, killed) for _a0, _a1, r in spans]
            fig.trainings += sum(trained)
            fig.duplicate_trainings += max(0, sum(trained) - 1)
            fig.withdrawn += sum(1 for r in recs if r.get("outcome") == "withdrawn")
            dup = concurrent = False
            for i, (a0, a1, ra) in enumerate(spans):
                for j, (b0, _b1, rb) in enumerate(spans[i + 1:], start=i + 1):
                    if b0 < a1 and trained[i] and trained[j]:
                        concurrent = True
                    if b0 < a1:
                        if cfg.consistency == "eventual":
                            continue  # rival claims overlap by design there; counted above
                        if ra.get("outcome") == "lost":
                            fig.lease_lost_overlaps += 1
                            fig.max_lease_lost_overlap_s = max(fig.max_lease_lost_overlap_s, round(a1 - b0, 3))
                        else:
                            dup = True
                            fig.anomalies.append(
                                f"{name}: attempt {ra['attempt']} ({ra['worker']}, {ra.get('outcome')}) "
                                f"[{a0:.3f}, {a1:.3f}] overlaps attempt {rb['attempt']} ({rb['worker']}) from {b0:.3f}")
            fig.duplicated += dup
            fig.concurrent_trainings += concurrent
            # kill → reclaim: the killed attempt's end to the next attempt's claim
            # (by claim time, not attempt number: in eventual mode two sides can both be "attempt 1")
            for r in recs:
                pid = pid_of_worker(r["worker"])
                if r.get("ended_at") is None and pid in killed:
                    fig.killed_running_jobs += 1
                    later = [x["claimed_at"] for x in recs if x is not r and x["claimed_at"] > r["claimed_at"]]
                    if later:
                        reclaim.append(min(later) - killed[pid])
                    elif not any(x.get("outcome") == "done" for x in recs):
                        fig.anomalies.append(f"{name}: killed attempt {r['attempt']} was never reclaimed")
                    # else a rival claim (eventual mode) finished the job: nothing to reclaim
        if reclaim:
            fig.max_kill_to_reclaim_s = round(max(reclaim), 2)
            fig.mean_kill_to_reclaim_s = round(sum(reclaim) / len(reclaim), 2)
        # 3. no orphan job processes (the parent-death signal acts within milliseconds)
        deadline = time.monotonic() + 5
        orphans = job_processes(self.names)
        while orphans and time.monotonic() < deadline:
            time.sleep(0.2)
            orphans = job_processes(self.names)
        fig.orphans = len(orphans)
        if orphans:
            fig.anomalies.append(f"orphan job processes: {orphans}")
        # 4. fsck
        r = cli(v0, "fsck", "--json", timeout=300)
        try:
            out = json.loads(r.stdout)
            fig.fsck_ok = bool(out["ok"]) and r.returncode == 0
            fig.fsck_errors = [f for f in out["findings"] if f["severity"] == "error"][:20]
            fig.fsck_warnings = sum(1 for f in out["findings"] if f["severity"] == "warning")
        except (ValueError, KeyError):
            fig.fsck_ok = False
            fig.fsck_errors = [r.stdout[-500:] + r.stderr[-500:]]
        return fig

    def log_tail(self, run: WorkerRun, n: int = 800) -> str:
        try:
            with open(self.workdir / "logs" / f"{run.slot}.log", "rb") as fh:
                fh.seek(run.log_offset)
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        # the part written by this process only: up to the next worker's banner
        lines = text.splitlines()
        own = []
        for i, line in enumerate(lines):
            if i > 0 and " up: " in line and "cis490.worker: worker" in line:
                break
            own.append(line)
        return "\n".join(own)[-n:]

    def trained(self, name: str, r: dict, killed: dict) -> bool:
        """Did this attempt's job process start training? (records written before the
        eventual mode say nothing: every attempt that got a process counts)."""
        if r.get("training_started") or r.get("outcome") in ("done", "failed"):
            return True
        if r.get("outcome") == "withdrawn":
            return False
        # killed or lost mid-run: a progress record or a log proves the job ran
        stem = f"{r['attempt']}@{r['worker']}"
        return ((self.root / "attempts" / name / f"{stem}.progress.json").exists()
                or (self.root / "logs" / name / f"{stem}.log").exists())

    def write(self, fig: Figures) -> Path:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"chaos_{fig.fs}.json"
        body = asdict(fig)
        body["recorded_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        keys = ("fs", "jobs", "workers", "kills", "lost", "duplicated", "max_kill_to_reclaim_s", "wall_s")
        print("\n[chaos] " + "  ".join(f"{k}={body[k]}" for k in keys) + f"  → {path}")
        return path


def assert_clean(fig: Figures, *, expect_terminal: str = "done", atomic: bool = True) -> None:
    """The verdict of a run; the anomalies come first so a failure says what broke.
    ``atomic=False`` (eventual mode) leaves out the no-two-live-workers check: there
    duplicate training is allowed, rare and bounded, and the caller bounds it."""
    problems = []
    if fig.lost or fig.not_terminal or fig.multi_state:
        problems.append(f"lost {fig.lost}, not terminal {fig.not_terminal}, in several states {fig.multi_state}")
    if fig.terminal != {expect_terminal: fig.jobs}:
        problems.append(f"terminal states {fig.terminal}, expected all {expect_terminal}")
    if atomic and fig.duplicated:
        problems.append(f"duplicated runs (two live workers at once) {fig.duplicated}")
    if fig.orphans:
        problems.append(f"{fig.orphans} orphan job processes")
    if not fig.fsck_ok:
        problems.append(f"fsck: {fig.fsck_errors}")
    if fig.anomalies:
        problems.append(f"anomalies: {fig.anomalies[:10]}")
    assert not problems, "; ".join(problems)
