"""The content-addressed artifact store (DESIGN §6).

    models/MODEL_MODE/DIGEST/bundle.tar.zst   zstd of the canonical tar
    models/MODEL_MODE/DIGEST/record.json      what produced it (written last)

The canonical tar has sorted members, regular files only, mtime 0, uid/gid 0,
empty owner names and fixed modes, so the same files give the same bytes.
DIGEST is the sha256 of the *uncompressed* canonical tar (zstd output may
change across zstd versions; the content does not). Writing an existing
DIGEST is a no-op: bit-identical re-runs deduplicate.
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


def put(root: Path, model_mode: str, artifact_dir: str | os.PathLike, provenance: dict) -> StoredArtifact:
    """Store an artifact directory; a no-op when its digest is already there."""
    tar_bytes, listing = canonical_tar(artifact_dir)
    digest = hashlib.sha256(tar_bytes).hexdigest()
    from cis490.fleet.attempts import real_dir

    dest = root / "models" / model_mode / digest
    real_dir(root, dest.parent)
    real_dir(root, dest)
    if (dest / "record.json").is_file():
        return StoredArtifact(digest, dest, False)
    tmp = root / "tmp"
    with atomic_writer(dest / "bundle.tar.zst", tmp_dir=tmp) as fh:
        fh.write(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(tar_bytes))
    record = {"digest": digest, "model_mode": model_mode, "files": listing,
              "tar_bytes": len(tar_bytes), **provenance}
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
    digest, members = read_bundle(digest_dir / "bundle.tar.zst")
    if digest != digest_dir.name:
        raise StoreError(f"{digest_dir}: content hashes to {digest}, not its name")
    written = []
    for name, data in members.items():
        target = out_dir / name
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
    """Re-hash one stored artifact; None when sound, else what is wrong."""
    if not DIGEST_RE.match(digest_dir.name):
        return f"{digest_dir.name} is not a sha256 digest"
    rec_path = digest_dir / "record.json"
    if not rec_path.is_file():
        return "no record.json (incomplete write)"
    try:
        record = json.loads(rec_path.read_text())
        digest, _ = read_bundle(digest_dir / "bundle.tar.zst")
    except (OSError, ValueError, StoreError) as exc:
        return str(exc)
    if digest != digest_dir.name:
        return f"bundle hashes to {digest[:12]}…, not its name"
    if record.get("digest") != digest:
        return "record.json names another digest"
    return None
