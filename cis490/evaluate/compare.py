"""The numbers of the report: every model and baseline, families, paired tests, shortcut flags.

``compare(preds, ctx, ...)`` is pure: it takes the ``Predictions`` of every
model and baseline (read back from the files the report ships) and returns a
``Comparison`` of frozen records that ``report.py`` renders. Nothing here
touches the filesystem. The statistics themselves come from
``scoring.score_all`` (shared episode resamples, seeds combined).

Families. Realistic models (what a deployed defender sees) are compared
with the best realistic model; oracle models (they also see the sample's own
process tree) are a ceiling, compared only among themselves and never mixed
into the realistic family. Each comparison is a paired bootstrap on the
same resamples, on two metrics — detection ROC AUC and phase macro F1 — with
Holm's correction within (family, metric). Baselines are rows of every
table but in no family.

Shortcut flag. Every model is also compared with the ``clock-only``
baseline (a classifier that sees only the seconds since the episode
started): a model that is not significantly better than it on ROC AUC or on
macro F1 (difference ≤ 0, or Holm-adjusted p ≥ 1 − confidence, Holm within
its family per metric) is flagged "not better than clock-only: may be
learning episode time".

p at the floor. With B resamples the smallest attainable p is 2/(B + 1);
a p-value there is only an upper bound (``at_floor``), and the report
writes "≤ floor". Holm-adjusted values of such p are upper bounds too.

Untested profiles (in train, absent from test) are listed and never
averaged in; a profile declared untested that has test windows raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .bootstrap import BootstrapCI, _percentile_pvalue, holm, percentile_interval
from .importance import Importance
from .predictions import Predictions
from .scoring import (AUT, BASE_RATES, MIN_CI_EPISODES, WEEK_METRICS, Context, Estimate,
                      ModelStats, distinct, score_all)

__all__ = ["BASELINE_NAMES", "BASE_RATES", "CLASS_NAMES", "FAMILY_METRICS", "MIN_CI_EPISODES", "Calibration",
           "ClassScore", "Comparison", "Detection", "ModelEval", "OverTime", "Paired", "StratumScore",
           "WeekScore", "compare"]

# CONTRACTS.md "Labels and modes" (cis490.data.channels.PHASES); repeated here
# so this module does not need the data package to import.
CLASS_NAMES: tuple[str, ...] = ("clean", "armed", "infecting", "infected_running")
BASELINE_NAMES: tuple[str, ...] = ("majority", "clock-only", "rule-zscore", "logreg")
FAMILY_METRICS: tuple[str, ...] = ("roc_auc", "macro_f1")
CLOCK = "clock-only"



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
class Paired:
    """``metric(this) − metric(against)`` on shared resamples."""

    metric: str
    against: str
    difference: float
    low: float
    high: float
    pvalue: float
    p_holm: float
    at_floor: bool

    def as_dict(self) -> dict:
        return {"metric": self.metric, "against": self.against, "difference": self.difference,
                "low": self.low, "high": self.high, "pvalue": self.pvalue,
                "pvalue_holm": self.p_holm, "p_at_floor": self.at_floor}


@dataclass(frozen=True)
class Detection:
    threshold: float                          # lower median of the per-seed thresholds
    thresholds: Mapping[int, float]           # seed -> tau on the score 1 - P(clean) (> 1: never)
    thresholds_p_clean: Mapping[int, float]   # seed -> alarm iff P(clean) <= this (exact)
    consecutive: int
    budget: float
    benign_host_seconds: float
    val_benign_host_seconds: float
    val: Mapping[int, dict]                   # seed -> validation detection rate / false alarms
    ci: Mapping[str, BootstrapCI]             # false_alarms_per_host_day, ... (see scoring)
    n_infected: int
    n_detected: float                         # mean over seeds
    n_false_alarms: float
    auc_bin_bound: float                      # 0 when the score grid is exact
    ci_notes: Mapping[str, str] = field(default_factory=dict)   # statistic -> why no CI


@dataclass(frozen=True)
class Calibration:
    ece_val: float
    ece_test: BootstrapCI
    temperature: float | None
    ece_val_scaled: float | None
    ece_test_scaled: float | None


@dataclass(frozen=True)
class WeekScore:
    """One test week of one model at its validation τ (seeds combined)."""

    week: int                                 # 0 = the week of the earliest test episode
    start_ns: int                             # origin + week · 7 days
    n_episodes: int
    n_infected: int
    n_benign_only: int
    benign_host_seconds: float
    detection_rate: BootstrapCI               # NaN point when the week has no infected episode
    false_alarms_per_host_day: BootstrapCI    # NaN point when it has no benign window
    ci_notes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OverTime:
    """Detection per test week and its area under time (TESSERACT's AUT)."""

    weeks: tuple[WeekScore, ...]              # weeks holding >= 1 test episode, ascending
    weeks_used: tuple[int, ...]               # weeks entering AUT: >= 1 infected episode
    aut: BootstrapCI                          # NaN point when undefined (see reason)
    reason: str | None                        # why AUT is undefined; None when it is defined

    @property
    def skipped(self) -> tuple[int, ...]:
        """Weeks with test episodes but no infected one: not in AUT."""
        return tuple(w.week for w in self.weeks if w.week not in self.weeks_used)


@dataclass(frozen=True)
class ModelEval:
    name: str
    model: str
    mode: str
    family: str
    seeds: tuple[int, ...]
    n_windows: int
    n_episodes: int
    macro_f1: BootstrapCI
    accuracy: BootstrapCI
    per_class: tuple[ClassScore, ...]
    confusion: tuple[tuple[int, ...], ...]
    breakdowns: Mapping[str, tuple[StratumScore, ...]]
    detection: Detection
    calibration: Calibration
    vs_best: Mapping[str, Paired | None] = field(default_factory=dict)   # metric -> test
    vs_clock: Mapping[str, Paired] = field(default_factory=dict)
    clock_flag: tuple[str, ...] = ()          # metrics on which it is not better than clock-only
    importance: Importance | None = None
    meta: Mapping = field(default_factory=dict)   # checkpoints, schema hash, baseline info
    curves: Mapping[int, dict] = field(default_factory=dict, repr=False, compare=False)
    over_time: OverTime | None = None

    @property
    def is_baseline(self) -> bool:
        return self.family == "baseline"


@dataclass(frozen=True)
class Comparison:
    models: tuple[ModelEval, ...]             # realistic then oracle, each by ROC AUC
    baselines: tuple[ModelEval, ...]          # BASELINE_NAMES order (those present)
    best: Mapping[tuple[str, str], str]       # (family, metric) -> best model's name
    untested_profiles: tuple[str, ...]
    class_names: tuple[str, ...]
    labels: tuple[int, ...]                   # classes averaged into macro F1
    n_windows: int
    n_episodes: int
    n_resamples: int
    confidence: float
    seed: int
    consecutive: int
    budget: float
    stride_s: float
    provenance: Mapping = field(default_factory=dict)

    @property
    def p_floor(self) -> float:
        return 2.0 / (self.n_resamples + 1)

    def family(self, name: str) -> tuple[ModelEval, ...]:
        return tuple(m for m in self.models if m.family == name)

    @property
    def everything(self) -> tuple[ModelEval, ...]:
        return (*self.models, *self.baselines)


def _check(preds: Sequence[Predictions], untested: Sequence[str]) -> None:
    if not preds:
        raise ValueError("`preds` must hold at least one model")
    names = [p.name for p in preds]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"`preds` holds the same model twice: {', '.join(dup)}")
    k = {len(p.class_names) for p in preds}
    if len(k) != 1:
        raise ValueError("`preds` disagree on the classes")
    seen = set().union(*(np.unique(a).tolist()
                         for a in distinct(w.profile for p in preds for w in p.test.values())))
    clash = sorted(set(untested) & seen)
    if clash:
        raise ValueError(f"profiles {clash} are declared untested but have test windows")


def _paired(a: Estimate, b: Estimate, confidence: float) -> tuple[float, float, float, float, bool]:
    """(difference, low, high, p, p at the floor) of ``a − b`` on shared resamples."""
    d_b = a.resamples - b.resamples
    d_b = d_b[np.isfinite(d_b)]
    d = a.point - b.point
    if d_b.size == 0 or not np.isfinite(d) or a.why_no_ci() or b.why_no_ci():
        return d, float("nan"), float("nan"), 1.0, False
    low, high = percentile_interval(d_b, confidence)
    p = _percentile_pvalue(d_b)
    floor = 2.0 / (d_b.size + 1)              # the floor of the resamples actually used
    return float(d), float(low), float(high), p, bool(p <= floor * (1 + 1e-12))


def _tests_against(est: Mapping[str, Estimate], names: Sequence[str], ref: str, ref_est: Estimate,
                   metric: str, confidence: float) -> dict[str, Paired]:
    """Each of ``names`` against ``ref`` on ``metric``, Holm-adjusted over ``names``."""
    raw = {n: _paired(est[n], ref_est, confidence) for n in names}
    adj = dict(zip(names, holm([raw[n][3] for n in names]).tolist()))
    return {n: Paired(metric, ref, *raw[n][:4], adj[n], raw[n][4]) for n in names}


def _metric(m: ModelStats, metric: str) -> Estimate:
    return m.phase["macro_f1"] if metric == "macro_f1" else m.detection[metric]


def _ci(e: Estimate, comp_settings) -> BootstrapCI:
    return e.ci(*comp_settings)


def _over_time(m: ModelStats, settings) -> OverTime:
    weeks = m.weeks
    scores = []
    for c in m.week_counts:
        est = {metric: m.per_week[(c.week, metric)] for metric in WEEK_METRICS}
        scores.append(WeekScore(
            week=c.week, start_ns=weeks.start_ns(c.week), n_episodes=c.n_episodes,
            n_infected=c.n_infected, n_benign_only=c.n_benign_only,
            benign_host_seconds=c.benign_host_seconds,
            detection_rate=_ci(est["episode_detection_rate"], settings),
            false_alarms_per_host_day=_ci(est["false_alarms_per_host_day"], settings),
            ci_notes={k: why for k, e in est.items() if (why := e.why_no_ci())}))
    return OverTime(weeks=tuple(scores), weeks_used=tuple(m.weeks_used),
                    aut=_ci(m.detection[AUT], settings), reason=m.aut_reason)


def _model_eval(m: ModelStats, settings, ctx: Context, class_names) -> ModelEval:
    k = len(class_names)
    support = m.confusion.sum(axis=1) // max(len(m.pred.seeds), 1)
    per_class = tuple(ClassScore(c, class_names[c], int(support[c]),
                                 _ci(m.phase[f"f1:{c}"], settings)) for c in range(k))
    breakdowns = {}
    for key, out_key in (("profile", "profile"), ("host_id", "host")):
        strata = m.strata.get(key, {})
        breakdowns[out_key] = tuple(
            StratumScore(value, nw, ne, _ci(f1, settings), _ci(acc, settings))
            for value, (nw, ne, f1, acc) in sorted(strata.items()))
    seeds = m.seeds
    # the sweep runs on the key -P(clean) (full float32 resolution near P = 0): an alarm
    # needs -P >= t, i.e. P(clean) <= -t, i.e. score = 1 - P >= 1 + t
    p_clean = {s.seed: -float(s.choice.threshold) for s in seeds}
    thresholds = {sd: 1.0 - p for sd, p in p_clean.items()}
    val = {s.seed: {"detection_rate": float(s.choice.detection_rate),
                    "n_detected": int(s.choice.n_detected), "n_infected": int(s.choice.n_infected),
                    "false_alarms": int(s.choice.n_false_alarms),
                    "false_alarms_per_host_day": float(s.choice.false_alarms_per_host_day),
                    "n_candidates": int(s.choice.n_candidates)} for s in seeds}
    first = seeds[0].outcomes
    ci = {name: _ci(e, settings) for name, e in m.detection.items()}
    # a threshold some seed actually uses: the lower median of the per-seed ones
    taus = sorted(thresholds.values())
    detection = Detection(
        threshold=float(taus[(len(taus) - 1) // 2]), thresholds=thresholds,
        thresholds_p_clean=p_clean,
        consecutive=ctx.consecutive, budget=ctx.budget_per_day,
        benign_host_seconds=float(np.sum(first.n_benign)) * ctx.stride_s,
        val_benign_host_seconds=float(seeds[0].choice.benign_host_seconds), val=val, ci=ci,
        n_infected=int(np.sum(first.infected)),
        n_detected=float(np.mean([np.sum(s.outcomes.detected) for s in seeds])),
        n_false_alarms=float(np.mean([np.sum(s.outcomes.n_false_alarms) for s in seeds])),
        auc_bin_bound=float(max(s.curves.get("auc_bin_bound", 0.0) for s in seeds)),
        ci_notes={name: (m.aut_reason if name == AUT and m.aut_reason else why)
                  for name, e in m.detection.items() if (why := e.why_no_ci())})

    def mean(xs):
        return None if any(x is None for x in xs) else float(np.mean(xs))

    calibration = Calibration(
        ece_val=float(np.mean([s.ece_val for s in seeds])), ece_test=ci["ece_test"],
        temperature=mean([s.temperature for s in seeds]),
        ece_val_scaled=mean([s.ece_val_scaled for s in seeds]),
        ece_test_scaled=mean([s.ece_test_scaled for s in seeds]))
    p = m.pred
    return ModelEval(
        name=p.name, model=p.model, mode=p.mode, family=p.family, seeds=p.seeds,
        n_windows=m.n_windows, n_episodes=m.n_episodes,
        macro_f1=_ci(m.phase["macro_f1"], settings), accuracy=_ci(m.phase["accuracy"], settings),
        per_class=per_class, confusion=tuple(tuple(int(v) for v in r) for r in m.confusion),
        breakdowns=breakdowns, detection=detection, calibration=calibration,
        meta=dict(p.meta), curves={s.seed: s.curves for s in seeds},
        over_time=_over_time(m, settings) if m.weeks is not None else None)


def compare(preds: Sequence[Predictions], ctx: Context, *, n_resamples: int = 2000,
            confidence: float = 0.95, seed: int = 0, untested_profiles: Sequence[str] = (),
            importance: Mapping[str, Importance] | None = None,
            provenance: Mapping | None = None) -> Comparison:
    """Score and compare ``preds`` (models and baselines; see module doc)."""
    untested = tuple(sorted({str(p) for p in untested_profiles}))
    _check(preds, untested)
    stats_list, boot = score_all(preds, ctx, n_resamples=n_resamples, confidence=confidence,
                                 seed=seed)
    stats = {s.name: s for s in stats_list}
    settings = (boot.confidence, boot.n_resamples, boot.seed)
    class_names = preds[0].class_names
    evals = {n: _model_eval(s, settings, ctx, class_names) for n, s in stats.items()}

    extra: dict[str, dict] = {n: {"vs_best": {}, "vs_clock": {}, "clock_flag": ()} for n in evals}
    best: dict[tuple[str, str], str] = {}
    for family in ("realistic", "oracle"):
        names = sorted(n for n, e in evals.items() if e.family == family)
        if not names:
            continue
        for metric in FAMILY_METRICS:        # Holm within (family, metric)
            est = {n: _metric(stats[n], metric) for n in names}
            b = sorted(names, key=lambda n: (-np.nan_to_num(est[n].point, nan=-np.inf), n))[0]
            best[(family, metric)] = b
            others = [n for n in names if n != b]
            tests = _tests_against(est, others, b, est[b], metric, confidence)
            for n in names:
                extra[n]["vs_best"][metric] = tests.get(n)
            if CLOCK not in stats:
                continue
            clock = _tests_against(est, names, CLOCK, _metric(stats[CLOCK], metric), metric,
                                   confidence)
            for n, t in clock.items():
                extra[n]["vs_clock"][metric] = t
                if not (t.difference > 0 and t.p_holm < 1 - confidence):
                    extra[n]["clock_flag"] += (metric,)
    models = sorted((n for n, e in evals.items() if not e.is_baseline))
    importance = dict(importance or {})

    def finish(n: str) -> ModelEval:
        from dataclasses import replace
        e = extra[n]
        return replace(evals[n], vs_best=e["vs_best"], vs_clock=e["vs_clock"],
                       clock_flag=e["clock_flag"], importance=importance.get(n))

    def auc_key(n: str):
        return (-np.nan_to_num(evals[n].detection.ci["roc_auc"].point, nan=-np.inf), n)

    ordered = ([n for n in sorted(models, key=auc_key) if evals[n].family == "realistic"]
               + [n for n in sorted(models, key=auc_key) if evals[n].family == "oracle"])
    baselines = [n for n in BASELINE_NAMES if n in evals]
    baselines += sorted(n for n, e in evals.items() if e.is_baseline and n not in baselines)
    first = stats_list[0]
    return Comparison(
        models=tuple(finish(n) for n in ordered), baselines=tuple(finish(n) for n in baselines),
        best=best, untested_profiles=untested, class_names=tuple(class_names),
        labels=tuple(int(v) for v in boot.labels), n_windows=first.n_windows,
        n_episodes=boot.n_groups, n_resamples=boot.n_resamples, confidence=boot.confidence,
        seed=boot.seed, consecutive=ctx.consecutive, budget=ctx.budget_per_day,
        stride_s=ctx.stride_s, provenance=dict(provenance or {}))

