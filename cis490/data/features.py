"""Summary-feature builder: usable episodes -> a parquet dataset of parts.

Layout (``DIR``)::

    feature_schema_v1.json                       the schema (its sha256 is the schema hash)
    features_v1.json                             manifest: schema + validation sha256, window,
                                                 parts [{name, episodes, windows, first/last episode}]
    features_window_v1.parquet/part-00000.parquet  rows of PART_EPISODES episodes, one row group

Invariants: the output is byte-identical for the same (validation table,
store, window spec), whatever ``jobs`` is: part ``k`` always holds usable
episodes ``[k * PART_EPISODES, (k + 1) * PART_EPISODES)`` in ``episode_id``
order, rows sorted by ``(episode_id, t_end_ns)``, and key-value metadata
holds only content hashes. **Each part is built and written by the worker
that computed it** (decode, grid, statistics, Arrow table, parquet encode):
the parent only collects part descriptions, so ``--jobs N`` has no serial
stage and memory is one part per process, whatever the store size (a
single file would keep every row group's footer entry until it is closed,
~3 kB per episode). The manifest is published last; parts an earlier,
larger build left behind are removed after it. Every part carries the
schema and validation sha256 of its build, and the loader checks them
against the manifest, so a reader racing a rebuild gets an error, never a
mix of two builds.

Only ``invalid`` episodes are skipped; ``degraded`` ones are built with NaN
features for their absent channels. An episode whose tarball no longer
matches the sha256 the validator recorded stops the build (re-validate).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..common import InputError, sha256_file
from .arrow import from_numpy, repeat_strings
from .channels import DEFAULT_WINDOW, REGISTRY, WindowSpec
from .episode import read_episode
from .schema import META_COLUMNS, SCHEMA_NAME, feature_names, schema_bytes
from .windows import NS, episode_grid, grid_summary_stats_many, make_windows, window_ends

__all__ = ["FEATURES_NAME", "MANIFEST_NAME", "PART_EPISODES", "EpisodeIndex", "EpisodeRef", "BuildSummary",
           "usable_episodes", "episode_windows",
           "build_features", "start_build"]

FEATURES_NAME = "features_window_v1.parquet"  # a directory of parts
MANIFEST_NAME = "features_v1.json"
# ~3.3 k rows (2.7 MB of features) per part. Larger batches measured worse:
# with ~11 MB arrays per batch, glibc's heap fragments and RSS climbs by ~20
# MB per batch; 64 also keeps the last part's tail short at --jobs 2.
PART_EPISODES = 64
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class EpisodeRef:
    episode_id: str
    host_id: str
    profile: str
    sample_name: str
    path: str
    sha256: str


@dataclass
class BuildSummary:
    counts: dict[str, int]  # validation status -> episodes
    episodes_built: int = 0
    windows: int = 0
    schema_sha256: str = ""
    outputs: list[str] = field(default_factory=list)

    def line(self, verb: str) -> str:
        c = self.counts
        return (f"{verb}: episodes ok {c.get('ok', 0)} / degraded {c.get('degraded', 0)} / "
                f"invalid {c.get('invalid', 0)} (skipped); windows written {self.windows}; "
                f"schema {self.schema_sha256[:12]}")


_INDEX_COLUMNS = ["episode_id", "host_id", "profile", "sample_name", "path", "sha256", "status"]
INDEX_BATCH = 4096  # validation rows read at a time


class EpisodeIndex:
    """The usable (not ``invalid``) episodes of a validation table, in ``episode_id`` order.

    Invariant: **streamed** -- iterating holds one record batch of the table
    (``INDEX_BATCH`` rows), never the whole index, so a builder's memory does
    not grow with the store. The constructor makes one checking pass over
    four small columns: counts per status, the number of usable episodes
    (``len``), safe host ids and paths (refused before any work starts),
    and whether the table is sorted by ``episode_id``. The validator always
    writes it sorted; a table that is not (made by hand) is sorted in memory
    instead, O(episodes), the one case where the index is held.
    """

    def __init__(self, validation_path: str | os.PathLike) -> None:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq  # not pq.read_table: it imports pyarrow.dataset and pandas (~0.4 s)

        self.path = validation_path
        names = pq.ParquetFile(validation_path).schema_arrow.names
        missing = [c for c in _INDEX_COLUMNS if c not in names]
        if missing:
            raise InputError(f"{validation_path}: not a validation_v1 table (missing {', '.join(missing)})")
        self.counts = {"ok": 0, "degraded": 0, "invalid": 0}
        self.rows, self.sorted, last = 0, True, None
        for batch in self._batches(["episode_id", "status", "host_id", "path"]):
            ids, status, hosts, paths = (batch.column(i).to_pylist() for i in range(4))
            self.rows += len(ids)
            for s in self.counts:
                self.counts[s] += status.count(s)
            for e, st, h, p in zip(ids, status, hosts, paths):
                if st != "invalid":
                    _check_ref(e, h, p)
            if ids and self.sorted:
                col = batch.column(0)
                self.sorted = (last is None or ids[0] > last) and (
                    len(ids) < 2 or pc.all(pc.less(col.slice(0, len(ids) - 1), col.slice(1))).as_py())
                last = ids[-1]
        self.n_usable = self.rows - self.counts["invalid"]

    def _batches(self, columns: list[str]):
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(self.path).iter_batches(batch_size=INDEX_BATCH, columns=columns, use_threads=False)

    def __len__(self) -> int:
        return self.n_usable

    def __iter__(self):
        refs = self._stream()
        return refs if self.sorted else iter(sorted(refs, key=lambda r: r.episode_id))

    def _stream(self):
        for batch in self._batches(_INDEX_COLUMNS):
            cols = [batch.column(i).to_pylist() for i in range(len(_INDEX_COLUMNS))]
            for *fields, status in zip(*cols):
                if status != "invalid":
                    yield EpisodeRef(*fields)


def _check_ref(episode_id, host_id, path) -> None:
    if not _SAFE_NAME.match(str(host_id)):
        raise InputError(f"validation: host_id {host_id!r} is not a safe directory name")
    p = PurePosixPath(str(path))
    if p.is_absolute() or ".." in p.parts:
        raise InputError(f"validation: episode {episode_id} has an unsafe path {path!r}")


def usable_episodes(validation_path: str | os.PathLike) -> tuple[list[EpisodeRef], dict[str, int]]:
    """Non-invalid episodes in ``episode_id`` order (as a list: O(episodes)), and counts per status."""
    index = EpisodeIndex(validation_path)
    return list(index), dict(index.counts)


def episode_grid_checked(store: str, ref: EpisodeRef):
    """Decode one episode (refusing one changed since validation) onto its grid."""
    ep = read_episode(os.path.join(store, ref.path))
    if ep.sha256 != ref.sha256:
        raise InputError(
            f"episode {ref.episode_id}: {ref.path} changed since validation (sha256 differs); "
            "re-run `cis490 validate`"
        )
    return episode_grid(ep, REGISTRY)


def episode_windows(store: str, ref: EpisodeRef, window: WindowSpec):
    """Decode one episode and cut it into windows: ``(X (N,C,L), y, t_end_ns)``."""
    return make_windows(episode_grid_checked(store, ref), window)


def _features_many(store: str, refs: list[EpisodeRef], window: WindowSpec) -> list:
    """``(ref, labels, t_end_ns, features)`` per episode; statistics vectorised over the episodes."""
    grids = [episode_grid_checked(store, r) for r in refs]
    ends = [window_ends(g.values.shape[1], window, g.labels) for g in grids]
    feats = grid_summary_stats_many([g.values for g in grids], ends, window.length_s)
    return [(r, g.labels[e - 1], g.t0_wall_ns + e * NS, f) for r, g, e, f in zip(refs, grids, ends, feats)]


def _arrow_schema(validation_sha: str, schema_sha: str):
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64()}
    fields = [(n, types[t]) for n, t in META_COLUMNS] + [(n, pa.float32()) for n in feature_names()]
    return pa.schema(fields, metadata={"cis490.schema_sha256": schema_sha,
                                       "cis490.validation_sha256": validation_sha})


def window_meta_columns(rows) -> dict:
    """``META_COLUMNS`` as Arrow arrays for ``(ref, labels, t_end_ns)`` per episode, in order."""
    reps = [len(y) for _, y, _ in rows]
    cols = {k: repeat_strings([getattr(ref, k) for ref, _, _ in rows], reps)
            for k in ("episode_id", "host_id", "profile", "sample_name")}
    cols["t_end_ns"] = from_numpy(np.concatenate([t for *_, t in rows] or [[]]).astype(np.int64))
    cols["label"] = from_numpy(np.concatenate([y for _, y, _ in rows] or [[]]).astype(np.int64))
    return cols


def _batch_table(batch, schema):
    import pyarrow as pa

    n_feat = len(feature_names())
    cols = window_meta_columns([(ref, y, t) for ref, y, t, _ in batch])
    feats = np.concatenate([f for *_, f in batch]) if batch else np.empty((0, n_feat), np.float32)
    by_column = np.ascontiguousarray(feats.T)  # (F, N): each column a contiguous buffer
    arrays = [cols[n] for n, _ in META_COLUMNS] + [from_numpy(by_column[j]) for j in range(n_feat)]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_part(path: Path, table) -> None:
    """Publish one part: one row group, id columns dictionary-encoded, snappy."""
    import pyarrow.parquet as pq

    from ..common import atomic_writer

    meta_cols = [n for n, _ in META_COLUMNS]
    with atomic_writer(path) as fh:
        # dictionary-encode the id columns only: trying it on 200+ float
        # columns costs more than the whole write; statistics on the id
        # columns only (min/max of 210 float columns help nobody)
        with pq.ParquetWriter(fh, table.schema, use_dictionary=[n for n, t in META_COLUMNS if t == "string"],
                              write_statistics=meta_cols, compression="snappy") as writer:
            writer.write_table(table, row_group_size=max(1, table.num_rows))


def part_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def _features_part(args: tuple[str, Path, int, list[EpisodeRef], WindowSpec, str, str]) -> dict:
    """Build and publish part ``k`` (runs in a pool worker, or in-process at ``--jobs 1``)."""
    store, parts_dir, k, refs, window, validation_sha, schema_sha = args
    table = _batch_table(_features_many(store, refs, window), _arrow_schema(validation_sha, schema_sha))
    write_part(parts_dir / part_name(k), table)
    return {"name": part_name(k), "episodes": len(refs), "windows": table.num_rows,
            "first_episode": refs[0].episode_id if refs else "", "last_episode": refs[-1].episode_id if refs else ""}


def start_build(validation: str | os.PathLike, out_dir: str | os.PathLike,
                window: WindowSpec) -> tuple[EpisodeIndex, Path, bytes, BuildSummary]:
    """What every builder starts from: the usable episodes (streamed), the
    output directory (created), the schema bytes and a summary carrying the
    schema hash."""
    index = EpisodeIndex(validation)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sbytes = schema_bytes(REGISTRY, window)
    return index, out, sbytes, BuildSummary(counts=dict(index.counts), schema_sha256=hashlib.sha256(sbytes).hexdigest())


def build_features(validation: str | os.PathLike, store: str | os.PathLike, out_dir: str | os.PathLike,
                   *, jobs: int = 1, window: WindowSpec = DEFAULT_WINDOW, progress=None,
                   part_episodes: int = PART_EPISODES) -> BuildSummary:
    import json

    from ..common import atomic_write
    from .parallel import batched, pmap

    if part_episodes < 1:
        raise InputError(f"part_episodes must be >= 1, got {part_episodes}")
    index, out, sbytes, summary = start_build(validation, out_dir, window)
    validation_sha = sha256_file(validation)
    parts_dir = out / FEATURES_NAME
    if parts_dir.is_file() or parts_dir.is_symlink():
        parts_dir.unlink()  # a single-file build of an earlier version
    parts_dir.mkdir(exist_ok=True)
    n_parts = max(1, -(-len(index) // part_episodes))  # an empty build still writes one (empty) part
    chunks = batched(index, part_episodes) if len(index) else iter([[]])
    tasks = ((os.fspath(store), parts_dir, k, chunk, window, validation_sha, summary.schema_sha256)
             for k, chunk in enumerate(chunks))  # made as the pool takes them: memory is one part
    parts = []
    for part in pmap(_features_part, tasks, jobs=min(jobs, n_parts), chunksize=1):
        parts.append(part)
        summary.windows += part["windows"]
        summary.episodes_built += part["episodes"]
        if progress and part["episodes"]:
            progress(part["episodes"])
    atomic_write(out / SCHEMA_NAME, sbytes)
    manifest = {
        "format": "cis490.features", "version": 1,
        "schema_sha256": summary.schema_sha256, "validation_sha256": validation_sha,
        "window": window.as_dict(), "episodes": summary.episodes_built, "windows": summary.windows,
        "parts": parts,
    }
    atomic_write(out / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    live = {p["name"] for p in parts}
    for p in parts_dir.glob("part-*.parquet"):
        if p.name not in live:
            p.unlink()
    summary.outputs = [str(out / MANIFEST_NAME), str(parts_dir), str(out / SCHEMA_NAME)]
    return summary
