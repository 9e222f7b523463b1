"""Summary-feature builder: usable episodes -> ``features_window_v1.parquet``.

Invariant: the output is byte-identical for the same (validation table,
store, window spec), whatever ``jobs`` is: episodes are processed in
``episode_id`` order through an order-preserving map, rows are sorted by
``(episode_id, t_end_ns)``, row groups are cut every ``ROW_GROUP_EPISODES``
episodes, and the parquet's key-value metadata holds only content hashes.
Memory is bounded by one row group plus the parquet footer, which the writer
must keep until the end: ~180 kB per row group of 216 columns (measured,
whatever the statistics), i.e. ~3 kB per episode -- the only part of peak RSS
that grows with the store (~130 MB at the seed's 48 k episodes).

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

from .channels import DEFAULT_WINDOW, REGISTRY, WindowSpec
from .episode import read_episode
from .schema import META_COLUMNS, SCHEMA_NAME, feature_names, schema_bytes
from .windows import NS, episode_grid, grid_summary_stats, make_windows, window_ends

__all__ = ["FEATURES_NAME", "EpisodeRef", "BuildSummary", "usable_episodes", "episode_windows",
           "build_features", "file_sha256", "start_build"]

FEATURES_NAME = "features_window_v1.parquet"
# ~3.3 k rows (2.7 MB of features) per row group. Larger groups measured
# worse: with ~11 MB arrays per batch, glibc's heap fragments and RSS climbs
# by ~20 MB per group; at 64 RSS stays flat but for the footer (below).
ROW_GROUP_EPISODES = 64
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


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def usable_episodes(validation_path: str | os.PathLike) -> tuple[list[EpisodeRef], dict[str, int]]:
    """Non-invalid episodes in ``episode_id`` order, and counts per status."""
    import pyarrow.parquet as pq  # not pandas: this runs on every build's critical path

    cols = ["episode_id", "host_id", "profile", "sample_name", "path", "sha256", "status"]
    missing = [c for c in cols if c not in pq.read_schema(validation_path).names]
    if missing:
        raise ValueError(f"{validation_path}: not a validation_v1 table (missing {', '.join(missing)})")
    rows = pq.read_table(validation_path, columns=cols).to_pylist()
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "degraded", "invalid")}
    refs = []
    for r in sorted((r for r in rows if r["status"] != "invalid"), key=lambda r: r["episode_id"]):
        if not _SAFE_NAME.match(str(r["host_id"])):
            raise ValueError(f"validation: host_id {r['host_id']!r} is not a safe directory name")
        p = PurePosixPath(str(r["path"]))
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"validation: episode {r['episode_id']} has an unsafe path {r['path']!r}")
        refs.append(EpisodeRef(*(r[k] for k in cols[:-1])))
    return refs, counts


def episode_grid_checked(store: str, ref: EpisodeRef):
    """Decode one episode (refusing one changed since validation) onto its grid."""
    ep = read_episode(os.path.join(store, ref.path))
    if ep.sha256 != ref.sha256:
        raise ValueError(
            f"episode {ref.episode_id}: {ref.path} changed since validation (sha256 differs); "
            "re-run `cis490 validate`"
        )
    return episode_grid(ep, REGISTRY)


def episode_windows(store: str, ref: EpisodeRef, window: WindowSpec):
    """Decode one episode and cut it into windows: ``(X (N,C,L), y, t_end_ns)``."""
    return make_windows(episode_grid_checked(store, ref), window)


def _features_one(args: tuple[str, EpisodeRef, WindowSpec]):
    store, ref, window = args
    grid = episode_grid_checked(store, ref)
    ends = window_ends(grid.values.shape[1], window, grid.labels)
    feats = grid_summary_stats(grid.values, ends, window.length_s)
    return ref, grid.labels[ends - 1], grid.t0_wall_ns + ends * NS, feats


def _arrow_schema(validation_sha: str, schema_sha: str):
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64()}
    fields = [(n, types[t]) for n, t in META_COLUMNS] + [(n, pa.float32()) for n in feature_names()]
    return pa.schema(fields, metadata={"cis490.schema_sha256": schema_sha,
                                       "cis490.validation_sha256": validation_sha})


def _batch_table(batch, schema):
    import pyarrow as pa

    n_feat = len(feature_names())
    reps = [len(y) for _, y, _, _ in batch]
    cols: dict[str, object] = {
        k: np.repeat(np.array([getattr(ref, k) for ref, *_ in batch], dtype=object), reps)
        for k in ("episode_id", "host_id", "profile", "sample_name")
    }
    cols["t_end_ns"] = np.concatenate([t for *_, t, _ in batch]).astype(np.int64)
    cols["label"] = np.concatenate([y for _, y, _, _ in batch]).astype(np.int64)
    feats = np.concatenate([f for *_, f in batch]) if batch else np.empty((0, n_feat), np.float32)
    by_column = np.ascontiguousarray(feats.T)  # (F, N): each column a contiguous buffer
    arrays = [pa.array(cols[n], type=schema.field(n).type) for n, _ in META_COLUMNS]
    arrays += [pa.array(by_column[j]) for j in range(n_feat)]
    return pa.Table.from_arrays(arrays, schema=schema)


def start_build(validation: str | os.PathLike, out_dir: str | os.PathLike,
                window: WindowSpec) -> tuple[list[EpisodeRef], Path, bytes, BuildSummary]:
    """What every builder starts from: the usable episodes, the output directory
    (created), the schema bytes and a summary carrying the schema hash."""
    refs, counts = usable_episodes(validation)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sbytes = schema_bytes(REGISTRY, window)
    return refs, out, sbytes, BuildSummary(counts=counts, schema_sha256=hashlib.sha256(sbytes).hexdigest())


def build_features(validation: str | os.PathLike, store: str | os.PathLike, out_dir: str | os.PathLike,
                   *, jobs: int = 1, window: WindowSpec = DEFAULT_WINDOW, progress=None) -> BuildSummary:
    import pyarrow.parquet as pq

    from ..fleet.atomic import atomic_write, atomic_writer
    from .parallel import batched, pmap

    refs, out, sbytes, summary = start_build(validation, out_dir, window)
    schema = _arrow_schema(file_sha256(validation), summary.schema_sha256)
    results = pmap(_features_one, [(os.fspath(store), r, window) for r in refs], jobs=jobs, progress=progress)
    with atomic_writer(out / FEATURES_NAME) as fh:
        # dictionary-encode the id columns only: trying it on 200+ float
        # columns costs more than the whole write
        # statistics on the id columns only (row-group pruning by episode_id;
        # min/max of 210 float columns help nobody)
        meta_cols = [n for n, _ in META_COLUMNS]
        with pq.ParquetWriter(fh, schema, use_dictionary=[n for n, t in META_COLUMNS if t == "string"],
                              write_statistics=meta_cols, compression="snappy") as writer:
            wrote = False
            for batch in batched(results, ROW_GROUP_EPISODES):
                table = _batch_table(batch, schema)
                writer.write_table(table, row_group_size=max(1, table.num_rows))
                summary.windows += table.num_rows
                summary.episodes_built += len(batch)
                wrote = True
            if not wrote:
                writer.write_table(_batch_table([], schema))
    atomic_write(out / SCHEMA_NAME, sbytes)
    summary.outputs = [str(out / FEATURES_NAME), str(out / SCHEMA_NAME)]
    return summary
