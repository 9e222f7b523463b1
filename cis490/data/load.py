"""Loaders for the derived data (CONTRACTS.md: "Python loaders").

Invariants:

- The schema file is checked against this code's channel registry
  (``schema.read_schema``) and against the hash recorded in the data, so a
  model can never be fed columns from another registry.
- A mode selects channels: ``oracle`` = all, ``realistic`` = the prefix
  without ``proc.*`` (summary: the matching feature columns).
- Rows come back in canonical order (``episode_id``, then ``t_end_ns``),
  restricted to ``episode_ids`` when given (ids with no windows give no rows).
- Tensors stay on disk: ``TensorData.X`` / ``.mask`` are ``WindowArray``
  views that read only the rows indexed (``X[batch_idx]``, with ``pread``,
  not a memory map, so the reader's RSS does not grow with what it has
  read), so the full-scale set never has to fit in RAM; ``np.asarray(X)``
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
from cis490.common import InputError, read_small

__all__ = ["NpyRows", "RowArray", "SummaryData", "TensorData", "WindowArray", "load_summary", "load_tensors",
           "summary_parts"]

META_NAMES = [n for n, _ in META_COLUMNS]


@dataclass
class SummaryData:
    X: "np.ndarray | RowArray"  # (N, F) float32, NaN where a channel is absent (lazy when spilled)
    y: np.ndarray  # (N,) int64 phase index
    meta: "object"  # pandas DataFrame: episode_id, host_id, profile, sample_name, t_end_ns, label
    feature_names: list[str]
    schema_sha256: str


class NpyRows:
    """Rows of one ``.npy`` file, read with ``pread`` into fresh buffers.

    Not a memory map on purpose: pages of a mapped file that a process has
    touched count in its resident set, so an epoch over memory-mapped shards
    grows the trainer's RSS to the size of the store (the page cache keeps
    the data either way; this keeps it out of the process). The descriptor
    is opened on first use and dropped when pickled (a DataLoader worker
    opens its own).
    """

    MAX_RUN_BYTES = 8 << 20  # one read at most: bounds the temporary when slicing channels

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise InputError(f"{self.path}: unsupported .npy version {version}")
            self.offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
        if fortran or dtype.hasobject or len(shape) < 1:
            raise InputError(f"{self.path}: not a C-ordered numeric array")
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        if size < self.offset + self.shape[0] * self.row_bytes:
            raise InputError(f"{self.path}: truncated ({size} bytes for shape {self.shape})")
        self._fd: int | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)

    def _pread(self, nbytes: int, offset: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        chunks, got = [], 0
        while got < nbytes:
            b = os.pread(self._fd, nbytes - got, offset + got)
            if not b:
                raise InputError(f"{self.path}: file shrank while reading (rebuilt under us?)")
            chunks.append(b)
            got += len(b)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def read(self, rows: np.ndarray, out: np.ndarray, channels: int | None = None) -> None:
        """``out[i] = self[rows[i]][:channels]`` for ascending ``rows`` (repeats allowed)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        if rows[0] < 0 or rows[-1] >= self.shape[0]:
            raise IndexError(f"{self.path}: row out of range 0..{self.shape[0] - 1}")
        per_read = max(1, self.MAX_RUN_BYTES // max(1, self.row_bytes))
        starts = np.flatnonzero(np.diff(rows) != 1) + 1
        bounds = np.concatenate([[0], starts, [rows.size]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            for i in range(int(a), int(b), per_read):
                j = min(int(b), i + per_read)
                buf = self._pread((j - i) * self.row_bytes, self.offset + int(rows[i]) * self.row_bytes)
                block = np.frombuffer(buf, dtype=self.dtype).reshape((j - i,) + self.row_shape)
                out[i:j] = block if channels is None else block[:, :channels]


class WindowArray:
    """A lazily gathered ``(N, C, L)`` view over ``.npy`` shards (read with :class:`NpyRows`).

    ``X[key]`` (an int, a slice, a boolean or integer index array) reads only
    those rows; ``take(idx)`` is a view of a subset that reads nothing;
    ``np.asarray(X)`` materialises on purpose.
    """

    ndim = 3
    lazy_rows = True  # the models read it batch by batch (cis490.models._array.is_lazy)

    def __init__(self, shards: list[NpyRows], shard_of: np.ndarray, row_of: np.ndarray, n_channels: int) -> None:
        self._shards, self._shard_of, self._row_of, self._c = shards, shard_of, row_of, n_channels
        length = shards[0].shape[2] if shards else 0
        self.dtype = shards[0].dtype if shards else np.dtype(np.float32)
        self.shape = (len(row_of), n_channels, length)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def shards(self) -> list[NpyRows]:
        return self._shards

    def take(self, idx) -> "WindowArray":
        """The rows ``idx`` (any numpy index of axis 0) as another lazy view."""
        idx = np.arange(len(self))[idx]
        return WindowArray(self._shards, self._shard_of[idx], self._row_of[idx], self._c)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.array([int(key)])][0]
        idx = np.arange(len(self))[key]
        out = np.empty((len(idx),) + self.shape[1:], dtype=self.dtype)
        s_of, r_of = self._shard_of[idx], self._row_of[idx]
        shards = np.unique(s_of)
        if len(shards) == 1 and (len(r_of) < 2 or bool((np.diff(r_of) >= 0).all())):
            self._shards[shards[0]].read(r_of, out, self._c)  # one shard, ascending: in place
            return out
        for s in shards:
            pos = np.flatnonzero(s_of == s)
            order = np.argsort(r_of[pos], kind="stable")  # ascending rows: few, long reads
            part = np.empty((len(pos),) + self.shape[1:], dtype=self.dtype)
            self._shards[s].read(r_of[pos][order], part, self._c)
            out[pos[order]] = part
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def iter_batches(self, batch_size: int) -> Iterable[np.ndarray]:
        for start in range(0, len(self), batch_size):
            yield self[start: start + batch_size]


class RowArray:
    """A lazily read ``(N, F)`` view over one ``.npy`` file (the summary spill), like
    :class:`WindowArray` for 2-D rows."""

    ndim = 2
    lazy_rows = True

    def __init__(self, rows: NpyRows, index: np.ndarray | None = None) -> None:
        self._rows = rows
        self._index = np.arange(rows.shape[0], dtype=np.int64) if index is None else index
        self.dtype = rows.dtype
        self.shape = (len(self._index),) + rows.row_shape

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, idx) -> "RowArray":
        return RowArray(self._rows, self._index[np.arange(len(self))[idx]])

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.array([int(key)])][0]
        r = self._index[np.arange(len(self))[key]]
        out = np.empty((len(r),) + self.shape[1:], dtype=self.dtype)
        if r.size < 2 or bool((np.diff(r) >= 0).all()):  # ascending already: read in place
            self._rows.read(r, out)
            return out
        order = np.argsort(r, kind="stable")
        part = np.empty_like(out)
        self._rows.read(r[order], part)
        out[order] = part
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)


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
        manifest = json.loads(read_small(mpath))
    except FileNotFoundError:
        raise InputError(f"{root}: no {MANIFEST_NAME} (features not built, or the build did not finish); "
                         "run `cis490 features`") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{mpath}: not JSON ({e.msg}, line {e.lineno}); rebuild with `cis490 features`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "cis490.features" or manifest.get("version") != 1:
        raise InputError(f"{mpath}: not a cis490.features version 1 manifest")
    parts = []
    for p in manifest.get("parts", []):
        if not isinstance(p, dict) or not _PART.match(str(p.get("name", ""))):
            raise InputError(f"{mpath}: bad part entry {p!r}")
        parts.append({**p, "path": root / FEATURES_NAME / p["name"]})
    return root, parts, manifest


def load_summary(summary: str | os.PathLike, mode: str, episode_ids: Iterable[str] | None = None,
                 *, schema: str | os.PathLike | None = None, registry: Registry = REGISTRY,
                 spill_dir: str | os.PathLike | None = None) -> SummaryData:
    """Summary features of ``mode`` for ``episode_ids`` (all when None).

    ``summary`` is the features dir, its ``features_window_v1.parquet`` dir
    of parts, or a single parquet file. Parts whose episode range holds none
    of ``episode_ids`` are not opened; of the others only the mode's columns
    are read, and the wanted rows are kept part by part (the whole selection
    is never held twice). With ``spill_dir`` the features are written there
    (``summary-<mode>.npy``, private to this process) and ``X`` is a lazy
    :class:`RowArray` over it: memory then holds one part at a time, not
    the selection.
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
        raise InputError(f"{root}: built with schema {str(manifest.get('schema_sha256'))[:12] or '?'}, "
                         f"but {schema_path} is {sha[:12]}")
    ids = _ids_filter(episode_ids)
    value_set = pa.array(ids, pa.string()) if ids is not None else None
    # (part path, row mask or None, meta table) of every part with wanted rows; the
    # ParquetFile is not kept (each holds its file's buffers: ~0.7 MB a part)
    chosen = []
    for part in parts:
        if ids is not None and manifest is not None:
            lo = bisect.bisect_left(ids, part["first_episode"])
            if lo == len(ids) or ids[lo] > part["last_episode"]:
                continue  # no requested episode in this part's range
        pf = pq.ParquetFile(part["path"])
        kv = pf.schema_arrow.metadata or {}
        recorded = kv.get(b"cis490.schema_sha256", b"").decode()
        if recorded != sha:
            raise InputError(f"{part['path']}: built with schema {recorded[:12] or '?'}, "
                             f"but {schema_path} is {sha[:12]}")
        if manifest is not None and (kv.get(b"cis490.validation_sha256", b"").decode() != manifest["validation_sha256"]
                                     or pf.metadata.num_rows != part["windows"]):
            raise InputError(f"{part['path']}: not the part {root / FEATURES_MANIFEST} lists (a rebuild is running "
                             "or was interrupted); load again once `cis490 features` has finished")
        rows_in_part = pf.metadata.num_rows
        built_from = kv.get(b"cis490.validation_sha256", b"").decode()
        meta_t = pf.read(columns=META_NAMES).replace_schema_metadata(None)
        keep = None
        if value_set is not None:
            keep = pc.is_in(meta_t["episode_id"], value_set=value_set)
            meta_t = meta_t.filter(keep)
        pf.close()
        if meta_t.num_rows:
            chosen.append((part["path"], keep, meta_t, rows_in_part, (recorded, built_from)))
    n = sum(c[2].num_rows for c in chosen)
    if chosen:
        meta_table = pa.concat_tables([c[2] for c in chosen])
    else:
        meta_table = pa.table({n_: pa.array([], pa.string() if t == "string" else pa.int64())
                               for n_, t in META_COLUMNS})
    spill = None
    if spill_dir is not None:
        spill = Path(spill_dir) / f"summary-{mode}.npy"
        fh = open(spill, "wb")
        np.lib.format.write_array_header_1_0(
            fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                 "fortran_order": False, "shape": (n, len(names))})
        X = None
    else:
        X = np.empty((n, len(names)), dtype=np.float32)
    row = 0
    try:
        for path, keep, _, rows_in_part, recorded in chosen:
            pf = pq.ParquetFile(path)
            # opened a second time: it must still be the part whose rows were selected
            kv2 = pf.schema_arrow.metadata or {}
            again = tuple(kv2.get(k, b"").decode() for k in (b"cis490.schema_sha256",
                                                             b"cis490.validation_sha256"))
            if pf.metadata.num_rows != rows_in_part or again != recorded:
                pf.close()
                raise InputError(f"{path}: changed while it was being read (a rebuild is "
                                 "running?); load again once `cis490 features` has finished")
            table = pf.read(columns=names)
            pf.close()
            if keep is not None:
                table = table.filter(keep)
            block = np.empty((table.num_rows, len(names)), dtype=np.float32)
            for j, name in enumerate(names):
                block[:, j] = table[name].to_numpy(zero_copy_only=False)
            del table
            if spill is not None:
                fh.write(block.tobytes())
            else:
                X[row: row + len(block)] = block
            row += len(block)
    finally:
        if spill is not None:
            fh.close()
    if spill is not None:
        X = RowArray(NpyRows(spill))
    meta = meta_table.to_pandas()
    return SummaryData(X=X, y=meta["label"].to_numpy(np.int64), meta=meta, feature_names=names, schema_sha256=sha)


def load_tensors(tensors: str | os.PathLike, mode: str, episode_ids: Iterable[str] | None = None,
                 *, registry: Registry = REGISTRY) -> TensorData:
    """Memory-mapped tensor windows of ``mode`` for ``episode_ids`` (all when None)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from .tensors import MANIFEST_NAME

    root = Path(tensors)
    _, sha = read_schema(root / SCHEMA_NAME, registry)
    try:
        manifest = json.loads(read_small(root / MANIFEST_NAME))
    except ValueError as exc:
        raise InputError(f"{root / MANIFEST_NAME}: not a tensors manifest ({exc}); rebuild tensors") from None
    if manifest.get("schema_sha256") != sha:
        raise InputError(f"{root}: manifest schema {manifest.get('schema_sha256', '?')[:12]} != {sha[:12]}")
    channels = [c.name for c in registry.channels_for(mode)]
    if manifest["channels"][: len(channels)] != channels:
        raise InputError(f"{root}: channel order differs from the registry; rebuild tensors")
    ids = _ids_filter(episode_ids)
    shards: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    frames = []
    for _host, info in sorted(manifest["hosts"].items()):
        hdir = root / info["dir"]
        base = len(shards)
        for s in info["shards"]:
            shards.append(NpyRows(hdir / f"{s['name']}.x.npy"))
            masks.append(NpyRows(hdir / f"{s['name']}.mask.npy"))
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
