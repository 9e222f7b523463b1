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
without reading it. Shard ``k`` of a host holds that host's usable episodes
``[k * SHARD_EPISODES, (k + 1) * SHARD_EPISODES)`` in ``episode_id`` order --
boundaries that depend on the episode list only, so the output is
byte-identical whatever ``jobs`` is. **Each shard is written by the worker
that computes it**, streamed one episode at a time (``_NpyStream``): the
parent receives only the per-window ids and labels (~30 bytes a window, not
the ~3.5 kB of tensor data, whose trip through a pipe measured x1.02 at
``--jobs 2``) and writes the small ``windows.parquet``. Every process holds
one episode, so peak RSS does not grow with the store. The manifest is
published last, so a reader that goes through it never sees a half-built
set. C is every registry channel: a mode selects the prefix ``[:C_mode]``
(see ``channels``).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path

import numpy as np

from .arrow import from_numpy
from .channels import DEFAULT_WINDOW, REGISTRY, WindowSpec
from ..common import InputError, sha256_file
from .features import BuildSummary, EpisodeRef, episode_windows, start_build, window_meta_columns
from .schema import SCHEMA_NAME

__all__ = ["MANIFEST_NAME", "SHARD_EPISODES", "build_tensors", "WINDOW_COLUMNS"]

MANIFEST_NAME = "tensors_v1.json"
# ~3.3 k windows, ~11 MB (x + mask) per shard at the default window: small
# enough that --jobs 2 keeps both workers busy to the end (the last shard
# is the tail), large enough that the seed's full scale is ~750 shards.
SHARD_EPISODES = 64
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
            raise InputError("npy header does not fit")  # pragma: no cover - shapes are small
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")

    def append(self, arr: np.ndarray) -> None:
        if arr.shape[1:] != self.inner:
            raise InputError(f"shard row shape {arr.shape[1:]} != {self.inner}")
        self.fh.write(np.ascontiguousarray(arr, dtype=self.dtype).tobytes())
        self.n += len(arr)

    def finish(self) -> None:
        self.fh.seek(0)
        self.fh.write(self._header())
        self.fh.seek(0, 2)


def _tensors_shard(args: tuple[str, Path, str, list[EpisodeRef], WindowSpec]) -> dict:
    """Compute and publish one shard (runs in a pool worker, or in-process at ``--jobs 1``).

    Returns what the parent needs for ``windows.parquet`` and the manifest:
    per episode ``(ref, labels, t_end_ns, first row)``, no tensor data.
    """
    from ..common import atomic_writer

    store, host_dir, name, refs, window = args
    host_dir.mkdir(parents=True, exist_ok=True)
    inner = (len(REGISTRY.channels), window.length_s)
    episodes = []
    with atomic_writer(host_dir / f"{name}.x.npy") as fx, atomic_writer(host_dir / f"{name}.mask.npy") as fm:
        xs, ms = _NpyStream(fx, np.float32, inner), _NpyStream(fm, np.uint8, inner)
        for ref in refs:
            _, x, m, y, t_end = _tensors_one((store, ref, window))
            episodes.append((ref, y, t_end, xs.n))
            xs.append(x)
            ms.append(m)
        xs.finish()
        ms.finish()
    return {"name": name, "windows": xs.n, "episodes": episodes}


def _host_chunks(index, n: int):
    """``(host, k, refs)``: each host's usable episodes cut into runs of ``n``, in order.

    A chunk is emitted as soon as it is full, remainders at the end (hosts
    sorted); only the unfinished chunk of each host is held.
    """
    pending: dict[str, list[EpisodeRef]] = {}
    made: dict[str, int] = {}
    for ref in index:
        chunk = pending.setdefault(ref.host_id, [])
        chunk.append(ref)
        if len(chunk) == n:
            made[ref.host_id] = made.get(ref.host_id, 0) + 1
            yield ref.host_id, made[ref.host_id] - 1, chunk
            pending[ref.host_id] = []
    for host in sorted(pending):
        if pending[host]:
            yield host, made.get(host, 0), pending[host]


class _HostSink:
    """One host's ``windows.parquet`` and shard list, fed with the shards' descriptions in order."""

    def __init__(self, out: Path, host: str, stack: contextlib.ExitStack) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..common import atomic_writer

        self.dir = out / f"host={host}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict] = []
        self.n_windows = 0
        self.rows: list = []  # window-table rows not yet written (bounded by ROW_GROUP_EPISODES)
        types = {"string": pa.string(), "int64": pa.int64()}
        self.schema = pa.schema([(n, types[t]) for n, t in WINDOW_COLUMNS])
        fh = stack.enter_context(atomic_writer(self.dir / "windows.parquet"))
        self.writer = stack.enter_context(pq.ParquetWriter(fh, self.schema))

    def add_shard(self, shard: dict) -> None:
        k = len(self.shards)
        if shard["name"] != f"shard-{k:05d}":  # pragma: no cover - pmap yields in order
            raise RuntimeError(f"{self.dir}: got {shard['name']} where shard-{k:05d} was due")
        self.shards.append({"name": shard["name"], "windows": shard["windows"], "episodes": len(shard["episodes"])})
        for ref, y, t_end, first in shard["episodes"]:
            self.rows.append((ref, y, t_end, k, first))
            if len(self.rows) >= ROW_GROUP_EPISODES:
                self._write_rows()
        self.n_windows += shard["windows"]

    def _write_rows(self) -> None:
        import pyarrow as pa

        if not self.rows:
            return
        reps = [len(y) for _, y, *_ in self.rows]
        cols = window_meta_columns([(ref, y, t_end) for ref, y, t_end, _, _ in self.rows])
        cols["shard"] = from_numpy(np.repeat(np.array([r[3] for r in self.rows], np.int64), reps))
        cols["row"] = from_numpy(np.concatenate([r[4] + np.arange(n, dtype=np.int64) for r, n in zip(self.rows, reps)]))
        table = pa.Table.from_arrays([cols[n] for n, _ in WINDOW_COLUMNS], schema=self.schema)
        self.writer.write_table(table, row_group_size=max(1, table.num_rows))
        self.rows = []

    def finish(self) -> None:
        self._write_rows()


def build_tensors(validation: str | os.PathLike, store: str | os.PathLike, out_dir: str | os.PathLike,
                  *, jobs: int = 1, window: WindowSpec = DEFAULT_WINDOW, progress=None,
                  shard_episodes: int = SHARD_EPISODES) -> BuildSummary:
    from ..common import atomic_write
    from .parallel import pmap

    if shard_episodes < 1:
        raise InputError(f"shard_episodes must be >= 1, got {shard_episodes}")
    index, out, sbytes, summary = start_build(validation, out_dir, window)
    n_shards = max(1, -(-len(index) // shard_episodes))  # at least; one more per host's remainder
    tasks = ((os.fspath(store), out / f"host={host}", f"shard-{k:05d}", refs, window)
             for host, k, refs in _host_chunks(index, shard_episodes))  # made as the pool takes them
    sinks: dict[str, _HostSink] = {}
    with contextlib.ExitStack() as stack:
        for shard in pmap(_tensors_shard, tasks, jobs=min(jobs, n_shards), chunksize=1):
            host = shard["episodes"][0][0].host_id
            if host not in sinks:  # a host's table opens with its first shard
                sinks[host] = _HostSink(out, host, stack)
            sinks[host].add_shard(shard)
            summary.episodes_built += len(shard["episodes"])
            if progress:
                progress(len(shard["episodes"]))
        for sink in sinks.values():
            sink.finish()
    atomic_write(out / SCHEMA_NAME, sbytes)
    manifest = {
        "format": "cis490.tensors", "version": 1,
        "schema_sha256": summary.schema_sha256,
        "validation_sha256": sha256_file(validation),
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
