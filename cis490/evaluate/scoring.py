"""Every statistic of every (model, seed) on shared episode resamples; seeds combined.

Input: the ``Predictions`` of each model (``predictions.py``) and a
``Context`` (onsets, window stride, detection settings). Output: per model,
``Estimate``s — a point value and ``B`` resampled values — for the phase
metrics (macro F1, accuracy, per-class F1, per-profile/host strata) and the
detection metrics (false alarms per host-day, episode detection rate, time
to detect, alarms before onset, ROC/PR AUC, precision at base rates, ECE),
plus what the plots need (curves, per-seed thresholds).

Sharing: one ``EpisodeBootstrap`` over the union of the test episodes draws
the resample weights once; every (model, seed) is scored on the same
resamples, so paired differences are differences of aligned arrays.

Seeds: a model trained with S seeds has S values per statistic and
resample. Its estimate is the mean over seeds (point) and, for resample b,
the value of the seed ``draw[b]`` drawn uniformly for that resample
(``default_rng([bootstrap_seed, 0x5EED, crc32(name)])``): the interval then
holds both the episode and the seed variance. With one seed this is the
plain episode bootstrap.

Thresholds are fixed on validation (``detection.choose_threshold``) before
any test window is looked at, and the test resamples never move them: the
intervals are conditional on each seed's τ.

Test weeks (``Weeks``): an episode's week is
``floor((its start − the earliest start of the test split) / 7 days)``, so a
week holds whole episodes. Per week and seed, at the seed's τ: infected and
benign-only episodes, benign host-days, episode detection rate and false
alarms per host-day (resampled with the same weights: per-week sums of the
per-episode counts). The area under time of the detection rate, TESSERACT's
AUT (Pendlebury et al., USENIX Security 2019), over the N weeks holding an
infected episode (weeks without one are skipped)::

    AUT(f, N) = 1/(N−1) · Σ_{k=1}^{N−1} (f(k) + f(k+1)) / 2

— the trapezoidal area under the unit-spaced points, divided by N − 1, so
it lies in [0, 1] and equals f when f is constant. A resample that drew no
infected episode of some used week leaves AUT undefined there (the
``MAX_UNDEFINED`` rule then withholds the interval).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from . import calibration as cal
from . import detection as det
from . import ranking as rank
from .bootstrap import BootstrapCI, EpisodeBootstrap, episode_codes, percentile_interval
from .predictions import Predictions, Windows
from cis490.common import InputError

__all__ = ["BASE_RATES", "MAX_UNDEFINED", "MIN_CI_EPISODES", "WEEK_NS", "Context", "Estimate",
           "ModelStats", "Weeks", "aut", "episode_weeks", "score_all", "seed_draw"]

BASE_RATES: tuple[str, ...] = ("1e-2", "1e-3", "1e-4")
DAY_S = 86400.0
WEEK_NS = 7 * 86400 * 10**9
WEEK_METRICS: tuple[str, ...] = ("episode_detection_rate", "false_alarms_per_host_day")
AUT = "aut_detection_rate"

# Below this many episodes behind a statistic a percentile interval is not
# reported: with G clusters there are at most C(2G-1, G) distinct resamples
# (1, 3, 10, 35 for G = 1..4), so the "interval" reflects the few episodes, not
# uncertainty — one episode gives [x, x], which would read as certainty.
MIN_CI_EPISODES = 5
# A statistic undefined in more than this share of resamples (e.g. a time to
# detect in resamples that drew no detected episode) gets no interval: the
# defined resamples are then a biased subset.
MAX_UNDEFINED = 0.05


@dataclass(frozen=True)
class Context:
    onset_ns: Mapping[str, int]         # episode id -> labelled infection onset (absent: unknown)
    stride_s: float                     # window stride: a benign window stands for stride_s seconds
    consecutive: int = 1                # k: an alarm needs k consecutive windows >= tau
    budget_per_day: float = 1.0         # false alarms per benign host-day allowed on validation
    temperature_scaling: bool = True
    ece_bins: int = 15

    @classmethod
    def from_predictions(cls, preds: Sequence[Predictions], **settings) -> "Context":
        """What the report needs beyond the scores, read from the predictions files alone:
        each window's ``onset_ns`` column and the ``stride_s`` of their metadata."""
        strides = {float(p.meta["stride_s"]) for p in preds if p.meta.get("stride_s")}
        if len(strides) != 1 or len(preds) != sum(1 for p in preds if p.meta.get("stride_s")):
            raise InputError("the predictions files disagree on (or lack) the window stride "
                             f"stride_s ({sorted(strides) or 'none'}); re-run `cis490 eval`")
        onsets: dict[str, int] = {}
        for p in preds:
            for w in (*p.val.values(), *p.test.values()):
                known = w.onset_ns >= 0
                onsets.update(zip(w.episode_id[known].tolist(), w.onset_ns[known].tolist()))
        return cls(onset_ns=onsets, stride_s=strides.pop(), **settings)


@dataclass(frozen=True)
class Estimate:
    """A statistic: point value (mean over seeds), its B combined resamples, and how many
    episodes stand behind it (the fewest over seeds)."""

    point: float
    resamples: np.ndarray               # (B,), NaN where undefined in a resample
    n_units: int | None = None

    @property
    def undefined_share(self) -> float:
        return float(np.mean(~np.isfinite(self.resamples))) if self.resamples.size else 0.0

    def why_no_ci(self) -> str | None:
        """Why no interval is reported (None when one is)."""
        if not np.isfinite(self.point):
            return "undefined"
        if self.n_units is not None and self.n_units < MIN_CI_EPISODES:
            return f"{self.n_units} episode(s) behind it"
        if self.undefined_share > MAX_UNDEFINED:
            return f"undefined in {self.undefined_share:.0%} of resamples"
        return None

    def ci(self, confidence: float, n_resamples: int, seed: int) -> BootstrapCI:
        if self.why_no_ci() is not None:
            return BootstrapCI(float(self.point), float("nan"), float("nan"), confidence,
                               n_resamples, seed)
        r = self.resamples[np.isfinite(self.resamples)]
        low, high = percentile_interval(r, confidence)
        return BootstrapCI(float(self.point), float(low), float(high), confidence,
                           n_resamples, seed)


@dataclass
class SeedDetection:
    """Detection of one seed: its validation-fixed threshold and what it gives on test."""

    seed: int
    choice: object                      # detection.ThresholdChoice on validation
    outcomes: object                    # detection.Outcomes on test at that threshold
    temperature: float | None
    ece_val: float
    ece_val_scaled: float | None
    ece_test_scaled: float | None
    curves: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Weeks:
    """The calendar weeks of the test split (shared by every model)."""

    origin_ns: int                      # earliest episode start of the test split (-1: unknown)
    week: np.ndarray                    # (G,) week of each test episode (universe order), -1 unknown
    n_unknown: int                      # test episodes whose start is unknown

    @property
    def indices(self) -> tuple[int, ...]:
        """Weeks that hold at least one test episode (ascending); none when a start is unknown."""
        if self.n_unknown:
            return ()
        return tuple(int(k) for k in np.unique(self.week))

    def start_ns(self, k: int) -> int:
        return int(self.origin_ns + k * WEEK_NS)

    def why_no_weeks(self) -> str | None:
        """Why no per-week analysis is possible (None when there is one)."""
        if self.n_unknown:
            return (f"the start of {self.n_unknown} test episode(s) is unknown (predictions files "
                    "written before they recorded started_ns); re-run `cis490 eval`")
        return None


@dataclass(frozen=True)
class WeekCounts:
    """What one test week holds (the windows of one model's first seed)."""

    week: int
    n_episodes: int
    n_infected: int                     # episodes with a malicious window
    n_benign_only: int                  # episodes without one
    benign_host_seconds: float


@dataclass
class ModelStats:
    """All statistics of one model (seeds combined) and per-seed details."""

    pred: Predictions
    phase: dict[str, Estimate]                  # macro_f1, accuracy, f1:<k>
    strata: dict[str, dict[str, tuple]]         # key -> value -> (n_windows, n_episodes, mf1, acc)
    detection: dict[str, Estimate]              # ... and aut_detection_rate
    seeds: list[SeedDetection]
    confusion: np.ndarray                       # (K, K), summed over seeds
    n_windows: int
    n_episodes: int
    weeks: Weeks | None = None
    week_counts: tuple[WeekCounts, ...] = ()
    per_week: dict[tuple[int, str], Estimate] = field(default_factory=dict)  # (week, metric)
    weeks_used: tuple[int, ...] = ()            # weeks entering AUT (>= 1 infected episode)
    aut_reason: str | None = None               # why AUT is undefined (None when it is not)

    @property
    def name(self) -> str:
        return self.pred.name


def seed_draw(name: str, n_seeds: int, n_resamples: int, seed: int) -> np.ndarray:
    """Which seed each resample uses; depends only on (seed, model name, S, B)."""
    if n_seeds == 1:
        return np.zeros(n_resamples, dtype=np.int64)
    rng = np.random.default_rng([int(seed), 0x5EED, zlib.crc32(name.encode("utf-8"))])
    return rng.integers(0, n_seeds, size=n_resamples)


def _combine(points: Sequence[float], res: Sequence[np.ndarray], draw: np.ndarray,
             units: Sequence[int] | None = None) -> Estimate:
    pts = np.asarray(points, dtype=np.float64)
    r = np.stack([np.asarray(x, dtype=np.float64) for x in res])      # (S, B)
    point = float(np.mean(pts)) if np.isfinite(pts).all() else float("nan")
    return Estimate(point, r[draw, np.arange(r.shape[1])],
                    None if units is None else int(min(units)))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and np.array_equal(a, b))


def distinct(arrays) -> list[np.ndarray]:
    """The distinct arrays among ``arrays`` (equal ones once): models share their windows."""
    out: list[np.ndarray] = []
    for a in arrays:
        if not any(_same(a, b) for b in out):
            out.append(a)
    return out


class _Coder:
    """Episode codes of many window sets, computed once per distinct episode-id array.

    Models scored on the same windows carry equal (not identical) id arrays;
    comparing them is O(N), encoding strings again is O(N log G) per model.
    """

    def __init__(self, universe: np.ndarray | None = None):
        self.universe = universe
        self.seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(universe, codes) of ``ids``."""
        for a, uni, c in self.seen:
            if _same(a, ids):
                return uni, c
        uni = self.universe if self.universe is not None else np.unique(ids)
        c = episode_codes(uni, ids)
        self.seen.append((ids, uni, c))
        return uni, c


def episode_weeks(universe: np.ndarray, windows: Sequence[Windows],
                  codes: Sequence[np.ndarray]) -> Weeks:
    """Each test episode's week from the ``started_ns`` its windows carry (see module doc).

    Raises ``ValueError`` when two window sets give one episode different known starts.
    """
    g = universe.size
    hi = np.full(g, -1, dtype=np.int64)
    lo = np.full(g, np.iinfo(np.int64).max, dtype=np.int64)
    for w, c in zip(windows, codes):
        if c.size == 0:
            continue
        first = np.r_[True, c[1:] != c[:-1]]              # one window per episode suffices
        ep, st = c[first], np.asarray(w.started_ns, dtype=np.int64)[first]
        known = st >= 0
        np.maximum.at(hi, ep[known], st[known])
        np.minimum.at(lo, ep[known], st[known])
    known = hi >= 0
    clash = np.nonzero(known & (lo != hi))[0]
    if clash.size:
        raise InputError(f"the predictions disagree on the start of test episode "
                         f"{universe[clash[0]]} ({lo[clash[0]]} vs {hi[clash[0]]} ns)")
    n_unknown = int(np.count_nonzero(~known))
    if not known.any():
        return Weeks(-1, np.full(g, -1, dtype=np.int64), n_unknown)
    origin = int(hi[known].min())
    week = np.where(known, (hi - origin) // WEEK_NS, -1).astype(np.int64)
    return Weeks(origin, week, n_unknown)


def aut(f) -> float | np.ndarray:
    """TESSERACT's area under time of ``f`` (..., N) over N >= 2 consecutive points.

    ``1/(N−1) · Σ_{k=1}^{N−1} (f(k) + f(k+1)) / 2``; NaN where a point is NaN
    (a resample row without an infected episode of some week). Raises
    ``ValueError`` for N < 2.
    """
    f = np.asarray(f, dtype=np.float64)
    n = f.shape[-1]
    if n < 2:
        raise InputError(f"AUT needs >= 2 time points, got {n}")
    out = (f[..., :-1] + f[..., 1:]).sum(axis=-1) / (2.0 * (n - 1))
    return float(out) if out.ndim == 0 else out


def _week_stats(o, lin: np.ndarray, weeks: Weeks, boot: EpisodeBootstrap, stride_s: float):
    """Per-week counts and (point, resamples, units) of one seed at its τ, and its AUT."""
    ks = weeks.indices
    if not ks:
        return (), {}, ()
    onehot = weeks.week[:, None] == np.asarray(ks)[None, :]           # (G, W)
    n_windows = np.asarray(o.n_windows)
    infected = np.asarray(o.infected, dtype=bool)
    present = n_windows > 0
    counts = tuple(WeekCounts(
        week=k, n_episodes=int(np.count_nonzero(m & present)),
        n_infected=int(np.count_nonzero(m & infected)),
        n_benign_only=int(np.count_nonzero(m & present & ~infected)),
        benign_host_seconds=float(np.sum(np.asarray(o.n_benign)[m])) * stride_s)
        for k, m in zip(ks, onehot.T))
    # per-week sums of (false alarms, benign windows, infected, detected): (G, W*4)
    sub = lin[:, [LINEAR.index(c) for c in ("n_false_alarms", "n_benign", "infected", "detected")]]
    s = (onehot[:, :, None] * sub[:, None, :]).reshape(lin.shape[0], -1)
    full = s.sum(axis=0).reshape(len(ks), 4)
    res = boot._resample(s, int(s.max(initial=0))).astype(np.float64).reshape(-1, len(ks), 4)

    def rates(x):
        return (_ratio(x[..., 3], x[..., 2]),
                _ratio(x[..., 0] * DAY_S, x[..., 1] * stride_s))

    (dr, fa), (dr_b, fa_b) = rates(full), rates(res)
    n_ben = [int(np.count_nonzero(m & (np.asarray(o.n_benign) > 0))) for m in onehot.T]
    stats = {}
    for j, (k, c) in enumerate(zip(ks, counts)):
        stats[(k, "episode_detection_rate")] = (float(dr[j]), dr_b[:, j], c.n_infected)
        stats[(k, "false_alarms_per_host_day")] = (float(fa[j]), fa_b[:, j], n_ben[j])
    used = tuple(j for j, c in enumerate(counts) if c.n_infected > 0)
    if len(used) >= 2:
        u = list(used)
        stats[AUT] = (aut(dr[u]), aut(dr_b[:, u]), sum(counts[j].n_infected for j in u))
    return counts, stats, tuple(ks[j] for j in used)


def _aut_reason(weeks: Weeks, used: tuple[int, ...]) -> str | None:
    why = weeks.why_no_weeks()
    if why:
        return why
    if len(weeks.indices) < 2:
        return "the test split spans less than 2 weeks (AUT needs >= 2 test weeks)"
    if len(used) < 2:
        return (f"{len(used)} test week(s) hold an infected episode (AUT needs >= 2; weeks "
                "without one are skipped)")
    return None


def _onsets(universe: np.ndarray, ctx: Context) -> np.ndarray:
    return np.array([int(ctx.onset_ns.get(str(e), -1)) for e in universe], dtype=np.int64)


# --------------------------------------------------------------------------- phase


def _phase_columns(cols, codes, boot: EpisodeBootstrap):
    """score_many over every (model, seed) column, sharing identical truth arrays."""
    truths: list[tuple[np.ndarray, np.ndarray]] = []

    def shared(w: Windows, c: np.ndarray):
        for t, g in truths:
            if g is c and t.size == w.y_true.size and np.array_equal(t, w.y_true):
                return t, g
        truths.append((np.asarray(w.y_true), c))
        return truths[-1]

    pairs = [shared(w, c) for (_, _, w), c in zip(cols, codes)]
    return boot.score_many([w.y_pred for _, _, w in cols], [p[0] for p in pairs],
                           [p[1] for p in pairs])


def _strata(cols, codes, key: str, n_classes: int, n_resamples: int, confidence: float,
            seed: int):
    """Per-stratum macro F1 / accuracy resamples of every column: {value: [(col, ...)]}.

    A stratum (a profile or a host) is a set of whole episodes, bootstrapped alone.
    """
    out: dict[str, list] = {}
    keys = [getattr(w, key) for _, _, w in cols]
    values = sorted(set().union(*(np.unique(k).tolist() for k in {id(k): k for k in keys}.values())))
    for value in values:
        sel = [(i, keys[i] == value) for i in range(len(cols))]
        sel = [(i, m) for i, m in sel if m.any()]
        if not sel:
            continue
        yts = [cols[i][2].y_true[m] for i, m in sel]
        gs = [codes[i][m] for i, m in sel]
        episodes = np.unique(np.concatenate([np.unique(g) for g in gs]))
        labels = np.unique(np.concatenate([np.unique(y) for y in yts]))
        boot = EpisodeBootstrap.over_episodes(episodes, n_classes=n_classes, labels=labels,
                                              n_resamples=n_resamples, confidence=confidence,
                                              seed=seed)
        scores = boot.score_many([cols[i][2].y_pred[m] for i, m in sel], yts, gs)
        out[value] = [(i, int(m.sum()), int(np.unique(g).size), s)
                      for (i, m), g, s in zip(sel, gs, scores)]
    return out


# --------------------------------------------------------------------------- detection


def _detect_val(w: Windows, ctx: Context, coder: "_Coder"):
    _, codes = coder(w.episode_id)
    sw = det.sweep(codes, w.malicious, w.key, ctx.consecutive)
    benign_s = float(np.count_nonzero(~w.malicious)) * ctx.stride_s
    return det.choose_threshold(sw, benign_seconds=benign_s, budget_per_day=ctx.budget_per_day)


LINEAR = ("n_false_alarms", "n_benign", "infected", "detected", "pre_onset", "n_malicious",
          "n_flagged_malicious", "n_flagged_benign")


def _linear_columns(o) -> np.ndarray:
    """Per-episode counts whose resampled sums give the ratio statistics: (G, 8)."""
    pre = (np.asarray(o.n_pre_onset_alarms) > 0) & np.asarray(o.infected)
    return np.column_stack([o.n_false_alarms, o.n_benign, o.infected, o.detected, pre,
                            o.n_malicious, o.n_flagged_malicious, o.n_flagged_benign]
                           ).astype(np.float64)


def _ratio(num, den) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _detection_from_sums(s: np.ndarray, stride_s: float) -> dict[str, np.ndarray]:
    """Ratio statistics from summed per-episode counts ``s`` (..., 8)."""
    c = {k: s[..., i] for i, k in enumerate(LINEAR)}
    tpr = _ratio(c["n_flagged_malicious"], c["n_malicious"])
    fpr = _ratio(c["n_flagged_benign"], c["n_benign"])
    out = {
        "false_alarms_per_host_day": _ratio(c["n_false_alarms"] * DAY_S, c["n_benign"] * stride_s),
        "episode_detection_rate": _ratio(c["detected"], c["infected"]),
        "alarms_before_onset": _ratio(c["pre_onset"], c["infected"]),
        "tpr": tpr, "fpr": fpr,
    }
    for name in BASE_RATES:
        out[f"precision@{name}"] = det.precision_at_base_rate(tpr, fpr, float(name))
    return out


def _ttd(o, boot: EpisodeBootstrap, q: float) -> tuple[float, np.ndarray]:
    ttd = np.asarray(o.ttd_s, dtype=np.float64)
    idx = np.nonzero(np.isfinite(ttd))[0]
    if idx.size == 0:
        return float("nan"), np.full(boot.n_resamples, np.nan)
    idx = idx[np.argsort(ttd[idx], kind="stable")]
    point = float(det.weighted_quantile(ttd[idx], np.ones((1, idx.size)), q)[0])
    res = np.concatenate([det.weighted_quantile(ttd[idx], w[:, idx], q)
                          for w in boot.weight_chunks()])
    return point, res


def _detect_test(w: Windows, codes, choice, boot: EpisodeBootstrap, universe, onsets,
                 ctx: Context, weeks: Weeks | None = None):
    """Per-seed test statistics at the validation threshold: {name: (point, (B,), units)}."""
    key, score, mal = w.key, w.score, w.malicious
    o = det.episode_outcomes(codes, universe.size, w.t_end_ns, mal, key, choice.threshold,
                             ctx.consecutive, onsets)
    lin = _linear_columns(o)
    full = _detection_from_sums(lin.sum(axis=0), ctx.stride_s)
    res = _detection_from_sums(boot._resample(lin, int(lin.max(initial=0))), ctx.stride_s)
    n_inf = int(np.count_nonzero(o.infected))
    n_ben = int(np.count_nonzero(np.asarray(o.n_benign) > 0))
    units = {"false_alarms_per_host_day": n_ben, "fpr": n_ben, "episode_detection_rate": n_inf,
             "alarms_before_onset": n_inf, "tpr": n_inf,
             **{f"precision@{r}": min(n_inf, n_ben) for r in BASE_RATES}}
    stats = {k: (float(full[k]), res[k], units[k]) for k in full}
    n_det = int(np.count_nonzero(o.detected))
    for name, q in (("ttd_median", 0.5), ("ttd_p90", 0.9)):
        stats[name] = (*_ttd(o, boot, q), n_det)
    both = bool(mal.any() and (~mal).any())          # ranking needs both classes on test
    grid = rank.score_grid(key)
    pos, neg = rank.episode_histograms(codes, universe.size, mal, key, grid)
    roc_b, ap_b = rank.resampled_aucs(boot.weight_chunks(), pos, neg)
    nan = float("nan")
    stats["roc_auc"] = (rank.roc_auc(mal, key) if both else nan, roc_b, min(n_inf, n_ben))
    stats["pr_auc"] = (rank.average_precision(mal, key) if both else nan, ap_b, min(n_inf, n_ben))
    sums = cal.calibration_sums(codes, universe.size, mal, score, ctx.ece_bins)
    stats["ece_test"] = (float(cal.ece(mal, score, ctx.ece_bins)),
                         cal.ece_from_sums(_resample_float(boot, sums)),
                         int(np.count_nonzero(np.asarray(o.n_windows) > 0)))
    exact = grid.size == np.unique(key).size         # the grid is the scores themselves
    bound = 0.0 if exact or not both else float(rank.auc_grid_error_bound(pos, neg))
    extra = {"auc_bin_bound": bound}
    if weeks is not None:
        counts, wstats, used = _week_stats(o, lin, weeks, boot, ctx.stride_s)
        stats[AUT] = wstats.pop(AUT, (nan, np.full(boot.n_resamples, np.nan), 0))
        extra.update(week_counts=counts, week_stats=wstats, weeks_used=used)
    return o, stats, extra


def _resample_float(boot: EpisodeBootstrap, s: np.ndarray) -> np.ndarray:
    """``W @ s`` in float64 for non-integer columns (sums of scores)."""
    return np.concatenate([w.astype(np.float64) @ s for w in boot.weight_chunks()], axis=0)


def _curves(w_val: Windows, w_test: Windows, codes, o, ctx: Context) -> dict:
    mal, key = w_test.malicious, w_test.key
    sw = det.sweep(codes, mal, key, ctx.consecutive)
    days = np.count_nonzero(~mal) * ctx.stride_s / DAY_S
    out = {"operating": (np.asarray(sw.n_false_alarms) / days if days > 0 else None,
                         _ratio(np.asarray(sw.n_detected), sw.n_infected)),
           "ttd": np.sort(np.asarray(o.ttd_s)[np.isfinite(o.ttd_s)]),
           "reliability_val": cal.reliability(w_val.malicious, w_val.score, ctx.ece_bins),
           "reliability_test": cal.reliability(mal, w_test.score, ctx.ece_bins)}
    if mal.any() and (~mal).any():                   # curves need both classes
        fpr, tpr, _ = rank.roc_curve(mal, key)
        out["roc"], out["pr"] = (fpr, tpr), rank.pr_curve(mal, key)
    return out


def _scaled_score(proba: np.ndarray, temperature: float) -> np.ndarray:
    return 1.0 - cal.apply_temperature(proba, temperature)[:, 0].astype(np.float64)


# --------------------------------------------------------------------------- driver


def score_all(preds: Sequence[Predictions], ctx: Context, *, n_resamples: int = 2000,
              confidence: float = 0.95, seed: int = 0) -> tuple[list[ModelStats], EpisodeBootstrap]:
    """Score every model (all seeds) on shared resamples of the test episodes."""
    if not preds:
        raise InputError("nothing to score: no predictions")
    k = len(preds[0].class_names)
    cols = [(p, s, p.test[s]) for p in preds for s in p.seeds]
    universe = np.unique(np.concatenate([np.unique(a) for a in distinct(w.episode_id for _, _, w in cols)]))
    labels = np.unique(np.concatenate([np.unique(w.y_true) for _, _, w in cols]))
    onsets = _onsets(universe, ctx)
    test_coder, val_coder = _Coder(universe), _Coder()
    codes = [test_coder(w.episode_id)[1] for _, _, w in cols]
    boot = EpisodeBootstrap.over_episodes(np.arange(universe.size), n_classes=k, labels=labels,
                                          n_resamples=n_resamples, confidence=confidence, seed=seed)
    weeks = episode_weeks(universe, [w for _, _, w in cols], codes)
    phase_cols = _phase_columns(cols, codes, boot)
    strata = {key: _strata(cols, codes, key, k, n_resamples, confidence, seed)
              for key in ("profile", "host_id")}
    out = []
    for p in preds:
        idx = [i for i, (q, _, _) in enumerate(cols) if q is p]
        draw = seed_draw(p.name, len(idx), n_resamples, seed)
        rs = [phase_cols[i] for i in idx]
        g = [int(np.unique(codes[i]).size) for i in idx]       # test episodes behind each seed
        phase = {"macro_f1": _combine([r.macro_f1 for r in rs], [r.macro_f1_b for r in rs], draw, g),
                 "accuracy": _combine([r.accuracy for r in rs], [r.accuracy_b for r in rs], draw, g)}
        for c in range(k):
            phase[f"f1:{c}"] = _combine([r.f1[c] for r in rs], [r.f1_b[:, c] for r in rs], draw, g)
        model_strata: dict[str, dict[str, tuple]] = {}
        for key, by_value in strata.items():
            for value, entries in by_value.items():
                mine = [e for e in entries if e[0] in idx]
                if len(mine) != len(idx):
                    continue                   # the stratum is not in every seed's windows
                est_f1 = _combine([e[3].macro_f1 for e in mine], [e[3].macro_f1_b for e in mine], draw)
                est_acc = _combine([e[3].accuracy for e in mine], [e[3].accuracy_b for e in mine], draw)
                model_strata.setdefault(key, {})[value] = (mine[0][1], mine[0][2], est_f1, est_acc)
        seeds, per_stat, per_week = [], {}, {}
        week_counts, weeks_used = (), ()
        for s, i in zip(p.seeds, idx):
            w_val, w_test = p.val[s], p.test[s]
            choice = _detect_val(w_val, ctx, val_coder)
            o, stats, extra = _detect_test(w_test, codes[i], choice, boot, universe, onsets, ctx,
                                           weeks)
            wstats = extra.pop("week_stats", {})
            counts_, used_ = extra.pop("week_counts", ()), extra.pop("weeks_used", ())
            if s == p.seeds[0]:                # label counts: the same for every seed
                week_counts, weeks_used = counts_, used_
            for key_, v in wstats.items():
                per_week.setdefault(key_, []).append(v)
            temp = ece_vs = ece_ts = None
            # a class column that is 0 on every validation window (a baseline that cannot
            # attribute phases) would dominate the log loss that T is fitted on: no scaling
            if ctx.temperature_scaling and (w_val.proba > 0).any(axis=0).all():
                temp = float(cal.fit_temperature(w_val.proba, w_val.y_true))
                ece_vs = float(cal.ece(w_val.malicious, _scaled_score(w_val.proba, temp), ctx.ece_bins))
                ece_ts = float(cal.ece(w_test.malicious, _scaled_score(w_test.proba, temp), ctx.ece_bins))
            sd = SeedDetection(seed=s, choice=choice, outcomes=o, temperature=temp,
                               ece_val=float(cal.ece(w_val.malicious, w_val.score, ctx.ece_bins)),
                               ece_val_scaled=ece_vs, ece_test_scaled=ece_ts,
                               curves=_curves(w_val, w_test, codes[i], o, ctx))
            sd.curves.update(extra)
            seeds.append(sd)
            for name, (pt, r, n) in stats.items():
                per_stat.setdefault(name, ([], [], []))
                per_stat[name][0].append(pt)
                per_stat[name][1].append(r)
                per_stat[name][2].append(n)
        detection = {name: _combine(pts, rs_, draw, us) for name, (pts, rs_, us) in per_stat.items()}
        weekly = {key_: _combine([v[0] for v in vs], [v[1] for v in vs], draw, [v[2] for v in vs])
                  for key_, vs in per_week.items() if len(vs) == len(idx)}
        confusion = np.zeros((k, k), dtype=np.int64)
        for s in p.seeds:
            w = p.test[s]
            confusion += np.bincount(w.y_true * k + w.y_pred, minlength=k * k).reshape(k, k)
        first = p.test[p.seeds[0]]
        out.append(ModelStats(pred=p, phase=phase, strata=model_strata, detection=detection,
                              seeds=seeds, confusion=confusion, n_windows=len(first),
                              n_episodes=int(np.unique(codes[idx[0]]).size), weeks=weeks,
                              week_counts=week_counts, per_week=weekly, weeks_used=weeks_used,
                              aut_reason=_aut_reason(weeks, weeks_used)))
    return out, boot
