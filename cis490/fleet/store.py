"""The content-addressed artifact store (docs/SPOOL.md).

    models/MODEL_MODE/DIGEST/bundle.tar.zst   zstd of the canonical tar
    models/MODEL_MODE/DIGEST/curves.tar.zst   the job's training curves (optional)
    models/MODEL_MODE/DIGEST/record.json      what produced it (written last)

The canonical tar has sorted members, regular files only, mtime 0, uid/gid 0,
empty owner names and fixed modes, so the same files give the same bytes.
DIGEST is the sha256 of the *uncompressed* canonical tar (zstd output may
change across zstd versions; the content does not). Writing an existing
DIGEST is a no-op: bit-identical re-runs deduplicate.

Curves (``metrics.jsonl`` and ``tensorboard/`` event files, from the
driver's ``--curves``) hold wall-clock seconds and TensorBoard's own
timestamps and host name, so they never enter the digest: they are a second
canonical tar beside the bundle, written before ``record.json``, which lists
their files (``"curves"``: path, size, sha256, like ``"files"``). A record
without that key has no curves (the smoke job, a worker from before them);
a ``curves.tar.zst`` the record does not list is ignored. On dedupe the
first writer's curves are kept; a second writer racing the first
publishes with no-clobber and records the curves that won.

Healing (``inspect`` says which of three an entry is):

- *ok*: ``record.json`` is there (the entry is published) and everything in
  it verifies. A published entry is never rewritten: ``record.json`` itself
  is published with no-clobber, so of two writers racing only the first
  one's record lands.
- *incomplete*: no ``record.json`` (its writer died: ENOSPC, SIGKILL, power
  cut) and a bundle that is absent, partial (a truncated zstd frame or an
  empty file) or that verifies. The next writer of the same DIGEST completes
  it in place: it keeps a bundle that verifies (no rewrite), atomically
  replaces a partial one, then publishes the curves and ``record.json``
  (no-clobber). It never removes the directory, so a concurrent writer of
  the same DIGEST is never disturbed: every writer writes the same content,
  and each file appears by one rename. Completeness is judged by content,
  never by age, so the writer needs no clock. ``fsck --repair`` completes or
  removes one that nobody has touched for ``STALE_WRITE_S``.
- *corrupt*: a published entry that does not verify, or a bundle (published
  or not) that decodes in full to another digest. Never repaired silently:
  fsck reports it as an error, ``fsck --repair`` leaves it, and the next
  writer keeps its hands off a published one; an unpublished bundle of the
  wrong content is moved to ``quarantine/`` (with its reason, so fsck still
  shows it) before the writer publishes the right one.

A store temp file (``tmp/.bundle.tar.zst.PID.NONCE.tmp`` and the like) older
than ``STALE_WRITE_S`` belongs to a dead writer: the next ``put`` removes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import zstandard

from cis490.common import METRICS, TENSORBOARD, atomic_write, atomic_writer
from cis490.fleet.layout import DIGEST_RE, SpoolError

ZSTD_LEVEL = 10
MAX_BUNDLE_FILES = 1000
MAX_BUNDLE_BYTES = 8 << 30  # refuse to read back a bundle that inflates past this
MAX_CURVES_BYTES = 256 << 20  # curves are scalars: refuse to read back more than this

BUNDLE = "bundle.tar.zst"
CURVES = "curves.tar.zst"  # its members: METRICS, TENSORBOARD/ (cis490.common)
RECORD = "record.json"

# An incomplete entry or a temp file nobody has touched for this long has no live
# writer (a bundle is compressed and written in seconds to minutes).
STALE_WRITE_S = 3600.0
# the atomic writer's temp names (cis490.common) (".DEST.PID.NONCE.tmp"); the store's own three below.
TMP_RE = re.compile(r"^\..+\.[0-9]+\.[0-9a-f]{8}\.tmp$")
STORE_TMP_RE = re.compile(r"^\.(bundle\.tar\.zst|curves\.tar\.zst|record\.json)\.[0-9]+\.[0-9a-f]{8}\.tmp$")

log = logging.getLogger(__name__)


class StoreError(SpoolError):
    """An artifact directory or bundle is unusable."""


class PartialBundle(StoreError):
    """A bundle cut short (empty, or a truncated zstd frame): what a crashed
    non-atomic copy leaves, not altered content."""


def _files(artifact_dir: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(artifact_dir, followlinks=False):
        dirnames.sort()
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            rel = p.relative_to(artifact_dir).as_posix()
            if p.is_symlink() or not p.is_file():
                raise StoreError(f"artifact {rel!r} is not a regular file (links are refused)")
            out.append((rel, p))
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                raise StoreError(f"artifact directory {d!r} is a symlink (refused)")
    if not out:
        raise StoreError(f"artifact directory {artifact_dir} is empty")
    if len(out) > MAX_BUNDLE_FILES:
        raise StoreError(f"artifact has more than {MAX_BUNDLE_FILES} files")
    return sorted(out)


def canonical_tar(artifact_dir: str | os.PathLike) -> tuple[bytes, list[dict]]:
    """The canonical tar of a directory's regular files, and a file listing."""
    buf = io.BytesIO()
    listing = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in _files(Path(artifact_dir)):
            data = path.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
            listing.append({"path": rel, "size": len(data),
                            "sha256": hashlib.sha256(data).hexdigest()})
    return buf.getvalue(), listing


@dataclass(frozen=True)
class StoredArtifact:
    digest: str
    path: Path          # the DIGEST directory
    created: bool       # False: identical content was already stored (dedupe)


def _has_files(d: str | os.PathLike | None) -> bool:
    if d is None or not Path(d).is_dir():
        return False
    return any(files for _, _, files in os.walk(d, followlinks=False))


def _listing(members: dict[str, bytes]) -> list[dict]:
    return [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in sorted(members.items())]


def _put_curves(dest: Path, tar_bytes: bytes, listing: list[dict], tmp: Path) -> list[dict]:
    """Publish ``curves.tar.zst`` without replacing one already there; the listing of
    the curves that end up stored (ours, or a racing first writer's)."""
    data = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(tar_bytes)
    try:
        with atomic_writer(dest / CURVES, tmp_dir=tmp, no_clobber=True) as fh:
            fh.write(data)
        return listing
    except FileExistsError:
        pass
    try:
        _, members = read_bundle(dest / CURVES, max_bytes=MAX_CURVES_BYTES)
        return _listing(members)
    except StoreError:  # unreadable leftover: ours replaces it
        atomic_write(dest / CURVES, data, tmp_dir=tmp)
        return listing


def stale_temp_files(tmp_dir: Path, older_than_s: float = STALE_WRITE_S, now: float | None = None,
                     *, store_only: bool = False) -> list[tuple[Path, float]]:
    """The atomic writer's temp files in ``tmp_dir`` untouched for ``older_than_s``: (path, age).
    Only the store's own (bundle, curves, record) with ``store_only``."""
    now = time.time() if now is None else now
    pattern = STORE_TMP_RE if store_only else TMP_RE
    out = []
    try:
        entries = list(os.scandir(tmp_dir))
    except FileNotFoundError:
        return out
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if entry.is_file(follow_symlinks=False) and now - st.st_mtime > older_than_s:
            out.append((Path(entry.path), now - st.st_mtime))
    return sorted(out)


def remove_stale_temp_files(tmp_dir: Path, older_than_s: float = STALE_WRITE_S, now: float | None = None,
                            *, store_only: bool = False) -> list[tuple[Path, float]]:
    """Remove what ``stale_temp_files`` finds; the ones this call removed."""
    removed = []
    for path, age in stale_temp_files(tmp_dir, older_than_s, now, store_only=store_only):
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue  # another cleaner got there first
        removed.append((path, age))
    return removed


def _bundle_digest(path: Path) -> str | None:
    """The digest of a bundle file; None when it is absent. PartialBundle when cut
    short, StoreError when otherwise unreadable."""
    if not _exists(path):
        return None
    digest, _ = read_bundle(path)
    return digest


def _publish_bundle(root: Path, dest: Path, digest: str, data: bytes, tmp: Path) -> None:
    """Make ``dest/bundle.tar.zst`` a bundle of ``digest``: keep one that already
    verifies (a racing writer's, or a dead one's), replace a partial one, and move
    one of other content to quarantine/ (corruption is never overwritten unseen)."""
    path = dest / BUNDLE
    try:
        if os.path.getsize(path) == len(data) and path.read_bytes() == data:
            return  # a writer of the same digest (and zstd) got there first
    except FileNotFoundError:
        pass
    else:
        try:
            found = _bundle_digest(path)
        except PartialBundle as exc:
            log.warning("replacing the partial bundle of an incomplete entry (%s)", exc)
        except FileNotFoundError:
            pass
        except StoreError as exc:
            _quarantine(root, path, f"unpublished bundle is unreadable ({exc}); replaced by a good one")
        else:
            if found == digest:
                return  # verifies (another zstd wrote other bytes): keep it
            if found is not None:
                _quarantine(root, path, f"unpublished bundle hashes to {found[:12]}…, not {digest[:12]}…; "
                                           f"replaced by a good one")
    with atomic_writer(path, tmp_dir=tmp) as fh:
        fh.write(data)


def _quarantine(root: Path, path: Path, reason: str) -> None:
    from cis490.fleet.attempts import quarantine

    log.warning("store: %s: %s (moved to quarantine/)", path, reason)
    quarantine(root, path, reason, "store")


def put(root: Path, model_mode: str, artifact_dir: str | os.PathLike, provenance: dict,
        curves_dir: str | os.PathLike | None = None) -> StoredArtifact:
    """Store an artifact directory (and, beside it, a curves directory that has files);
    a no-op when its digest is already published. An incomplete entry of the same
    digest (a dead writer's) is completed in place; see the module doc."""
    tar_bytes, listing = canonical_tar(artifact_dir)
    digest = hashlib.sha256(tar_bytes).hexdigest()
    from cis490.fleet.attempts import real_dir

    dest = root / "models" / model_mode / digest
    real_dir(root, dest.parent)
    real_dir(root, dest)
    if _exists(dest / RECORD):
        return StoredArtifact(digest, dest, False)  # published: never rewritten
    curves = canonical_tar(curves_dir) if _has_files(curves_dir) else None  # refuse before writing
    tmp = root / "tmp"
    remove_stale_temp_files(tmp, store_only=True)  # a dead writer's leftovers
    remove_stale_temp_files(dest)
    data = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(tar_bytes)
    record = {"digest": digest, "model_mode": model_mode, "files": listing,
              "tar_bytes": len(tar_bytes), **provenance}
    for _ in range(3):
        try:
            _publish_bundle(root, dest, digest, data, tmp)
            if curves is not None:
                record["curves"] = _put_curves(dest, *curves, tmp)
            atomic_write(dest / RECORD, json.dumps(record, sort_keys=True, indent=1) + "\n",
                         tmp_dir=tmp, no_clobber=True)
            return StoredArtifact(digest, dest, True)
        except FileExistsError:  # a racing writer published record.json first: theirs stands
            return StoredArtifact(digest, dest, False)
        except FileNotFoundError:
            if dest.is_dir():
                raise
            # `fsck --repair` moved this (then stale) incomplete entry aside meanwhile
            real_dir(root, dest)
    raise StoreError(f"{dest}: the entry kept disappearing while it was written; try again")


def read_bundle(bundle: Path, *, max_bytes: int = MAX_BUNDLE_BYTES) -> tuple[str, dict[str, bytes]]:
    """Decompress a bundle: (sha256 of the tar, {member: bytes}); refuses odd members.
    PartialBundle (a StoreError) when it is cut short."""
    digest, members, _ = _decode(bundle, max_bytes)
    return digest, members


def _decode(bundle: Path, max_bytes: int = MAX_BUNDLE_BYTES) -> tuple[str, dict[str, bytes], int]:
    """read_bundle, and the size of the uncompressed tar."""
    h = hashlib.sha256()
    raw = io.BytesIO()
    try:
        with open(bundle, "rb") as fh:
            head = fh.read(32)
            if len(head) < 5:  # too short for a zstd frame header
                raise PartialBundle(f"{bundle}: cut short ({len(head)} bytes; a partial write)")
            try:
                expected = zstandard.get_frame_parameters(head).content_size
            except zstandard.ZstdError:
                if head[:4] == b"\x28\xb5\x2f\xfd":  # zstd magic, header cut short
                    raise PartialBundle(f"{bundle}: zstd frame header cut short (a partial write)") from None
                raise
            fh.seek(0)
            with zstandard.ZstdDecompressor().stream_reader(fh) as zr:
                while chunk := zr.read(1 << 20):
                    h.update(chunk)
                    raw.write(chunk)
                    if raw.tell() > max_bytes:
                        raise StoreError(f"{bundle} inflates past {max_bytes} bytes")
    except zstandard.ZstdError as exc:
        raise StoreError(f"{bundle}: corrupt zstd stream ({exc})") from None
    if expected != zstandard.CONTENTSIZE_UNKNOWN and raw.tell() < expected:
        # the stream reader ends quietly at a truncated frame; the header knows its size
        raise PartialBundle(f"{bundle}: truncated zstd stream ({raw.tell()} of {expected} bytes; "
                            f"a partial write)")
    size = raw.tell()
    members: dict[str, bytes] = {}
    raw.seek(0)
    try:
        with tarfile.open(fileobj=raw, mode="r:") as tar:
            for info in tar:
                name = info.name
                if not info.isreg() or name.startswith("/") or ".." in name.split("/"):
                    raise StoreError(f"{bundle}: refused member {name!r}")
                members[name] = tar.extractfile(info).read()  # type: ignore[union-attr]
    except tarfile.TarError as exc:
        raise StoreError(f"{bundle}: corrupt tar ({exc})") from None
    return h.hexdigest(), members, size


def extract(digest_dir: Path, out_dir: Path) -> list[Path]:
    """Verify a stored bundle and write its files under ``out_dir``."""
    digest, members = read_bundle(digest_dir / BUNDLE)
    if digest != digest_dir.name:
        raise StoreError(f"{digest_dir}: content hashes to {digest}, not its name")
    written = []
    for name, data in members.items():
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        written.append(target)
    return written


def _record(digest_dir: Path) -> dict:
    try:
        record = json.loads((digest_dir / "record.json").read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{digest_dir}: unreadable record.json ({exc})") from None
    if not isinstance(record, dict):
        raise StoreError(f"{digest_dir}: record.json is not an object")
    return record


def read_curves_members(digest_dir: Path, record: dict | None = None) -> dict[str, bytes] | None:
    """The stored curves' files, checked against record.json's listing; None when the
    record lists none. StoreError when ``curves.tar.zst`` is missing or differs."""
    record = _record(digest_dir) if record is None else record
    listed = record.get("curves")
    if listed is None:
        return None
    path = digest_dir / CURVES
    if not path.is_file():
        raise StoreError(f"{digest_dir.name[:12]}…: record.json lists curves but {CURVES} is missing")
    _, members = read_bundle(path, max_bytes=MAX_CURVES_BYTES)
    if _listing(members) != listed:
        raise StoreError(f"{digest_dir.name[:12]}…: {CURVES} does not match record.json's listing")
    return members


def parse_metrics(text: str) -> list[dict]:
    """``metrics.jsonl``'s rows (objects with an integer ``epoch``); ValueError otherwise."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or isinstance(row.get("epoch"), bool) \
                or not isinstance(row.get("epoch"), int):
            raise ValueError(f"{METRICS} line {n}: not an object with an integer epoch")
        rows.append(row)
    return rows


def read_curves(digest_dir: Path) -> list[dict] | None:
    """The stored ``metrics.jsonl`` rows of one artifact (verified against record.json),
    or None when it has no curves. StoreError when they are corrupt."""
    members = read_curves_members(digest_dir)
    if members is None or METRICS not in members:
        return None
    try:
        return parse_metrics(members[METRICS].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"{digest_dir.name[:12]}…: bad {METRICS} ({exc})") from None


def extract_curves(digest_dir: Path, out_dir: Path) -> list[Path]:
    """Write a stored artifact's ``metrics.jsonl`` and ``tensorboard/`` files under
    ``out_dir`` (verified; members outside those two, or escaping ``out_dir``, refused);
    [] when it has no curves."""
    members = read_curves_members(digest_dir)
    if members is None:
        return []
    base = out_dir.resolve()
    written = []
    for name, data in sorted(members.items()):
        if name != METRICS and not name.startswith(f"{TENSORBOARD}/"):
            continue                      # only what TensorBoard and the report read
        target = out_dir / name
        if not target.resolve().is_relative_to(base):  # e.g. a symlink planted in out_dir
            raise StoreError(f"{digest_dir.name[:12]}…: refused curves member {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        written.append(target)
    return written


def iter_artifacts(root: Path):
    """Yield (model_mode, digest_dir) for every DIGEST directory in the store."""
    models = root / "models"
    if not models.is_dir():
        return
    for mm in sorted(os.scandir(models), key=lambda e: e.name):
        if not mm.is_dir(follow_symlinks=False):
            continue
        for d in sorted(os.scandir(mm.path), key=lambda e: e.name):
            if d.is_dir(follow_symlinks=False):
                yield mm.name, Path(d.path)


OK, INCOMPLETE, CORRUPT = "ok", "incomplete", "corrupt"


@dataclass(frozen=True)
class EntryState:
    """What ``inspect`` found in one DIGEST directory."""
    status: str                  # OK | INCOMPLETE | CORRUPT
    what: str                    # why it is not OK ("" when it is)
    bundle: str                  # "verified" | "absent" | "partial" | "bad"
    newest_mtime: float          # of the directory and its files: when a writer last touched it
    stray: tuple[Path, ...] = ()  # the atomic writer's temp files inside the directory


def _verify_published(digest_dir: Path) -> str | None:
    try:
        record = json.loads((digest_dir / RECORD).read_text())
        digest, _ = read_bundle(digest_dir / BUNDLE)
    except (OSError, ValueError, StoreError) as exc:
        return str(exc)
    if not isinstance(record, dict):
        return "record.json is not an object"
    if digest != digest_dir.name:
        return f"bundle hashes to {digest[:12]}…, not its name"
    if record.get("digest") != digest:
        return "record.json names another digest"
    try:
        read_curves_members(digest_dir, record)
    except (OSError, StoreError) as exc:
        return str(exc)
    return None


def inspect(digest_dir: Path) -> EntryState:
    """Classify one stored artifact: ok, incomplete (no record.json, and a bundle that
    is absent, partial or verifies: repairable) or corrupt (see the module doc)."""
    newest, stray = 0.0, []
    try:
        newest = os.lstat(digest_dir).st_mtime
        for e in os.scandir(digest_dir):
            try:
                newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
            except FileNotFoundError:
                continue
            if TMP_RE.match(e.name) and e.is_file(follow_symlinks=False):
                stray.append(Path(e.path))
    except FileNotFoundError:
        pass
    stray_t = tuple(sorted(stray))
    if not DIGEST_RE.match(digest_dir.name):
        return EntryState(CORRUPT, f"{digest_dir.name} is not a sha256 digest", "bad", newest, stray_t)
    if _exists(digest_dir / RECORD):
        problem = _verify_published(digest_dir)
        return EntryState(CORRUPT if problem else OK, problem or "", "bad" if problem else "verified",
                          newest, stray_t)
    bundle = digest_dir / BUNDLE
    if _exists(bundle) and (bundle.is_symlink() or not bundle.is_file()):
        return EntryState(CORRUPT, "bundle.tar.zst is not a regular file (and no record.json)", "bad",
                          newest, stray_t)
    try:
        found = _bundle_digest(bundle)
    except FileNotFoundError:  # removed as we looked (a racing `fsck --repair`)
        found = None
    except PartialBundle as exc:
        return EntryState(INCOMPLETE, f"no record.json, and bundle.tar.zst is partial ({exc})", "partial",
                          newest, stray_t)
    except (OSError, StoreError) as exc:
        return EntryState(CORRUPT, f"bundle.tar.zst is unreadable ({exc}), and no record.json", "bad",
                          newest, stray_t)
    if found is None:
        return EntryState(INCOMPLETE, "no record.json and no bundle.tar.zst", "absent", newest, stray_t)
    if found != digest_dir.name:
        return EntryState(CORRUPT, f"bundle hashes to {found[:12]}…, not its name (and no record.json)",
                          "bad", newest, stray_t)
    return EntryState(INCOMPLETE, "no record.json; its bundle.tar.zst verifies", "verified", newest, stray_t)


def verify(digest_dir: Path) -> str | None:
    """Re-hash one stored artifact (and its curves, against the record's listing);
    None when sound, else what is wrong (``inspect`` says whether it is repairable)."""
    state = inspect(digest_dir)
    return None if state.status == OK else state.what


def complete_entry(root: Path, digest_dir: Path, provenance: dict) -> list[str]:
    """Publish the missing record.json of an incomplete entry whose bundle verifies
    (``fsck --repair``); what was done, [] when it was not incomplete that way any
    more (a writer completed it meanwhile). An unpublished curves file that does not
    read back is removed (no record lists it)."""
    state = inspect(digest_dir)
    if state.status != INCOMPLETE or state.bundle != "verified":
        return []
    digest, members, tar_bytes = _decode(digest_dir / BUNDLE)
    if digest != digest_dir.name:
        return []
    done = []
    record = {"digest": digest, "model_mode": digest_dir.parent.name, "files": _listing(members),
              "tar_bytes": tar_bytes, **provenance}
    curves = digest_dir / CURVES
    if os.path.lexists(curves):
        try:
            _, cmembers = read_bundle(curves, max_bytes=MAX_CURVES_BYTES)
            record["curves"] = _listing(cmembers)
        except (OSError, StoreError) as exc:
            try:
                os.unlink(curves)
                done.append(f"removed its unreadable, unlisted {CURVES} ({exc})")
            except FileNotFoundError:
                pass
    try:
        atomic_write(digest_dir / RECORD, json.dumps(record, sort_keys=True, indent=1) + "\n",
                     tmp_dir=root / "tmp", no_clobber=True)
    except FileExistsError:
        return done  # a writer of this digest published its record first
    return [*done, "published the missing record.json (its bundle verifies)"]


REMOVING_RE = re.compile(r"^\.entry-[0-9a-f]{64}\.removing-[0-9a-f]{8}$")


def remove_entry(root: Path, digest_dir: Path) -> bool:
    """Remove an incomplete entry: moved aside into tmp/ in one rename first (a
    writer that comes meanwhile recreates the directory and writes it afresh), then
    deleted. Put back, and False, if record.json appeared in it meanwhile."""
    import secrets
    import shutil

    aside = root / "tmp" / f".entry-{digest_dir.name}.removing-{secrets.token_hex(4)}"
    try:
        os.rename(digest_dir, aside)
    except FileNotFoundError:
        return False
    if _exists(aside / RECORD):  # published between the caller's look and our rename
        try:
            os.rename(aside, digest_dir)
        except OSError:
            pass  # a new writer recreated it: leave the published copy aside, never delete it
        return False
    shutil.rmtree(aside, ignore_errors=True)
    return True


def _exists(path: Path) -> bool:
    """``os.path.lexists`` that raises instead of saying False when the filesystem
    cannot answer (EIO, ESTALE): a published entry must never look absent."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    return True


def leftover_removals(root: Path) -> list[Path]:
    """Directories a ``remove_entry`` moved aside and did not finish deleting."""
    try:
        return sorted(Path(e.path) for e in os.scandir(root / "tmp")
                      if REMOVING_RE.match(e.name) and e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
