"""Fixtures for the coordinator tests: a fresh spool, manifests, CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cis490.fleet.capability import Capability
from cis490.fleet.claim import WorkerInfo
from cis490.fleet.spool import Spool

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin" / "cis490-spool"


@pytest.fixture
def spool(tmp_path) -> Spool:
    return Spool.init(tmp_path / "spool", heartbeat_s=0.2, stale_after_s=2.0, max_attempts=3)


def smoke_manifest(path: Path, n: int, *, seconds: float = 0.0, extra: str = "", prefix: str = "j") -> Path:
    """A manifest of ``n`` distinct smoke jobs (distinct payloads)."""
    jobs = "".join(
        f'\n[[jobs]]\nmodel = "smoke"\nmode = "check"\n'
        f'hyper = {{ seconds = {seconds}, payload = "{prefix}{i}", epochs = 1 }}\n'
        for i in range(n)
    )
    path.write_text(textwrap.dedent(extra) + jobs)
    return path


def worker_info(host: str = "testhost", *, cuda: bool = False, ram: float = 16.0, vram: float = 0.0) -> WorkerInfo:
    from cis490.fleet.capability import GPU

    gpus = (GPU("Fake GPU", vram),) if cuda else ()
    return WorkerInfo.create(host, Capability(host_id=host, cores=4, ram_gib=ram, cuda=cuda, gpus=gpus))


def cli(*args: str, env: dict | None = None, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(BIN), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, check=check)


def artifact_dir(tmp_path: Path, content: str = "x") -> Path:
    d = tmp_path / f"art-{abs(hash(content))}"
    d.mkdir(exist_ok=True)
    (d / "model.json").write_text(content)
    return d
