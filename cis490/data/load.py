"""Loaders for the derived data (CONTRACTS.md: "Python loaders").

Invariants:

- The schema file is checked against this code's channel registry
  (``schema.read_schema``) and against the hash recorded in the data, so a
  model can never be fed columns from another registry.
- A mode selects channels: ``oracle`` = all, ``realistic`` = the prefix
  without ``proc.*`` (summary: the matching feature columns).
- Rows come back in canonical order (``episode_id``, then ``t_end_ns``),
  restricted to ``episode_ids`` when given (ids with no windows give no rows).
- Tensors stay memory-mapped: ``TensorData.X`` / ``.mask`` are
  ``WindowArray`` views that read only the rows indexed (``X[batch_idx]``),
  so the full-scale set never has to fit in RAM; ``np.asarray(X)``
  materialises on purpose.
- NaN marks "not observed" (summary features of absent channels; tensor
  values where ``mask == 0``). Normalise on train only, NaN-aware, then fill.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .channels import REGISTRY, Registry
from .schema import META_COLUMNS, SCHEMA_NAME, read_schema

__all__ = ["SummaryData", "TensorData", "WindowArray", "load_summary", "load_tensors", "summary_parts"]

META_NAMES = [n for n, _ in META_COLUMNS]


@dataclass
class SummaryData:
    X: np.ndarray  # (N, F) float32, NaN where a channel is absent
    y: np.ndarray  # (N,) int64 phase index
    meta: "object"  # pandas DataFrame: episode_id, host_id, profile, sample_name, t_end_ns, label
    feature_names: list[str]
    schema_sha256: str


class WindowArray:
    """A lazily gathered ``(N, C, L)`` view over memory-mapped shards."""

    def __init__(self, shards: list[np.ndarray], shard_of: np.ndarray, row_of: np.ndarray, n_channels: int) -> None:
        self._shards, self._shard_of, self._row_of, self._c = shards, shard_of, row_of, n_channels
        length = shards[0].shape[2] if shards else 0
        self.dtype = shards[0].dtype if shards else np.dtype(np.float32)
        self.shape = (len(row_of), n_channels, length)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def shards(self) -> list[np.ndarray]:
        return self._shards

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            i = int(key)
            return np.array(self._shards[self._shard_of[i]][self._row_of[i], : self._c])
        idx = np.arange(len(self))[key]
        out = np.empty((len(idx),) + self.shape[1:], dtype=self.dtype)
        s_of, r_of = self._shard_of[idx], self._row_of[idx]
        for s in np.unique(s_of):
            sel = s_of == s
            out[sel] = self._shards[s][r_of[sel], : self._c]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def iter_batches(self, batch_size: int) -> Iterable[np.ndarray]:
        for start in range(0, len(self), batch_size):
            yield self[start: start + batch_size]


@dataclass
class TensorData:
    X: WindowArray  # (N, C_mode, L) float32, NaN where mask == 0
    mask: WindowArray  # (N, C_mode, L) uint8, 1 = observed
    y: np.ndarray  # (N,) int64
    meta: "object"  # pandas DataFrame as SummaryData.meta
    channel_names: list[str]
    schema_sha256: str


def _ids_filter(episode_ids):
    if episode_ids is None:
        return None
    return sorted({str(e) for e in episode_ids})


_PART = re.compile(r"^part-[0-9]{5}\.parquet$")


def summary_parts(summary: str | os.PathLike) -> tuple[Path, list[dict], dict | None]:
    """``(features dir, parts, manifest)`` for a features dir, its parts dir, or one parquet file.

    Each part is ``{"path", "episodes", "windows", "first_episode", "last_episode"}``
    (only ``path`` for a single file, which has no manifest: a build of an
    earlier version, or a file made by hand).
    """
    from .features import FEATURES_NAME, MANIFEST_NAME

    path = Path(summary)
    if path.is_file():
        return path.parent, [{"path": path}], None
    root = path.parent if path.name == FEATURES_NAME else path
    mpath = root / MANIFEST_NAME
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ValueError(f"{root}: no {MANIFEST_NAME} (features not built, or the build did not finish); "
                         "run `cis490 features`") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{mpath}: not JSON ({e.msg}, line {e.lineno}); rebuild with `cis490 features`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "cis490.features" or manifest.get("version") != 1:
        raise ValueError(f"{mpath}: not a cis490.features version 1 manifest")
    parts = []
    for p in manifest.get("parts", []):
        if not isinstance(p, dict) or not _PART.match(str(p.get("name", ""))):
            raise ValueError(f"{mpath}: bad part entry {p!r}")
        parts.append({**p, "path": root / FEATURES_NAME / p["name"]})
    return root, parts, manifest


def load_summary(summary: str | os.PathLike, mode: str, episode_ids: Iterable[str] | None = None,
                 *, schema: str | os.PathLike | None = None, registry: Registry = REGISTRY) -> SummaryData:
    """Summary features of ``mode`` for ``episode_ids`` (all when None).

    ``summary`` is the features dir, its ``features_window_v1.parquet`` dir
    of parts, or a single parquet file. Parts whose episode range holds none
    of ``episode_ids`` are not read.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .features import MANIFEST_NAME as FEATURES_MANIFEST

    root, parts, manifest = summary_parts(summary)
    schema_path = Path(schema) if schema is not None else root / SCHEMA_NAME
    sch, sha = read_schema(schema_path, registry)
    registry.channels_for(mode)  # ValueError naming the modes for an unknown one
    names = list(sch["summary"]["modes"][mode])
    if manifest is not None and manifest.get("schema_sha256") != sha:
        raise ValueError(f"{root}: built with schema {str(manifest.get('schema_sha256'))[:12] or '?'}, "
                         f"but {schema_path} is {sha[:12]}")
    ids = _ids_filter(episode_ids)
    tables = []
    for part in parts:
        if ids is not None and manifest is not None:
            lo = bisect.bisect_left(ids, part["first_episode"])
            if lo == len(ids) or ids[lo] > part["last_episode"]:
                continue  # no requested episode in this part's range
        pf = pq.ParquetFile(part["path"])
        kv = pf.schema_arrow.metadata or {}
        recorded = kv.get(b"cis490.schema_sha256", b"").decode()
        if recorded != sha:
            raise ValueError(f"{part['path']}: built with schema {recorded[:12] or '?'}, "
                             f"but {schema_path} is {sha[:12]}")
        if manifest is not None and (kv.get(b"cis490.validation_sha256", b"").decode() != manifest["validation_sha256"]
                                     or pf.metadata.num_rows != part["windows"]):
            raise ValueError(f"{part['path']}: not the part {root / FEATURES_MANIFEST} lists (a rebuild is running "
                             "or was interrupted); load again once `cis490 features` has finished")
        table = pf.read(columns=META_NAMES + names)
        if ids is not None:
            table = table.filter(pc.is_in(table["episode_id"], value_set=pa.array(ids, pa.string())))
        tables.append(table.replace_schema_metadata(None))
    if tables:
        table = pa.concat_tables(tables)
    else:
        table = pa.table({n: pa.array([], pa.string() if t == "string" else pa.int64()) for n, t in META_COLUMNS}
                         | {n: pa.array([], pa.float32()) for n in names})
    X = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, n in enumerate(names):
        X[:, j] = table[n].to_numpy(zero_copy_only=False)
    meta = table.select(META_NAMES).to_pandas()
    return SummaryData(X=X, y=meta["label"].to_numpy(np.int64), meta=meta, feature_names=names, schema_sha256=sha)


def load_tensors(tensors: str | os.PathLike, mode: str, episode_ids: Iterable[str] | None = None,
                 *, registry: Registry = REGISTRY) -> TensorData:
    """Memory-mapped tensor windows of ``mode`` for ``episode_ids`` (all when None)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from .tensors import MANIFEST_NAME

    root = Path(tensors)
    _, sha = read_schema(root / SCHEMA_NAME, registry)
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    if manifest.get("schema_sha256") != sha:
        raise ValueError(f"{root}: manifest schema {manifest.get('schema_sha256', '?')[:12]} != {sha[:12]}")
    channels = [c.name for c in registry.channels_for(mode)]
    if manifest["channels"][: len(channels)] != channels:
        raise ValueError(f"{root}: channel order differs from the registry; rebuild tensors")
    ids = _ids_filter(episode_ids)
    shards: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    frames = []
    for host, info in sorted(manifest["hosts"].items()):
        hdir = root / info["dir"]
        base = len(shards)
        for s in info["shards"]:
            shards.append(np.load(hdir / f"{s['name']}.x.npy", mmap_mode="r"))
            masks.append(np.load(hdir / f"{s['name']}.mask.npy", mmap_mode="r"))
        df = pq.read_table(hdir / "windows.parquet").to_pandas()
        if ids is not None:
            df = df[df["episode_id"].isin(ids)]
        df = df.assign(shard=df["shard"] + base)
        frames.append(df)
    cols = META_NAMES + ["shard", "row"]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    df = df.sort_values(["episode_id", "t_end_ns"], kind="mergesort").reset_index(drop=True)
    shard_of = df["shard"].to_numpy(np.int64)
    row_of = df["row"].to_numpy(np.int64)
    c = len(channels)
    return TensorData(
        X=WindowArray(shards, shard_of, row_of, c),
        mask=WindowArray(masks, shard_of, row_of, c),
        y=df["label"].to_numpy(np.int64),
        meta=df[META_NAMES].reset_index(drop=True),
        channel_names=channels,
        schema_sha256=sha,
    )
