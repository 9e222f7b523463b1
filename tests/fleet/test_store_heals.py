"""The store heals itself: an entry a dead writer left incomplete is
completed by the next writer of its digest or by ``fsck --repair``; stray temp files
go; a claim without an attempt record is requeued; corruption stays an error."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import time

import pytest
import zstandard

from cis490.fleet.claim import claim_next
from cis490.fleet import store
from cis490.fleet.layout import JobState

from .conftest import cli, smoke_manifest, worker_info

HOUR = 3600


def fsck_cli(spool, *args):
    r = cli("--spool", str(spool.root), "fsck", *args)
    return r.returncode, r.stdout.strip().splitlines(), r


def aged(lines):
    """The lines with their ages in seconds blurred (a run takes a second or two)."""
    return sorted(re.sub(r"\b\d+ s\b", "N s", line) for line in lines)


def fsck_json(spool, *args):
    r = cli("--spool", str(spool.root), "fsck", "--json", *args)
    return r.returncode, json.loads(r.stdout)


def art(tmp_path, name="art", content="weights"):
    d = tmp_path / name
    d.mkdir()
    (d / "m.ckpt.json").write_text(content)
    return d


def digest_of(d) -> str:
    return hashlib.sha256(store.canonical_tar(d)[0]).hexdigest()


def backdate(path, seconds=2 * HOUR):
    """Make a path (and, for a directory, what is in it) look untouched for ``seconds``."""
    t = time.time() - seconds
    paths = [path] + (sorted(path.iterdir()) if path.is_dir() else [])
    for p in reversed(paths):
        os.utime(p, (t, t), follow_symlinks=False)


def die_before_record(monkeypatch):
    """The observed fault: the disk fills up as the writer publishes record.json."""
    real = store.atomic_write

    def atomic_write(path, data, **kw):
        if os.path.basename(path) == store.RECORD:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kw)

    monkeypatch.setattr(store, "atomic_write", atomic_write)


def crashed_put(spool, tmp_path, monkeypatch, mm="smoke_check", content="weights"):
    d = art(tmp_path, f"art-{content}", content)
    with monkeypatch.context() as m:
        die_before_record(m)
        with pytest.raises(OSError, match="No space left"):
            store.put(spool.root, mm, d, {"job": "x"})
    entry = spool.root / "models" / mm / digest_of(d)
    assert sorted(p.name for p in entry.iterdir()) == [store.BUNDLE]
    return d, entry


# --- (a) a bundle without record.json -------------------------------------------------------


def test_an_entry_without_record_json_is_incomplete_not_corrupt_and_the_next_writer_completes_it(
        spool, tmp_path, monkeypatch):
    d, entry = crashed_put(spool, tmp_path, monkeypatch)
    rc, lines, _ = fsck_cli(spool)
    assert rc == 0, lines                                   # a warning, not an error
    assert aged(lines[:1]) == [f"warning: models/smoke_check/{entry.name}: incomplete (repairable): no "
                               f"record.json; its bundle.tar.zst verifies; the next writer of this digest "
                               f"completes it; so does `fsck --repair` (or removes it) (touched N s ago: "
                               f"perhaps still being written; --repair waits until it is N s old)"]
    assert lines[-1] == "fsck: 1 bundles re-hashed, 0 jobs checked, 0 error(s), 1 warning(s)"
    assert store.inspect(entry).status == store.INCOMPLETE

    inode = (entry / store.BUNDLE).stat().st_ino
    again = store.put(spool.root, "smoke_check", d, {"job": "y"})
    assert again.created and again.path == entry
    assert (entry / store.BUNDLE).stat().st_ino == inode     # a bundle that verifies is kept, not rewritten
    assert json.loads((entry / store.RECORD).read_text())["job"] == "y"
    assert store.verify(entry) is None
    assert fsck_json(spool) == (0, {"ok": True, "findings": [], "stats": {
        "bundles": 1, "jobs": 0, "incomplete": 0, "corrupt": 0, "quarantined": 0}})
    # a complete entry is never rewritten
    assert not store.put(spool.root, "smoke_check", d, {"job": "z"}).created
    assert json.loads((entry / store.RECORD).read_text())["job"] == "y"


@pytest.mark.parametrize("leftover", ["partial", "empty", "no bundle"])
def test_the_next_writer_replaces_a_partial_bundle_or_writes_a_missing_one(spool, tmp_path, monkeypatch,
                                                                           leftover):
    d, entry = crashed_put(spool, tmp_path, monkeypatch)
    bundle = entry / store.BUNDLE
    if leftover == "no bundle":
        bundle.unlink()
    else:
        bundle.write_bytes(bundle.read_bytes()[: len(bundle.read_bytes()) // 2] if leftover == "partial" else b"")
    state = store.inspect(entry)
    assert state.status == store.INCOMPLETE and state.bundle == ("absent" if leftover == "no bundle" else "partial")
    rc, lines, _ = fsck_cli(spool)
    assert rc == 0 and "incomplete (repairable)" in lines[0] and "`fsck --repair` removes it" in lines[0]
    assert store.put(spool.root, "smoke_check", d, {"job": "y"}).created
    assert store.verify(entry) is None and not list((spool.root / "quarantine").iterdir())
    assert fsck_json(spool)[1]["findings"] == []


def test_fsck_repair_completes_a_done_jobs_entry_with_that_jobs_provenance(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    claim = claim_next(spool, worker_info())
    stored = claim.complete(art(tmp_path))
    written = json.loads((stored.path / store.RECORD).read_text())
    (stored.path / store.RECORD).unlink()                   # e.g. lost in a power cut
    rc, out = fsck_json(spool)
    assert rc == 0 and [f["severity"] for f in out["findings"]] == ["warning", "warning"]
    assert "is incomplete (repairable): `fsck --repair` publishes its record.json" in out["findings"][1]["what"]

    rc, lines, _ = fsck_cli(spool, "--repair")            # touched just now: left for its writer
    assert rc == 0 and lines[0].startswith(f"not repaired: models/smoke_check/{stored.digest}: incomplete "
                                           f"(repairable), touched ")
    assert not (stored.path / store.RECORD).exists()

    backdate(stored.path)
    rc, lines, _ = fsck_cli(spool, "--repair")
    assert rc == 0, lines
    assert lines[0] == (f"repaired: models/smoke_check/{stored.digest}: published the missing record.json "
                        f"(its bundle verifies), from done job {claim.name}")
    assert lines[-1] == "fsck: 1 bundles re-hashed, 1 jobs checked, 0 error(s), 0 warning(s), 1 repaired"
    record = json.loads((stored.path / store.RECORD).read_text())
    assert record.pop("completed_by") == "fsck --repair" and record == written
    assert fsck_json(spool) == (0, {"ok": True, "findings": [], "stats": {
        "bundles": 1, "jobs": 1, "incomplete": 0, "corrupt": 0, "quarantined": 0}})


def test_fsck_repair_removes_an_incomplete_entry_no_done_job_names(spool, tmp_path, monkeypatch):
    d, entry = crashed_put(spool, tmp_path, monkeypatch)
    _, partial = crashed_put(spool, tmp_path, monkeypatch, content="other")
    (partial / store.BUNDLE).write_bytes((partial / store.BUNDLE).read_bytes()[:40])
    backdate(entry)
    backdate(partial)
    rc, lines, _ = fsck_cli(spool, "--repair", "--older-than-s", "60")
    assert rc == 0, lines
    repaired = sorted(line for line in lines if line.startswith("repaired: "))
    assert len(repaired) == 2 and all("removed the incomplete (repairable) entry" in r for r in repaired)
    assert not entry.exists() and not partial.exists()
    assert not list((spool.root / "tmp").iterdir())        # moved aside, then deleted
    assert lines[-1] == "fsck: 0 bundles re-hashed, 0 jobs checked, 0 error(s), 0 warning(s), 2 repaired"
    assert store.put(spool.root, "smoke_check", d, {"job": "y"}).created   # its job stores it again
    assert fsck_json(spool)[1]["findings"] == []


def test_a_writer_whose_entry_fsck_repair_moves_aside_meanwhile_writes_it_afresh(spool, tmp_path,
                                                                                 monkeypatch):
    d, entry = crashed_put(spool, tmp_path, monkeypatch)
    real, calls = store._publish_bundle, []

    def publish(root, dest, *a):
        if not calls:
            assert store.remove_entry(root, dest)          # what a racing `fsck --repair` does
        calls.append(dest)
        return real(root, dest, *a)

    monkeypatch.setattr(store, "_publish_bundle", publish)
    assert store.put(spool.root, "smoke_check", d, {"job": "y"}).created
    assert len(calls) == 2 and store.verify(entry) is None


def test_of_two_racing_writers_the_first_record_stands(spool, tmp_path, monkeypatch):
    d = art(tmp_path)
    real = store._publish_bundle

    def publish(root, dest, digest, data, tmp):
        real(root, dest, digest, data, tmp)                # the rival publishes its record first
        (dest / store.RECORD).write_text(json.dumps({"digest": digest, "job": "rival"}))

    monkeypatch.setattr(store, "_publish_bundle", publish)
    stored = store.put(spool.root, "smoke_check", d, {"job": "us"})
    assert not stored.created
    assert json.loads((stored.path / store.RECORD).read_text())["job"] == "rival"


# --- (b) stray temp files --------------------------------------------------------------------


def test_stray_temp_files_are_warned_about_and_removed_by_repair_or_the_next_writer(spool, tmp_path):
    tmp = spool.root / "tmp"
    old_bundle = tmp / ".bundle.tar.zst.4242.0badcafe.tmp"
    old_attempt = tmp / ".1@h-1-abcdef.json.4242.deadbeef.tmp"
    fresh = tmp / ".record.json.4243.12345678.tmp"            # a live writer's: never touched
    for p in (old_bundle, old_attempt, fresh):
        p.write_bytes(b"half a file")
    backdate(old_bundle)
    backdate(old_attempt)
    rc, lines, _ = fsck_cli(spool)
    assert rc == 0
    assert aged(lines[:-1]) == aged(
        f"warning: tmp/{p.name}: stray temp file of a dead writer (7200 s old); `fsck --repair` removes it"
        for p in (old_bundle, old_attempt))

    rc, lines, _ = fsck_cli(spool, "--repair")
    assert rc == 0
    assert aged(lines[:-1]) == aged(
        f"repaired: tmp/{p.name}: removed a stray temp file of a dead writer (7200 s old)"
        for p in (old_bundle, old_attempt))
    assert lines[-1] == "fsck: 0 bundles re-hashed, 0 jobs checked, 0 error(s), 0 warning(s), 2 repaired"
    assert sorted(tmp.iterdir()) == [fresh]

    # the next writer removes the store's own stale temp files (and only those)
    old_curves = tmp / ".curves.tar.zst.4244.aaaaaaaa.tmp"
    old_curves.write_bytes(b"x")
    old_attempt.write_bytes(b"x")
    backdate(old_curves)
    backdate(old_attempt)
    store.put(spool.root, "smoke_check", art(tmp_path), {})
    assert sorted(tmp.iterdir()) == sorted([fresh, old_attempt])


# --- (c) corruption ------------------------------------------------------------------------------


def test_a_corrupt_bundle_is_an_error_that_repair_refuses_to_touch(spool, tmp_path):
    smoke_manifest(tmp_path / "m.toml", 1)
    spool.reload(tmp_path / "m.toml")
    stored = claim_next(spool, worker_info()).complete(art(tmp_path))
    bundle = stored.path / store.BUNDLE
    tar = bytearray(zstandard.ZstdDecompressor().decompress(bundle.read_bytes()))
    tar[600] ^= 0xFF                                         # one byte of the checkpoint
    bundle.write_bytes(zstandard.ZstdCompressor().compress(bytes(tar)))
    evil = bundle.read_bytes()
    backdate(stored.path)

    rc, lines, _ = fsck_cli(spool)
    assert rc == 1
    assert lines[0].startswith(f"error: models/smoke_check/{stored.digest}: corrupt: bundle hashes to ")
    rc, lines, _ = fsck_cli(spool, "--repair", "--older-than-s", "60")
    assert rc == 1, lines
    assert lines[0].startswith(f"not repaired: models/smoke_check/{stored.digest}: corrupt (bundle hashes to ")
    assert "left as it is; fsck never repairs corruption" in lines[0]
    assert lines[-1].endswith("2 error(s), 0 warning(s), 0 repaired")  # the entry, and its done job
    assert bundle.read_bytes() == evil
    # nor does the next writer of the same digest: a published entry is never rewritten
    assert not store.put(spool.root, "smoke_check", art(tmp_path, "again"), {}).created
    assert bundle.read_bytes() == evil and fsck_cli(spool)[0] == 1


def test_an_unpublished_bundle_of_other_content_is_corrupt_and_the_next_writer_quarantines_it(
        spool, tmp_path, monkeypatch):
    d, entry = crashed_put(spool, tmp_path, monkeypatch)
    other = store.canonical_tar(art(tmp_path, "other", "not these weights"))[0]
    (entry / store.BUNDLE).write_bytes(zstandard.ZstdCompressor().compress(other))
    backdate(entry)
    assert store.inspect(entry).status == store.CORRUPT
    rc, lines, _ = fsck_cli(spool, "--repair", "--older-than-s", "60")
    assert rc == 1 and lines[0].startswith(f"not repaired: models/smoke_check/{entry.name}: corrupt")
    assert store.put(spool.root, "smoke_check", d, {}).created
    assert store.verify(entry) is None
    [reason] = (spool.root / "quarantine").glob("*.reason.json")
    assert "unpublished bundle hashes to" in json.loads(reason.read_text())["reason"]
    rc, out = fsck_json(spool)
    assert rc == 0 and [f["where"] for f in out["findings"]] == ["quarantine/"]  # still shown


# --- (d) claims without an attempt record ------------------------------------------------------


def orphan_claim(spool, tmp_path, n=1):
    smoke_manifest(tmp_path / "m.toml", n)
    spool.reload(tmp_path / "m.toml")
    claims = []
    for loc in sorted(spool.scan(JobState.PENDING), key=lambda l: l.path.name):
        dst = spool.path_of(JobState.CLAIMED, spool.name_of(loc), "deadhost-4242-abcdef")
        os.rename(loc.path, dst)                            # the claiming rename; then the worker died
        claims.append(dst)
    return claims


def test_repair_requeues_a_claim_without_attempt_record_and_the_job_is_not_lost(spool, tmp_path):
    stale, fresh = orphan_claim(spool, tmp_path, 2)
    backdate(stale, 60)                                      # no heartbeat for a minute
    os.utime(fresh, None)                                    # heartbeated just now
    rc, lines, _ = fsck_cli(spool)
    assert rc == 0
    assert f"warning: claimed/{stale.name}: no attempt record for this claim (worker died right after " \
           f"claiming?); `fsck --repair` requeues it once nobody heartbeats it" in lines

    rc, lines, _ = fsck_cli(spool, "--repair")
    assert rc == 0, lines
    name = stale.name.split("@")[0]
    assert f"repaired: claimed/{stale.name}: no attempt record and no heartbeat for N s (its worker died " \
           f"between claiming and recording): moved to pending/ (runnable again)" in aged(lines)
    assert any(line.startswith(f"not repaired: claimed/{fresh.name}: no attempt record, but heartbeated ")
               for line in lines)
    assert not stale.exists() and fresh.exists()
    assert spool.path_of(JobState.PENDING, name).is_file()

    backdate(fresh, 60)                                      # now its heartbeat stops too
    assert fsck_cli(spool, "--repair")[0] == 0 and not fresh.exists()

    # runnable: a worker claims both and they end done; then fsck is clean
    w = worker_info()
    for i in range(2):
        claim = claim_next(spool, w)
        claim.complete(art(tmp_path, f"a{i}", claim.name))
    assert spool.counts() == {"pending": 0, "claimed": 0, "done": 2, "failed": 0, "cancelled": 0}
    assert fsck_json(spool) == (0, {"ok": True, "findings": [], "stats": {
        "bundles": 2, "jobs": 2, "incomplete": 0, "corrupt": 0, "quarantined": 0}})


def test_a_claim_without_attempt_record_whose_attempts_are_spent_is_recorded_failed(spool, tmp_path):
    [stale] = orphan_claim(spool, tmp_path)
    name = stale.name.split("@")[0]
    for n in (1, 2, 3):                                      # three earlier attempts, all failed
        (spool.attempts_dir(name)).mkdir(parents=True, exist_ok=True)
        (spool.attempts_dir(name) / f"{n}@otherhost-1-abcdef.json").write_text(
            json.dumps({"attempt": n, "outcome": "failed"}))
    backdate(stale, 60)
    rc, lines, _ = fsck_cli(spool, "--repair")
    assert rc == 0 and any("moved to failed/ (its 3 counted attempt(s) are spent)" in line for line in lines)
    assert spool.path_of(JobState.FAILED, name).is_file()


# --- (e) the ENOSPC scenario end to end -----------------------------------------------------------


def test_after_the_full_disk_fsck_repair_leaves_a_clean_spool(spool, tmp_path, monkeypatch):
    """The observed fault: a model entry without record.json, 2 claims without an attempt
    record, a stray temp file. One `fsck --repair`, then fsck is clean and every job runs."""
    claims = orphan_claim(spool, tmp_path, 2)
    _, entry = crashed_put(spool, tmp_path, monkeypatch)
    stray = spool.root / "tmp" / ".bundle.tar.zst.4242.0badcafe.tmp"
    stray.write_bytes(b"half")
    for p in (*claims, entry, stray):
        backdate(p)
    rc, out = fsck_json(spool)
    assert rc == 0 and out["ok"] and len(out["findings"]) == 4
    assert all(f["severity"] == "warning" for f in out["findings"])

    rc, lines, r = fsck_cli(spool, "--repair")
    assert rc == 0, r.stdout + r.stderr
    assert len([line for line in lines if line.startswith("repaired: ")]) == 4
    assert lines[-1] == "fsck: 0 bundles re-hashed, 2 jobs checked, 0 error(s), 0 warning(s), 4 repaired"
    assert fsck_json(spool)[1]["findings"] == []
    r = cli("--spool", str(spool.root), "work", "--drain", "--host-id", "h1")
    assert r.returncode == 0, r.stderr
    assert spool.counts()["done"] == 2
    assert fsck_json(spool)[1]["findings"] == []


def test_repair_refuses_an_age_bound_a_live_writer_could_be_inside(spool):
    rc, lines, r = fsck_cli(spool, "--repair", "--older-than-s", "1")
    assert rc != 0 and "--older-than-s must be at least 3 x stale_after_s" in r.stdout + r.stderr
