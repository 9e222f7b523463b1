"""Ranking metrics of the detection score: ROC AUC, average precision, their curves and resamples.

Conventions as in ``detection.py`` (``codes``, ``malicious``, ``score``).
Ranking metrics are computed from score histograms (bin r = r-th distinct
score, or a quantile bin, ascending): ROC AUC = sum_r N_r (P_{>r} + P_r / 2)
/ (P N) (the trapezoid under the ROC curve, ties count one half) and AP =
sum_r (P_r / P) * precision(score >= bin r), scikit-learn's step integral.
Because a bootstrap resample's histogram is ``W @ H`` of the per-episode
histograms ``H``, every resample's AUCs come from one sparse product per
weight chunk; the windows are never touched again.

Input validation lives apart from the algorithms; messages name the parameter.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import scipy.sparse as sp

from .detection import _as_bool, _as_score, _scalar, _vector, _weights, validate_codes

__all__ = ["auc_grid_error_bound", "average_precision", "episode_histograms", "pr_curve",
           "resampled_aucs", "roc_auc", "roc_curve", "score_grid"]


# --------------------------------------------------------------------------
# ranking metrics (scikit-learn semantics)


def _binary(y, s, sample_weight):
    """Checked (y, s, weights); both classes must carry weight."""
    yb = _as_bool(y, "y")
    sc = _vector(s, "s", yb.size)
    if not np.issubdtype(sc.dtype, np.number) or not np.isfinite(sc).all():
        raise ValueError("`s` must be finite numbers")
    w = _weights(sample_weight, yb.size)
    w = np.ones(yb.size) if w is None else w
    for cls, other, mask in (("positive", "negative", yb), ("negative", "positive", ~yb)):
        if not w[mask].sum() > 0:
            raise ValueError(f"`y` holds only the {other} class (no {cls} window with "
                             "weight > 0): the metric is undefined")
    return yb, sc.astype(np.float64), w


def _histogram(y, s, w):
    """Distinct scores ascending and the positive/negative weight at each."""
    uniq, inv = np.unique(s, return_inverse=True)
    return (uniq, np.bincount(inv, weights=w * y, minlength=uniq.size),
            np.bincount(inv, weights=w * ~y, minlength=uniq.size))


def _auc_ap(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and AP from histograms ``(R, ...)`` over ascending score bins → ``(...)``.

    NaN where there is no positive or no negative weight.
    """
    tps = np.cumsum(pos[::-1], axis=0)[::-1]          # weight of positives scoring >= bin r
    fps = np.cumsum(neg[::-1], axis=0)[::-1]
    p, n = tps[0], fps[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        roc = (neg * (tps - 0.5 * pos)).sum(axis=0) / (p * n)   # P_{>r} + P_r / 2
        prec = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=tps + fps > 0)
        ap = (pos * prec).sum(axis=0) / p
    bad = ~((p > 0) & (n > 0))
    return np.where(bad, np.nan, roc), np.where(bad, np.nan, ap)


def roc_auc(y, s, sample_weight=None) -> float:
    """Area under the ROC curve; ties count one half (``sklearn.metrics.roc_auc_score``)."""
    _, pos, neg = _histogram(*_binary(y, s, sample_weight))
    return float(_auc_ap(pos, neg)[0])


def average_precision(y, s, sample_weight=None) -> float:
    """Step-integral AP (``sklearn.metrics.average_precision_score``)."""
    _, pos, neg = _histogram(*_binary(y, s, sample_weight))
    return float(_auc_ap(pos, neg)[1])


def _descending_counts(y, s, sample_weight):
    uniq, pos, neg = _histogram(*_binary(y, s, sample_weight))
    keep = (pos + neg)[::-1] > 0           # zero-weight scores are no thresholds (sklearn)
    return (uniq[::-1][keep], np.cumsum(pos[::-1])[keep], np.cumsum(neg[::-1])[keep])


def roc_curve(y, s, *, sample_weight=None, drop_intermediate: bool = True):
    """(fpr, tpr, thresholds) as ``sklearn.metrics.roc_curve`` (first threshold inf)."""
    thr, tps, fps = _descending_counts(y, s, sample_weight)
    if drop_intermediate and tps.size > 2:
        # drop points collinear with both neighbours (sklearn's rule; area unchanged)
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        thr, tps, fps = thr[keep], tps[keep], fps[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thr]


def pr_curve(y, s, *, sample_weight=None):
    """(recall, precision) as ``sklearn.metrics.precision_recall_curve``: recall decreasing,
    ending at (0, 1)."""
    _, tps, fps = _descending_counts(y, s, sample_weight)
    precision = tps / (tps + fps)          # > 0 everywhere: every bin has some weight
    return np.r_[(tps / tps[-1])[::-1], 0.0], np.r_[precision[::-1], 1.0]


# --------------------------------------------------------------------------
# episode bootstrap of the AUCs


def score_grid(score, max_bins: int = 4096) -> np.ndarray:
    """Ascending bin upper edges; a score falls in the first bin whose edge is >= it.

    With at most ``max_bins`` distinct scores the grid is those scores and
    every AUC is exact. Otherwise the edges are the ``inverted_cdf``
    quantiles at (1..max_bins)/max_bins (deduplicated, the last is the
    maximum), and the AUCs are those of the scores snapped to their bin's
    edge: a positive/negative pair in the same bin then counts one half
    instead of 0 or 1, so ``|AUC - AUC_grid| <= sum_b P_b N_b / (2 P N)``
    (``auc_grid_error_bound``), which is at most ``max_b N_b / (2 N)``.
    Average precision has no such bound; it is that of the snapped scores.
    """
    s = _as_score(score, unit=False)
    if s.size == 0:
        raise ValueError("`score` must not be empty")
    max_bins = _scalar(max_bins, "max_bins", "an integer >= 1", lambda v: v >= 1, True)
    uniq = np.unique(s)
    if uniq.size <= max_bins:
        return uniq
    q = np.arange(1, max_bins + 1) / max_bins
    return np.unique(np.quantile(s, q, method="inverted_cdf"))


def auc_grid_error_bound(pos, neg) -> np.ndarray | float:
    """``sum_b P_b N_b / (2 P N)``: the most gridding can move the ROC AUC.

    ``pos``/``neg`` are bin counts along the last axis (leading axes are
    vectorised), or the sparse ``(G, R)`` histograms of ``episode_histograms``
    (summed over episodes first).
    """
    if sp.issparse(pos) or sp.issparse(neg):
        pos, neg = np.asarray(pos.sum(axis=0)).ravel(), np.asarray(neg.sum(axis=0)).ravel()
    p, n = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 0.5 * (p * n).sum(axis=-1) / (p.sum(axis=-1) * n.sum(axis=-1))
    return float(out) if np.ndim(out) == 0 else out


def episode_histograms(codes, n_groups, malicious, score, grid):
    """Per-episode counts of malicious (``pos``) and benign (``neg``) windows per bin.

    Two ``scipy.sparse.csr_array`` (G, R) int64; bin r holds the scores in
    ``(grid[r-1], grid[r]]``.
    """
    c = validate_codes(codes, n_groups)
    mal = _as_bool(malicious, "malicious", c.size)
    s = _as_score(score, n=c.size, unit=False)
    gr = _vector(grid, "grid").astype(np.float64)
    if gr.size == 0 or np.any(np.diff(gr) <= 0):
        raise ValueError("`grid` must be non-empty and strictly increasing")
    if s.size and s.max() > gr[-1]:
        raise ValueError(f"`score` {s.max()} lies above the top of `grid` ({gr[-1]})")
    b = np.searchsorted(gr, s, side="left")
    shape = (int(n_groups), gr.size)

    def hist(mask):
        ones = np.ones(int(mask.sum()), dtype=np.int64)
        return sp.coo_array((ones, (c[mask], b[mask])), shape=shape).tocsr()

    return hist(mal), hist(~mal)


# resamples whose histograms are held at once: _auc_ap keeps about eight (R, b) float64
# arrays, 2 MiB each at the grid's 4096 bins (every column is computed on its own; the
# width changes only the last bits, ~1e-15, through numpy's summation order)
AUC_COLUMNS = 64


def resampled_aucs(weight_chunks: Iterable[np.ndarray], pos, neg
                   ) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and AP of every resample, ``(B,)`` each; NaN where a class has no weight.

    ``weight_chunks`` yields ``(b, G)`` episode-count matrices
    (``EpisodeBootstrap.weight_chunks()``); a resample's histogram is
    ``w @ H``, computed as ``H.T @ w.T`` ``AUC_COLUMNS`` resamples at a time, so memory
    is nnz + R * AUC_COLUMNS.
    """
    pos_t = sp.csr_array(pos).T.tocsr().astype(np.float64)     # (R, G)
    neg_t = sp.csr_array(neg).T.tocsr().astype(np.float64)
    if pos_t.shape != neg_t.shape:
        raise ValueError(f"`pos` and `neg` must have the same shape, got "
                         f"{pos_t.shape[::-1]} and {neg_t.shape[::-1]}")
    g = pos_t.shape[1]
    roc, ap = [], []
    for i, w in enumerate(weight_chunks):
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != g:
            raise ValueError(f"`weight_chunks` chunk {i} must be (b, {g}), got {w.shape}")
        for j in range(0, w.shape[0], AUC_COLUMNS):         # (R, AUC_COLUMNS) at a time
            wt = np.ascontiguousarray(w[j: j + AUC_COLUMNS].T)  # (G, b)
            r, a = _auc_ap(pos_t @ wt, neg_t @ wt)              # (R, b) histograms
            roc.append(r)
            ap.append(a)
    return np.concatenate([np.empty(0)] + roc), np.concatenate([np.empty(0)] + ap)


# --------------------------------------------------------------------------
# small helpers for the report
