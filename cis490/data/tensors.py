"""Tensor builder: usable episodes -> memory-mappable shards per host.

Layout (``DIR``)::

    feature_schema_v1.json          same bytes as the features builder writes
    tensors_v1.json                 manifest: schema sha256, validation sha256,
                                    window spec, channels, per-host shard list
    host=<host_id>/shard-00000.x.npy      float32 (N, C, L), NaN = not observed
    host=<host_id>/shard-00000.mask.npy   uint8   (N, C, L), 1 = observed
    host=<host_id>/windows.parquet        one row per window: episode_id, host_id,
                                    profile, sample_name, t_end_ns, label, shard, row

Invariants: ``.npy`` (not ``.npz``) so ``np.load(mmap_mode="r")`` maps a shard
without reading it; a shard holds whole episodes of one host in
``episode_id`` order, and a new one starts once ``SHARD_WINDOWS`` is passed;
shards are streamed to disk one episode at a time (``_NpyStream``), so memory
holds one episode and peak RSS does not grow with the store; output is byte-identical whatever
``jobs`` is; the manifest is published last, so a reader that goes through it
never sees a half-built set. C is every registry channel: a mode selects the
prefix ``[:C_mode]`` (see ``channels``).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path

import numpy as np

from .channels import DEFAULT_WINDOW, REGISTRY, WindowSpec
from .features import BuildSummary, EpisodeRef, episode_windows, file_sha256, start_build
from .schema import SCHEMA_NAME

__all__ = ["MANIFEST_NAME", "SHARD_WINDOWS", "build_tensors", "WINDOW_COLUMNS"]

MANIFEST_NAME = "tensors_v1.json"
SHARD_WINDOWS = 1 << 16  # ~180 MB of float32 per shard at the default window
ROW_GROUP_EPISODES = 64
WINDOW_COLUMNS = (("episode_id", "string"), ("host_id", "string"), ("profile", "string"),
                  ("sample_name", "string"), ("t_end_ns", "int64"), ("label", "int64"),
                  ("shard", "int64"), ("row", "int64"))


def _tensors_one(args: tuple[str, EpisodeRef, WindowSpec]):
    store, ref, window = args
    x, y, t_end = episode_windows(store, ref, window)
    mask = (~np.isnan(x)).astype(np.uint8)
    return ref, x.astype(np.float32), mask, y, t_end


class _NpyStream:
    """Write a ``.npy`` row by row: a fixed-size header, patched with the final shape.

    Only one episode is ever in memory, so a shard may be far larger than RAM
    allows and peak RSS stays flat. The header is the ``.npy`` v1.0 format
    padded to ``HEADER`` bytes; ``np.load`` (and its ``mmap_mode``) reads it.
    """

    HEADER = 128

    def __init__(self, fh, dtype, inner: tuple[int, ...]) -> None:
        self.fh, self.dtype, self.inner, self.n = fh, np.dtype(dtype), inner, 0
        fh.write(self._header())

    def _header(self) -> bytes:
        d = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (self.dtype.str, (self.n,) + self.inner)
        body = d.ljust(self.HEADER - 10 - 1) + "\n"
        if len(body) != self.HEADER - 10:
            raise ValueError("npy header does not fit")  # pragma: no cover - shapes are small
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")

    def append(self, arr: np.ndarray) -> None:
        if arr.shape[1:] != self.inner:
            raise ValueError(f"shard row shape {arr.shape[1:]} != {self.inner}")
        self.fh.write(np.ascontiguousarray(arr, dtype=self.dtype).tobytes())
        self.n += len(arr)

    def finish(self) -> None:
        self.fh.seek(0)
        self.fh.write(self._header())
        self.fh.seek(0, 2)


class _HostSink:
    """One host's shards: episodes streamed in, a new shard every SHARD_WINDOWS."""

    def __init__(self, out: Path, host: str, stack: contextlib.ExitStack, window: WindowSpec) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..fleet.atomic import atomic_writer

        self.dir = out / f"host={host}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.inner = (len(REGISTRY.channels), window.length_s)
        self.stack = stack
        self.shards: list[dict] = []
        self.n_windows = 0
        self.rows: list = []  # window-table rows not yet written (bounded by ROW_GROUP_EPISODES)
        self._shard: contextlib.ExitStack | None = None
        types = {"string": pa.string(), "int64": pa.int64()}
        self.schema = pa.schema([(n, types[t]) for n, t in WINDOW_COLUMNS])
        fh = stack.enter_context(atomic_writer(self.dir / "windows.parquet"))
        self.writer = stack.enter_context(pq.ParquetWriter(fh, self.schema))

    def _open_shard(self) -> None:
        from ..fleet.atomic import atomic_writer

        self._shard = self.stack.enter_context(contextlib.ExitStack())
        name = f"shard-{len(self.shards):05d}"
        self._x = _NpyStream(self._shard.enter_context(atomic_writer(self.dir / f"{name}.x.npy")),
                             np.float32, self.inner)
        self._m = _NpyStream(self._shard.enter_context(atomic_writer(self.dir / f"{name}.mask.npy")),
                             np.uint8, self.inner)
        self.shards.append({"name": name, "windows": 0, "episodes": 0})

    def add(self, ref: EpisodeRef, x: np.ndarray, m: np.ndarray, y: np.ndarray, t_end: np.ndarray) -> None:
        if self._shard is None:
            self._open_shard()
        shard = self.shards[-1]
        first = self._x.n
        self._x.append(x)
        self._m.append(m)
        self.rows.append((ref, y, t_end, len(self.shards) - 1, first))
        shard["windows"] += len(x)
        shard["episodes"] += 1
        self.n_windows += len(x)
        if len(self.rows) >= ROW_GROUP_EPISODES:
            self._write_rows()
        if self._x.n >= SHARD_WINDOWS:
            self.close_shard()

    def close_shard(self) -> None:
        if self._shard is None:
            return
        self._x.finish()
        self._m.finish()
        self._shard.close()  # publishes both files
        self._shard = None

    def _write_rows(self) -> None:
        import pyarrow as pa

        if not self.rows:
            return
        reps = [len(y) for _, y, *_ in self.rows]
        cols = {
            key: np.repeat(np.array([getattr(r[0], key) for r in self.rows], dtype=object), reps)
            for key in ("episode_id", "host_id", "profile", "sample_name")
        }
        cols["t_end_ns"] = np.concatenate([r[2] for r in self.rows]).astype(np.int64)
        cols["label"] = np.concatenate([r[1] for r in self.rows]).astype(np.int64)
        cols["shard"] = np.repeat(np.array([r[3] for r in self.rows], np.int64), reps)
        cols["row"] = np.concatenate([r[4] + np.arange(n, dtype=np.int64) for r, n in zip(self.rows, reps)])
        table = pa.Table.from_arrays([pa.array(cols[n], type=self.schema.field(n).type)
                                      for n, _ in WINDOW_COLUMNS], schema=self.schema)
        self.writer.write_table(table, row_group_size=max(1, table.num_rows))
        self.rows = []

    def finish(self) -> None:
        self._write_rows()
        self.close_shard()


def build_tensors(validation: str | os.PathLike, store: str | os.PathLike, out_dir: str | os.PathLike,
                  *, jobs: int = 1, window: WindowSpec = DEFAULT_WINDOW, progress=None) -> BuildSummary:
    from ..fleet.atomic import atomic_write
    from .parallel import pmap

    refs, out, sbytes, summary = start_build(validation, out_dir, window)
    sinks: dict[str, _HostSink] = {}
    with contextlib.ExitStack() as stack:
        for host in sorted({r.host_id for r in refs}):
            sinks[host] = _HostSink(out, host, stack, window)
        for ref, x, m, y, t_end in pmap(_tensors_one, [(os.fspath(store), r, window) for r in refs],
                                        jobs=jobs, progress=progress):
            sinks[ref.host_id].add(ref, x, m, y, t_end)
            summary.episodes_built += 1
        for sink in sinks.values():
            sink.finish()
    atomic_write(out / SCHEMA_NAME, sbytes)
    manifest = {
        "format": "cis490.tensors", "version": 1,
        "schema_sha256": summary.schema_sha256,
        "validation_sha256": file_sha256(validation),
        "window": window.as_dict(),
        "channels": [c.name for c in REGISTRY.channels],
        "hosts": {h: {"dir": f"host={h}", "windows": s.n_windows, "shards": s.shards}
                  for h, s in sorted(sinks.items())},
    }
    atomic_write(out / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    atomic_write(out / "schema.sha256", summary.schema_sha256 + "\n")
    _remove_stale(out, manifest)
    summary.windows = sum(s.n_windows for s in sinks.values())
    summary.outputs = [str(out / MANIFEST_NAME)]
    return summary


def _remove_stale(out: Path, manifest: dict) -> None:
    """Drop shard files of an earlier, larger build that the manifest no longer lists."""
    live = {f"{h['dir']}/{s['name']}{ext}" for h in manifest["hosts"].values()
            for s in h["shards"] for ext in (".x.npy", ".mask.npy")}
    for p in out.glob("host=*/shard-*.npy"):
        if p.relative_to(out).as_posix() not in live:
            p.unlink()
