"""Score every model on the test split and compare them: the numbers of the report.

``compare(runs, ...)`` is pure: it takes one ``Run`` per (model, mode) —
labels, predictions, episode ids and per-window metadata of the test split,
plus provenance — and returns a ``Comparison`` of frozen records that the
report writer (``report.py``) and the terminal table render. Nothing here
touches the filesystem.

What it computes, on **shared** episode resamples (one ``EpisodeBootstrap``
per set of windows, so every model sees the same resamples):

- per model: macro F1 and accuracy with percentile CIs, per-class (= per
  phase) F1 with CIs, the confusion matrix;
- a majority-class baseline row (a constant predictor; the class is the
  train split's majority when the caller knows it, else the test split's);
- the paired difference of every model against the best (highest point macro
  F1) with its CI and p-value, Holm-adjusted over the m - 1 comparisons. The
  "best" is only the reference row of the report: nothing is selected on the
  test split;
- per-profile and per-host breakdowns (macro F1 and accuracy with CIs,
  bootstrapping the episodes of that stratum only; a stratum with fewer than
  ``MIN_CI_EPISODES`` episodes gets its point estimate and no interval);
- untested profiles (known to the split, no test windows): listed, never
  scored, never averaged into anything. A profile declared untested that
  does have test windows is a contradiction and raises ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .bootstrap import BootstrapCI, EpisodeBootstrap, PairedResult, Resampled, holm
from .importance import Importance

__all__ = ["BREAKDOWNS", "CLASS_NAMES", "MIN_CI_EPISODES", "ClassScore", "Comparison", "ModelEval", "Run",
           "StratumScore", "compare"]

# CONTRACTS.md "Labels and modes" (cis490.data.channels.PHASES); repeated here
# so this module does not need the data package to import.
CLASS_NAMES: tuple[str, ...] = ("clean", "armed", "infecting", "infected_running")

# breakdown name -> per-window metadata column
BREAKDOWNS: dict[str, str] = {"profile": "profile", "host": "host_id"}

# Below this many episodes a percentile interval is not reported: with G
# clusters there are at most C(2G-1, G) distinct resamples (1, 3, 10, 35 for
# G = 1..4), so the "interval" reflects the few episodes, not uncertainty —
# one episode gives [x, x], which would read as certainty.
MIN_CI_EPISODES = 5


@dataclass(frozen=True)
class Run:
    """One (model, mode) scored on the test split: the report's input."""

    model: str
    mode: str
    y_true: np.ndarray
    y_pred: np.ndarray
    groups: np.ndarray                        # episode id per window
    meta: Mapping[str, np.ndarray] = field(default_factory=dict)  # per-window columns
    checkpoint_digest: str = ""
    schema_hash: str = ""
    data_digests: Mapping[str, str] = field(default_factory=dict)
    importance: Importance | None = None

    @property
    def name(self) -> str:
        return f"{self.model}_{self.mode}"


@dataclass(frozen=True)
class ClassScore:
    label: int
    name: str
    support: int
    f1: BootstrapCI


@dataclass(frozen=True)
class StratumScore:
    value: str
    n_windows: int
    n_episodes: int
    macro_f1: BootstrapCI
    accuracy: BootstrapCI

    @property
    def ci_reported(self) -> bool:
        """False when the stratum has too few episodes for an interval (MIN_CI_EPISODES)."""
        return self.n_episodes >= MIN_CI_EPISODES


@dataclass(frozen=True)
class ModelEval:
    name: str
    model: str
    mode: str
    n_windows: int
    n_episodes: int
    macro_f1: BootstrapCI
    accuracy: BootstrapCI
    per_class: tuple[ClassScore, ...]
    confusion: tuple[tuple[int, ...], ...]
    breakdowns: Mapping[str, tuple[StratumScore, ...]]
    vs_best: PairedResult | None = None      # this model minus the best; None for the best
    p_holm: float | None = None
    importance: Importance | None = None
    checkpoint_digest: str = ""
    schema_hash: str = ""
    data_digests: Mapping[str, str] = field(default_factory=dict)
    is_baseline: bool = False


@dataclass(frozen=True)
class Comparison:
    models: tuple[ModelEval, ...]            # sorted by point macro F1, best first
    baseline: ModelEval
    best: str
    untested_profiles: tuple[str, ...]
    class_names: tuple[str, ...]
    labels: tuple[int, ...]                  # classes averaged into macro F1
    majority_class: int
    majority_source: str                     # "train" or "test"
    n_windows: int
    n_episodes: int
    n_resamples: int
    confidence: float
    seed: int


def _check_runs(runs: Sequence[Run]) -> None:
    if not runs:
        raise ValueError("`runs` must hold at least one model")
    names = [r.name for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"`runs` holds the same (model, mode) twice: {', '.join(dup)}")
    for r in runs:
        n = np.asarray(r.y_true).shape[0]
        for what in ("y_pred", "groups"):
            if np.asarray(getattr(r, what)).shape != (n,):
                raise ValueError(f"run {r.name}: `{what}` must have one entry per window ({n})")
        for key, col in r.meta.items():
            if np.asarray(col).shape != (n,):
                raise ValueError(f"run {r.name}: `meta[{key!r}]` must have one entry per window")


def _score_set(y_trues, y_preds, groups, *, n_classes, labels, n_resamples, confidence,
               seed) -> tuple[EpisodeBootstrap, list[Resampled]]:
    """Score several predictions on shared resamples of the union of their episodes.

    Runs usually share one test set (the same arrays): the universe is built
    from each distinct (y_true, groups) pair once, not from their concatenation.
    """
    distinct = {(id(t), id(g)): (t, g) for t, g in zip(y_trues, groups)}.values()
    if labels is None:
        labels = np.unique(np.concatenate([np.unique(np.asarray(t)) for t, _ in distinct]))
    episodes = np.unique(np.concatenate([np.unique(np.asarray(g)) for _, g in distinct]))
    boot = EpisodeBootstrap.over_episodes(episodes, n_classes=n_classes, labels=labels,
                                          n_resamples=n_resamples, confidence=confidence,
                                          seed=seed)
    return boot, boot.score_many(y_preds, y_trues, groups)


def _as_str(col, cache: dict) -> np.ndarray:
    """``col`` as a str array, converted once per distinct array (runs share meta)."""
    key = id(col)
    if key not in cache:
        cache[key] = (col, np.asarray(col).astype(str))   # keep col alive: ids stay unique
    return cache[key][1]


def _n_unique(groups: np.ndarray, mask, key, cache: dict) -> int:
    """Distinct episodes among ``groups[mask]``, computed once per (array, key)."""
    k = (id(groups), key)
    if k not in cache:
        cache[k] = (groups, int(np.unique(groups if mask is None else groups[mask]).size))
    return cache[k][1]


def _breakdown(runs_all, key: str, col: str, settings: dict) -> dict[str, tuple]:
    """Per-stratum scores of every run: ``{run name: (StratumScore, ...)}``."""
    cache: dict = {}
    cols = [_as_str(r.meta[col], cache) for r in runs_all]
    values = sorted(set().union(*(np.unique(c).tolist() for c in
                                  {id(c): c for c in cols}.values())))
    out: dict[str, list] = {r.name: [] for r in runs_all}
    n_ep: dict = {}
    for value in values:
        masks = [c == value for c in cols]
        sub = [(r, m) for r, m in zip(runs_all, masks) if m.any()]
        shared: dict = {}       # runs on the same test set share the masked truth arrays
        for r, m in sub:
            k = (id(r.y_true), id(r.groups), id(r.meta[col]))
            if k not in shared:
                shared[k] = (np.asarray(r.y_true)[m], np.asarray(r.groups)[m])
        truth = [shared[(id(r.y_true), id(r.groups), id(r.meta[col]))] for r, _ in sub]
        boot, scores = _score_set(
            [t for t, _ in truth], [np.asarray(r.y_pred)[m] for r, m in sub],
            [g for _, g in truth], labels=None, **settings)
        for (r, m), s in zip(sub, scores):
            out[r.name].append(StratumScore(
                value=value, n_windows=int(m.sum()),
                n_episodes=_n_unique(np.asarray(r.groups), m, (id(r.meta[col]), value), n_ep),
                macro_f1=boot.ci(s.macro_f1, s.macro_f1_b),
                accuracy=boot.ci(s.accuracy, s.accuracy_b)))
    return {name: tuple(v) for name, v in out.items()}


def compare(
    runs: Sequence[Run],
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    labels: Sequence[int] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    untested_profiles: Sequence[str] = (),
    majority_class: int | None = None,
) -> Comparison:
    """Score and compare ``runs`` (see module doc)."""
    _check_runs(runs)
    # untested profiles: listed, never scored
    untested = tuple(sorted({str(p) for p in untested_profiles}))
    str_cache: dict = {}
    seen_profiles: dict[int, set] = {}
    for r in runs:
        if "profile" in r.meta:
            col = r.meta["profile"]
            if id(col) not in seen_profiles:
                seen_profiles[id(col)] = set(np.unique(_as_str(col, str_cache)).tolist())
            clash = sorted(set(untested) & seen_profiles[id(col)])
            if clash:
                raise ValueError(f"profiles {clash} are declared untested but run {r.name} "
                                 f"has test windows of them")

    k = len(class_names)
    settings = dict(n_classes=k, n_resamples=n_resamples, confidence=confidence, seed=seed)

    ref = runs[0]
    ref_true = np.asarray(ref.y_true, dtype=np.int64)
    if majority_class is None:
        majority_class, majority_source = int(np.bincount(ref_true, minlength=k).argmax()), "test"
    else:
        majority_source = "train"
        if not 0 <= int(majority_class) < k:
            raise ValueError(f"`majority_class` must lie in 0..{k - 1}, got {majority_class}")
    base_run = Run(model="majority", mode="baseline", y_true=ref_true,
                   y_pred=np.full_like(ref_true, int(majority_class)), groups=ref.groups,
                   meta=ref.meta)
    runs_all = [*runs, base_run]

    boot, scores = _score_set([r.y_true for r in runs_all], [r.y_pred for r in runs_all],
                              [r.groups for r in runs_all], labels=labels, **settings)
    by_name = {r.name: s for r, s in zip(runs_all, scores)}

    breakdowns: dict[str, dict[str, tuple]] = {r.name: {} for r in runs_all}
    for key, col in BREAKDOWNS.items():
        if all(col in r.meta for r in runs_all):
            for name, strata in _breakdown(runs_all, key, col, settings).items():
                breakdowns[name][key] = strata

    # paired comparisons against the best model (baseline excluded), Holm over m - 1
    model_runs = sorted(runs, key=lambda r: (-by_name[r.name].macro_f1, r.name))
    best = model_runs[0].name
    others = [r.name for r in model_runs[1:]]
    paired = {n: boot.paired(by_name[n], by_name[best]) for n in others}
    p_holm = dict(zip(others, holm([paired[n].pvalue for n in others]).tolist()))

    n_episodes: dict = {}

    def model_eval(r: Run) -> ModelEval:
        s = by_name[r.name]
        yt = np.asarray(r.y_true, dtype=np.int64)
        yp = np.asarray(r.y_pred, dtype=np.int64)
        cm = np.bincount(yt * k + yp, minlength=k * k).reshape(k, k)
        per_class = tuple(
            ClassScore(c, class_names[c], int(cm[c].sum()), boot.ci(s.f1[c], s.f1_b[:, c]))
            for c in range(k))
        return ModelEval(
            name=r.name, model=r.model, mode=r.mode, n_windows=int(yt.size),
            n_episodes=_n_unique(np.asarray(r.groups), None, None, n_episodes),
            macro_f1=boot.ci(s.macro_f1, s.macro_f1_b),
            accuracy=boot.ci(s.accuracy, s.accuracy_b), per_class=per_class,
            confusion=tuple(tuple(int(v) for v in row) for row in cm),
            breakdowns=breakdowns[r.name], vs_best=paired.get(r.name),
            p_holm=p_holm.get(r.name), importance=r.importance,
            checkpoint_digest=r.checkpoint_digest, schema_hash=r.schema_hash,
            data_digests=dict(r.data_digests), is_baseline=r is base_run)

    return Comparison(
        models=tuple(model_eval(r) for r in model_runs), baseline=model_eval(base_run),
        best=best, untested_profiles=untested, class_names=tuple(class_names),
        labels=tuple(int(v) for v in boot.labels), majority_class=int(majority_class),
        majority_source=majority_source, n_windows=int(ref_true.size),
        n_episodes=boot.n_groups, n_resamples=boot.n_resamples, confidence=boot.confidence,
        seed=boot.seed)
