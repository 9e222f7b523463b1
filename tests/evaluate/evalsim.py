"""Simulated test splits with episode-correlated mistakes, and their true macro F1.

Each episode runs the four phases in order (fixed shares of its windows). A
model's skill varies by episode: window predictions in episode e are right
with probability ``u_e ~ Beta`` (mean ``skill``; ``concentration`` small =
strongly correlated windows), otherwise a uniformly chosen wrong class.

Because ``u_e`` is independent of the labels, the expected confusion per
window is ``E[C][t, p] = pi_t * (mu if p == t else (1 - mu)/(K - 1))`` with
``mu = E[u] = skill``; the population macro F1 is the F1 of that matrix (F1
is scale-free and the plug-in estimator converges to it as episodes grow).
"""

from __future__ import annotations

import numpy as np

SHARES = (0.3, 0.1, 0.1, 0.5)  # clean, armed, infecting, infected_running


def episode_labels(m: int, shares=SHARES) -> np.ndarray:
    counts = np.floor(np.asarray(shares) * m).astype(int)
    counts[-1] = m - counts[:-1].sum()
    return np.repeat(np.arange(len(shares)), counts)


def predict(y_true: np.ndarray, u_window: np.ndarray, k: int, rng) -> np.ndarray:
    right = rng.random(y_true.size) < u_window
    wrong = (y_true + rng.integers(1, k, y_true.size)) % k
    return np.where(right, y_true, wrong)


def simulate(n_episodes: int, m: int, *, skill: float = 0.7, concentration: float = 2.0,
             rng=None, shares=SHARES):
    """Return ``(y_true, y_pred, groups)`` for ``n_episodes`` × ``m`` windows."""
    rng = np.random.default_rng(rng)
    k = len(shares)
    y_ep = episode_labels(m, shares)
    y_true = np.tile(y_ep, n_episodes)
    groups = np.repeat(np.arange(n_episodes), m)
    if np.isinf(concentration):
        u = np.full(n_episodes, skill)
    else:
        u = rng.beta(skill * concentration, (1 - skill) * concentration, n_episodes)
    return y_true, predict(y_true, u[groups], k, rng), groups


def true_macro_f1(m: int, skill: float, shares=SHARES) -> float:
    k = len(shares)
    pi = np.bincount(episode_labels(m, shares), minlength=k) / m
    cm = pi[:, None] * np.where(np.eye(k, dtype=bool), skill, (1 - skill) / (k - 1))
    tp = np.diag(cm)
    f1 = 2 * tp / (cm.sum(0) + cm.sum(1))
    return float(f1.mean())
