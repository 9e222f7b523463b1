"""The content-addressed store: canonical tar, dedupe, fsck."""

from __future__ import annotations

import hashlib
import io
import tarfile

import zstandard

from cis490.fleet.claim import claim_next
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
        claim = claim_next(spool, w)
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


# --- training curves: beside the bundle, outside the digest -------------------------------


def write_curves(d, rows=((1, 0.9), (2, 0.7)), event=b"fake event bytes"):
    """A driver's --curves directory: metrics.jsonl and one (fake) TensorBoard event file."""
    import json

    (d / "tensorboard").mkdir(parents=True)
    (d / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "train_loss": loss, "val_loss": loss + 0.1, "val_macro_f1": 0.5,
                    "lr": 0.1, "seconds": 0.25}) + "\n" for e, loss in rows))
    (d / "tensorboard" / "events.out.tfevents.1.somehost.1.0").write_bytes(event)
    return d


def model_dir(tmp_path, name="art", content="{}"):
    d = tmp_path / name
    d.mkdir(parents=True)
    (d / "m.ckpt.json").write_text(content)
    return d


def test_put_stores_curves_beside_the_bundle_outside_the_digest(spool, tmp_path):
    import json

    art = model_dir(tmp_path)
    curves = write_curves(tmp_path / "curves")
    stored = store.put(spool.root, "gbt_oracle", art, {"job": "x"}, curves_dir=curves)
    assert stored.digest == hashlib.sha256(store.canonical_tar(art)[0]).hexdigest()
    assert sorted(p.name for p in stored.path.iterdir()) == ["bundle.tar.zst", "curves.tar.zst",
                                                            "record.json"]
    record = json.loads((stored.path / "record.json").read_text())
    tar_bytes, listing = store.canonical_tar(curves)
    assert record["curves"] == listing
    assert [c["path"] for c in listing] == ["metrics.jsonl",
                                            "tensorboard/events.out.tfevents.1.somehost.1.0"]
    raw = zstandard.ZstdDecompressor().decompress((stored.path / "curves.tar.zst").read_bytes())
    assert raw == tar_bytes                                      # a canonical tar, like the bundle
    assert [r["epoch"] for r in store.read_curves(stored.path)] == [1, 2]
    assert store.verify(stored.path) is None
    assert not list((spool.root / "tmp").iterdir())              # atomic writes left no debris


def test_no_curves_means_no_file_and_no_record_key(spool, tmp_path):
    import json

    (tmp_path / "empty").mkdir()
    for i, curves in enumerate((None, tmp_path / "missing", tmp_path / "empty")):
        stored = store.put(spool.root, "smoke_check", model_dir(tmp_path, f"a{i}", str(i)), {},
                           curves_dir=curves)
        assert sorted(p.name for p in stored.path.iterdir()) == ["bundle.tar.zst", "record.json"]
        assert "curves" not in json.loads((stored.path / "record.json").read_text())
        assert store.read_curves(stored.path) is None and store.verify(stored.path) is None


def test_dedupe_keeps_the_first_writers_curves(spool, tmp_path):
    first = store.put(spool.root, "gbt_oracle", model_dir(tmp_path, "a"), {"job": "a"},
                      curves_dir=write_curves(tmp_path / "c1", rows=((1, 0.9),)))
    second = store.put(spool.root, "gbt_oracle", model_dir(tmp_path, "b"), {"job": "b"},
                       curves_dir=write_curves(tmp_path / "c2", rows=((1, 0.5), (2, 0.4))))
    assert first.created and not second.created and first.digest == second.digest
    assert [r["train_loss"] for r in store.read_curves(first.path)] == [0.9]


def test_a_racing_second_writer_records_the_curves_that_won(spool, tmp_path):
    """Two workers storing one digest at once (eventual mode): curves.tar.zst is published
    no-clobber, so the record always lists the curves file that is there."""
    import json

    art = model_dir(tmp_path)
    digest = hashlib.sha256(store.canonical_tar(art)[0]).hexdigest()
    dest = spool.root / "models" / "gbt_oracle" / digest
    dest.mkdir(parents=True)
    winner, _ = store.canonical_tar(write_curves(tmp_path / "c1", rows=((1, 0.3),)))
    (dest / "curves.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(winner))
    stored = store.put(spool.root, "gbt_oracle", art, {}, curves_dir=write_curves(tmp_path / "c2"))
    assert stored.created and [r["train_loss"] for r in store.read_curves(dest)] == [0.3]
    assert json.loads((dest / "record.json").read_text())["curves"][0]["size"] == len(
        (tmp_path / "c1" / "metrics.jsonl").read_bytes())
    assert store.verify(dest) is None


def test_fsck_flags_tampered_or_missing_curves(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 2)
    spool.reload(tmp_path / "m.toml")
    w = worker_info()
    for i in range(2):
        claim = claim_next(spool, w)
        claim.complete(model_dir(tmp_path, f"a{i}", claim.name),
                       curves_dir=write_curves(tmp_path / f"c{i}"))
    findings, stats = fsck(spool)
    assert findings == [] and stats["bundles"] == 2
    first, second = sorted((spool.root / "models").glob("*/*/curves.tar.zst"))
    tar = bytearray(zstandard.ZstdDecompressor().decompress(first.read_bytes()))
    at = bytes(tar).index(b"fake event bytes")
    tar[at] ^= 0xFF                                   # one byte of the event file
    first.write_bytes(zstandard.ZstdCompressor().compress(bytes(tar)))
    second.unlink()
    errors = [f for f in fsck(spool)[0] if f.severity == "error"]
    whats = " | ".join(f.what for f in errors)
    assert "curves.tar.zst does not match record.json's listing" in whats, errors
    assert "record.json lists curves but curves.tar.zst is missing" in whats, errors
    assert {f.where for f in errors if f.where.startswith("models/")} == {
        f"models/{p.parent.parent.name}/{p.parent.name}" for p in (first, second)}
    import pytest

    with pytest.raises(store.StoreError, match="does not match"):
        store.read_curves(first.parent)


def _hostile_curves(spool, tmp_path, members: dict[str, bytes]):
    """A stored artifact whose curves.tar.zst holds ``members`` and a record that lists them."""
    import json

    stored = store.put(spool.root, "gbt_oracle", model_dir(tmp_path), {},
                       curves_dir=write_curves(tmp_path / "c"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (stored.path / "curves.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    record = json.loads((stored.path / "record.json").read_text())
    record["curves"] = [{"path": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                        for n, d in sorted(members.items())]
    (stored.path / "record.json").write_text(json.dumps(record))
    return stored.path


def test_extract_curves_refuses_hostile_members_and_keeps_only_metrics_and_events(spool, tmp_path):
    import pytest

    d = _hostile_curves(spool, tmp_path, {"../escape": b"x"})
    with pytest.raises(store.StoreError, match="refused member '../escape'"):
        store.extract_curves(d, tmp_path / "tb")
    assert store.verify(d) is not None and not (tmp_path / "escape").exists()

    d.joinpath("record.json").unlink()                 # store the same model afresh
    d = _hostile_curves(spool, tmp_path / "2", {"metrics.jsonl": b'{"epoch": 1}\n',
                                                "tensorboard/ev": b"e", "other/x.sh": b"no"})
    out = tmp_path / "tb2"
    written = store.extract_curves(d, out)
    assert sorted(p.relative_to(out).as_posix() for p in written) == ["metrics.jsonl",
                                                                      "tensorboard/ev"]
    assert not (out / "other").exists()
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = tmp_path / "tb3"
    planted.mkdir()
    (planted / "tensorboard").symlink_to(outside)      # a link planted in the target directory
    with pytest.raises(store.StoreError, match="refused curves member 'tensorboard/ev'"):
        store.extract_curves(d, planted)
    assert list(outside.iterdir()) == []
