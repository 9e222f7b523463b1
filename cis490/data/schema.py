"""``feature_schema_v1.json``: what the derived data means, and its hash.

Invariant: the schema bytes are a pure function of (channel registry, window
spec) — canonical JSON, sorted keys — so the features and tensors builders
write the same file independently, and its sha256 (the *schema hash*) changes
exactly when a channel, a mode, a phase, the stat list or the window spec
changes. Checkpoints record this hash and refuse another one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .channels import REGISTRY, Registry, WindowSpec
from .windows import STATS
from cis490.common import InputError, read_small

__all__ = ["SCHEMA_NAME", "META_COLUMNS", "schema_bytes", "schema_sha256", "feature_names",
           "read_schema"]

SCHEMA_NAME = "feature_schema_v1.json"
META_COLUMNS = (
    ("episode_id", "string"), ("host_id", "string"), ("profile", "string"),
    ("sample_name", "string"), ("t_end_ns", "int64"), ("label", "int64"),
)


def feature_names(registry: Registry = REGISTRY, mode: str | None = None) -> list[str]:
    chans = registry.channels if mode is None else registry.channels_for(mode)
    return [f"{c.name}__{s}" for c in chans for s in STATS]


def schema_dict(registry: Registry, window: WindowSpec) -> dict:
    return {
        "schema": "cis490.feature_schema",
        "version": 1,
        "registry": registry.as_dict(),
        "window": window.as_dict(),
        "summary": {
            "stats": list(STATS),
            "columns": [{"name": n, "dtype": t} for n, t in META_COLUMNS]
            + [{"name": n, "dtype": "float32"} for n in feature_names(registry)],
            "modes": {m: feature_names(registry, m) for m in sorted(registry.modes)},
            "row_order": ["episode_id", "t_end_ns"],
            "missing": "NaN where a channel has no observation in the window",
        },
        "tensor": {
            "dtype": "float32",
            "layout": "[window, channel, time]",
            "channels": [c.name for c in registry.channels],
            "length": window.length_s,
            "mask": "uint8, 1 = observed, 0 = missing (value is NaN)",
        },
        "labels": list(registry.phases),
    }


def schema_bytes(registry: Registry = REGISTRY, window: WindowSpec | None = None) -> bytes:
    window = window or WindowSpec()
    return (json.dumps(schema_dict(registry, window), indent=1, sort_keys=True) + "\n").encode()


def schema_sha256(registry: Registry = REGISTRY, window: WindowSpec | None = None) -> str:
    return hashlib.sha256(schema_bytes(registry, window)).hexdigest()


def read_schema(path: str | Path, registry: Registry = REGISTRY) -> tuple[dict, str]:
    """Load a schema file; refuse one this code's registry would not write.

    Returns ``(schema, sha256 of its bytes)``.
    """
    raw = read_small(path)
    try:
        schema = json.loads(raw)
        w = schema["window"]
        window = WindowSpec(int(w["length_s"]), int(w["stride_s"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a feature schema ({exc})") from None
    expected = schema_bytes(registry, window)
    if raw != expected:
        raise InputError(
            f"{path}: feature schema (sha256 {hashlib.sha256(raw).hexdigest()[:12]}) does not match "
            f"this code's channel registry (sha256 {hashlib.sha256(expected).hexdigest()[:12]}); "
            "rebuild features and tensors"
        )
    return schema, hashlib.sha256(raw).hexdigest()
