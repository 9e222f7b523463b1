"""The content-addressed artifact store (DESIGN §6).

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
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

from cis490.fleet.atomic import atomic_write, atomic_writer
from cis490.fleet.layout import DIGEST_RE, SpoolError

ZSTD_LEVEL = 10
MAX_BUNDLE_FILES = 1000
MAX_BUNDLE_BYTES = 8 << 30  # refuse to read back a bundle that inflates past this
MAX_CURVES_BYTES = 256 << 20  # curves are scalars: refuse to read back more than this

BUNDLE = "bundle.tar.zst"
CURVES = "curves.tar.zst"
METRICS = "metrics.jsonl"        # one JSON object per epoch, in the curves
TENSORBOARD = "tensorboard"      # the event directory, in the curves


class StoreError(SpoolError):
    """An artifact directory or bundle is unusable."""


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


def put(root: Path, model_mode: str, artifact_dir: str | os.PathLike, provenance: dict,
        curves_dir: str | os.PathLike | None = None) -> StoredArtifact:
    """Store an artifact directory (and, beside it, a curves directory that has files);
    a no-op when its digest is already there."""
    tar_bytes, listing = canonical_tar(artifact_dir)
    digest = hashlib.sha256(tar_bytes).hexdigest()
    from cis490.fleet.attempts import real_dir

    dest = root / "models" / model_mode / digest
    real_dir(root, dest.parent)
    real_dir(root, dest)
    if (dest / "record.json").is_file():
        return StoredArtifact(digest, dest, False)
    curves = canonical_tar(curves_dir) if _has_files(curves_dir) else None  # refuse before writing
    tmp = root / "tmp"
    with atomic_writer(dest / BUNDLE, tmp_dir=tmp) as fh:
        fh.write(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(tar_bytes))
    record = {"digest": digest, "model_mode": model_mode, "files": listing,
              "tar_bytes": len(tar_bytes), **provenance}
    if curves is not None:
        record["curves"] = _put_curves(dest, *curves, tmp)
    atomic_write(dest / "record.json", json.dumps(record, sort_keys=True, indent=1) + "\n",
                 tmp_dir=tmp)
    return StoredArtifact(digest, dest, True)


def read_bundle(bundle: Path, *, max_bytes: int = MAX_BUNDLE_BYTES) -> tuple[str, dict[str, bytes]]:
    """Decompress a bundle: (sha256 of the tar, {member: bytes}); refuses odd members."""
    h = hashlib.sha256()
    raw = io.BytesIO()
    try:
        with open(bundle, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as zr:
            while chunk := zr.read(1 << 20):
                h.update(chunk)
                raw.write(chunk)
                if raw.tell() > max_bytes:
                    raise StoreError(f"{bundle} inflates past {max_bytes} bytes")
    except zstandard.ZstdError as exc:
        raise StoreError(f"{bundle}: corrupt zstd stream ({exc})") from None
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
    return h.hexdigest(), members


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


def verify(digest_dir: Path) -> str | None:
    """Re-hash one stored artifact (and its curves, against the record's listing);
    None when sound, else what is wrong."""
    if not DIGEST_RE.match(digest_dir.name):
        return f"{digest_dir.name} is not a sha256 digest"
    rec_path = digest_dir / "record.json"
    if not rec_path.is_file():
        return "no record.json (incomplete write)"
    try:
        record = json.loads(rec_path.read_text())
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
