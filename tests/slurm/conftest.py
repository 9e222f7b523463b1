"""A real single-node Slurm on loopback, started once per test session.

``slurm_cluster`` starts ``scripts/testbed/slurm.py``'s bed in a fresh
``/tmp/cis490-slurm-*`` directory (munged, slurmctld, slurmd; no systemd, no
slurmdbd; ~1.5 s) and yields a :class:`SlurmCluster`. Clients reach it only
through ``SLURM_CONF``: run them with ``cluster.env`` (or ``cluster.run``).
Teardown cancels every job, kills what is left of them, stops the daemons and
removes the directory (kept when ``CIS490_SLURM_KEEP=1``, for its logs).

The fixture FAILS, never skips, when a binary is missing or the tests do not
run as root (``make test`` installs slurmctld, slurmd, slurm-client and munge).
docs/TESTBEDS.md has the configuration and what was measured on it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BED = REPO / "scripts" / "testbed" / "slurm.py"
KEEP_ENV = "CIS490_SLURM_KEEP"


def _load():
    spec = importlib.util.spec_from_file_location("cis490_testbed_slurm", BED)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


slurm_bed = _load()


@dataclass
class SlurmCluster:
    root: Path                  # the bed's directory (slurm.conf, log/, state/, spool/, jobs/)
    conf: Path                  # root/slurm.conf
    env: dict                   # os.environ + SLURM_CONF: pass to every sbatch/squeue/scontrol/scancel
    node: str                   # the one node's name (this host's short name)
    partition: str              # "debug" (the default partition; a job in "urgent" preempts its jobs)
    version: str                # `sinfo -V`, e.g. "slurm-wlm 22.05.8"
    logs: dict                  # {"munged"|"slurmctld"|"slurmd": Path}
    knobs: dict                 # {"cred_expire_s", "kill_wait_s", "min_job_age_s", "grace_time_s"}
    up_s: float                 # seconds the bed took to come up
    jobs_dir: Path = field(init=False)  # default place of the jobs' output files
    state: dict = field(repr=False, default_factory=dict)

    def __post_init__(self):
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(exist_ok=True)

    def run(self, cmd: list[str] | str, *, check: bool = True, timeout: float = 30,
            **kw) -> subprocess.CompletedProcess:
        """Run a client command against this cluster (a string goes through bash -c); text output.

        ``check``: a non-zero exit fails the test with the command's stderr."""
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]
        r = subprocess.run(argv, env={**self.env, **kw.pop("env", {})}, capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and r.returncode:
            pytest.fail(f"{cmd!r} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-1500:]}", pytrace=False)
        return r

    def sbatch(self, *args: str, script: str | Path | None = None, script_args: tuple = (),
               wrap: str | None = None, cwd: str | Path | None = None) -> str:
        """Submit a batch job; → its job id (for ``--array``, the array's id).

        ``args``: sbatch options; then either ``script`` (a file, with ``script_args``) or
        ``wrap`` (a shell command). Without ``-o``/``--output`` the output goes to
        ``jobs_dir/%x-%j.out``; the job starts in ``cwd`` (default ``jobs_dir``)."""
        argv = ["sbatch", "--parsable", *args]
        if not any(a == "-o" or a.startswith(("--output", "-o")) for a in args):
            argv.insert(2, f"--output={self.jobs_dir}/%x-%j.out")
        if wrap is not None:
            argv.append(f"--wrap={wrap}")
        if script is not None:
            argv += [str(script), *map(str, script_args)]
        r = self.run(argv, cwd=cwd or self.jobs_dir)
        return r.stdout.strip().split(";")[0]

    def squeue(self, job_id: str | None = None, fmt: str = "%i %T %r") -> list[str]:
        """The lines ``squeue -h -o FMT [-j JOB]`` prints (pending/running/completing jobs only);
        [] for a job the controller has forgotten (MinJobAge after it ended)."""
        argv = ["squeue", "-h", "-o", fmt] + (["-j", str(job_id)] if job_id is not None else [])
        r = self.run(argv, check=False)
        if r.returncode:
            if "Invalid job id" in r.stderr:
                return []
            pytest.fail(f"squeue failed: {r.stderr.strip()}\n{self.log_tails()}", pytrace=False)
        return [ln for ln in r.stdout.splitlines() if ln.strip()]

    def wait_gone(self, job_id: str, timeout: float = 60.0, step: float = 0.2) -> float:
        """Wait until squeue no longer lists ``job_id`` (for an array id: any of its tasks);
        → the seconds it took. Fails the test, with the queue and the logs, on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.squeue(job_id):
                return time.monotonic() - t0
            time.sleep(step)
        pytest.fail(f"job {job_id} still queued after {timeout:g}s: {self.squeue(job_id)}\n{self.log_tails()}",
                    pytrace=False)

    def job_info(self, job_id: str) -> list[dict]:
        """``scontrol show job -o JOB`` as one dict per record (an array gives one per task);
        [] once the controller has forgotten the job (``knobs['min_job_age_s']`` after it ended)."""
        r = self.run(["scontrol", "show", "job", "-o", str(job_id)], check=False)
        if r.returncode:
            return []
        out = []
        for line in r.stdout.splitlines():
            rec = {}
            for kv in line.split():
                if "=" in kv:
                    k, v = kv.split("=", 1)
                    rec[k] = v
            if rec:
                out.append(rec)
        return out

    def cpus(self) -> int:
        """The node's CPU count (``scontrol show node`` CPUTot): a job asking for all of them
        holds the whole node."""
        [line] = [ln for ln in self.run(["scontrol", "show", "node", "-o", self.node]).stdout.splitlines() if ln]
        return int(next(kv for kv in line.split() if kv.startswith("CPUTot=")).split("=", 1)[1])

    def log_tails(self, n: int = 1500) -> str:
        return slurm_bed.log_tails(self.root, n=n)


def _missing_line(missing: list[str]) -> str:
    return (f"the Slurm test bed needs {', '.join(missing)} ({slurm_bed.INSTALL}; "
            "`make test` installs them when run as root)")


@pytest.fixture(scope="session")
def slurm_cluster():
    """A single-node Slurm (partition ``debug``) for the whole session; see SlurmCluster."""
    missing = slurm_bed.missing_binaries()
    if missing:
        pytest.fail(_missing_line(missing), pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="cis490-slurm-", dir="/tmp"))
    try:
        st = slurm_bed.up(root)
    except slurm_bed.BedError as exc:
        slurm_bed.down(root)
        pytest.fail(f"Slurm test bed did not start ({root}): {exc}", pytrace=False)
    try:
        yield SlurmCluster(root=root, conf=Path(st["conf"]), env=slurm_bed.env(root), node=st["node"],
                           partition=st["partition"], version=st["version"],
                           logs={k: Path(v) for k, v in st["logs"].items()}, knobs=dict(st["knobs"]),
                           up_s=st["up_s"], state=st)
    finally:
        slurm_bed.down(root)
        if os.environ.get(KEEP_ENV) == "1":
            print(f"\n[slurm bed] kept {root} ({KEEP_ENV}=1)")
        else:
            shutil.rmtree(root, ignore_errors=True)
