"""Detection evaluation: alarms on window streams, exact threshold sweeps, operating points.

The stream. The windows of one split come sorted by (episode, ``t_end_ns``):
``codes`` (N,) int64 is the episode index 0..G-1 of each window and is
non-decreasing (each episode's windows are contiguous and in time order; every
function checks this and raises ``ValueError`` naming ``codes``);
``malicious`` (N,) bool is True where the window's true label is not
``clean``; ``score`` (N,) float64 is any finite detection score, higher = more
malicious (the evaluation passes ``-P(clean)``: the same order as 1 - P(clean),
without the rounding of 1 - p to 1.0 when p < 1e-16); ``t_end_ns`` (N,)
int64; ``onset_ns`` (G,) int64 is the labelled infection onset of each
episode, -1 meaning unknown (then the ``t_end_ns`` of the episode's first
malicious window stands in).

Definitions (the contract):

- A *run* at threshold tau is a maximal sequence of consecutive windows
  (adjacent positions, same episode) with ``score >= tau``.
- An *alarm* is the first window of a run of length >= k (k >= 1). It is
  *attributed* to that first window (benign → false alarm, malicious → true
  alarm) and *fires* at the run's k-th window, ``start + k - 1``: the first
  moment a deployed detector could raise it. A maximal run yields at most one
  alarm. A window is *flagged* iff it lies in a maximal run of length >= k.
- An episode is *infected* iff it has a malicious window, and *detected* iff
  it is infected and has a true alarm. Its *time to detect* is the fire-time
  ``t_end_ns`` of its first true alarm minus its onset, in seconds.
- *Pre-onset alarms* are the false alarms of infected episodes (the benign
  windows of an infected episode are those before its onset).

The sweep. With ``prev_i = score[i-1]`` (same episode, else -inf) and
``m_i = min(score[i..i+k-1])`` (those k windows all in i's episode, else
-inf), window i starts a run of length >= k iff ``prev_i < tau <= m_i``. So
the false alarms at tau count the benign i whose interval ``(prev_i, m_i]``
holds tau, and an infected episode is detected at tau iff the union of the
intervals of its malicious windows holds tau: both counts are step functions
with steps only at scores, evaluated exactly at every distinct score by
sorting and +-1 events, O(N log N).

Ranking metrics (ROC/PR AUC, their episode resamples) live in ``ranking.py``.

Input validation lives apart from the algorithms; messages name the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

__all__ = [
    "Alarms", "Outcomes", "Sweep", "ThresholdChoice",
    "alarms", "choose_threshold", "episode_outcomes", "precision_at_base_rate", "sweep",
    "validate_codes", "weighted_quantile",
]

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Alarms:
    """Alarm positions (indices into the stream), in stream order."""

    start: np.ndarray          # (A,) int64: first window of the run (attribution)
    fire: np.ndarray           # (A,) int64: start + k - 1 (when it is raised)


@dataclass(frozen=True)
class Outcomes:
    """Per-episode outcomes at one (tau, k); every array is (G,), counts int64."""

    n_windows: np.ndarray
    n_benign: np.ndarray
    n_malicious: np.ndarray
    infected: np.ndarray             # bool
    n_alarms: np.ndarray
    n_false_alarms: np.ndarray       # alarms whose first window is benign
    n_pre_onset_alarms: np.ndarray   # false alarms of infected episodes
    detected: np.ndarray             # bool: infected and >= 1 true alarm
    ttd_s: np.ndarray                # float64 seconds, onset → fire; NaN if not detected
    n_flagged_benign: np.ndarray
    n_flagged_malicious: np.ndarray


@dataclass(frozen=True)
class Sweep:
    """Exact counts at every threshold: ``thresholds`` ascending, the last alarms nothing."""

    thresholds: np.ndarray           # (R,) float64
    n_false_alarms: np.ndarray       # (R,) int64
    n_detected: np.ndarray           # (R,) int64
    n_infected: int


@dataclass(frozen=True)
class ThresholdChoice:
    """The operating point chosen under a false-alarm budget."""

    threshold: float
    n_detected: int
    n_infected: int
    detection_rate: float            # NaN if no episode is infected
    n_false_alarms: int
    false_alarms_per_host_day: float
    benign_host_seconds: float
    n_candidates: int                # sweep thresholds within the budget


# --------------------------------------------------------------------------
# validation (kept apart from the algorithms)


def _scalar(x, name: str, rule: str, ok, integer: bool = False):
    """A real (or integer) scalar argument for which ``ok`` holds; ``rule`` says what that is."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(x, bool) or not isinstance(x, kinds) or not ok(x):
        raise ValueError(f"`{name}` must be {rule}, got {x!r}")
    return int(x) if integer else float(x)


def validate_codes(codes, n_groups=None) -> np.ndarray:
    """Episode index per window as int64, checked non-decreasing (and < ``n_groups``)."""
    c = np.asarray(codes)
    if c.ndim != 1:
        raise ValueError(f"`codes` must be one-dimensional, got shape {c.shape}")
    if c.size and not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"`codes` must hold integer episode indices, got dtype {c.dtype}")
    c = c.astype(np.int64, copy=False)
    if c.size and c[0] < 0:
        raise ValueError(f"`codes` must be episode indices >= 0, found {c[0]}")
    if np.any(c[1:] < c[:-1]):
        raise ValueError("`codes` must be non-decreasing: sort the windows by "
                         "(episode, t_end_ns) so each episode's windows are contiguous")
    if n_groups is not None:
        n_groups = _scalar(n_groups, "n_groups", "an integer >= 0", lambda v: v >= 0, True)
        if c.size and c[-1] >= n_groups:
            raise ValueError(f"`codes` holds episode {c[-1]} but `n_groups` is {n_groups}")
    return c


def _vector(a, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise ValueError(f"`{name}` must have one entry per window ({n}), got {arr.size}")
    return arr


def _as_bool(a, name: str, n: int | None = None) -> np.ndarray:
    arr = _vector(a, name, n)
    if arr.dtype != bool:
        if arr.size and not (np.issubdtype(arr.dtype, np.number)
                             and np.isin(arr, (0, 1)).all()):
            raise ValueError(f"`{name}` must be boolean (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def _as_score(a, name: str = "score", n: int | None = None, *, unit: bool = True) -> np.ndarray:
    """Finite float64 scores; ``unit`` also requires them to lie in [0, 1] (probabilities)."""
    arr = _vector(a, name, n)
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"`{name}` must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"`{name}` must be finite (no NaN)")
    if unit and arr.size and not (arr.min() >= 0 and arr.max() <= 1):
        raise ValueError(f"`{name}` must lie in [0, 1]")
    return arr


def _as_int64(a, name: str, n: int) -> np.ndarray:
    arr = _vector(a, name, n)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"`{name}` must hold integer nanoseconds, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_k(k) -> int:
    return _scalar(k, "k", "an integer >= 1", lambda v: v >= 1, integer=True)


def _check_tau(tau) -> float:
    return _scalar(tau, "tau", "a real number", lambda v: not np.isnan(v))


def _weights(w, n: int) -> np.ndarray | None:
    if w is None:
        return None
    arr = _vector(w, "sample_weight", n).astype(np.float64)
    if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0):
        raise ValueError("`sample_weight` must be finite and non-negative")
    return arr


# --------------------------------------------------------------------------
# runs, alarms, per-episode outcomes


def _new_episode(codes: np.ndarray) -> np.ndarray:
    """True where a window is its episode's first."""
    first = np.ones(codes.size, dtype=bool)
    first[1:] = codes[1:] != codes[:-1]
    return first


def _runs(codes: np.ndarray, score: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the maximal runs, inclusive indices, paired in order."""
    above = score >= tau
    first = _new_episode(codes)
    last = np.ones(codes.size, dtype=bool)
    last[:-1] = first[1:]
    starts = np.flatnonzero(above & (first | ~np.r_[False, above[:-1]]))
    ends = np.flatnonzero(above & (last | ~np.r_[above[1:], False]))
    return starts, ends


def _alarms(codes, score, tau, k) -> tuple[Alarms, np.ndarray]:
    """Alarms and the flagged mask (windows in a run of length >= k)."""
    starts, ends = _runs(codes, score, tau)
    keep = ends - starts + 1 >= k
    s, e = starts[keep], ends[keep]
    n = codes.size + 1                                  # +1 at a run's start, -1 after its end
    flagged = np.cumsum(np.bincount(s, minlength=n) - np.bincount(e + 1, minlength=n))[:-1] > 0
    return Alarms(start=s.astype(np.int64), fire=(s + k - 1).astype(np.int64)), flagged


def alarms(codes, score, tau, k) -> Alarms:
    """The alarms of the stream at threshold ``tau``, ``k`` consecutive windows."""
    c = validate_codes(codes)
    return _alarms(c, _as_score(score, n=c.size, unit=False), _check_tau(tau), _check_k(k))[0]


def episode_outcomes(codes, n_groups, t_end_ns, malicious, score, tau, k,
                     onset_ns) -> Outcomes:
    """Per-episode alarm counts, detection and time to detect at (tau, k).

    An episode with no windows (possible in a bootstrap universe) gets zeros.
    ``ttd_s`` is measured to the alarm's fire time, so it is negative only if
    the labelled onset lies after that window's ``t_end_ns``.
    """
    c = validate_codes(codes, n_groups)
    n, g = c.size, int(n_groups)
    t = _as_int64(t_end_ns, "t_end_ns", n)
    if np.any((t[1:] < t[:-1]) & (c[1:] == c[:-1])):
        raise ValueError("`t_end_ns` must be non-decreasing within each episode")
    mal = _as_bool(malicious, "malicious", n)
    s = _as_score(score, n=n, unit=False)
    onset = _vector(onset_ns, "onset_ns", g)
    if onset.size and (not np.issubdtype(onset.dtype, np.integer) or onset.min() < -1):
        raise ValueError("`onset_ns` must hold integer nanoseconds, -1 for unknown")
    al, flagged = _alarms(c, s, _check_tau(tau), _check_k(k))

    def count(mask):
        return np.bincount(c[mask], minlength=g).astype(np.int64)

    n_mal = count(mal)
    infected = n_mal > 0
    ep, true_alarm = c[al.start], mal[al.start]
    n_false = np.bincount(ep[~true_alarm], minlength=g).astype(np.int64)
    n_true = np.bincount(ep[true_alarm], minlength=g)
    # onset: the label where known, else the first malicious window's t_end
    first_mal = np.full(g, -1, dtype=np.int64)
    mal_idx = np.flatnonzero(mal)
    ep_of, where = np.unique(c[mal_idx], return_index=True)
    first_mal[ep_of] = t[mal_idx[where]]
    onset = np.where(onset.astype(np.int64) >= 0, onset.astype(np.int64), first_mal)
    # alarms are in stream order, so the first true alarm per episode is the first listed
    ttd = np.full(g, np.nan)
    fire = al.fire[true_alarm]
    ep_of, where = np.unique(ep[true_alarm], return_index=True)
    ttd[ep_of] = (t[fire[where]] - onset[ep_of]) / 1e9
    return Outcomes(
        n_windows=count(np.ones(n, dtype=bool)), n_benign=count(~mal), n_malicious=n_mal,
        infected=infected, n_alarms=np.bincount(ep, minlength=g).astype(np.int64),
        n_false_alarms=n_false, n_pre_onset_alarms=np.where(infected, n_false, 0),
        detected=infected & (n_true > 0), ttd_s=ttd,
        n_flagged_benign=count(flagged & ~mal), n_flagged_malicious=count(flagged & mal))


# --------------------------------------------------------------------------
# exact threshold sweep


def _window_min(codes: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """``m_i = min(score[i..i+k-1])`` where those windows are all in i's episode, else -inf.

    Sparse-table doubling: O(N log k) time, O(N) memory.
    """
    n = score.size
    out = np.full(n, -np.inf)
    if n < k:
        return out
    cur, span = score, 1                       # cur[i] = min(score[i : i + span])
    while 2 * span <= k:
        cur = np.minimum(cur[:-span], cur[span:])
        span *= 2
    m = n - k + 1                              # windows with k successors in the array
    mk = np.minimum(cur[:m], cur[k - span:k - span + m])   # two overlapping spans cover k
    out[:m] = np.where(codes[k - 1:] == codes[:m], mk, -np.inf)
    return out


def sweep(codes, malicious, score, k) -> Sweep:
    """False alarms and detected episodes at every distinct score (and one above all)."""
    c = validate_codes(codes)
    mal = _as_bool(malicious, "malicious", c.size)
    s = _as_score(score, n=c.size, unit=False)
    k = _check_k(k)
    top = np.nextafter(max(1.0, float(s.max(initial=0.0))), np.inf)
    thr = np.append(np.unique(s), top)
    r = thr.size
    prev = np.full(s.size, -np.inf)
    prev[1:] = s[:-1]
    prev[_new_episode(c)] = -np.inf
    # window i starts a qualifying run for thresholds thr[lo_i:hi_i] (empty if lo >= hi)
    lo = np.searchsorted(thr, prev, side="right")
    hi = np.searchsorted(thr, _window_min(c, s, k), side="right")
    live = lo < hi

    fa = live & ~mal
    n_fa = np.cumsum(np.bincount(lo[fa], minlength=r + 1)
                     - np.bincount(hi[fa], minlength=r + 1))[:r]

    # merge each episode's malicious intervals, then one +-1 event per merged segment
    tp = np.flatnonzero(live & mal)
    order = np.lexsort((lo[tp], c[tp]))
    e, l, h = c[tp][order], lo[tp][order], hi[tp][order]
    if e.size:
        # running max of hi within an episode: offsetting by episode makes one
        # cumulative max over the whole array stay inside each episode's block
        reach = np.maximum.accumulate(e * (r + 1) + h) - e * (r + 1)
        new = np.ones(e.size, dtype=bool)
        new[1:] = (e[1:] != e[:-1]) | (l[1:] > reach[:-1])
        firsts = np.flatnonzero(new)
        seg_lo, seg_hi = l[firsts], np.maximum.reduceat(h, firsts)
    else:
        seg_lo = seg_hi = np.empty(0, dtype=np.int64)
    n_det = np.cumsum(np.bincount(seg_lo, minlength=r + 1)
                      - np.bincount(seg_hi, minlength=r + 1))[:r]
    n_inf = int(np.unique(c[mal]).size)
    return Sweep(thresholds=thr, n_false_alarms=n_fa.astype(np.int64),
                 n_detected=n_det.astype(np.int64), n_infected=n_inf)


def choose_threshold(sweep: Sweep, *, benign_seconds: float,
                     budget_per_day: float) -> ThresholdChoice:
    """Most detected episodes within ``budget_per_day`` false alarms per benign host-day.

    Ties go to fewer false alarms, then to the higher threshold. Always
    feasible: the sweep's top threshold alarms nothing.
    """
    secs = _scalar(benign_seconds, "benign_seconds", "a finite number", np.isfinite)
    if secs <= 0:
        raise ValueError(f"`benign_seconds` is {secs}: no benign windows to "
                         "estimate a false-alarm rate")
    budget = _scalar(budget_per_day, "budget_per_day", "a number >= 0", lambda v: v >= 0)
    days = secs / SECONDS_PER_DAY
    rate = sweep.n_false_alarms / days
    ok = np.flatnonzero(rate <= budget)
    if ok.size == 0:
        raise ValueError("`sweep` has no threshold within the budget (its top must alarm nothing)")
    # lexsort: last key is primary; the best candidate sorts last
    best = ok[np.lexsort((sweep.thresholds[ok], -sweep.n_false_alarms[ok],
                          sweep.n_detected[ok]))[-1]]
    det, inf = int(sweep.n_detected[best]), int(sweep.n_infected)
    return ThresholdChoice(
        threshold=float(sweep.thresholds[best]), n_detected=det, n_infected=inf,
        detection_rate=det / inf if inf else float("nan"),
        n_false_alarms=int(sweep.n_false_alarms[best]),
        false_alarms_per_host_day=float(rate[best]),
        benign_host_seconds=secs, n_candidates=int(ok.size))


def precision_at_base_rate(tpr, fpr, pi):
    """Precision a detector with (tpr, fpr) would have at prevalence ``pi``.

    ``tpr * pi / (tpr * pi + fpr * (1 - pi))``, broadcast; NaN where 0/0.
    """
    t, f, p = (np.asarray(a, dtype=np.float64) for a in (tpr, fpr, pi))
    if np.any((p < 0) | (p > 1)):
        raise ValueError("`pi` must lie in [0, 1]")
    num, den = t * p, t * p + f * (1 - p)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, np.nan)
    return float(out) if out.ndim == 0 else out


def weighted_quantile(values_sorted, weights, q):
    """``inverted_cdf`` quantile: the smallest value whose cumulative weight >= q * total.

    ``weights`` is (D,) or (B, D) → scalar or (B,); NaN where a row's total is 0.
    Equals ``np.quantile(np.repeat(values, w), q, method="inverted_cdf")`` for
    integer weights.
    """
    v = _vector(values_sorted, "values_sorted").astype(np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if v.size == 0 or np.any(np.diff(v) < 0):
        raise ValueError("`values_sorted` must be non-empty and ascending")
    if w.ndim not in (1, 2) or w.shape[-1] != v.size:
        raise ValueError(f"`weights` must be (D,) or (B, D) with D = {v.size}, got {w.shape}")
    if not (np.isfinite(w).all() and w.min() >= 0):
        raise ValueError("`weights` must be finite and non-negative")
    q = _scalar(q, "q", "a number in [0, 1]", lambda v: 0 <= v <= 1)
    cw = np.cumsum(w, axis=-1)
    total = cw[..., -1:]
    # cw >= q * total (not cw / total >= q) is numpy's own test, so integer weights
    # match np.quantile exactly; leading zero-weight values never count (q = 0)
    idx = np.count_nonzero((cw < q * total) | (cw <= 0), axis=-1)
    out = np.where(total[..., 0] > 0, v[np.minimum(idx, v.size - 1)], np.nan)
    return float(out) if out.ndim == 0 else out
