"""``cis490 eval`` as a library: pick checkpoints, score them on the test split, compare.

Steps (each a function so tests can drive or fake one):

1. ``find_candidates`` — every checkpoint on offer: from the spool's artifact
   store (``models/<model>_<mode>/<digest>/bundle.tar.zst``, verified against
   its digest while extracting) or from a plain directory of
   ``*.ckpt.json`` files (``--artifacts``, the seed's layout).
2. ``select`` — one checkpoint per (model, mode): only checkpoints trained on
   the split being evaluated (recipe, train hosts, seed recorded in the
   checkpoint), then the highest **validation** macro F1 recorded at training
   time (never the test score), ties by digest. A checkpoint whose schema
   hash differs from the data's is never scored: it is skipped with a note
   when a current one exists for that (model, mode), and refused
   (``SchemaRefused``) when it is all there is.
3. ``score`` — load the test windows once per (input kind, mode) with issue
   3/4's loaders (``cis490.train.data.load_arrays`` on the test ids of
   ``cis490.data.splits.make_split``), predict, compute permutation
   importance per channel group with shared permutations.
4. ``compare`` + ``write_report`` (``compare.py``, ``report.py``).

Heavy imports (pandas, torch, xgboost) happen inside the functions.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .compare import CLASS_NAMES, Comparison, Run, compare
from .importance import permutation_importance

__all__ = ["Candidate", "EvalSettings", "SchemaRefused", "channel_groups", "evaluate",
           "find_candidates", "select"]


class SchemaRefused(ValueError):
    """A checkpoint was trained on another feature schema than the data's."""


@dataclass(frozen=True)
class Candidate:
    model: str
    mode: str
    digest: str              # store digest, or sha256 of the checkpoint JSON (--artifacts)
    checkpoint: Path         # the extracted ``*.ckpt.json``
    meta: dict = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.model}_{self.mode}"

    @property
    def schema_sha256(self) -> str:
        return str(self.meta.get("schema_sha256", ""))

    @property
    def split(self) -> dict:
        return dict((self.meta.get("data") or {}).get("split") or {})

    @property
    def val_macro_f1(self) -> float:
        v = (self.meta.get("fit") or {}).get("best_val_macro_f1")
        return float(v) if v is not None else float("-inf")


@dataclass(frozen=True)
class EvalSettings:
    validation: Path
    summary: Path
    tensors: Path
    schema: Path
    recipe: str = "host"
    train_hosts: tuple[str, ...] | None = None
    seed: int = 0
    n_resamples: int = 2000
    confidence: float = 0.95
    bootstrap_seed: int = 0
    importance: str = "source"        # "source" | "channel" | "none"
    importance_repeats: int = 1
    models: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None


# ---------------------------------------------------------------- candidates

def _read_meta(ckpt: Path) -> dict:
    from cis490.models.checkpoint import read_checkpoint
    meta, _ = read_checkpoint(ckpt)          # verifies format and the sidecar's sha256
    return meta


def find_candidates(*, spool: Path | None = None, artifacts: Path | None = None,
                    workdir: Path) -> list[Candidate]:
    """Every checkpoint offered by the spool's store or an artifacts directory."""
    from cis490.models.checkpoint import find_checkpoint, sha256_file

    out: list[Candidate] = []
    if spool is not None:
        from cis490.fleet import store
        root = Path(spool)
        if not (root / "models").is_dir():
            raise FileNotFoundError(f"{root}: no models/ directory (is this a spool?)")
        from cis490.models.configs import CONFIGS, MODES

        model_modes = {f"{m}_{mode}" for m in CONFIGS for mode in MODES}
        for model_mode, digest_dir in store.iter_artifacts(root):
            if model_mode not in model_modes:
                continue                      # not a model (e.g. the smoke job's artifact)
            if not (digest_dir / "record.json").is_file():
                continue                      # still being written (record.json is last)
            dest = workdir / model_mode / digest_dir.name
            try:
                store.extract(digest_dir, dest)  # re-hashes the bundle against its name
            except store.StoreError as exc:      # not a ValueError: say it in cis490's terms
                raise ValueError(f"artifact {model_mode}/{digest_dir.name[:12]} is unusable "
                                 f"({exc}); run `cis490-spool fsck`") from None
            ckpt = find_checkpoint(dest)
            meta = _read_meta(ckpt)
            out.append(Candidate(meta["model"], meta["mode"], digest_dir.name, ckpt, meta))
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
    if not s:
        return True                            # no provenance: cannot tell, keep (noted)
    hosts = sorted(s.get("train_hosts") or [])
    return (s.get("recipe") == recipe and int(s.get("seed", -1)) == int(seed)
            and (train_hosts is None or hosts == sorted(train_hosts)))


def select(candidates: Sequence[Candidate], *, schema_sha256: str, recipe: str,
           train_hosts: Sequence[str] | None, seed: int,
           models: Iterable[str] | None = None, modes: Iterable[str] | None = None,
           note: Callable[[str], None] = lambda s: None) -> list[Candidate]:
    """One checkpoint per (model, mode) (see module doc); raises ``SchemaRefused``."""
    models = set(models) if models else None
    modes = set(modes) if modes else None
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        if (models and c.model not in models) or (modes and c.mode not in modes):
            continue
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
        best = max(current, key=lambda c: (c.val_macro_f1, c.digest))
        if not best.split:
            note(f"{name} {best.digest[:12]}: checkpoint records no split; assumed {recipe}")
        chosen.append(best)
    return chosen


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


def _majority_from_weights(chosen: Sequence[Candidate], k: int) -> int | None:
    """Train-split majority class: the smallest inverse-frequency class weight."""
    votes = set()
    for c in chosen:
        w = c.meta.get("class_weights")
        if w is None or len(w) != k:
            return None
        votes.add(int(np.argmin(np.asarray(w, dtype=float))))
    return votes.pop() if len(votes) == 1 else None


def _shared_windows(seen: list[tuple], y: np.ndarray, meta) -> tuple:
    """(y, groups, {profile, host_id}) of a test window set, reusing identical arrays.

    Summary and tensor loaders, and the two modes, usually yield the same
    windows; sharing the array objects lets ``compare`` score them once.
    """
    cols = (np.asarray(y, dtype=np.int64), np.asarray(meta["episode_id"]).astype(str),
            np.asarray(meta["profile"]).astype(str), np.asarray(meta["host_id"]).astype(str))
    for prev in seen:
        if all(np.array_equal(a, b) for a, b in zip(prev, cols)):
            cols = prev
            break
    else:
        seen.append(cols)
    return cols[0], cols[1], {"profile": cols[2], "host_id": cols[3]}


def evaluate(settings: EvalSettings, chosen: Sequence[Candidate], *, schema_sha256: str,
             data_digests: dict[str, str], note: Callable[[str], None] = lambda s: None,
             ) -> Comparison:
    """Score the chosen checkpoints on the test split and compare them."""
    from cis490 import models as model_lib
    from cis490.data.splits import make_split
    from cis490.train.data import SchemaMismatch, load_arrays
    from cis490.models.configs import SUMMARY_MODELS

    split = make_split(settings.validation, settings.recipe, settings.train_hosts, settings.seed)
    test_ids = sorted(split.test)
    cache: dict[tuple[str, str], tuple] = {}
    windows: list[tuple] = []
    runs = []
    for c in chosen:
        kind = "summary" if c.model in SUMMARY_MODELS else "tensor"
        if (kind, c.mode) not in cache:
            try:
                X, y, meta = load_arrays(
                    c.model, c.mode, summary=str(settings.summary), tensors=str(settings.tensors),
                    schema=str(settings.schema), episode_ids=test_ids,
                    schema_sha256=schema_sha256)
            except SchemaMismatch as exc:
                raise SchemaRefused(str(exc)) from None
            cache[(kind, c.mode)] = (X, *_shared_windows(windows, y, meta))
        X, y, groups, window_meta = cache[(kind, c.mode)]
        if len(y) == 0:
            raise ValueError(f"no test windows for {c.name} (split {settings.recipe}: "
                             f"{len(test_ids)} test episodes)")
        model = model_lib.load(c.checkpoint, expect_schema_sha256=schema_sha256)

        def predict(Xp, _m=model):
            return np.asarray(_m.predict_proba(Xp)).argmax(axis=1)

        y_pred = predict(X)
        imp = None
        if settings.importance != "none":
            imp = permutation_importance(
                predict, X, y, channel_groups(c.model, c.mode, settings.importance),
                n_repeats=settings.importance_repeats, seed=settings.bootstrap_seed,
                n_classes=len(CLASS_NAMES))
        note(f"scored {c.name} ({c.digest[:12]}) on {len(y)} test windows")
        runs.append(Run(
            model=c.model, mode=c.mode, y_true=y, y_pred=y_pred,
            groups=groups, meta=window_meta,
            checkpoint_digest=c.digest, schema_hash=c.schema_sha256,
            data_digests=data_digests, importance=imp))
    if not runs:
        raise ValueError("no checkpoint to evaluate for this split")
    return compare(runs, class_names=CLASS_NAMES, n_resamples=settings.n_resamples,
                   confidence=settings.confidence, seed=settings.bootstrap_seed,
                   untested_profiles=split.untested_profiles,
                   majority_class=_majority_from_weights(chosen, len(CLASS_NAMES)))


def run_eval(settings: EvalSettings, *, spool: Path | None, artifacts: Path | None,
             note: Callable[[str], None] = lambda s: None) -> Comparison:
    """find → select → evaluate, extracting bundles into a temporary directory."""
    from cis490.models.checkpoint import sha256_file

    schema_sha = sha256_file(settings.schema)
    digests = {"validation": sha256_file(settings.validation), "schema": schema_sha}
    with tempfile.TemporaryDirectory(prefix="cis490-eval-") as tmp:
        cands = find_candidates(spool=spool, artifacts=artifacts, workdir=Path(tmp))
        if not cands:
            raise ValueError(f"no checkpoints found in {spool or artifacts}")
        hosts = settings.train_hosts
        if hosts is None:
            seen = {tuple(sorted(c.split.get("train_hosts") or ())) for c in cands
                    if c.split.get("recipe") == settings.recipe}
            if len(seen) > 1:
                raise ValueError("checkpoints were trained on different train hosts "
                                 f"({'; '.join(','.join(s) for s in sorted(seen))}); "
                                 "choose one set with --train-hosts")
            hosts = seen.pop() if seen else None
            settings = _replace(settings, train_hosts=hosts or None)
        chosen = select(cands, schema_sha256=schema_sha, recipe=settings.recipe,
                        train_hosts=settings.train_hosts, seed=settings.seed,
                        models=settings.models, modes=settings.modes, note=note)
        if not chosen:
            raise ValueError(f"no checkpoint trained on split {settings.recipe} "
                             f"(train hosts {','.join(settings.train_hosts or ()) or '?'}, "
                             f"seed {settings.seed}) in {spool or artifacts}")
        return evaluate(settings, chosen, schema_sha256=schema_sha, data_digests=digests,
                        note=note)


def _replace(s: EvalSettings, **kw) -> EvalSettings:
    from dataclasses import replace
    return replace(s, **kw)
