"""Hostile spool content: signatures, symlinks, confinement, permissions."""

from __future__ import annotations

import grp
import json
import os
import subprocess
import sys

import pytest

from cis490.fleet import JobState, ManifestError, Spool, SpoolError
from cis490.fleet.claim import Claimer
from cis490.fleet.signing import SignatureError, keygen, load_private

from .conftest import BIN, cli, smoke_manifest, worker_info


@pytest.fixture
def signed(tmp_path):
    key_path = tmp_path / "keys" / "operator.key"
    public = keygen(key_path)
    spool = Spool.init(tmp_path / "spool", heartbeat_s=0.2, stale_after_s=2.0, require_signatures=True,
                       operator_public_keys=(public,))
    return spool, key_path


def test_unsigned_and_forged_specs_are_quarantined_and_never_run(signed, tmp_path):
    spool, key_path = signed
    smoke_manifest(tmp_path / "m.toml", 2)
    spool.reload(tmp_path / "m.toml", signing_key=key_path)
    pending = spool.root / "pending"
    good = sorted(pending.iterdir())
    # a writer without the key: an unsigned spec, and a signed one edited after signing
    other = Spool.init(tmp_path / "plain")
    smoke_manifest(tmp_path / "evil.toml", 1, prefix="evil")
    other.reload(tmp_path / "evil.toml")
    [unsigned] = (other.root / "pending").iterdir()
    os.rename(unsigned, pending / unsigned.name)
    forged = json.loads(good[0].read_text())
    forged["priority"] = 999
    (pending / good[0].name).write_text(json.dumps(forged))
    r = subprocess.run([sys.executable, str(BIN), "--spool", str(spool.root), "work", "--drain", "--host-id", "h"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert spool.counts()["done"] == 1  # only the untouched signed job ran
    reasons = sorted(json.loads(p.read_text())["reason"] for p in (spool.root / "quarantine").glob("*.reason.json"))
    assert len(reasons) == 2
    assert any("unsigned" in r for r in reasons)
    assert any("does not verify" in r for r in reasons)
    assert not list((spool.root / "attempts").glob(f"{unsigned.name[:-5]}/*"))  # never even attempted


def test_reload_refuses_a_key_the_spool_does_not_trust(signed, tmp_path):
    spool, _ = signed
    stranger = keygen(tmp_path / "stranger.key")
    assert stranger
    smoke_manifest(tmp_path / "m.toml", 1)
    with pytest.raises(SignatureError, match="not in spool.toml"):
        spool.reload(tmp_path / "m.toml", signing_key=tmp_path / "stranger.key")
    with pytest.raises(SignatureError, match="no operator key"):
        spool.reload(tmp_path / "m.toml", signing_key=tmp_path / "missing.key")
    assert spool.counts()["pending"] == 0


def test_tampered_manifest_copy_is_refused_by_workers(signed, tmp_path):
    spool, key_path = signed
    smoke_manifest(tmp_path / "m.toml", 1, extra='[data]\nvalidation = "/srv/data/v.parquet"\n')
    spool.reload(tmp_path / "m.toml", signing_key=key_path)
    copy = spool.root / "manifest.toml"
    copy.write_text(copy.read_text().replace("/srv/data/v.parquet", "/etc/shadow"))
    fresh = Spool.open(spool.root)
    with pytest.raises(SignatureError):
        fresh.manifest()
    r = subprocess.run([sys.executable, str(BIN), "--spool", str(spool.root), "work", "--drain", "--host-id", "h"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "manifest.toml refused" in r.stderr and len(r.stderr.splitlines()) == 1
    assert spool.counts()["done"] == 0 and spool.counts()["pending"] == 1  # refused, nothing lost



def test_a_running_worker_meeting_a_tampered_manifest_keeps_going_without_claiming(signed, tmp_path, caplog):
    from cis490.fleet.worker import Worker, WorkerOptions

    spool, key_path = signed
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml", signing_key=key_path)
    copy = spool.root / "manifest.toml"
    copy.write_text(copy.read_text() + "\n# edited\n")
    w = Worker(Spool.open(spool.root), worker_info("h"), WorkerOptions(mode="drain", slots=1, poll_s=0.1))
    with caplog.at_level("ERROR", logger="cis490.worker"):
        assert w.run() == 0
    assert "not claiming: manifest.toml refused" in caplog.text
    assert spool.counts()["pending"] == 1 and spool.counts()["done"] == 0


def test_keygen_refuses_a_key_inside_the_spool_or_over_an_existing_one(tmp_path):
    spool = Spool.init(tmp_path / "spool")
    with pytest.raises(SignatureError, match="inside the spool"):
        keygen(spool.root / "op.key", spool.root)
    keygen(tmp_path / "k")
    with pytest.raises(SignatureError, match="refusing to overwrite"):
        keygen(tmp_path / "k")
    assert oct((tmp_path / "k").stat().st_mode & 0o777) == "0o600"
    assert load_private(tmp_path / "k") is not None


def test_symlink_in_pending_is_quarantined_without_being_read(spool, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading would block forever: the test would hang
    (spool.root / "pending" / "smoke_check.0123456789ab.json").symlink_to(fifo)
    (spool.root / "pending" / "smoke_check.0123456789ac.json").symlink_to("/etc/passwd")
    c = Claimer(spool, worker_info())
    assert c.scan() == []
    reasons = [json.loads(p.read_text())["reason"] for p in (spool.root / "quarantine").glob("*.reason.json")]
    assert len(reasons) == 2 and all("symlink" in r for r in reasons)
    assert all(p.is_symlink() for p in (spool.root / "quarantine").glob("pending--*json--??????"))


@pytest.mark.parametrize("mode", ["..", "a/b", "a\\b", "a\x00b", "con", "NUL", "aux", "com1", "lpt9", "A", "x" * 40])
def test_hostile_job_names_are_refused_at_reload(spool, tmp_path, mode):
    m = tmp_path / "m.toml"
    m.write_text(f'[[jobs]]\nmodel = "smoke"\nmode = {json.dumps(mode)}\n')
    with pytest.raises(ManifestError):
        spool.reload(m)
    assert spool.counts()["pending"] == 0


def test_symlinked_spool_directory_is_refused(tmp_path):
    spool = Spool.init(tmp_path / "spool")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.rmdir(spool.root / "tmp")
    (spool.root / "tmp").symlink_to(elsewhere)
    with pytest.raises(SpoolError, match="symlink"):
        Spool.open(spool.root)


def test_symlinked_per_job_directory_is_never_written_through(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    name = spool.name_of(spool.scan(JobState.PENDING)[0])
    target = tmp_path / "victim"
    target.mkdir()
    (spool.root / "attempts" / name).symlink_to(target)
    (spool.root / "logs" / name).symlink_to(target)
    (spool.root / "models" / "smoke_check").symlink_to(target)
    r = cli("--spool", str(spool.root), "work", "--drain", "--host-id", "h")
    assert r.returncode == 0, r.stderr
    assert list(target.iterdir()) == []  # nothing written outside the spool
    assert spool.counts()["done"] == 1
    assert (spool.root / "attempts" / name).is_dir() and not (spool.root / "attempts" / name).is_symlink()
    assert len(list((spool.root / "quarantine").glob("*.reason.json"))) == 3


def test_logs_verb_does_not_follow_a_planted_symlink(spool, tmp_path):
    d = spool.root / "logs" / "smoke_check.0123456789ab"
    d.mkdir()
    (d / "1@w-1-abcdef.log").symlink_to("/etc/passwd")
    (spool.root / "pending" / "smoke_check.0123456789ab.json").write_text("{}")
    r = cli("--spool", str(spool.root), "logs", "smoke_check.0123456789ab")
    assert r.returncode == 1 and "root:" not in r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="changing group ownership needs root")
def test_operator_group_owns_the_operator_files(tmp_path):
    group = grp.getgrgid(100).gr_name if 100 in {g.gr_gid for g in grp.getgrall()} else grp.getgrall()[0].gr_name
    root = tmp_path / "spool"
    r = cli("--spool", str(root), "init", "--operator-group", group)
    assert r.returncode == 0, r.stderr
    gid = grp.getgrnam(group).gr_gid
    for p, mode in ((root, 0o2775), (root / "cancelled", 0o2775), (root / "spool.toml", 0o664)):
        st = p.stat()
        assert st.st_gid == gid and (st.st_mode & 0o7777) == mode, p
    m = smoke_manifest(tmp_path / "m.toml", 1)
    assert cli("--spool", str(root), "reload", str(m)).returncode == 0
    st = (root / "manifest.toml").stat()
    assert st.st_gid == gid and (st.st_mode & 0o777) == 0o664
    # a user outside the group cannot write cancelled/ (runs as nobody)
    code = f"open({str(root / 'cancelled' / 'x.json')!r}, 'w')"
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_a_pending_spec_updated_by_reload_stays_validly_signed(signed, tmp_path):
    spool, key_path = signed
    m = tmp_path / "m.toml"
    m.write_text('[[jobs]]\nmodel = "smoke"\nmode = "a"\npriority = 1\n')
    spool.reload(m, signing_key=key_path)
    [before] = spool.scan(JobState.PENDING)
    old = spool.read_spec(before.path)
    m.write_text('[[jobs]]\nmodel = "smoke"\nmode = "a"\npriority = 9\n')
    assert spool.reload(m, signing_key=key_path).updated == 1
    [after] = spool.scan(JobState.PENDING)
    new = spool.read_spec(after.path)  # verifies the signature (SpecError if it does not)
    assert new.priority == 9 and new.enqueued_ns == old.enqueued_ns and new.signature != old.signature
