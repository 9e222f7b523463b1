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
(unknown). Files are published with ``atomic_write`` (through
``atomic_writer``), so a reader never sees half a file.

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

from cis490.fleet.atomic import atomic_writer

__all__ = ["FAMILIES", "FORMAT", "Predictions", "Windows", "read_predictions",
           "write_predictions"]

FORMAT = 1
FAMILIES = ("realistic", "oracle", "baseline")
SPLITS = ("val", "test")
META_KEY = b"cis490.predictions"


@dataclass(frozen=True)
class Windows:
    """The windows of one split scored by one checkpoint, sorted by (episode, time)."""

    episode_id: np.ndarray      # (n,) str
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
                raise ValueError(f"Windows.{what} must have one entry per window ({n})")
        if self.proba.ndim != 2 or self.proba.shape[0] != n:
            raise ValueError(f"Windows.proba must be (n, K) with n = {n}, got {self.proba.shape}")
        if n > 1:
            e, t = self.episode_id, self.t_end_ns
            order_ok = (e[1:] > e[:-1]) | ((e[1:] == e[:-1]) & (t[1:] > t[:-1]))
            if not order_ok.all():
                raise ValueError("Windows must be sorted by (episode_id, t_end_ns) without repeats")

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
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if not self.test or set(self.val) != set(self.test):
            raise ValueError(f"{self.name}: val and test must hold the same, non-empty set of seeds")

    @property
    def name(self) -> str:
        return self.model if self.family == "baseline" else f"{self.model}_{self.mode}"

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(self.test))


def _proba_columns(class_names) -> list[str]:
    return [f"p_{c}" for c in class_names]


def write_predictions(pred: Predictions, path: str | os.PathLike) -> Path:
    """Publish ``pred`` as one parquet file (see module doc); return its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list] = {k: [] for k in ("episode_id", "host_id", "profile", "split", "seed",
                                              "t_end_ns", "y_true", "onset_ns", "started_ns", "proba")}
    for split in SPLITS:
        part = pred.val if split == "val" else pred.test
        for seed in sorted(part):
            w = part[seed]
            n = len(w)
            cols["episode_id"].append(np.asarray(w.episode_id, dtype=str))
            cols["host_id"].append(np.asarray(w.host_id, dtype=str))
            cols["profile"].append(np.asarray(w.profile, dtype=str))
            cols["split"].append(np.full(n, split))
            cols["seed"].append(np.full(n, int(seed), dtype=np.int64))
            cols["t_end_ns"].append(np.asarray(w.t_end_ns, dtype=np.int64))
            cols["y_true"].append(np.asarray(w.y_true, dtype=np.int64))
            cols["onset_ns"].append(np.asarray(w.onset_ns, dtype=np.int64))
            cols["started_ns"].append(np.asarray(w.started_ns, dtype=np.int64))
            cols["proba"].append(np.asarray(w.proba, dtype=np.float32))
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    proba = cat.pop("proba")
    names = _proba_columns(pred.class_names)
    if proba.shape[1] != len(names):
        raise ValueError(f"{pred.name}: {proba.shape[1]} probability columns for "
                         f"{len(names)} classes")
    arrays = {k: pa.array(cat[k], pa.string() if cat[k].dtype.kind == "U" else None)
              for k in ("episode_id", "host_id", "profile", "split", "seed", "t_end_ns", "y_true")}
    for j, n in enumerate(names):
        arrays[n] = pa.array(proba[:, j], pa.float32())
    arrays["score"] = pa.array(1.0 - proba[:, 0].astype(np.float64), pa.float64())
    arrays["onset_ns"] = pa.array(cat["onset_ns"], pa.int64())
    arrays["started_ns"] = pa.array(cat["started_ns"], pa.int64())
    meta = {"format": FORMAT, "model": pred.model, "mode": pred.mode, "family": pred.family,
            "classes": list(pred.class_names), **dict(pred.meta)}
    table = pa.table(arrays).replace_schema_metadata(
        {META_KEY: json.dumps(meta, sort_keys=True).encode()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as fh:
        pq.write_table(table, fh, compression="zstd")
    return path


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read a file written by ``write_predictions``; ValueError (one line) if it is not one."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:     # pyarrow raises ArrowInvalid (a ValueError)
        raise ValueError(f"{path}: not a readable predictions file ({exc})") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    try:
        meta = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: no cis490 predictions metadata (format {FORMAT})")
    classes = tuple(meta.pop("classes"))
    model, mode, family = meta.pop("model"), meta.pop("mode"), meta.pop("family")
    meta.pop("format")
    names = _proba_columns(classes)
    missing = [c for c in ("episode_id", "host_id", "profile", "split", "seed", "t_end_ns",
                           "y_true", *names) if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    col = {c: table[c].to_numpy(zero_copy_only=False) for c in table.column_names}
    proba = np.column_stack([col[n].astype(np.float32) for n in names])
    parts: dict[str, dict[int, Windows]] = {s: {} for s in SPLITS}
    split = col["split"].astype(str)
    seed = col["seed"].astype(np.int64)

    def optional(name: str, m: np.ndarray) -> np.ndarray | None:
        return col[name][m].astype(np.int64) if name in col else None     # older file: -1

    for s in SPLITS:
        for sd in np.unique(seed[split == s]).tolist():
            m = (split == s) & (seed == sd)
            parts[s][int(sd)] = Windows(
                episode_id=col["episode_id"][m].astype(str), host_id=col["host_id"][m].astype(str),
                profile=col["profile"][m].astype(str), t_end_ns=col["t_end_ns"][m].astype(np.int64),
                y_true=col["y_true"][m].astype(np.int64), proba=proba[m],
                onset_ns=optional("onset_ns", m), started_ns=optional("started_ns", m))
    return Predictions(model=model, mode=mode, family=family, val=parts["val"],
                       test=parts["test"], class_names=classes, meta=meta)
