"""Schema-hashed checkpoints with canonical bytes (stdlib only).

A checkpoint is two files in one directory, published with the project's
``atomic_write`` (sidecar first, the JSON last, so a reader that sees the
JSON sees a complete checkpoint):

- ``<model>_<mode>.ckpt.json`` - canonical JSON (sorted keys, 2-space indent,
  ``", "``/``": "`` separators, ASCII, floats by ``repr``, no NaN): format,
  model, mode, input shape, classes, config, ``schema_sha256``, normalisation
  statistics (fitted on train only), class weights, fit report, val metrics,
  data digests, library versions, and the sidecar's name and sha256;
- the sidecar with the weights: ``<model>_<mode>.safetensors`` (torch,
  tensors keyed and written in sorted order, no metadata) or
  ``<model>_<mode>.xgb.json`` (XGBoost's own JSON model).

Nothing time-, host- or path-dependent is written, so the same spec on the
same data gives byte-identical files (the artifact store deduplicates: docs/SPOOL.md).
Loading against a different feature schema raises ``ValueError`` naming both
hashes (:func:`check_schema`).
"""

from __future__ import annotations

import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from cis490.common import InputError, atomic_write, read_small, sha256_bytes, sha256_file

__all__ = [
    "FORMAT",
    "canonical_json",
    "check_schema",
    "find_checkpoint",
    "json_safe",
    "library_versions",
    "read_checkpoint",
    "sha256_bytes",
    "sha256_file",
    "write_checkpoint",
]

FORMAT = "cis490-ckpt/1"
SUFFIX = ".ckpt.json"


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN); tuples -> lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> bytes:
    """The one byte form of ``obj``: sorted keys, fixed separators, repr floats."""
    text = json.dumps(
        json_safe(obj), sort_keys=True, indent=2, separators=(",", ": "),
        ensure_ascii=True, allow_nan=False,
    )
    return (text + "\n").encode("ascii")


def library_versions(*names: str) -> dict[str, str]:
    """Versions of python and the named distributions (part of provenance)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def check_schema(meta: dict[str, Any], expect_schema_sha256: str | None) -> None:
    """Refuse a checkpoint trained on another feature schema than the data's."""
    have = meta.get("schema_sha256")
    if expect_schema_sha256 is not None and have != expect_schema_sha256:
        raise InputError(
            f"schema mismatch: checkpoint {meta.get('model')}_{meta.get('mode')} was "
            f"trained on schema {have} but the data has schema {expect_schema_sha256}; "
            f"retrain it on the current features"
        )


def write_checkpoint(
    directory: str | Path, stem: str, meta: dict[str, Any], sidecar: bytes, sidecar_ext: str
) -> Path:
    """Publish ``stem + sidecar_ext`` then ``stem.ckpt.json``; return the JSON path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    side_name = stem + sidecar_ext
    meta = dict(meta, format=FORMAT,
                sidecar={"file": side_name, "sha256": sha256_bytes(sidecar)})
    atomic_write(directory / side_name, sidecar)
    path = directory / (stem + SUFFIX)
    atomic_write(path, canonical_json(meta))
    return path


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a ``*.ckpt.json``, else the only one inside it."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*" + SUFFIX))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise FileNotFoundError(
                f"expected exactly one *{SUFFIX} in {path}, found {names}"
            )
        return found[0]
    if not path.name.endswith(SUFFIX):
        raise InputError(f"{path} is not a checkpoint (*{SUFFIX})")
    return path


def read_checkpoint(
    path: str | Path, expect_schema_sha256: str | None = None
) -> tuple[dict[str, Any], bytes]:
    """Read and verify a checkpoint: (metadata, sidecar bytes)."""
    path = find_checkpoint(path)
    try:
        meta = json.loads(read_small(path))
    except ValueError as exc:
        raise InputError(f"{path.name}: not a {FORMAT} checkpoint ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{path.name}: not a {FORMAT} checkpoint")
    check_schema(meta, expect_schema_sha256)
    side = meta["sidecar"]
    if Path(side["file"]).name != side["file"]:
        raise InputError(f"{path.name}: sidecar name {side['file']!r} is not a plain file name")
    data = (path.parent / side["file"]).read_bytes()
    if sha256_bytes(data) != side["sha256"]:
        raise InputError(
            f"{path.name}: sidecar {side['file']} has sha256 {sha256_bytes(data)}, "
            f"expected {side['sha256']} (corrupt or mixed checkpoint)"
        )
    return meta, data
