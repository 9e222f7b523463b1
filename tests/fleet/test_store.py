"""The content-addressed store: canonical tar, dedupe, fsck."""

from __future__ import annotations

import hashlib
import io
import tarfile

import zstandard

from cis490.fleet import JobState
from cis490.fleet import store
from cis490.fleet.fsck import fsck

from .conftest import smoke_manifest, worker_info


def test_canonical_tar_is_independent_of_mtime_and_creation_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, order in ((a, ["z.json", "sub/y.bin"]), (b, ["sub/y.bin", "z.json"])):
        for rel in order:
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(rel.encode())
    import os

    os.utime(a / "z.json", (1, 1))
    ta, la = store.canonical_tar(a)
    tb, lb = store.canonical_tar(b)
    assert ta == tb and la == lb
    with tarfile.open(fileobj=io.BytesIO(ta)) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == ["sub/y.bin", "z.json"]
    assert all(i.mtime == 0 and i.uid == 0 and i.gid == 0 and i.uname == "" and i.mode == 0o644 for i in infos)


def test_digest_is_sha256_of_uncompressed_tar(spool, tmp_path):
    d = tmp_path / "art"
    d.mkdir()
    (d / "m.json").write_text("{}")
    stored = store.put(spool.root, "gbt_oracle", d, {"job": "x"})
    tar_bytes, _ = store.canonical_tar(d)
    assert stored.digest == hashlib.sha256(tar_bytes).hexdigest()
    raw = zstandard.ZstdDecompressor().decompress((stored.path / "bundle.tar.zst").read_bytes())
    assert raw == tar_bytes


def test_bit_identical_smoke_artifacts_deduplicate(spool, tmp_path):
    """Two different jobs whose smoke output is identical share one stored bundle."""
    import subprocess
    import sys

    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        subprocess.run([sys.executable, "-m", "cis490.fleet.smoke", "--out", str(out), "--hyper", "seconds=0",
                        "--hyper", 'payload="same"'], check=True)
        outs.append(out)
    first = store.put(spool.root, "smoke_check", outs[0], {"job": "a"})
    second = store.put(spool.root, "smoke_check", outs[1], {"job": "b"})
    assert first.created and not second.created and first.digest == second.digest
    assert len(list((spool.root / "models" / "smoke_check").iterdir())) == 1


def test_store_refuses_symlinks_in_an_artifact(spool, tmp_path):
    import pytest

    d = tmp_path / "art"
    d.mkdir()
    (d / "link").symlink_to("/etc/passwd")
    with pytest.raises(store.StoreError, match="not a regular file"):
        store.put(spool.root, "gbt_oracle", d, {})


def test_fsck_is_clean_then_detects_a_corrupted_bundle(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 2)
    spool.reload(tmp_path / "m.toml")
    w = worker_info()
    for i in range(2):
        claim = spool.claim(w)
        d = tmp_path / f"a{i}"
        d.mkdir()
        (d / "m.json").write_text(claim.name)
        claim.complete(d)
    findings, stats = fsck(spool)
    assert findings == [] and stats["bundles"] == 2 and stats["jobs"] == 2
    bundle = next((spool.root / "models").glob("*/*/bundle.tar.zst"))
    tar = zstandard.ZstdDecompressor().decompress(bundle.read_bytes())
    evil = bytearray(tar)
    evil[600] ^= 0xFF  # flip a byte inside the first member's data
    bundle.write_bytes(zstandard.ZstdCompressor().compress(bytes(evil)))
    findings, _ = fsck(spool)
    errors = [f for f in findings if f.severity == "error"]
    assert any("hashes to" in f.what for f in errors), findings
    assert any(f.where.startswith("done/") and "missing or corrupt" in f.what for f in errors)


def test_fsck_flags_a_done_job_without_attempt_and_a_name_in_two_states(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    [loc] = spool.scan(JobState.PENDING)
    name = spool.name_of(loc)
    (spool.root / "done" / loc.path.name).write_bytes(loc.path.read_bytes())
    findings, _ = fsck(spool)
    whats = " | ".join(f.what for f in findings)
    assert "no attempt record says done" in whats
    assert "in several states at once" in whats and name in " ".join(f.where for f in findings)
