"""Benchmark: episode-bootstrap evaluation of 12 models vs a naive loop and the floor.

    .venv/bin/python bench/bench_eval.py [--naive-resamples 200] [--seed 0]

Setting: 12 models x 2000 resamples over 100 000 test windows from
400 episodes (250 windows each), 4 classes, correlated per-episode skill.

- ``cis490.evaluate``: one ``EpisodeBootstrap`` (weights drawn once), 12 models
  scored on shared resamples, 12 macro F1 CIs, 11 paired tests vs the best,
  Holm — the phase part of ``compare`` before breakdowns. Also the whole
  ``compare`` (adds the detection statistics — threshold sweep, alarms, ROC/PR
  AUC, time to detect, ECE — accuracy/per-class CIs and per-profile/per-host
  breakdowns). ``bench/bench_eval_store.py`` times ``cis490 eval`` end to end.
- naive: for each resample, gather the windows of the drawn episodes and call
  ``sklearn.metrics.f1_score`` once per model; timed on ``--naive-resamples``
  resamples and extrapolated linearly to 2000.
- floor: the bare draw of 2000 multinomial resamples over the 16 confusion
  cells of each model (``Generator.multinomial(N, cm / N, size=2000)``, x12) —
  the least any bootstrap of a confusion-count statistic has to do.

Prints one line per measurement and the two ratios the issue targets
(>= 100x faster than naive; within 5x of the floor): best of ``--repeat``
interleaved runs (medians too), since the machine is shared.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cis490.evaluate import EpisodeBootstrap, holm
from cis490.evaluate.compare import CLASS_NAMES, compare
from cis490.evaluate.predictions import Predictions, Windows
from cis490.evaluate.scoring import Context

N_MODELS, B, N_WINDOWS, N_EPISODES, K = 12, 2000, 100_000, 400, 4


def make_data(seed: int):
    rng = np.random.default_rng(seed)
    m = N_WINDOWS // N_EPISODES
    shares = np.array([0.3, 0.1, 0.1, 0.5])
    counts = np.floor(shares * m).astype(int)
    counts[-1] = m - counts[:-1].sum()
    y_true = np.tile(np.repeat(np.arange(K), counts), N_EPISODES)
    groups = np.repeat(np.arange(N_EPISODES), m)
    preds = []
    for i in range(N_MODELS):
        skill = 0.55 + 0.03 * i
        u = rng.beta(4 * skill, 4 * (1 - skill), N_EPISODES)[groups]
        right = rng.random(y_true.size) < u
        preds.append(np.where(right, y_true, (y_true + rng.integers(1, K, y_true.size)) % K))
    profiles = np.array(["beacon", "cpu-saturate", "fork-storm", "io-walk", "low-and-slow"])
    meta = {"profile": profiles[np.arange(N_EPISODES) % 5][groups],
            "host_id": np.where(np.arange(N_EPISODES) % 2, "k-gamingcom", "elliott-thinkpad")[groups]}
    return y_true, preds, groups, meta


def ours(y_true, preds, groups):
    boot = EpisodeBootstrap(y_true, groups, n_classes=K, n_resamples=B, seed=0)
    scores = boot.score_many(preds)
    cis = [boot.ci(s.macro_f1, s.macro_f1_b) for s in scores]
    best = int(np.argmax([s.macro_f1 for s in scores]))
    paired = [boot.paired(s, scores[best]) for i, s in enumerate(scores) if i != best]
    return cis, holm([p.pvalue for p in paired])


def _windows(y_true, pred, groups, meta):
    """Predicted labels as probabilities (0.85 on the label): enough for every statistic."""
    proba = np.full((y_true.size, K), 0.05, dtype=np.float32)
    proba[np.arange(y_true.size), pred] = 0.85
    t = (20 + 2 * (np.arange(y_true.size) % (N_WINDOWS // N_EPISODES))) * 10**9
    return Windows(np.char.add("ep", np.char.zfill(groups.astype(str), 4)), meta["host_id"],
                   meta["profile"], t.astype(np.int64), y_true, proba)


def full_compare(y_true, preds, groups, meta):
    """The whole ``compare``: detection (threshold sweep on val, AUCs, time to detect,
    calibration) and phase metrics, strata, families; val = test windows here."""
    runs = []
    for i, p in enumerate(preds):
        w = _windows(y_true, p, groups, meta)
        runs.append(Predictions(f"m{i:02d}", "realistic", "realistic", {0: w}, {0: w}, CLASS_NAMES))
    return compare(runs, Context(onset_ns={}, stride_s=2.0, temperature_scaling=False),
                   n_resamples=B, seed=0)


def naive(y_true, preds, groups, n_resamples: int, seed: int):
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in range(N_EPISODES)]
    labels = np.unique(y_true)
    out = np.empty((n_resamples, len(preds)))
    for b in range(n_resamples):
        idx = np.concatenate([members[g] for g in rng.integers(0, N_EPISODES, N_EPISODES)])
        yt = y_true[idx]
        for j, p in enumerate(preds):
            out[b, j] = f1_score(yt, p[idx], labels=labels, average="macro", zero_division=0)
    return out


def floor(y_true, preds, seed: int):
    rng = np.random.default_rng(seed)
    for p in preds:
        cm = np.bincount(y_true * K + p, minlength=K * K)
        rng.multinomial(y_true.size, cm / cm.sum(), size=B)


def weights_only(seed: int):
    boot = EpisodeBootstrap(np.zeros(N_EPISODES, int), np.arange(N_EPISODES), n_resamples=B,
                            seed=seed)
    return boot.weights()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(fns: dict, repeat: int) -> dict[str, list[float]]:
    """Time each function ``repeat`` times, interleaved, so machine load hits all alike."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            out[k].append(timed(fn))
    return out


def best_of(fn, repeat: int) -> float:
    return min(timed(fn) for _ in range(repeat))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--naive-resamples", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    y_true, preds, groups, meta = make_data(args.seed)
    print(f"setting: {N_MODELS} models x {B} resamples, {y_true.size} windows, "
          f"{N_EPISODES} episodes, {K} classes")
    ours(y_true, preds, groups)                                   # warm-up (imports, caches)
    t = interleaved({"ours": lambda: ours(y_true, preds, groups),
                     "weights": lambda: weights_only(args.seed),
                     "floor": lambda: floor(y_true, preds, args.seed)}, args.repeat)
    t_ours, t_floor = min(t["ours"]), min(t["floor"])
    med = {k: float(np.median(v)) for k, v in t.items()}
    print(f"cis490.evaluate (12 CIs + 11 paired + Holm): {t_ours * 1e3:8.1f} ms "
          f"(median {med['ours'] * 1e3:.1f})")
    print(f"  of which episode weights (B x G draw):     {min(t['weights']) * 1e3:8.1f} ms "
          f"(median {med['weights'] * 1e3:.1f})")
    print(f"floor: multinomial over 16 cells x 12 models: {t_floor * 1e3:7.1f} ms "
          f"(median {med['floor'] * 1e3:.1f})")
    t_full = best_of(lambda: full_compare(y_true, preds, groups, meta), 2)
    print(f"cis490.evaluate.compare (+detection, acc/per-class CIs, 7 strata): "
          f"{t_full * 1e3:.1f} ms")
    t = time.perf_counter()
    naive(y_true, preds, groups, args.naive_resamples, args.seed)
    t_naive_part = time.perf_counter() - t
    t_naive = t_naive_part * B / args.naive_resamples
    print(f"naive sklearn loop: {t_naive_part:.1f} s for {args.naive_resamples} resamples "
          f"-> {t_naive:9.1f} s extrapolated to {B}")
    print(f"speed-up vs naive: {t_naive / t_ours:,.0f}x (target >= 100x)")
    print(f"ratio to floor:    {t_ours / t_floor:.2f}x best-of, "
          f"{med['ours'] / med['floor']:.2f}x median (target <= 5x)")


if __name__ == "__main__":
    main()
