"""Episode-cluster percentile bootstrap, paired model comparison, Holm correction.

Why episodes: windows of one episode share a host state, a sample and a
model's mistakes, so they are strongly correlated; resampling windows treats
them as independent and understates the interval. The resampling unit here is
the episode (``groups``): a resample draws G episodes with replacement out of
the G in the test set, i.e. a count vector ``w ~ Multinomial(G, 1/G)`` over
episodes (windows of an episode drawn twice count twice).

Why it is fast: every metric we report is a function of the confusion
counts, and the confusion matrix of a resample is ``w @ E`` where ``E`` holds
the per-episode confusion matrices, flattened ``(G, K*K)``. So all B
resamples of one model are one matrix product ``W (B, G) @ E (G, K*K)``, and
stacking the models' ``E`` side by side makes it one product for all of them;
the windows are never touched again.

Sharing: the resample weights depend only on (seed, number of episodes,
number of resamples), never on a model, so every model scored on the same
test set sees the *same* resamples — the paired comparison of two models is
the difference of their statistics on identical resamples (as scipy's
``bootstrap(..., paired=True)`` shares indices).

Determinism: weights are drawn in fixed chunks of ``CHUNK`` resamples, chunk j
from ``numpy.random.default_rng([seed, j])``; the same seed gives the same
weights whatever the memory budget, and the seed is recorded in every result.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from .metrics import (
    episode_confusions,
    evaluation_labels,
    validate_groups,
    validate_labels,
    _as_label_array,
)

__all__ = [
    "BootstrapCI",
    "EpisodeBootstrap",
    "PairedResult",
    "Resampled",
    "holm",
    "macro_f1_ci",
    "paired_test",
]

CHUNK = 250                    # resamples per weight chunk (fixes the stream)
CACHE_LIMIT = 8_000_000        # cache W when B*G <= this many float32 (32 MB)


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate and its percentile-bootstrap interval."""

    point: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int

    def as_dict(self) -> dict:
        return {"point": self.point, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class PairedResult:
    """``difference = metric(a) - metric(b)`` on shared resamples.

    ``pvalue`` is the two-sided percentile-inversion p-value:
    ``min(1, 2 * min((1 + #{d_b <= 0}) / (B + 1), (1 + #{d_b >= 0}) / (B + 1)))``
    — the smallest level at which the reported percentile interval of the
    difference excludes 0 (see docs/EVALUATION.md).
    """

    difference: float
    low: float
    high: float
    pvalue: float
    point_a: float
    point_b: float
    confidence: float
    n_resamples: int
    seed: int

    def as_dict(self) -> dict:
        return {"difference": self.difference, "low": self.low, "high": self.high,
                "pvalue": self.pvalue}


@dataclass(frozen=True)
class Resampled:
    """One model's statistics on the full test set and on every resample."""

    macro_f1: float
    accuracy: float
    f1: np.ndarray             # (K,)
    macro_f1_b: np.ndarray     # (B,)
    accuracy_b: np.ndarray     # (B,)
    f1_b: np.ndarray           # (B, K)


# --------------------------------------------------------------------------
# validation


def _check_settings(n_resamples, confidence, seed) -> tuple[int, float, int]:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise ValueError(f"`n_resamples` must be an integer, got {n_resamples!r}")
    if n_resamples < 1:
        raise ValueError(f"`n_resamples` must be >= 1, got {n_resamples}")
    if not (isinstance(confidence, (float, int, np.floating)) and 0 < confidence < 1):
        raise ValueError(f"`confidence` must lie strictly between 0 and 1, got {confidence!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
    return int(n_resamples), float(confidence), int(seed)


# --------------------------------------------------------------------------
# the resampler


def _weight_chunks(n_groups: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Yield the episode-count matrix in row chunks, each float32 ``(b, G)``.

    (Counts are at most G, exact in float32 for any G < 2**24.)

    Row b counts how often each episode was drawn when G episode indices are
    drawn uniformly with replacement (scipy's resampling scheme), i.e.
    ``Multinomial(G, 1/G)``. Counting drawn indices with one ``bincount`` is
    faster than ``Generator.multinomial`` (one C loop of binomials per row).
    """
    for j, start in enumerate(range(0, n_resamples, CHUNK)):
        b = min(CHUNK, n_resamples - start)
        rng = np.random.default_rng([seed, j])
        idx = rng.integers(0, n_groups, size=(b, n_groups))            # (b, G) draws
        idx += np.arange(b, dtype=idx.dtype)[:, None] * n_groups       # row offsets
        counts = np.bincount(idx.ravel(), minlength=b * n_groups)
        yield counts.reshape(b, n_groups).astype(np.float32)


def episode_codes(episode_ids: np.ndarray, ids: np.ndarray, what: str = "`episode_id`") -> np.ndarray:
    """Index of each of ``ids`` in the sorted ``episode_ids``; ValueError for an unknown one."""
    codes = np.minimum(np.searchsorted(episode_ids, ids), episode_ids.size - 1)
    if ids.size and not np.array_equal(episode_ids[codes], ids):
        raise ValueError(f"{what} names episodes outside the test set")
    return codes.astype(np.int64)


def percentile_interval(stats: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0 (linear interpolation, as scipy)."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(stats, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return low, high


class EpisodeBootstrap:
    """Resamples of one test set; score any number of models on the same ones.

    ``y_true`` and ``groups`` (episode id per window) fix the test set;
    ``labels`` fixes the classes macro F1 averages over (default: those present
    in ``y_true``, see ``metrics``).
    """

    def __init__(self, y_true, groups, *, n_classes: int | None = None,
                 labels: Sequence[int] | None = None, n_resamples: int = 2000,
                 confidence: float = 0.95, seed: int = 0):
        self.n_resamples, self.confidence, self.seed = _check_settings(
            n_resamples, confidence, seed)
        yt = _as_label_array(y_true, "y_true")
        yt, _, self.n_classes, self.labels = validate_labels(
            yt, yt, n_classes=n_classes, labels=labels)
        self.y_true = yt
        self.codes, self.episode_ids = validate_groups(groups, yt.size)
        self.n_groups = int(self.episode_ids.size)
        self._cache: list[np.ndarray] | None = None

    @classmethod
    def over_episodes(cls, episode_ids, *, n_classes: int, labels: Sequence[int],
                      n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> "EpisodeBootstrap":
        """Resamples of a set of episodes with no reference windows.

        Every model then brings its own windows:
        ``score_many(y_preds, y_trues, groups)``. Same weights as the
        constructor for the same episodes and seed.
        """
        self = cls.__new__(cls)
        self.n_resamples, self.confidence, self.seed = _check_settings(
            n_resamples, confidence, seed)
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
                or n_classes < 1:
            raise ValueError(f"`n_classes` must be a positive integer, got {n_classes!r}")
        self.n_classes = int(n_classes)
        self.labels = evaluation_labels(np.empty(0, np.int64), self.n_classes, labels)
        self.y_true, self.codes = None, None
        self.episode_ids = np.unique(np.asarray(episode_ids))
        if self.episode_ids.ndim != 1 or self.episode_ids.size == 0:
            raise ValueError("`episode_ids` must be a non-empty one-dimensional sequence")
        self.n_groups = int(self.episode_ids.size)
        self._cache = None
        return self

    # -- weights ----------------------------------------------------------
    def weight_chunks(self) -> Iterator[np.ndarray]:
        if self._cache is not None:
            yield from self._cache
            return
        chunks = _weight_chunks(self.n_groups, self.n_resamples, self.seed)
        if self.n_resamples * self.n_groups > CACHE_LIMIT:
            yield from chunks
            return
        cache = []
        for c in chunks:
            cache.append(c)
            yield c
        self._cache = cache

    def weights(self) -> np.ndarray:
        """All resample weights, ``(B, G)`` episode counts (for tests/inspection)."""
        return np.concatenate(list(self.weight_chunks()), axis=0)

    # -- scoring ----------------------------------------------------------
    def _episode_matrix(self, y_pred, i: int, y_true=None, groups=None) -> np.ndarray:
        """Per-episode confusions of model i, ``(G, K*K)`` over this test set's episodes.

        A model scored on its own windows (``y_true``/``groups`` given) must
        draw them from the same episodes; the resample weights stay shared.
        """
        if y_true is None:
            if self.y_true is None:
                raise ValueError("this bootstrap has no reference windows: pass `y_trues` "
                                 "and `groups` for every model")
            yt, codes = self.y_true, self.codes
        else:
            yt = _as_label_array(y_true, f"y_trues[{i}]")
            g = np.asarray(groups)
            if g.shape != yt.shape:
                raise ValueError(f"`groups[{i}]` must have one entry per window ({yt.size})")
            codes = episode_codes(self.episode_ids, g, f"`groups[{i}]`")
            if yt.size and yt.max() >= self.n_classes:
                raise ValueError(f"`y_trues[{i}]` holds class {yt.max()} but `n_classes` "
                                 f"is {self.n_classes}")
        yp = _as_label_array(y_pred, f"y_preds[{i}]")
        if yp.size != yt.size:
            raise ValueError(f"`y_preds[{i}]` must have one entry per window "
                             f"({yt.size}), got {yp.size}")
        if yp.size and yp.max() >= self.n_classes:
            raise ValueError(f"`y_preds[{i}]` holds class {yp.max()} but `n_classes` is "
                             f"{self.n_classes}")
        return episode_confusions(codes, self.n_groups, yt, yp, self.n_classes)

    def _per_episode(self, y_preds, y_trues, groups) -> list[np.ndarray]:
        m = len(y_preds)
        if (y_trues is None) != (groups is None):
            raise ValueError("`y_trues` and `groups` must be given together")
        if y_trues is not None and not (len(y_trues) == len(groups) == m):
            raise ValueError("`y_trues` and `groups` need one entry per model")
        return [self._episode_matrix(p, i, *((y_trues[i], groups[i]) if y_trues else ()))
                for i, p in enumerate(y_preds)]

    def _resample(self, s: np.ndarray, max_cell: int) -> np.ndarray:
        """``W @ s`` over all chunks: ``(B, columns)``.

        float32 BLAS is exact while every resampled count stays below 2**24; a
        resampled count is at most G * (the largest per-episode count).
        """
        dtype = np.float32 if self.n_groups * max_cell < 2 ** 24 else np.float64
        s = s.astype(dtype)
        with _one_blas_thread():
            return np.concatenate([w.astype(dtype, copy=False) @ s
                                   for w in self.weight_chunks()], axis=0)

    def resampled_confusions(self, y_preds: Sequence, y_trues: Sequence | None = None,
                             groups: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Full-set and resampled confusions of every model: ``(M, K, K)``, ``(B, M, K, K)``."""
        k, m = self.n_classes, len(y_preds)
        e = np.concatenate(self._per_episode(y_preds, y_trues, groups), axis=1)  # (G, M*K*K)
        full = e.sum(axis=0).reshape(m, k, k)
        out = self._resample(e, int(e.max(initial=0)))
        return full, out.reshape(self.n_resamples, m, k, k)

    def score_many(self, y_preds: Sequence, y_trues: Sequence | None = None,
                   groups: Sequence | None = None) -> list[Resampled]:
        """Statistics of several models on shared resamples (one pass over W).

        The metrics need only three linear functions of a confusion matrix —
        the diagonal (TP), the column sums (predicted) and the row sums (true)
        — so each model's per-episode confusions are projected onto those
        *before* resampling, and the true counts, shared by all models scored
        on the same windows, are resampled once. ``W @ (E A) = (W @ E) A``:
        identical numbers to ``resampled_confusions`` (tested), with about half
        the matrix product for 12 models.
        """
        k = self.n_classes
        per_ep = self._per_episode(y_preds, y_trues, groups)
        blocks, layout, true_at, width = [], [], {}, 0
        for i, e in enumerate(per_ep):
            e = e.reshape(self.n_groups, k, k)
            blocks += [np.diagonal(e, axis1=1, axis2=2), e.sum(axis=1)]   # TP, predicted
            tp_at, pred_at, width = width, width + k, width + 2 * k
            key = "ref" if y_trues is None else (id(y_trues[i]), id(groups[i]))
            if key not in true_at:                                         # true, once
                blocks.append(e.sum(axis=2))
                true_at[key], width = width, width + k
            layout.append((tp_at, pred_at, true_at[key]))
        s = np.concatenate(blocks, axis=1)                                  # (G, width)
        full = s.sum(axis=0).astype(np.float64)
        r = self._resample(s, int(s.max(initial=0)))                        # (B, width)
        out = []
        for tp_at, pred_at, t_at in layout:
            tp, pred, true = (r[:, a:a + k].astype(np.float64) for a in (tp_at, pred_at, t_at))
            f1_b = _f1(tp, pred + true)
            f1_full = _f1(full[tp_at:tp_at + k], full[pred_at:pred_at + k] + full[t_at:t_at + k])
            out.append(Resampled(
                macro_f1=float(f1_full[self.labels].mean()),
                accuracy=float(full[tp_at:tp_at + k].sum() / full[t_at:t_at + k].sum()),
                f1=f1_full,
                macro_f1_b=f1_b[:, self.labels].mean(axis=1),
                accuracy_b=tp.sum(axis=1) / true.sum(axis=1),
                f1_b=f1_b))
        return out

    def score(self, y_pred) -> Resampled:
        return self.score_many([y_pred])[0]

    # -- records ----------------------------------------------------------
    def ci(self, point: float, stats_b: np.ndarray) -> BootstrapCI:
        low, high = percentile_interval(np.asarray(stats_b), self.confidence)
        return BootstrapCI(float(point), float(low), float(high), self.confidence,
                           self.n_resamples, self.seed)

    def paired(self, a: Resampled, b: Resampled) -> PairedResult:
        """Compare macro F1 of two models scored by this bootstrap."""
        d_b = a.macro_f1_b - b.macro_f1_b
        d = a.macro_f1 - b.macro_f1
        low, high = percentile_interval(d_b, self.confidence)
        return PairedResult(
            difference=float(d), low=float(low), high=float(high),
            pvalue=_percentile_pvalue(d_b), point_a=a.macro_f1, point_b=b.macro_f1,
            confidence=self.confidence, n_resamples=self.n_resamples, seed=self.seed)


def _one_blas_thread():
    """Pin BLAS to one thread for the resampling product, if threadpoolctl is there.

    The product is small (~10^8 flops for 12 models); on a shared, oversubscribed
    host multi-threaded OpenBLAS spin-waits and was measured 3-10x slower than
    one thread (bench/bench_eval.py), while on an idle host one thread costs a
    few milliseconds at most.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                       # optional: only an optimisation
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _f1(tp: np.ndarray, pred_plus_true: np.ndarray) -> np.ndarray:
    """2 TP / (predicted + true) = 2 TP / (2 TP + FP + FN); 0 where 0/0."""
    out = np.zeros_like(tp, dtype=np.float64)
    np.divide(2.0 * tp, pred_plus_true, out=out, where=pred_plus_true > 0)
    return out


def _percentile_pvalue(d_b: np.ndarray) -> float:
    """Two-sided p from the share of resampled differences on each side of 0."""
    n = d_b.size
    below = (1 + np.count_nonzero(d_b <= 0)) / (n + 1)
    above = (1 + np.count_nonzero(d_b >= 0)) / (n + 1)
    return float(min(1.0, 2.0 * min(below, above)))


# --------------------------------------------------------------------------
# public one-shot API


def macro_f1_ci(y_true, y_pred, groups, *, n_resamples: int = 2000,
                confidence: float = 0.95, seed: int = 0, n_classes: int | None = None,
                labels: Sequence[int] | None = None) -> BootstrapCI:
    """Macro F1 with its episode-cluster percentile-bootstrap interval.

    >>> r = macro_f1_ci([0, 1, 1, 0], [0, 1, 0, 0], ["e1", "e1", "e2", "e2"])
    >>> round(r.point, 3), r.n_resamples, r.seed
    (0.733, 2000, 0)
    """
    yt, yp, k, lab = validate_labels(y_true, y_pred, n_classes=n_classes, labels=labels)
    boot = EpisodeBootstrap(yt, groups, n_classes=k, labels=lab, n_resamples=n_resamples,
                            confidence=confidence, seed=seed)
    r = boot.score(yp)
    return boot.ci(r.macro_f1, r.macro_f1_b)


def paired_test(y_true, pred_a, pred_b, groups, *, n_resamples: int = 2000,
                confidence: float = 0.95, seed: int = 0, n_classes: int | None = None,
                labels: Sequence[int] | None = None) -> PairedResult:
    """Macro F1 of ``pred_a`` minus that of ``pred_b``, its CI and a p-value.

    Both models are scored on the same episode resamples.
    """
    yt, ya, k_a, lab = validate_labels(y_true, pred_a, n_classes=n_classes, labels=labels,
                                       pred_name="pred_a")
    _, yb, k_b, _ = validate_labels(yt, pred_b, n_classes=n_classes, labels=lab,
                                    pred_name="pred_b")
    boot = EpisodeBootstrap(yt, groups, n_classes=max(k_a, k_b), labels=lab,
                            n_resamples=n_resamples, confidence=confidence, seed=seed)
    ra, rb = boot.score_many([ya, yb])
    return boot.paired(ra, rb)


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as the input).

    ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))`` over the sorted
    p-values — statsmodels' ``multipletests(method='holm')``. Reject H_i at
    family-wise level alpha iff ``p_adj_i <= alpha``.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"`pvalues` must be one-dimensional, got shape {p.shape}")
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise ValueError("`pvalues` must lie in [0, 1] (no NaN)")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adj = np.empty(m)
    adj[order] = np.maximum.accumulate(scaled)
    return adj
