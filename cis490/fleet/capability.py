"""Capability self-detection and job eligibility.

Detection is stdlib first (hostname, OS, cores, RAM, disk, python, git
commit); package versions come from metadata, without importing torch or
xgboost. GPUs come from ``nvidia-smi`` when present; only then is torch asked,
in a subprocess with a timeout, whether CUDA is usable (a CPU host never pays
for importing torch).

``eligible()`` is a pure function of a spec, a capability record, the host's
policy, the live workers and "now": the table tests drive it directly.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from cis490.fleet.manifest import HostPolicy
from cis490.fleet import kinds as job_kinds
from cis490.fleet.spec import JobSpec


@dataclass(frozen=True)
class GPU:
    name: str
    vram_gib: float


@dataclass(frozen=True)
class Capability:
    host_id: str
    hostname: str = ""
    os: str = ""
    cores: int = 1
    ram_gib: float = 0.0
    cuda: bool = False
    gpus: tuple[GPU, ...] = ()
    python: str = ""
    torch: str | None = None
    xgboost: str | None = None
    git_commit: str | None = None
    free_disk_gib: float | None = None
    kinds: tuple[str, ...] = field(default_factory=lambda: job_kinds.names())

    @property
    def max_vram_gib(self) -> float:
        return max((g.vram_gib for g in self.gpus), default=0.0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gpus"] = [asdict(g) for g in self.gpus]
        d["kinds"] = list(self.kinds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Capability":
        known = set(cls.__dataclass_fields__)
        d = {k: v for k, v in d.items() if k in known}
        d["gpus"] = tuple(GPU(str(g.get("name", "")), float(g.get("vram_gib", 0)))
                          for g in d.get("gpus", []) if isinstance(g, dict))
        d["kinds"] = tuple(d.get("kinds", ()))
        return cls(**d)


def _ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # Windows
        try:
            import ctypes

            class MEMORYSTATUSEX(ctypes.Structure):
                _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                            ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                            ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                            ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                            ("sullAvailExtendedVirtual", ctypes.c_ulonglong)]
            stat = MEMORYSTATUSEX()
            stat.dwLength = ctypes.sizeof(stat)
            ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(stat))  # type: ignore[attr-defined]
            return stat.ullTotalPhys / 2**30
        except Exception:
            return 0.0


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_path = root / ".git" / ref[5:]
            if ref_path.is_file():
                return ref_path.read_text().strip()
            packed = root / ".git" / "packed-refs"
            for line in packed.read_text().splitlines() if packed.is_file() else []:
                if line.endswith(" " + ref[5:]):
                    return line.split()[0]
            return None
        return ref
    except OSError:
        return None


def _nvidia_gpus(timeout: float = 10.0) -> tuple[GPU, ...]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return ()
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.splitlines():
        name, _, mib = line.rpartition(",")
        try:
            gpus.append(GPU(name.strip(), round(float(mib) / 1024, 1)))
        except ValueError:
            continue
    return tuple(gpus)


def _torch_cuda(timeout: float = 60.0) -> bool:
    code = "import torch,sys; sys.stdout.write('1' if torch.cuda.is_available() else '0')"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() == "1"


def missing_requirement(kind: job_kinds.JobKind) -> tuple[str, str] | None:
    """The first ``(distribution, pip extra)`` the kind requires that is not installed here;
    judged from the installed distributions' metadata, like torch and xgboost: nothing imported."""
    for dist, extra in kind.requires:
        if _version(dist) is None:
            return dist, extra
    return None


def available_kinds() -> tuple[str, ...]:
    """The registered job kinds this host can run: those whose required libraries are installed."""
    return tuple(k.name for k in job_kinds.all_kinds() if missing_requirement(k) is None)


def detect(host_id: str | None = None, spool_root: str | os.PathLike | None = None) -> Capability:
    """Detect this host's capability (a few ms on a CPU host)."""
    hostname = socket.gethostname()
    gpus = _nvidia_gpus()
    torch_v = _version("torch")
    cuda = bool(gpus) and torch_v is not None and _torch_cuda()
    free = None
    if spool_root is not None:
        try:
            free = round(shutil.disk_usage(spool_root).free / 2**30, 1)
        except OSError:
            free = None
    return Capability(
        host_id=host_id or hostname,
        hostname=hostname,
        os=f"{platform.system()} {platform.release()}",
        cores=os.cpu_count() or 1,
        ram_gib=round(_ram_gib(), 1),
        cuda=cuda,
        gpus=gpus,
        python=platform.python_version(),
        torch=torch_v,
        xgboost=_version("xgboost"),
        git_commit=_git_commit(),
        free_disk_gib=free,
        kinds=available_kinds(),
    )


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    later: bool = False  # not yet decided (e.g. a memory estimate under way): ask again


def eligible(
    spec: JobSpec,
    cap: Capability,
    policy: HostPolicy,
    *,
    waited_s: float = 0.0,
    cuda_peer_available: bool = False,
    prefer_cuda_grace_s: float = 1800.0,
) -> Verdict:
    """May this host run this job now?

    ``cuda_peer_available``: a live CUDA worker that is itself eligible for the
    job exists; a non-CUDA host then leaves a ``prefer_cuda`` job alone until
    the job has waited ``prefer_cuda_grace_s``.
    """
    c = spec.constraints
    if spec.model not in cap.kinds:
        kind = job_kinds.get(spec.model)
        missing = missing_requirement(kind) if kind is not None else None
        if missing is not None:
            dist, extra = missing
            return Verdict(False, f"job kind {spec.model!r} needs the optional library {dist}, "
                                  f"absent on this host (pip install 'cis490[{extra}]')")
        return Verdict(False, f"this worker does not know job kind {spec.model!r}")
    if not policy.permits(spec.model, spec.mode):
        return Verdict(False, "host policy (allow_jobs/deny_jobs) excludes it")
    if c.allowed_hosts and cap.host_id not in c.allowed_hosts:
        return Verdict(False, "host not in allowed_hosts")
    if c.require_cuda and not cap.cuda:
        return Verdict(False, "requires CUDA")
    if c.min_vram_gib > 0 and cap.max_vram_gib < c.min_vram_gib:
        return Verdict(False, f"needs {c.min_vram_gib:g} GiB VRAM, has {cap.max_vram_gib:g}")
    if c.min_ram_gib > 0 and cap.ram_gib < c.min_ram_gib:
        return Verdict(False, f"needs {c.min_ram_gib:g} GiB RAM, has {cap.ram_gib:g}")
    if c.prefer_cuda and not cap.cuda and cuda_peer_available and waited_s < prefer_cuda_grace_s:
        return Verdict(False, "prefers CUDA and a CUDA host is live (grace period not over)")
    return Verdict(True)
