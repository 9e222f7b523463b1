"""The shared half of the fault-injection beds (tmpfs faults, sshfs drops and hangs).

One run: smoke jobs enqueued on a spool, ``work --drain`` worker processes (one
slot each, their own host ids and local scratch) on one or more views of it, a
fault injected by the test while they train, then the audit read on the
*truth* view (the local root, or the sshfs server's export): every job done,
none failed, each attempt counted once, every worker exits 0, no orphan job
process, ``fsck`` clean without ``--repair``. The figures go to
``bench/out/faults_<name>.json`` (and, by hand, to ``docs/TESTBEDS.md``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cis490.fleet import JobState, Spool
from cis490.fleet.attempts import counted_attempts, list_attempts
from cis490.fleet.faults import Fault

from .harness import BIN, OUT, job_processes

RECOVERED = re.compile(r"spool available again after ([0-9.]+) s")
LEASE_LOST = re.compile(r"lease on \S+ lost")


def enqueue_smoke(spool_root: Path, truth_root: Path, tmp_path: Path, n: int, *, mode: str,
                  seconds: float) -> set[str]:
    """``n`` distinct smoke jobs of ``seconds`` each; their names, read on the truth view."""
    jobs = "".join(f'\n[[jobs]]\nmodel = "smoke"\nmode = "{mode}"\n'
                   f'hyper = {{ seconds = {seconds}, payload = "{mode}-{i}", epochs = 2 }}\n'
                   for i in range(n))
    (tmp_path / "m.toml").write_text(jobs)
    Spool.open(spool_root).reload(tmp_path / "m.toml")
    truth = Spool.open(truth_root)
    names = {truth.name_of(l) for l in truth.scan(JobState.PENDING)}
    assert len(names) == n
    return names


@dataclass
class Workers:
    """``work --drain`` processes, one per entry of ``roots`` (a spool view each)."""

    roots: list[Path]
    tmp_path: Path
    prefix: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    t0: float = 0.0

    def __enter__(self) -> "Workers":
        self.t0 = time.monotonic()
        for i, root in enumerate(self.roots):
            log = self.tmp_path / f"worker{i}.log"
            self.logs.append(log)
            with open(log, "wb") as fh:
                self.procs.append(subprocess.Popen(
                    [sys.executable, str(BIN), "--spool", str(root), "work", "--drain",
                     "--slots", "1", "--host-id", f"{self.prefix}-{i}", "--poll-s", "0.2",
                     "--work-dir", str(self.tmp_path / f"work{i}")],
                    stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT))
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def wait_first_done(self, truth_root: Path, limit_s: float = 60) -> None:
        while not list((truth_root / "done").iterdir()):
            assert time.monotonic() - self.t0 < limit_s, "no job finished before the fault"
            assert all(p.poll() is None for p in self.procs), self.tails()
            time.sleep(0.1)

    def wait(self, timeout: float) -> list[int]:
        return [p.wait(timeout=timeout) for p in self.procs]

    def texts(self) -> list[str]:
        return [log.read_text(errors="replace") for log in self.logs]

    def tails(self, n: int = 3000) -> list[str]:
        return [t[-n:] for t in self.texts()]


def audit(name: str, truth_root: Path, names: set[str], workers: Workers, codes: list[int],
          **extra) -> dict:
    """The figures of one run, read on the truth view, written to ``bench/out``."""
    text = workers.texts()
    truth = Spool.open(truth_root)
    done = {truth.name_of(l) for l in truth.scan(JobState.DONE)}
    failed = {truth.name_of(l) for l in truth.scan(JobState.FAILED)}
    charged = {n: counted_attempts(truth.attempts_dir(n)) for n in sorted(names)}
    recoveries = [float(x) for t in text for x in RECOVERED.findall(t)]
    fsck = subprocess.run([sys.executable, str(BIN), "--spool", str(truth_root), "fsck"],
                          capture_output=True, text=True, timeout=120)
    fig = {
        "fault": name, **extra, "jobs": len(names), "workers": len(workers.procs),
        "done": len(done), "failed": len(failed), "lost": len(names - done - failed),
        "attempts_charged_max": max(charged.values()),
        "jobs_charged_twice": sum(1 for c in charged.values() if c > 1),
        "worker_exits": codes, "orphans": len(job_processes(names)),
        "outages_logged": sum(t.count("spool unavailable (") for t in text),
        "longest_recovery_s": max(recoveries) if recoveries else None,
        "hangs_logged": sum(t.count("a spool call has hung") for t in text),
        "lost_leases_logged": sum(len(LEASE_LOST.findall(t)) for t in text),
        "attempts_lost_to_outage": sum(
            1 for n in names for a in list_attempts(truth.attempts_dir(n))[0]
            if (a.record or {}).get("outcome") == "lost"
            and (a.record or {}).get("fault") == Fault.SPOOL_UNAVAILABLE.value),
        "fsck_rc": fsck.returncode, "fsck": fsck.stdout.strip().splitlines()[-1:],
        "wall_s": round(time.monotonic() - workers.t0, 1),
        "_done": sorted(done), "_failed": sorted(failed), "_charged": charged,
        "_fsck_out": fsck.stdout + fsck.stderr,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in fig.items() if not k.startswith("_")}
    (OUT / f"faults_{name}.json").write_text(json.dumps(public, indent=1))
    print(json.dumps(public))
    return fig


def assert_charged_to_no_job(fig: dict, names: set[str], workers: Workers) -> None:
    """Every job done, none failed, each counted once, workers exit 0, no orphan, fsck clean."""
    assert fig["worker_exits"] == [0] * len(workers.procs), workers.tails()
    assert set(fig["_done"]) == names and not fig["_failed"], (fig, workers.tails())
    assert all(c == 1 for c in fig["_charged"].values()), fig["_charged"]
    assert fig["orphans"] == 0
    assert fig["fsck_rc"] == 0, fig["_fsck_out"]
