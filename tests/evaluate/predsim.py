"""Simulated per-window predictions (``Predictions``) for the report and comparison tests.

A world of episodes: windows every 2 s (t_end from 20 s), the infection
onset at a random window, then armed (2 windows), infecting (2), then
infected_running to the end. A model of skill s puts logit 3·s on the true
class plus unit Gaussian noise — its mistakes are independent of the label,
so a higher skill is a better model on every metric in expectation.
"""

from __future__ import annotations

import numpy as np

from cis490.evaluate.compare import CLASS_NAMES
from cis490.evaluate.predictions import Predictions, Windows

STRIDE_S = 2.0
PROFILES = ("beacon", "io-walk", "fork-storm")


FIRST_S = 20                                   # t_end of an episode's first window - its start


def world(n_episodes: int, seed: int, *, prefix: str = "ep", windows: int = 40,
          hosts=("k-gamingcom",), fixed_onset: int | None = None, spacing_s: int = 10**4):
    """(episode ids, host, profile, t_end_ns, y_true, onset_ns per episode) of one split.

    Episode e starts at (10**6 + e * spacing_s) s: with the default spacing 40
    episodes span 4.6 days (one test week); ``episode_starts`` recovers the starts.
    """
    rng = np.random.default_rng([seed, 0xE9])
    cols = {k: [] for k in ("e", "h", "p", "t", "y")}
    onsets = {}
    for e in range(n_episodes):
        eid = f"{prefix}{e:04d}"
        t0 = (10**6 + e * spacing_s) * 10**9
        t_end = t0 + (FIRST_S + STRIDE_S * np.arange(windows)).astype(np.int64) * 10**9
        k = int(fixed_onset if fixed_onset is not None else rng.integers(4, windows - 6))
        y = np.zeros(windows, dtype=np.int64)
        y[k:], y[k:k + 2], y[k + 2:k + 4] = 3, 1, 2
        onsets[eid] = int(t_end[k] - 10**9)          # the onset lies inside window k
        cols["e"] += [eid] * windows
        cols["h"] += [hosts[e % len(hosts)]] * windows
        cols["p"] += [PROFILES[e % len(PROFILES)]] * windows
        cols["t"].append(t_end)
        cols["y"].append(y)
    return (np.array(cols["e"]), np.array(cols["h"]), np.array(cols["p"]),
            np.concatenate(cols["t"]), np.concatenate(cols["y"]), onsets)


def episode_starts(e: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per window, its episode's start (``world``'s first window ends FIRST_S after it)."""
    first = np.r_[True, e[1:] != e[:-1]]
    return np.maximum.accumulate(np.where(first, t - FIRST_S * 10**9, 0)).astype(np.int64)


def scored(w, skill: float, seed: int, *, clock: bool = False) -> Windows:
    e, h, p, t, y, onsets = w
    rng = np.random.default_rng([seed, 0x5C])
    logits = rng.normal(0.0, 1.0, (y.size, len(CLASS_NAMES)))
    if clock:                                   # a "model" that only knows the time
        first = np.r_[True, e[1:] != e[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(y.size), 0))
        logits[:, 3] += 0.15 * (np.arange(y.size) - start) - 3.0
    else:
        logits[np.arange(y.size), y] += 3.0 * skill
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    return Windows(e, h, p, t, y, proba.astype(np.float32),
                   np.array([onsets.get(x, -1) for x in e], dtype=np.int64),
                   episode_starts(e, t))


def predictions(model: str, mode: str, skill: float, val, test, *, seeds=(0,),
                family: str | None = None, clock: bool = False, salt: int = 0) -> Predictions:
    fam = family or ("baseline" if mode == "baseline" else
                     "oracle" if mode == "oracle" else "realistic")
    base = sum(map(ord, model + mode)) * 7 + salt
    return Predictions(
        model=model, mode=mode, family=fam,
        val={s: scored(val, skill, base + 1000 * s + 1, clock=clock) for s in seeds},
        test={s: scored(test, skill, base + 1000 * s + 2, clock=clock) for s in seeds},
        class_names=CLASS_NAMES,
        meta={"checkpoints": {str(s): f"{model}{mode}{s}".encode().hex()[:16].ljust(64, "0")
                              for s in seeds}, "schema_sha256": "ab" * 32,
              "history": {str(s): [{"epoch": i, "loss": 1.0 / i, "val_macro_f1": 0.5}
                                   for i in (1, 2, 3)] for s in seeds}, "stride_s": STRIDE_S}
        if fam != "baseline" else {"info": {"what": model}, "stride_s": STRIDE_S})
