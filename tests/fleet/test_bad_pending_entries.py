"""A bad entry never blocks the queue.

Every file in ``pending/`` that cannot be read or parsed is quarantined with a
reason naming its kind, the scan goes on with the rest, and ``--drain`` runs
every good job. An error saying the spool itself is unavailable (EIO, ESTALE,
ENOSPC, …) never quarantines anything: the file is fine, the filesystem is not.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from cis490.fleet import JobState, Spool
from cis490.fleet import spool as spool_mod
from cis490.fleet.claim import Claimer
from cis490.fleet.layout import (
    MAX_JSON_BYTES, SPOOL_UNAVAILABLE_ERRNOS, BadEntry, is_spool_unavailable, read_bounded,
)
from cis490.fleet.signing import keygen
from cis490.fleet.spec import SpecError

from .conftest import smoke_manifest, worker_info

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FIFOs, process groups")

# one valid job name per kind of bad entry (the names follow the grammar: only the content is bad)
BAD = {
    "oversized": "smoke_check.0000000000a1.json",
    "bad_json": "smoke_check.0000000000a2.json",
    "symlink": "smoke_check.0000000000a3.json",
    "fifo": "smoke_check.0000000000a4.json",
    "directory": "smoke_check.0000000000a5.json",
    "unreadable": "smoke_check.0000000000a6.json",
}
# what each quarantine reason must say
KIND_WORDS = {
    "oversized": "oversized", "bad_json": "not valid JSON", "symlink": "symlink", "fifo": "FIFO",
    "directory": "not a regular file", "unreadable": "unreadable", "forged": "signature",
}


def reasons_by_name(root: Path) -> dict[str, str]:
    """quarantined job name → its reason (whether it was set aside from pending/ or claimed/)."""
    out = {}
    for p in (root / "quarantine").glob("*.reason.json"):
        rec = json.loads(p.read_text())
        name = rec["from"].split("/", 1)[1].split("@")[0].removesuffix(".json")
        out[name] = rec["reason"]
    return out


def run_in_thread(fn, timeout: float):
    """Run ``fn`` in a daemon thread; fail (instead of hanging) if it takes longer."""
    result: list = []
    t = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still running after {timeout}s (a FIFO opened for reading blocks)"
    assert result, "raised (see the thread's traceback above)"
    return result[0]


def plant_bad_entries(spool: Spool, tmp_path: Path) -> None:
    pending = spool.root / "pending"
    (pending / BAD["oversized"]).write_bytes(b"{" + b" " * 300_000 + b"}")
    (pending / BAD["bad_json"]).write_text("{not json")
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    (pending / BAD["symlink"]).symlink_to(target)
    os.mkfifo(pending / BAD["fifo"])  # opening it for reading would block forever
    (pending / BAD["directory"]).mkdir()
    (pending / BAD["unreadable"]).write_text("{}")
    (pending / BAD["unreadable"]).chmod(0)


@pytest.fixture
def signed(tmp_path):
    key_path = tmp_path / "keys" / "operator.key"
    public = keygen(key_path)
    spool = Spool.init(tmp_path / "spool", heartbeat_s=0.2, stale_after_s=2.0, require_signatures=True,
                       operator_public_keys=(public,))
    return spool, key_path


@pytest.fixture
def eacces_as_root(monkeypatch):
    """chmod 000 does not stop root: make opening a chmod-000 file fail with EACCES as it
    would for anyone else (read_bounded is what read_spec opens a spec with)."""
    if os.geteuid() != 0:
        return
    real = spool_mod.read_bounded

    def read(path, limit):
        if stat.S_IMODE(os.lstat(path).st_mode) == 0:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, limit)

    monkeypatch.setattr(spool_mod, "read_bounded", read)


def test_drain_quarantines_every_bad_entry_and_runs_every_good_job(signed, tmp_path, eacces_as_root):
    from cis490.fleet.worker import Worker, WorkerOptions

    spool, key_path = signed
    smoke_manifest(tmp_path / "m.toml", 6)
    spool.reload(tmp_path / "m.toml", signing_key=key_path)
    pending = spool.root / "pending"
    forged_path, *good_paths = sorted(pending.iterdir())
    good = sorted(p.name[:-5] for p in good_paths)
    forged = json.loads(forged_path.read_text())
    forged["priority"] = 999  # edited after signing: first in line, if it were believed
    forged_path.write_text(json.dumps(forged))
    plant_bad_entries(spool, tmp_path)

    w = Worker(Spool.open(spool.root), worker_info("h"),
               WorkerOptions(mode="drain", slots=2, poll_s=0.1, work_root=tmp_path / "work",
                             lock_dir=tmp_path / "locks"))
    t0 = time.monotonic()
    assert run_in_thread(w.run, timeout=90) == 0
    assert time.monotonic() - t0 < 90

    counts = spool.counts()
    assert sorted(spool.name_of(l) for l in spool.scan(JobState.DONE)) == good  # every good job ran
    assert counts["pending"] == counts["claimed"] == counts["failed"] == 0
    assert list(pending.iterdir()) == [] and list((spool.root / "claimed").iterdir()) == []
    reasons = reasons_by_name(spool.root)
    expected = {**{n[:-5]: kind for kind, n in BAD.items()}, forged_path.name[:-5]: "forged"}
    assert set(reasons) == set(expected), reasons  # nothing else set aside, nothing lost
    for name, kind in expected.items():
        assert KIND_WORDS[kind] in reasons[name], (kind, reasons[name])
        assert "\n" not in reasons[name]
    assert not list((spool.root / "attempts").glob(f"{forged_path.name[:-5]}/*"))  # never attempted
    [fifo] = (spool.root / "quarantine").glob(f"pending--{BAD['fifo']}--??????")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # moved aside as it was, never opened
    [link] = (spool.root / "quarantine").glob(f"pending--{BAD['symlink']}--??????")
    assert link.is_symlink()


def test_drain_cli_is_not_stopped_by_an_oversized_file(spool, tmp_path):
    """The reported bug: one 300 kB file, and `work --drain` exited 0 having done nothing."""
    from .conftest import cli

    smoke_manifest(tmp_path / "m.toml", 5)
    spool.reload(tmp_path / "m.toml")
    (spool.root / "pending" / BAD["oversized"]).write_bytes(b" " * 300_000)
    (spool.root / "pending" / BAD["bad_json"]).write_text("{not json")
    (spool.root / "pending" / BAD["symlink"]).symlink_to("/etc/passwd")
    os.mkfifo(spool.root / "pending" / BAD["fifo"])
    r = cli("--spool", str(spool.root), "work", "--drain", "--host-id", "h", "--poll-s", "0.1", timeout=90)
    assert r.returncode == 0, r.stderr
    assert "not claiming" not in r.stderr
    assert spool.counts()["done"] == 5 and list((spool.root / "pending").iterdir()) == []
    reasons = reasons_by_name(spool.root)
    for kind in ("oversized", "bad_json", "symlink", "fifo"):
        assert KIND_WORDS[kind] in reasons[BAD[kind][:-5]]


def test_scan_and_sweep_give_the_same_reasons(tmp_path, eacces_as_root):
    scanned = Spool.init(tmp_path / "a")
    swept = Spool.init(tmp_path / "b")
    for s in (scanned, swept):
        plant_bad_entries(s, tmp_path)
    assert run_in_thread(lambda: Claimer(scanned, worker_info()).scan(), timeout=20) == []
    result = run_in_thread(lambda: swept.sweep(), timeout=20)
    by_scan, by_sweep = reasons_by_name(scanned.root), reasons_by_name(swept.root)
    # the sweep judges names and types only (nothing is opened): symlink, FIFO, directory
    type_only = {BAD[k][:-5] for k in ("symlink", "fifo", "directory")}
    assert set(by_sweep) == type_only and sorted(result.quarantined) == sorted(f"pending/{n}.json" for n in type_only)
    for name in type_only:
        assert by_sweep[name] == by_scan[name]
    assert by_scan[BAD["fifo"][:-5]] == "a FIFO (never opened)"
    assert by_scan[BAD["directory"][:-5]] == "not a regular file (a directory)"
    assert by_scan[BAD["symlink"][:-5]] == "a symlink (never followed)"
    assert by_scan[BAD["oversized"][:-5]] == f"oversized (larger than {MAX_JSON_BYTES} bytes)"
    assert by_scan[BAD["unreadable"][:-5]] == "unreadable (Permission denied)"
    assert by_scan[BAD["bad_json"][:-5]].startswith("malformed job spec: not valid JSON")


def test_read_bounded_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "smoke_check.0000000000b1.json"
    os.mkfifo(fifo)

    def read():
        try:
            read_bounded(fifo, MAX_JSON_BYTES)
        except BadEntry as exc:
            return exc.reason
        return "read it"

    assert run_in_thread(read, timeout=10) == "a FIFO (never opened)"


@pytest.mark.parametrize("gate", [True, False], ids=["memory-gate-read", "read-after-rename"])
def test_a_spec_turned_bad_after_the_scan_is_quarantined_at_claim(spool, tmp_path, gate):
    """The memory gate's read and the read after the rename classify like the scan."""
    smoke_manifest(tmp_path / "m.toml", 3)
    spool.reload(tmp_path / "m.toml")
    c = Claimer(spool, worker_info())
    if gate:
        c.gate = lambda spec: None  # a gate reads the spec before the rename (None: no verdict)
    first, second, third = c.scan()
    (spool.root / "pending" / f"{first}.json").write_bytes(b" " * 300_000)  # swapped after the scan
    p = spool.root / "pending" / f"{second}.json"
    p.unlink()
    os.mkfifo(p)
    claim = run_in_thread(c.claim, timeout=10)
    assert claim is not None and claim.name == third
    reasons = reasons_by_name(spool.root)
    assert reasons[first].startswith("oversized") and reasons[second] == "a FIFO (never opened)"
    came_from = sorted(json.loads(q.read_text())["from"].split("/")[0]
                       for q in (spool.root / "quarantine").glob("*.reason.json"))
    assert came_from == (["pending", "pending"] if gate else ["claimed", "claimed"])
    assert list((spool.root / "pending").iterdir()) == []


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.ENOSPC])
def test_an_unavailable_spool_never_quarantines_the_entry(spool, tmp_path, monkeypatch, code):
    smoke_manifest(tmp_path / "m.toml", 2)
    spool.reload(tmp_path / "m.toml")
    victim = sorted((spool.root / "pending").iterdir())[0]
    real = spool_mod.read_bounded

    def read(path, limit):
        if Path(path).name == victim.name:
            raise OSError(code, os.strerror(code), str(path))
        return real(path, limit)

    monkeypatch.setattr(spool_mod, "read_bounded", read)
    with pytest.raises(OSError) as info:
        spool.read_spec(victim)
    assert info.value.errno == code and not isinstance(info.value, SpecError)
    with pytest.raises(OSError):
        Claimer(spool, worker_info()).scan()  # propagates: outage handling is the worker's
    assert victim.exists() and list((spool.root / "quarantine").iterdir()) == []
    assert spool.counts()["pending"] == 2


def test_spool_unavailable_errnos_are_one_list():
    for code in (errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.ETIMEDOUT, errno.EHOSTDOWN,
                 errno.ENETUNREACH, errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        assert code in SPOOL_UNAVAILABLE_ERRNOS
        assert is_spool_unavailable(OSError(code, os.strerror(code)))
    for exc in (PermissionError(errno.EACCES, "x"), IsADirectoryError(errno.EISDIR, "x"),
                FileNotFoundError(errno.ENOENT, "x"), ValueError("x")):
        assert not is_spool_unavailable(exc)


def test_unreadable_spec_is_classified_as_unreadable(spool, monkeypatch):
    """EACCES/EISDIR while opening: the file's fault, quarantined as 'unreadable (…)'."""
    path = spool.root / "pending" / "smoke_check.0000000000c1.json"
    path.write_text("{}")
    for code in (errno.EACCES, errno.EISDIR):
        def read(p, limit, code=code):
            raise OSError(code, os.strerror(code), str(p))

        monkeypatch.setattr(spool_mod, "read_bounded", read)
        with pytest.raises(SpecError, match=rf"^unreadable \({os.strerror(code)}\)$"):
            spool.read_spec(path)
