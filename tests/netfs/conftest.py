"""Fixtures that start real shared filesystems on loopback, and tear them down.

- ``sshfs_pair``: one sshd + one exported directory mounted twice with sshfs
  (two client views of one server), once per cache profile (``nocache``,
  ``nfslike``); ``sshfs_nocache`` / ``sshfs_nfslike`` give one profile.
- ``syncthing_pair``: two Syncthing instances sharing one folder, with
  ``wait_sync()`` to wait until both copies converge.

The beds are ``scripts/testbed/sshfs.py`` and ``scripts/testbed/syncthing.py``
(also usable by hand). When a binary is missing the fixture FAILS with the
package to install, unless ``CIS490_SKIP_NETFS=1``: then it skips with that
reason. ``.ci/run`` installs sshfs, openssh-server and syncthing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.facts import record_fact as _record_fact

REPO = Path(__file__).resolve().parents[2]
BEDS = REPO / "scripts" / "testbed"
FACTS_JSON = REPO / "bench" / "out" / "netfs_facts.json"
SKIP_ENV = "CIS490_SKIP_NETFS"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"cis490_testbed_{name}", BEDS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


sshfs_bed = _load("sshfs")
syncthing_bed = _load("syncthing")


def require(missing: list[str], what: str, install: str) -> None:
    """Fail loudly when a test bed cannot run; skip only when the user said so."""
    if not missing:
        return
    msg = f"the {what} test bed needs {', '.join(missing)} ({install})"
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: {msg}")
    pytest.fail(f"{msg}; install it (.ci/run does), or set {SKIP_ENV}=1 to skip these tests", pytrace=False)


def seconds_until(pred, timeout: float = 20.0, step: float = 0.02) -> float | None:
    """Poll ``pred``; the seconds it took to become true, or None after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(step)
    return None


def record_fact(key: str, value) -> None:
    """Merge one measured figure into bench/out/netfs_facts.json (and print it)."""
    _record_fact(FACTS_JSON, key, value)


@dataclass
class SshfsPair:
    a: Path            # mount of view a
    b: Path            # mount of view b
    export: Path       # the server's directory (for checks only: workers use a and b)
    profile: str
    options: str
    root: Path
    state: dict = field(repr=False, default_factory=dict)


def _sshfs(root: Path, profile: str):
    require(sshfs_bed.missing_binaries(), "sshfs", "Debian: apt-get install sshfs openssh-server")
    try:
        st = sshfs_bed.up(root, profile)
    except sshfs_bed.BedError as exc:
        sshfs_bed.down(root)
        pytest.fail(f"sshfs test bed did not start: {exc}", pytrace=False)
    try:
        yield SshfsPair(Path(st["mounts"]["a"]), Path(st["mounts"]["b"]), Path(st["export"]),
                        profile, st["options"], root, st)
    finally:
        sshfs_bed.down(root)


@pytest.fixture(params=["nocache", "nfslike"])
def sshfs_pair(request, tmp_path):
    """Two sshfs views of one export, for each cache profile."""
    yield from _sshfs(tmp_path / "sshfs", request.param)


@pytest.fixture
def sshfs_nocache(tmp_path):
    yield from _sshfs(tmp_path / "sshfs", "nocache")


@pytest.fixture
def sshfs_nfslike(tmp_path):
    yield from _sshfs(tmp_path / "sshfs", "nfslike")


@dataclass
class SyncthingPair:
    a: Path            # side a's copy of the shared folder
    b: Path            # side b's copy
    state: dict = field(repr=False, default_factory=dict)

    def wait_sync(self, timeout: float = 60.0, ignore=None) -> float:
        """Wait until both copies hold the same files and both sides are idle; → seconds."""
        return syncthing_bed.wait_sync(self.state, timeout, ignore)

    def rest(self, side: str, path: str):
        return syncthing_bed.rest(self.state, side, path)


@pytest.fixture
def syncthing_pair(tmp_path):
    require(syncthing_bed.missing_binaries(), "Syncthing", "Debian: apt-get install syncthing")
    root = tmp_path / "syncthing"
    try:
        st = syncthing_bed.up(root, rescan_s=10, watch_delay_s=1)
    except syncthing_bed.BedError as exc:
        syncthing_bed.down(root)
        pytest.fail(f"Syncthing test bed did not start: {exc}", pytrace=False)
    try:
        yield SyncthingPair(Path(st["sides"]["a"]["folder"]), Path(st["sides"]["b"]["folder"]), st)
    finally:
        syncthing_bed.down(root)
