"""Per-window predictions of every evaluated model: the report's audit trail.

Every number of the report is computed from these files, and nothing else
about a model is needed to recompute it: ``reports/eval/predictions/<name>.parquet``
with ``name`` = ``<model>_<mode>`` (a baseline: its own name, e.g.
``clock-only``). One row per validation and test window of every training
seed of the model:

| column | type | |
|---|---|---|
| ``episode_id``, ``host_id``, ``profile`` | string | the window's episode |
| ``split`` | string | ``"val"`` or ``"test"`` |
| ``seed`` | int64 | training seed of the checkpoint (0 for a baseline) |
| ``t_end_ns`` | int64 | window end, wall clock |
| ``y_true`` | int64 | phase index (``CLASS_NAMES`` order) |
| ``p_<class>`` | float32 | the model's probability of each phase |
| ``score`` | float64 | detection score, ``1 − p_clean`` |
| ``onset_ns`` | int64 | the episode's labelled infection onset (−1: none or unknown) |
| ``started_ns`` | int64 | the episode's start, validation ``started_at_ns`` (−1: unknown) |

Rows are sorted by (split, seed, episode_id, t_end_ns); the file's key-value
metadata ``cis490.predictions`` (JSON) names the model, mode, family, the
checkpoint digest of each seed, the schema hash, the window stride
``stride_s`` (benign host-time per window) and, for a baseline, what was
fitted — so that the files alone rebuild the whole report
(``scoring.Context.from_predictions``). A file written before a column
existed still reads: a missing ``onset_ns`` or ``started_ns`` reads as −1
(unknown). Files are published with ``atomic_writer`` (written to its
temporary file, renamed into place on success), so a reader never sees half
a file.

Written batch by batch: ``PredictionsWriter`` appends one parquet row group
per batch (``cis490 eval`` predicts a batch group of windows at a time, so a
model's predictions never have to be in memory at once); the metadata is
known before the first row. ``write_predictions`` writes a whole
``Predictions`` through the same writer (one row group per split and seed),
so both give the same columns and read back the same.

Invariant kept by ``Windows``: one split of one seed, sorted by
(episode_id, t_end_ns), probabilities ``(n, K)`` — which is what the
detection code relies on (a run of alarms is a run of adjacent rows).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from cis490.common import InputError, atomic_writer

__all__ = ["FAMILIES", "FORMAT", "Predictions", "PredictionsWriter", "SharedColumns", "Windows",
           "read_predictions", "shared_strings", "write_predictions"]

FORMAT = 1
FAMILIES = ("realistic", "oracle", "baseline")
SPLITS = ("val", "test")
META_KEY = b"cis490.predictions"


@dataclass(frozen=True)
class Windows:
    """The windows of one split scored by one checkpoint, sorted by (episode, time)."""

    episode_id: np.ndarray      # (n,) str (read back: an object array of shared str)
    host_id: np.ndarray         # (n,) str
    profile: np.ndarray         # (n,) str
    t_end_ns: np.ndarray        # (n,) int64
    y_true: np.ndarray          # (n,) int64
    proba: np.ndarray           # (n, K) float32
    onset_ns: np.ndarray | None = None   # (n,) int64 onset of the window's episode, -1 unknown
    started_ns: np.ndarray | None = None  # (n,) int64 start of the window's episode, -1 unknown

    def __post_init__(self) -> None:
        n = len(self.y_true)
        for what in ("onset_ns", "started_ns"):
            if getattr(self, what) is None:
                object.__setattr__(self, what, np.full(n, -1, dtype=np.int64))
        for what in ("episode_id", "host_id", "profile", "t_end_ns", "onset_ns", "started_ns"):
            if np.shape(getattr(self, what)) != (n,):
                raise InputError(f"Windows.{what} must have one entry per window ({n})")
        if self.proba.ndim != 2 or self.proba.shape[0] != n:
            raise InputError(f"Windows.proba must be (n, K) with n = {n}, got {self.proba.shape}")
        if n > 1:
            e, t = self.episode_id, self.t_end_ns
            order_ok = (e[1:] > e[:-1]) | ((e[1:] == e[:-1]) & (t[1:] > t[:-1]))
            if not order_ok.all():
                raise InputError("Windows must be sorted by (episode_id, t_end_ns) without repeats")

    def __len__(self) -> int:
        return int(len(self.y_true))

    @property
    def score(self) -> np.ndarray:
        """Detection score ``1 − P(clean)``, float64."""
        return 1.0 - self.proba[:, 0].astype(np.float64)

    @property
    def key(self) -> np.ndarray:
        """Ranking key with the order of ``score``: ``-P(clean)``, float64.

        ``1 − p`` rounds to exactly 1.0 for p < 1.1e-16 (float64 spacing near
        1), which would tie the most confident windows; ``-p`` keeps float32's
        resolution near 0. Thresholds and ranking metrics use this key.
        """
        return -self.proba[:, 0].astype(np.float64)

    @property
    def y_pred(self) -> np.ndarray:
        return np.asarray(self.proba).argmax(axis=1).astype(np.int64)

    @property
    def malicious(self) -> np.ndarray:
        return np.asarray(self.y_true) != 0


@dataclass(frozen=True)
class Predictions:
    """One (model, mode) — or one baseline — over all its seeds, val and test."""

    model: str
    mode: str
    family: str                               # FAMILIES
    val: Mapping[int, Windows]                # seed -> windows
    test: Mapping[int, Windows]
    class_names: tuple[str, ...]
    meta: Mapping = field(default_factory=dict)   # digests, schema hash, baseline info

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise InputError(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if not self.test or set(self.val) != set(self.test):
            raise InputError(f"{self.name}: val and test must hold the same, non-empty set of seeds")

    @property
    def name(self) -> str:
        return self.model if self.family == "baseline" else f"{self.model}_{self.mode}"

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(self.test))


def _proba_columns(class_names) -> list[str]:
    return [f"p_{c}" for c in class_names]


def _schema(class_names, meta: Mapping):
    """The file's arrow schema, with the ``cis490.predictions`` key-value metadata."""
    import pyarrow as pa

    fields = [(k, pa.string()) for k in ("episode_id", "host_id", "profile", "split")]
    fields += [(k, pa.int64()) for k in ("seed", "t_end_ns", "y_true")]
    fields += [(n, pa.float32()) for n in _proba_columns(class_names)]
    fields += [("score", pa.float64()), ("onset_ns", pa.int64()), ("started_ns", pa.int64())]
    return pa.schema(fields, metadata={META_KEY: json.dumps(dict(meta), sort_keys=True).encode()})


def _rows(schema, split: str, seed: int, w: Windows, name: str):
    """One table of ``w``'s rows (``split``, training ``seed``) in ``schema``'s columns."""
    import pyarrow as pa

    n = len(w)
    proba = np.asarray(w.proba, dtype=np.float32)
    names = [f.name for f in schema if f.name.startswith("p_")]
    if proba.shape[1] != len(names):
        raise InputError(f"{name}: {proba.shape[1]} probability columns for {len(names)} classes")
    cols = {"episode_id": np.asarray(w.episode_id, dtype=str), "host_id": np.asarray(w.host_id, dtype=str),
            "profile": np.asarray(w.profile, dtype=str), "split": np.full(n, split),
            "seed": np.full(n, int(seed), dtype=np.int64),
            "t_end_ns": np.asarray(w.t_end_ns, dtype=np.int64),
            "y_true": np.asarray(w.y_true, dtype=np.int64)}
    for j, name in enumerate(names):
        cols[name] = proba[:, j]
    cols["score"] = 1.0 - proba[:, 0].astype(np.float64)
    cols["onset_ns"] = np.asarray(w.onset_ns, dtype=np.int64)
    cols["started_ns"] = np.asarray(w.started_ns, dtype=np.int64)
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)


class PredictionsWriter:
    """A predictions file written batch by batch (``append``), published atomically on close.

    Every ``append`` is one parquet row group. Rows must come in the file's order —
    (split, seed, episode_id, t_end_ns), val before test — which is checked across
    batches, so a model can be predicted a batch group at a time and the file never
    holds more than one batch in memory. The metadata (digests, history, …) is fixed
    up front; the file appears at ``path`` only when the ``with`` block ends without
    an exception and val and test hold the same seeds (``Predictions``' invariant)::

        with PredictionsWriter(path, model="gbt", mode="realistic", family="realistic",
                               class_names=CLASS_NAMES, meta=meta) as out:
            out.append("val", 0, windows)
    """

    def __init__(self, path: str | os.PathLike, *, model: str, mode: str, family: str,
                 class_names, meta: Mapping | None = None) -> None:
        if family not in FAMILIES:
            raise InputError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
        self.path = Path(path)
        self.name = model if family == "baseline" else f"{model}_{mode}"
        self.schema = _schema(class_names, {"format": FORMAT, "model": model, "mode": mode,
                                            "family": family, "classes": list(class_names),
                                            **dict(meta or {})})
        self.n_rows = 0
        self._seeds: dict[str, set[int]] = {s: set() for s in SPLITS}
        self._last: tuple | None = None       # (split index, seed, episode_id, t_end_ns)
        self._stack = None
        self._writer = None

    def __enter__(self) -> "PredictionsWriter":
        import contextlib

        import pyarrow.parquet as pq

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stack = contextlib.ExitStack()
        fh = self._stack.enter_context(atomic_writer(self.path))
        self._writer = pq.ParquetWriter(fh, self.schema, compression="zstd")
        return self

    def append(self, split: str, seed: int, windows: Windows) -> None:
        """Write ``windows`` (one split of one training seed) as the next row group."""
        if self._writer is None:
            raise RuntimeError("PredictionsWriter.append outside its `with` block")
        if split not in SPLITS:
            raise InputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        self._seeds[split].add(int(seed))
        if len(windows) == 0:
            return
        first = (SPLITS.index(split), int(seed), str(windows.episode_id[0]), int(windows.t_end_ns[0]))
        if self._last is not None and first <= self._last:
            raise InputError(f"{self.name}: rows must come sorted by (split, seed, episode_id, "
                             f"t_end_ns): {first[:2]} {first[2]}@{first[3]} after "
                             f"{self._last[:2]} {self._last[2]}@{self._last[3]}")
        self._writer.write_table(_rows(self.schema, split, seed, windows, self.name),
                                 row_group_size=max(1, len(windows)))
        self._last = (first[0], first[1], str(windows.episode_id[-1]), int(windows.t_end_ns[-1]))
        self.n_rows += len(windows)

    def __exit__(self, exc_type, exc, tb) -> None:
        writer, stack, self._writer, self._stack = self._writer, self._stack, None, None
        if exc_type is not None:              # nothing is published; the temp file goes
            try:
                writer.close()
            finally:
                stack.__exit__(exc_type, exc, tb)
            return
        with stack:                           # published unless closing or the check raises
            writer.close()
            if not self._seeds["test"] or self._seeds["val"] != self._seeds["test"]:
                raise InputError(f"{self.name}: val and test must hold the same, non-empty set "
                                 f"of seeds (val {sorted(self._seeds['val'])}, test "
                                 f"{sorted(self._seeds['test'])})")


def write_predictions(pred: Predictions, path: str | os.PathLike) -> Path:
    """Publish ``pred`` as one parquet file (see module doc); return its path.

    The same rows as ``PredictionsWriter`` writes batch by batch (one row group per
    split and seed here)."""
    with PredictionsWriter(path, model=pred.model, mode=pred.mode, family=pred.family,
                           class_names=pred.class_names, meta=pred.meta) as out:
        for split in SPLITS:
            part = pred.val if split == "val" else pred.test
            for seed in sorted(part):
                out.append(split, seed, part[seed])
    return out.path


def shared_strings(column) -> np.ndarray:
    """A string column (arrow, pandas or numpy) as an object array of ``str`` in which equal
    values are one object: 8 bytes a row instead of 4 per character (``<U16``: 64), so
    reading every model's predictions back costs little more than their numbers. Compares,
    sorts and hashes like the ``str`` array it replaces; a null reads as ``""``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, np.ndarray) and column.dtype == object:
        try:                                  # str objects go to arrow as they are, no copy
            column = pa.array(column, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            column = column.astype(str)       # other objects: their str
    if not isinstance(column, (pa.Array, pa.ChunkedArray)):
        column = pa.array(np.asarray(column).astype(str) if isinstance(column, np.ndarray)
                          else column, pa.string())     # an arrow-backed pandas column: chunked
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    enc = pc.dictionary_encode(column)
    values = np.array(enc.dictionary.to_pylist() + [""], dtype=object)   # "" for a null
    codes = enc.indices.fill_null(len(values) - 1).to_numpy(zero_copy_only=False)
    return values[codes.astype(np.intp)]


class SharedColumns:
    """Equal columns of several predictions files, held once.

    Every model evaluated on a split scores the same windows, so the columns that
    describe them (episode, host, profile, time, truth, onset, start) are equal from file
    to file; only the probabilities differ. ``read_predictions(path, shared=pool)``
    looks each (split, seed) part's column up here and reuses an equal one read
    before, so reading 16 models back costs one copy of those columns plus each model's
    probabilities, instead of 16 copies (about 70 bytes a window each)."""

    def __init__(self) -> None:
        self._seen: dict[tuple, list[np.ndarray]] = {}

    def __call__(self, name: str, values: np.ndarray) -> np.ndarray:
        key = (name, values.shape, values.dtype.str)
        for prev in self._seen.get(key, ()):
            if prev is values or np.array_equal(prev, values):
                return prev
        own = np.array(values)              # not a view: the file's whole column can go
        own.setflags(write=False)           # shared by every model: never edited in place
        self._seen.setdefault(key, []).append(own)
        return own


def read_predictions(path: str | os.PathLike, *, shared: SharedColumns | None = None) -> Predictions:
    """Read a file written by ``write_predictions``; ValueError (one line) if it is not one.

    With ``shared``, columns equal to ones read before through the same pool are the
    same arrays (see ``SharedColumns``)."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:     # pyarrow raises ArrowInvalid (a ValueError)
        raise InputError(f"{path}: not a readable predictions file ({exc})") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    try:
        meta = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{path}: no cis490 predictions metadata (format {FORMAT})")
    classes = tuple(meta.pop("classes"))
    model, mode, family = meta.pop("model"), meta.pop("mode"), meta.pop("family")
    meta.pop("format")
    names = _proba_columns(classes)
    missing = [c for c in ("episode_id", "host_id", "profile", "split", "seed", "t_end_ns",
                           "y_true", *names) if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    text = ("episode_id", "host_id", "profile", "split")
    col = {c: shared_strings(table[c]) if c in text else table[c].to_numpy(zero_copy_only=False)
           for c in table.column_names if c != "score"}
    del table
    proba = np.empty((len(col["seed"]), len(names)), dtype=np.float32)
    for j, n in enumerate(names):
        proba[:, j] = col.pop(n)
    for c in ("seed", "t_end_ns", "y_true", "onset_ns", "started_ns"):
        if c in col:
            col[c] = np.asarray(col[c], dtype=np.int64)
    parts: dict[str, dict[int, Windows]] = {s: {} for s in SPLITS}
    split, seed = col["split"], col["seed"]

    def rows(m: np.ndarray):
        """The rows of mask ``m``: a slice (views, no copy) when they are contiguous — as
        written, rows are sorted by (split, seed)."""
        idx = np.flatnonzero(m)
        return slice(int(idx[0]), int(idx[-1]) + 1) if idx[-1] - idx[0] + 1 == idx.size else idx

    def part(name: str, r) -> np.ndarray | None:
        if name not in col:
            return None                                   # older file: -1
        return shared(name, col[name][r]) if shared is not None else col[name][r]

    for s in SPLITS:
        for sd in np.unique(seed[split == s]).tolist():
            r = rows((split == s) & (seed == sd))
            parts[s][int(sd)] = Windows(
                episode_id=part("episode_id", r), host_id=part("host_id", r),
                profile=part("profile", r), t_end_ns=part("t_end_ns", r),
                y_true=part("y_true", r), proba=proba[r],
                onset_ns=part("onset_ns", r), started_ns=part("started_ns", r))
    return Predictions(model=model, mode=mode, family=family, val=parts["val"],
                       test=parts["test"], class_names=classes, meta=meta)
