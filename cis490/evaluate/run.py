"""``cis490 eval`` as a library: pick checkpoints, predict val and test, fit baselines, compare.

Steps (each a function so tests can drive or fake one):

1. ``find_candidates`` — every checkpoint on offer: from the spool's artifact
   store (``models/<model>_<mode>/<digest>/bundle.tar.zst``, verified against
   its digest while extracting) or from a plain directory of
   ``*.ckpt.json`` files (``--artifacts``, the seed's layout). Evaluation
   does not import the fleet: the store comes in as an ``ArtifactSource``
   (``cis490.cli.spool_artifacts`` builds one from ``cis490.fleet.store``).
2. ``select`` — per (model, mode) and training seed, one checkpoint: only
   checkpoints trained on the split being evaluated (recipe, train hosts,
   split seed recorded in the checkpoint), then the highest **validation**
   macro F1 recorded at training time (never a test score), ties by digest.
   Refused outright (``EvalRefused``, one line): a checkpoint that records no
   split (it could have been trained on the test host); a checkpoint whose
   schema hash differs from the data's when no current one exists for that
   (model, mode) (``SchemaRefused``; skipped with a note otherwise).
3. ``evaluate`` — checks each chosen checkpoint against this data's split
   (the train/val episode digests it recorded must be this split's, and its
   train hosts must not include a test host), then, one (input kind, mode)
   at a time, opens its validation and test windows lazily (tensors from
   their shards, summary features spilled to a private file) and, one
   checkpoint at a time, predicts them a batch group (``BATCH_GROUP_WINDOWS``)
   at a time straight into ``predictions/<model>_<mode>.parquet`` (one row
   group each, a progress line per group when stderr is not a terminal);
   permutation importance on a bounded sample of test episodes
   (``--importance-episodes``, the same for every model, stated in the
   report); fits the baselines on the train windows (a capped, seeded subset
   of whole episodes; val and test read in chunks) and writes theirs; reads
   every file back and compares (``compare.py``): every number of the report
   comes from those files.
4. ``run_loho`` — ``--split-recipe leave-one-host-out``: steps 1–3 once per
   host with usable episodes (the fold), for recipe ``host`` with every
   other host as train hosts, into ``<reports_dir>/leave-one-host-out/<host>/``;
   a fold without checkpoints is "not trained".

Heavy imports (pandas, torch, xgboost, scikit-learn) happen inside the functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Protocol, Sequence

import numpy as np

from cis490.data.splits import LEAVE_ONE_HOST_OUT  # stdlib only at import

from .compare import BASELINE_NAMES, CLASS_NAMES, Comparison, compare
from .importance import SAMPLE_ORDER, permutation_importance
from .predictions import (Predictions, PredictionsWriter, SharedColumns, Windows, read_predictions,
                          shared_strings, write_predictions)
from .scoring import Context
from cis490.common import InputError, read_small

__all__ = ["BATCH_GROUP_WINDOWS", "LEAVE_ONE_HOST_OUT", "ArtifactSource", "ArtifactUnusable",
           "Candidate", "EvalRefused", "EvalSettings", "LohoFold", "LohoResult", "SchemaRefused",
           "StoredArtifact", "channel_groups", "default_progress", "evaluate", "find_candidates",
           "loho_folds", "no_progress", "run_eval", "run_loho", "select"]

# `cis490 eval --split-recipe leave-one-host-out` (LEAVE_ONE_HOST_OUT): not a split but one
# `host` split per host with usable episodes, trained on every other host (the manifest expands
# such an entry into these `host`-recipe jobs); each fold is evaluated into
# <reports_dir>/leave-one-host-out/<host>/

# Baselines are fitted on at most this many train windows (whole episodes,
# chosen in a seeded order), so evaluation memory does not grow with the store.
BASELINE_MAX_TRAIN_WINDOWS = 40_000

# Windows are predicted, logged (one progress step) and written (one parquet row group)
# a batch group at a time; within a group a model reads its input in chunks of its own
# (the nets 1024 rows, gbt 65 536), so a group's memory is its probabilities.
BATCH_GROUP_WINDOWS = 65_536

# progress(label, total, unit) -> a context manager yielding advance(n)
ProgressFn = Callable[[str, int, str], ContextManager[Callable[[int], None]]]


class EvalRefused(InputError):
    """A checkpoint cannot be scored honestly on this split (one line says why)."""


class SchemaRefused(EvalRefused):
    """A checkpoint was trained on another feature schema than the data's."""


@dataclass(frozen=True)
class Candidate:
    model: str
    mode: str
    digest: str              # store digest, or sha256 of the checkpoint JSON (--artifacts)
    checkpoint: Path         # the extracted ``*.ckpt.json``
    meta: dict = field(repr=False, compare=False)
    curves: list[dict] | None = field(default=None, repr=False, compare=False)  # metrics.jsonl

    @property
    def name(self) -> str:
        return f"{self.model}_{self.mode}"

    @property
    def schema_sha256(self) -> str:
        return str(self.meta.get("schema_sha256", ""))

    @property
    def data(self) -> dict:
        return dict(self.meta.get("data") or {})

    @property
    def split(self) -> dict:
        return dict(self.data.get("split") or {})

    @property
    def train_seed(self) -> int:
        """The training seed: recorded as data.train_seed, else val_metrics.seed, else the split's."""
        for v in (self.data.get("train_seed"), (self.meta.get("val_metrics") or {}).get("seed"),
                  self.split.get("seed")):
            if v is not None:
                return int(v)
        return 0

    @property
    def val_macro_f1(self) -> float:
        v = (self.meta.get("fit") or {}).get("best_val_macro_f1")
        return float(v) if v is not None else float("-inf")

    @property
    def history(self) -> list[dict]:
        return list((self.meta.get("fit") or {}).get("history") or [])


@dataclass(frozen=True)
class EvalSettings:
    validation: Path
    summary: Path
    tensors: Path
    schema: Path
    recipe: str = "host"
    train_hosts: tuple[str, ...] | None = None
    seed: int = 0                     # the split's seed
    n_resamples: int = 2000
    confidence: float = 0.95
    bootstrap_seed: int = 0
    importance: str = "source"        # "source" | "channel" | "none"
    importance_repeats: int = 1
    importance_max_episodes: int = 200   # test episodes importance is computed on (0 = all)
    models: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    consecutive: int = 1
    false_alarm_budget: float = 1.0   # false alarms per benign host-day, on validation
    temperature_scaling: bool = True
    baselines: tuple[str, ...] = BASELINE_NAMES
    reports_dir: Path = Path("reports/eval")

    def __post_init__(self) -> None:
        if isinstance(self.consecutive, bool) or not isinstance(self.consecutive, int) \
                or not 1 <= self.consecutive <= 1000:
            raise InputError(f"--consecutive must be an integer in 1..1000, got {self.consecutive!r}")
        if not (isinstance(self.false_alarm_budget, (int, float))
                and 0 <= self.false_alarm_budget < float("inf")):
            raise InputError(f"--false-alarm-budget must be a finite number >= 0, got "
                             f"{self.false_alarm_budget!r}")
        if isinstance(self.importance_max_episodes, bool) \
                or not isinstance(self.importance_max_episodes, int) or self.importance_max_episodes < 0:
            raise InputError(f"--importance-episodes must be an integer >= 0 (0 = all), got "
                             f"{self.importance_max_episodes!r}")
        unknown = sorted(set(self.baselines) - set(BASELINE_NAMES))
        if unknown:
            raise InputError(f"unknown baseline(s) {', '.join(unknown)}; known: "
                             f"{', '.join(BASELINE_NAMES)}")


# ---------------------------------------------------------------- candidates

class ArtifactUnusable(Exception):
    """A stored artifact's bundle or curves cannot be read back (the message says why)."""


class StoredArtifact(Protocol):
    """One entry of the spool's content-addressed store, as evaluation reads it."""

    @property
    def model_mode(self) -> str:
        """``<model>_<mode>`` of a model; any other name for other artifacts (the smoke job's)."""

    @property
    def digest(self) -> str:
        """The sha256 of its bundle (the name it is stored under)."""

    @property
    def published(self) -> bool:
        """Its writer finished (the record, written last, is there)."""

    def extract(self, dest: Path) -> None:
        """Write the bundle's files under ``dest``, verified against ``digest``;
        ``ArtifactUnusable`` when the bundle is unusable."""

    def read_curves(self) -> list[dict] | None:
        """Its stored ``metrics.jsonl`` rows, None when it has none; ``ArtifactUnusable``
        when they are unusable."""


class ArtifactSource(Protocol):
    """The spool's artifact store (built above this layer, from ``cis490.fleet.store``)."""

    @property
    def root(self) -> Path:
        """The spool directory (named in messages)."""

    def artifacts(self) -> Iterable[StoredArtifact]:
        """Every stored artifact, in a fixed order; ``FileNotFoundError`` when ``root``
        is no spool."""


def _read_meta(ckpt: Path) -> dict:
    from cis490.models.checkpoint import read_checkpoint
    meta, _ = read_checkpoint(ckpt)          # verifies format and the sidecar's sha256
    return meta


def find_candidates(*, spool: ArtifactSource | None = None, artifacts: Path | None = None,
                    workdir: Path) -> list[Candidate]:
    """Every checkpoint offered by the spool's store or an artifacts directory."""
    from cis490.models.checkpoint import find_checkpoint, sha256_file

    out: list[Candidate] = []
    if spool is not None:
        from cis490.models.configs import CONFIGS, MODES

        model_modes = {f"{m}_{mode}" for m in CONFIGS for mode in MODES}
        for art in spool.artifacts():
            model_mode = art.model_mode
            if model_mode not in model_modes:
                continue                      # not a model (e.g. the smoke job's artifact)
            if not art.published:
                continue                      # still being written (record.json is last)
            dest = workdir / model_mode / art.digest
            try:
                art.extract(dest)             # re-hashes the bundle against its name
            except ArtifactUnusable as exc:   # not a ValueError: say it in cis490's terms
                raise InputError(f"artifact {model_mode}/{art.digest[:12]} is unusable "
                                 f"({exc}); run `cis490-spool fsck`") from None
            ckpt = find_checkpoint(dest)
            meta = _read_meta(ckpt)
            try:
                curves = art.read_curves()    # checked against record.json; None: none
            except ArtifactUnusable as exc:   # e.g. not synced yet: the plot falls back
                print(f"cis490 eval: warning: artifact {model_mode}/{art.digest[:12]}: "
                      f"curves unusable ({exc}); its learning curve comes from the "
                      "checkpoint's history (`cis490-spool fsck` checks the store)",
                      file=sys.stderr)
                curves = None
            out.append(Candidate(meta["model"], meta["mode"], art.digest, ckpt, meta, curves))
    if artifacts is not None:
        root = Path(artifacts)
        if not root.is_dir():
            raise FileNotFoundError(f"--artifacts {root}: not a directory")
        for ckpt in sorted(root.rglob("*.ckpt.json")):
            meta = _read_meta(ckpt)
            out.append(Candidate(meta["model"], meta["mode"], sha256_file(ckpt), ckpt, meta))
    return out


def _split_matches(c: Candidate, recipe: str, train_hosts, seed: int) -> bool:
    s = c.split
    hosts = sorted(s.get("train_hosts") or [])
    return (s.get("recipe") == recipe and int(s.get("seed", -1)) == int(seed)
            and (train_hosts is None or hosts == sorted(train_hosts)))


def select(candidates: Sequence[Candidate], *, schema_sha256: str, recipe: str,
           train_hosts: Sequence[str] | None, seed: int,
           models: Iterable[str] | None = None, modes: Iterable[str] | None = None,
           note: Callable[[str], None] = lambda s: None) -> list[Candidate]:
    """One checkpoint per (model, mode, training seed) (see module doc); raises ``EvalRefused``."""
    models = set(models) if models else None
    modes = set(modes) if modes else None
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        if (models and c.model not in models) or (modes and c.mode not in modes):
            continue
        if not c.split:
            raise EvalRefused(
                f"checkpoint {c.name} ({c.digest[:12]}) records no split, so it may have been "
                f"trained on the test hosts; refusing to score it — retrain it with this version")
        if not _split_matches(c, recipe, train_hosts, seed):
            continue
        groups.setdefault(c.name, []).append(c)
    chosen = []
    for name in sorted(groups):
        current = [c for c in groups[name] if c.schema_sha256 == schema_sha256]
        stale = [c for c in groups[name] if c.schema_sha256 != schema_sha256]
        if not current:
            c = stale[0]
            raise SchemaRefused(
                f"checkpoint {name} ({c.digest[:12]}) was trained on feature schema "
                f"{c.schema_sha256[:12] or '?'} but the data has schema {schema_sha256[:12]}; "
                f"refusing to score it — retrain on the current features")
        for c in stale:
            note(f"skipping {name} {c.digest[:12]}: trained on schema {c.schema_sha256[:12]}, "
                 f"data has {schema_sha256[:12]}")
        by_seed: dict[int, list[Candidate]] = {}
        for c in current:
            by_seed.setdefault(c.train_seed, []).append(c)
        for s in sorted(by_seed):
            chosen.append(max(by_seed[s], key=lambda c: (c.val_macro_f1, c.digest)))
    return chosen


def check_against_split(chosen: Sequence[Candidate], split) -> None:
    """Refuse a checkpoint that was not trained on exactly this split's train/val episodes."""
    from cis490.train.data import episodes_digest

    want = {"train_episodes_sha256": episodes_digest(split.train),
            "val_episodes_sha256": episodes_digest(split.val)}
    test_hosts = set(split.test_hosts)
    for c in chosen:
        missing = [k for k in ("train_hosts", *want) if not (c.split if k == "train_hosts"
                                                            else c.data).get(k)]
        if missing:
            raise EvalRefused(f"checkpoint {c.name} ({c.digest[:12]}) does not record "
                              f"{', '.join(missing)}, so what it was trained on cannot be checked "
                              f"against this split; refusing to score it — retrain it")
        overlap = sorted(set(c.split.get("train_hosts") or ()) & test_hosts)
        if split.recipe == "host" and overlap:
            raise EvalRefused(f"checkpoint {c.name} ({c.digest[:12]}) was trained on "
                              f"{', '.join(overlap)}, a test host of this split; refusing to score it")
        for key, value in want.items():
            if c.data[key] != value:
                raise EvalRefused(
                    f"checkpoint {c.name} ({c.digest[:12]}) was trained on other "
                    f"{key.split('_')[0]} episodes than this data's {split.recipe} split gives "
                    f"(the validation table changed since?); refusing to score it — retrain it")


# ---------------------------------------------------------------- scoring

def channel_groups(model: str, mode: str, level: str) -> dict[str, list[int]]:
    """Importance units: channel name (or source) -> indices into axis 1 of X."""
    from cis490.data.channels import channel_names
    from cis490.data.schema import feature_names
    from cis490.models.configs import SUMMARY_MODELS

    if model in SUMMARY_MODELS:
        names = [f.split("__", 1)[0] for f in feature_names(mode=mode)]
    else:
        names = channel_names(mode)
    key = (lambda n: n.split(".", 1)[0]) if level == "source" else (lambda n: n)
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(key(n), []).append(i)
    return groups


def _per_window(eid: np.ndarray, per_episode: dict) -> np.ndarray:
    """An episode-level int64 fact (onset, start) repeated on each window; -1 where unknown."""
    if eid.size == 0:
        return np.zeros(0, dtype=np.int64)
    uni, inv = np.unique(eid, return_inverse=True)
    return np.array([per_episode.get(e, -1) for e in uni.tolist()], dtype=np.int64)[inv]


def _check_validation(y_val: np.ndarray) -> None:
    """A threshold is fixed on validation: it needs benign and malicious windows there."""
    if not (y_val == 0).any():
        raise InputError("the validation split has no benign (clean) window, so no threshold can be "
                         "fixed for a false-alarm budget: every window ends after its episode's "
                         "onset (episodes too short for the window length?)")
    if not (y_val != 0).any():
        raise InputError("the validation split has no malicious window, so no threshold can be "
                         "chosen for detection (every validation episode is benign-only?)")


def _stride_s(schema: Path) -> float:
    try:
        doc = json.loads(read_small(schema))
    except ValueError as exc:
        raise InputError(f"{schema}: not a feature schema ({exc})") from None
    stride = (doc.get("window") or {}).get("stride_s")
    if not isinstance(stride, (int, float)) or stride <= 0:
        raise InputError(f"{schema}: no positive window.stride_s (is this a feature schema?)")
    return float(stride)


@dataclass
class _Part:
    """One split's windows for one input kind: the lazy ``X`` and the per-window columns
    of the predictions file (everything but the probabilities)."""

    X: object                   # lazy WindowArray / RowArray (or an array)
    y: np.ndarray
    episode_id: np.ndarray
    host_id: np.ndarray
    profile: np.ndarray
    t_end_ns: np.ndarray
    onset_ns: np.ndarray
    started_ns: np.ndarray

    def __len__(self) -> int:
        return int(len(self.y))

    def rows(self, sl) -> object:
        """Rows ``sl`` of ``X`` without reading them when ``X`` is lazy (the model reads in
        chunks of its own)."""
        from cis490.models._array import is_lazy

        return self.X.take(sl) if is_lazy(self.X) else self.X[sl]

    def windows(self, sl, proba: np.ndarray) -> Windows:
        return Windows(episode_id=self.episode_id[sl], host_id=self.host_id[sl],
                       profile=self.profile[sl], t_end_ns=self.t_end_ns[sl], y_true=self.y[sl],
                       proba=np.asarray(proba, dtype=np.float32), onset_ns=self.onset_ns[sl],
                       started_ns=self.started_ns[sl])


def _part(X, y: np.ndarray, meta, facts: dict) -> _Part:
    eid = shared_strings(meta["episode_id"])      # 8 bytes a window, not 4 per character
    return _Part(X=X, y=np.asarray(y, dtype=np.int64), episode_id=eid,
                 host_id=shared_strings(meta["host_id"]),
                 profile=shared_strings(meta["profile"]),
                 t_end_ns=np.asarray(meta["t_end_ns"], dtype=np.int64),
                 onset_ns=_per_window(eid, facts["onsets"]),
                 started_ns=_per_window(eid, facts["started"]))


def _windows(y: np.ndarray, meta, proba: np.ndarray, facts: dict) -> Windows:
    return _part(None, y, meta, facts).windows(slice(None), proba)


def default_progress(label: str, total: int, unit: str = "windows"):
    """Progress of one long step: plain lines every ``$CIS490_PROGRESS_S`` (30) s when stderr
    is not a terminal (``cis490.progress.LineProgress``), a rich bar on a terminal."""
    from cis490.data.parallel import progress_bar

    return progress_bar(label, total, quiet=False, unit=unit)


def no_progress(label: str, total: int, unit: str = "windows"):
    return contextlib.nullcontext(lambda n=1: None)


def _batch_groups(model, part: _Part, label: str, progress: ProgressFn):
    """``(slice, probabilities)`` of each batch group of ``part``, in row order, with a
    progress line per group."""
    from cis490.models._array import chunks

    n = len(part)
    with progress(label, n, "windows") as advance:
        for sl in chunks(n, BATCH_GROUP_WINDOWS):
            proba = np.asarray(model.predict_proba(part.rows(sl)), dtype=np.float32)
            advance(sl.stop - sl.start)
            yield sl, proba


def _importance_sample(settings: EvalSettings, test: _Part):
    """The bounded sample of test episodes importance is computed on: (rows, record)."""
    from .importance import sample_episodes, sample_record

    ids = np.unique(test.episode_id)
    chosen = sample_episodes(ids.tolist(), settings.importance_max_episodes,
                             settings.bootstrap_seed)
    rows = np.flatnonzero(np.isin(test.episode_id, np.asarray(chosen, dtype=object)))
    return rows, sample_record(chosen, len(ids), len(rows), len(test),
                               settings.importance_max_episodes, settings.bootstrap_seed)


def _importance(settings: EvalSettings, c: Candidate, model, X, y, record: dict,
                progress: ProgressFn):
    groups = channel_groups(c.model, c.mode, settings.importance)
    passes = 1 + len(groups) * int(settings.importance_repeats)
    with progress(f"eval: {c.name} importance ({record['n_episodes']} episodes)", passes,
                  "passes") as advance:
        def predict(Xp):
            labels = np.asarray(model.predict_proba(Xp)).argmax(axis=1)
            advance(1)
            return labels

        imp = permutation_importance(predict, X, y, groups, n_repeats=settings.importance_repeats,
                                     seed=settings.bootstrap_seed, n_classes=len(CLASS_NAMES))
    return replace(imp, sample=record)


def _predict_group(settings: EvalSettings, kind_cands: list[Candidate], split, *,
                   schema_sha256: str, pred_dir: Path, facts: dict, note,
                   progress: ProgressFn = no_progress) -> tuple[list[Path], dict]:
    """One (input kind, mode): open its val + test windows once (lazily: summary features
    spilled to a private file under ``pred_dir``, tensors read from their shards), then
    predict every checkpoint a batch group at a time into its predictions file."""
    from cis490.train.data import SchemaMismatch, load_arrays

    c0 = kind_cands[0]
    spill = Path(tempfile.mkdtemp(prefix=".spill-", dir=pred_dir))
    parts: dict[str, _Part] = {}
    try:
        for part, ids in (("val", split.val), ("test", split.test)):
            (spill / part).mkdir()                # one spill file per split (same file name)
            try:
                X, y, meta = load_arrays(
                    c0.model, c0.mode, summary=str(settings.summary),
                    tensors=str(settings.tensors), schema=str(settings.schema),
                    episode_ids=sorted(ids), schema_sha256=schema_sha256,
                    spill_dir=str(spill / part))
            except SchemaMismatch as exc:
                raise SchemaRefused(str(exc)) from None
            if len(y) == 0:
                raise InputError(f"no {part} windows for {c0.mode} {c0.model} (split "
                                 f"{settings.recipe}: {len(ids)} {part} episodes)")
            parts[part] = _part(X, y, meta, facts)
            del meta
        _check_validation(parts["val"].y)
        sample = None
        if settings.importance != "none":
            rows, record = _importance_sample(settings, parts["test"])
            X_imp = np.asarray(parts["test"].rows(rows)[:], dtype=np.float32)  # the sample only
            sample = (X_imp, parts["test"].y[rows], record)
        written, importances = [], {}
        for name in sorted({c.name for c in kind_cands}):
            mine = sorted((c for c in kind_cands if c.name == name), key=lambda c: c.train_seed)
            path, imp = _predict_model(settings, name, mine, parts, sample, schema_sha256=schema_sha256,
                                       pred_dir=pred_dir, facts=facts, note=note, progress=progress)
            written.append(path)
            if imp is not None:
                importances[name] = imp
        return written, importances
    finally:
        parts.clear()                            # close the spill before removing it
        shutil.rmtree(spill, ignore_errors=True)


def _predict_model(settings: EvalSettings, name: str, mine: list[Candidate], parts: dict,
                   sample, *, schema_sha256: str, pred_dir: Path, facts: dict, note,
                   progress: ProgressFn):
    """Every seed of one (model, mode): one checkpoint in memory at a time; val rows
    written as they are predicted, test probabilities (16 bytes a window) kept until
    every seed's val rows are in the file (rows are sorted by split, then seed)."""
    from cis490 import models as model_lib

    meta = {"checkpoints": {str(c.train_seed): c.digest for c in mine},
            "schema_sha256": mine[0].schema_sha256,
            "history": {str(c.train_seed): c.history for c in mine},
            "curves": {str(c.train_seed): c.curves for c in mine if c.curves},
            "train_hosts": sorted(mine[0].split.get("train_hosts") or []),
            "split": {k: mine[0].split.get(k) for k in ("recipe", "seed")},
            "stride_s": facts["stride_s"]}
    val, test = parts["val"], parts["test"]
    test_proba: dict[int, list] = {}
    imp = None
    with PredictionsWriter(pred_dir / f"{name}.parquet", model=mine[0].model, mode=mine[0].mode,
                           family="oracle" if mine[0].mode == "oracle" else "realistic",
                           class_names=CLASS_NAMES, meta=meta) as out:
        for c in mine:
            seed = c.train_seed
            model = model_lib.load(c.checkpoint, expect_schema_sha256=schema_sha256)
            for sl, proba in _batch_groups(model, val, f"eval: {name} seed {seed} val", progress):
                out.append("val", seed, val.windows(sl, proba))
            test_proba[seed] = list(_batch_groups(model, test, f"eval: {name} seed {seed} test",
                                                  progress))
            if c is mine[0] and sample is not None:
                imp = _importance(settings, c, model, *sample, progress)
            del model                            # one checkpoint at a time
            note(f"scored {name} seed {seed} ({c.digest[:12]}) on {len(test)} test and "
                 f"{len(val)} val windows")
        for seed in sorted(test_proba):
            for sl, proba in test_proba.pop(seed):
                out.append("test", seed, test.windows(sl, proba))
    return out.path, imp


def _baseline_data(settings: EvalSettings, ids: Sequence[str], started: dict,
                   spill_dir: Path | None = None):
    from cis490.data.load import load_summary
    from .baselines import BaselineData

    res = load_summary(settings.summary, "realistic", sorted(ids), schema=settings.schema,
                       spill_dir=spill_dir)
    meta = res.meta
    eid = shared_strings(meta["episode_id"])      # one str object per episode, not per window
    t0 = np.array([started[e] for e in eid], dtype=np.int64) if eid.size else np.zeros(0, np.int64)
    data = BaselineData(X=res.X, feature_names=list(res.feature_names),
                        y=np.asarray(res.y, dtype=np.int64), episode_id=eid,
                        host_id=shared_strings(meta["host_id"]),
                        t_since_start_s=(np.asarray(meta["t_end_ns"], np.int64) - t0) / 1e9)
    return data, meta


def _fit_baselines(settings: EvalSettings, split, started: dict, pred_dir: Path, facts: dict,
                   note) -> list[Path]:
    from .baselines import fit_baselines

    order = sorted(split.train, key=lambda e: hashlib.sha256(
        f"{settings.bootstrap_seed}:{e}".encode()).hexdigest())
    # every split's features spilled to a private file and read in chunks (val, test) or
    # only the capped subsample (train): memory does not grow with the store
    spill = Path(tempfile.mkdtemp(prefix=".spill-", dir=pred_dir))
    try:
        for part in ("val", "train", "test"):
            (spill / part).mkdir()
        val, val_meta = _baseline_data(settings, split.val, started, spill / "val")
        per_episode = max(1.0, len(val.y) / max(1, len(split.val)))
        cap = max(1, int(2 * BASELINE_MAX_TRAIN_WINDOWS / per_episode))  # subsampled exactly below
        train, _ = _baseline_data(settings, order[:cap], started, spill / "train")
        test, test_meta = _baseline_data(settings, split.test, started, spill / "test")
        fits = fit_baselines(train, val, test, n_classes=len(CLASS_NAMES),
                             seed=settings.bootstrap_seed, names=settings.baselines,
                             max_train_windows=BASELINE_MAX_TRAIN_WINDOWS)
        y_val, y_test = val.y, test.y
        del train, val, test                     # the spilled features, before removing them
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    written = []
    for name, fit in fits.items():
        pred = Predictions(model=name, mode="baseline", family="baseline",
                           val={0: _windows(y_val, val_meta, fit.proba_val, facts)},
                           test={0: _windows(y_test, test_meta, fit.proba_test, facts)},
                           class_names=CLASS_NAMES,
                           meta={"info": fit.info, "stride_s": facts["stride_s"]})
        written.append(write_predictions(pred, pred_dir / f"{name}.parquet"))
        note(f"fitted baseline {name} on {fit.info.get('n_train_windows', '?')} train windows")
    return written


def _episode_facts(df) -> tuple[dict, dict, dict]:
    """started_at_ns and onset_ns of every usable episode, and the data's origin."""
    started = dict(zip(df["episode_id"].astype(str), df["started_at_ns"].astype("int64")))
    usable = df[df["status"] != "invalid"]
    onset_col = usable["onset_ns"]
    have_onsets = bool(onset_col.notna().any())
    onsets = {str(e): int(o) for e, o in zip(usable["episode_id"], onset_col) if o == o and o is not None}
    versions = sorted({str(v) for v in usable["collector_version"] if isinstance(v, str) and v})
    origin = {
        "collectors": versions or None,
        "synthetic": any(v.startswith("cis490-synth") for v in versions),
        "onsets": ("labelled onset of each episode (validation onset_ns)" if have_onsets else
                   "the end of each episode's first malicious window (the validation table "
                   "predates onset_ns: up to one stride late; re-run `cis490 validate`)"),
    }
    return started, onsets, origin


def evaluate(settings: EvalSettings, chosen: Sequence[Candidate], *, schema_sha256: str,
             data_digests: dict[str, str], note: Callable[[str], None] = lambda s: None,
             progress: ProgressFn = default_progress) -> Comparison:
    """Predict, write the predictions files, fit baselines, read everything back, compare.

    One model in memory at a time, predicted a batch group at a time
    (``BATCH_GROUP_WINDOWS``) straight into its predictions file, with a progress
    line per group (``progress``; ``no_progress`` for none)."""
    from cis490.data.splits import make_split
    from cis490.data.validate import read_validation
    from cis490.models.configs import SUMMARY_MODELS

    if not chosen:
        raise InputError("no checkpoint to evaluate for this split")
    validation = read_validation(settings.validation)          # read once, for both
    split = make_split(validation, settings.recipe, settings.train_hosts, settings.seed)
    check_against_split(chosen, split)
    started, onsets, origin = _episode_facts(validation)
    facts = {"onsets": onsets, "started": started, "stride_s": _stride_s(settings.schema)}
    reports = Path(settings.reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    # the run writes into a fresh directory that replaces predictions/ only once everything
    # was computed: predictions/ always holds the inputs of one whole run, never a mix
    staging = Path(tempfile.mkdtemp(prefix=".predictions-", dir=reports))
    try:
        groups: dict[tuple[str, str], list[Candidate]] = {}
        for c in chosen:
            kind = "summary" if c.model in SUMMARY_MODELS else "tensor"
            groups.setdefault((kind, c.mode), []).append(c)
        written, importances = [], {}
        for key in sorted(groups):             # one (kind, mode) in memory at a time
            w, imp = _predict_group(settings, groups[key], split, schema_sha256=schema_sha256,
                                    pred_dir=staging, facts=facts, note=note, progress=progress)
            written += w
            importances.update(imp)
        if settings.baselines:
            written += _fit_baselines(settings, split, started, staging, facts, note)
        pool = SharedColumns()                  # the windows' columns once, not once a model
        preds = [read_predictions(p, shared=pool) for p in sorted(written)]   # every number from the files
        del pool
        ctx = Context.from_predictions(preds, consecutive=settings.consecutive,
                                       budget_per_day=float(settings.false_alarm_budget),
                                       temperature_scaling=settings.temperature_scaling)
        comp = _compare(settings, preds, ctx, split, origin, data_digests, importances)
        _publish(staging, reports / "predictions")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return comp


def _publish(staging: Path, dest: Path) -> None:
    """Swap ``staging`` in as ``dest`` (a rename each; the old directory is removed)."""
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.rename(dest, old)
    os.rename(staging, dest)
    shutil.rmtree(old, ignore_errors=True)


def _compare(settings: EvalSettings, preds, ctx, split, origin, data_digests, importances):
    provenance = {
        **origin, "validation": str(settings.validation),
        "validation_sha256": data_digests.get("validation", ""),
        "schema_sha256": data_digests.get("schema", ""), "recipe": settings.recipe,
        "split_seed": settings.seed, "train_hosts": list(split.train_hosts),
        "test_hosts": list(split.test_hosts), "n_train": len(split.train),
        "n_val": len(split.val), "n_test": len(split.test),
        "importance_sample": _importance_provenance(settings, importances),
    }
    return compare(preds, ctx, n_resamples=settings.n_resamples, confidence=settings.confidence,
                   seed=settings.bootstrap_seed, untested_profiles=split.untested_profiles,
                   importance=importances, provenance=provenance)


def _importance_provenance(settings: EvalSettings, importances: dict) -> dict | None:
    """The importance sample, stated once (every model gets the same test episodes)."""
    if settings.importance == "none":
        return None
    records = {n: dict(imp.sample) for n, imp in sorted(importances.items())
               if imp.sample is not None}
    out = {"level": settings.importance, "repeats": settings.importance_repeats,
           "max_episodes": settings.importance_max_episodes, "order": SAMPLE_ORDER,
           "seed": settings.bootstrap_seed}
    distinct = {json.dumps(r, sort_keys=True) for r in records.values()}
    if len(distinct) == 1:
        out.update(next(iter(records.values())))
    elif records:                                     # kinds disagree on the test windows
        out["per_model"] = records
    return out


def _digests(settings: EvalSettings) -> dict[str, str]:
    from cis490.models.checkpoint import sha256_file

    return {"validation": sha256_file(settings.validation), "schema": sha256_file(settings.schema)}


def _where(spool: ArtifactSource | None, artifacts: Path | None) -> Path | None:
    """What the messages name as the checkpoints' place."""
    return spool.root if spool is not None else artifacts


def run_eval(settings: EvalSettings, *, spool: ArtifactSource | None, artifacts: Path | None,
             note: Callable[[str], None] = lambda s: None,
             progress: ProgressFn = default_progress) -> Comparison:
    """find → select → evaluate, extracting bundles into a temporary directory."""
    digests = _digests(settings)
    schema_sha = digests["schema"]
    where = _where(spool, artifacts)
    with tempfile.TemporaryDirectory(prefix="cis490-eval-") as tmp:
        cands = find_candidates(spool=spool, artifacts=artifacts, workdir=Path(tmp))
        if not cands:
            raise InputError(f"no checkpoints found in {where}")
        if settings.train_hosts is None:
            seen = {tuple(sorted(c.split.get("train_hosts") or ())) for c in cands
                    if c.split.get("recipe") == settings.recipe}
            if len(seen) > 1:
                raise InputError("checkpoints were trained on different train hosts "
                                 f"({'; '.join(','.join(s) for s in sorted(seen))}); "
                                 "choose one set with --train-hosts")
            hosts = seen.pop() if seen else None
            settings = replace(settings, train_hosts=hosts or None)
        chosen = select(cands, schema_sha256=schema_sha, recipe=settings.recipe,
                        train_hosts=settings.train_hosts, seed=settings.seed,
                        models=settings.models, modes=settings.modes, note=note)
        if not chosen:
            raise InputError(f"no checkpoint trained on split {settings.recipe} "
                             f"(train hosts {','.join(settings.train_hosts or ()) or '?'}, "
                             f"split seed {settings.seed}) in {where}")
        return evaluate(settings, chosen, schema_sha256=schema_sha, data_digests=digests,
                        note=note, progress=progress)


# ---------------------------------------------------------------- leave-one-host-out


@dataclass(frozen=True)
class LohoFold:
    """One fold: ``held_out`` is the test host, every other host with usable episodes trains."""

    held_out: str
    train_hosts: tuple[str, ...]
    n_test_episodes: int                    # usable episodes of the held-out host
    comparison: Comparison | None = None    # None: not trained, or refused
    refused: str = ""                       # why the evaluation refused this fold ("" = it did not)

    @property
    def trained(self) -> bool:
        """Evaluated: it had checkpoints and the evaluation did not refuse it."""
        return self.comparison is not None

    @property
    def status(self) -> str:
        return "evaluated" if self.trained else ("refused" if self.refused else "not trained")


@dataclass(frozen=True)
class LohoResult:
    folds: tuple[LohoFold, ...]             # one per host with usable episodes, by host id
    provenance: dict = field(default_factory=dict)

    @property
    def evaluated(self) -> tuple[LohoFold, ...]:
        return tuple(f for f in self.folds if f.trained)

    @property
    def missing(self) -> tuple[LohoFold, ...]:
        """Folds without checkpoints (not the refused ones)."""
        return tuple(f for f in self.folds if not f.trained and not f.refused)

    @property
    def refused(self) -> tuple[LohoFold, ...]:
        return tuple(f for f in self.folds if f.refused)


def loho_folds(validation) -> list[tuple[str, tuple[str, ...], int]]:
    """(held-out host, train hosts, usable test episodes) per host with usable episodes."""
    from cis490.data.splits import usable_hosts

    hosts = usable_hosts(validation)
    counts = validation[validation["status"] != "invalid"].groupby("host_id").size()
    if len(hosts) < 2:
        raise InputError(f"{LEAVE_ONE_HOST_OUT}: needs >= 2 hosts with usable episodes in the "
                         f"validation table, found {len(hosts)} ({', '.join(hosts) or 'none'})")
    return [(h, tuple(o for o in hosts if o != h), int(counts[h])) for h in hosts]


def run_loho(settings: EvalSettings, *, spool: ArtifactSource | None, artifacts: Path | None,
             note: Callable[[str], None] = lambda s: None,
             progress: ProgressFn = default_progress) -> LohoResult:
    """Evaluate every leave-one-host-out fold that has checkpoints (see LEAVE_ONE_HOST_OUT).

    Fold h is the ``host`` split trained on every other host: checkpoints are
    selected for recipe ``host`` and exactly those train hosts (as for
    ``cis490 eval --split-recipe host --train-hosts …``) and the fold is
    evaluated into ``<reports_dir>/leave-one-host-out/<h>/``. A fold without
    checkpoints is "not trained"; no fold with checkpoints is an error.
    """
    from cis490.data.validate import read_validation

    if settings.train_hosts:
        raise InputError(f"--train-hosts cannot be combined with --split-recipe "
                         f"{LEAVE_ONE_HOST_OUT}: the folds are fixed by the data's hosts (each "
                         "trains on every host but the held-out one)")
    folds = loho_folds(read_validation(settings.validation))
    digests = _digests(settings)
    root = Path(settings.reports_dir) / LEAVE_ONE_HOST_OUT
    where = _where(spool, artifacts)
    with tempfile.TemporaryDirectory(prefix="cis490-eval-") as tmp:
        cands = find_candidates(spool=spool, artifacts=artifacts, workdir=Path(tmp))
        if not cands:
            raise InputError(f"no checkpoints found in {where}")
        chosen = {h: select(cands, schema_sha256=digests["schema"], recipe="host",
                            train_hosts=train, seed=settings.seed, models=settings.models,
                            modes=settings.modes, note=note)
                  for h, train, _ in folds}
        if not any(chosen.values()):
            looked = "; ".join(f"{h} held out: {','.join(train)}" for h, train, _ in folds)
            raise InputError(f"no checkpoint trained for any {LEAVE_ONE_HOST_OUT} fold in {where}: "
                             f"looked for recipe host, split seed {settings.seed}, train hosts = "
                             f"every host but the held-out one ({looked})")
        out = []
        for h, train, n_test in folds:
            if not chosen[h]:
                note(f"fold {h}: not trained (no checkpoint with recipe host, train hosts "
                     f"{','.join(train)}, split seed {settings.seed})")
                out.append(LohoFold(h, train, n_test))
                continue
            fold = replace(settings, recipe="host", train_hosts=train, reports_dir=root / h)
            note(f"fold {h}: {len(chosen[h])} checkpoint(s) trained on {','.join(train)}")
            try:
                comp = evaluate(fold, chosen[h], schema_sha256=digests["schema"],
                                data_digests=digests, note=note, progress=progress)
            except EvalRefused as exc:  # this fold's data or checkpoints: the others still count
                note(f"fold {h}: refused: {exc}")
                out.append(LohoFold(h, train, n_test, refused=str(exc)))
                continue
            out.append(LohoFold(h, train, n_test, comp))
    if not any(f.trained for f in out):
        raise EvalRefused(f"{LEAVE_ONE_HOST_OUT}: every fold with checkpoints was refused: " + "; ".join(
            f"{f.held_out}: {f.refused}" for f in out if f.refused))
    first = next(f.comparison for f in out if f.trained)
    prov = {k: first.provenance.get(k) for k in ("validation", "validation_sha256",
                                                 "schema_sha256", "split_seed", "collectors",
                                                 "synthetic", "onsets")}
    prov["recipe"] = LEAVE_ONE_HOST_OUT
    return LohoResult(tuple(out), prov)
