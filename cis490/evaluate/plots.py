"""PNG plots of a ``Comparison``: forest plot, confusion matrices, importance heatmap.

Uses matplotlib's object-oriented API (``matplotlib.figure.Figure``, Agg
canvas) — no pyplot, so no global figure state and no display backend — and
writes through ``atomic_writer`` so a reader never sees half a PNG. PNG
metadata that varies between runs (the matplotlib version string) is dropped
so the same comparison gives the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cis490.fleet.atomic import atomic_writer

from .compare import Comparison, ModelEval

__all__ = ["confusion_plot", "forest_plot", "importance_plot"]

_META = {"Software": None}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # Agg canvas on savefig; pyplot never loaded
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_writer(path) as fh:
        fig.savefig(fh, format="png", metadata=_META)
    return path


def forest_plot(comp: Comparison, path: str | os.PathLike) -> Path:
    """Macro F1 point and CI per model, best on top; the majority baseline as a line."""
    rows: list[ModelEval] = list(comp.models)
    fig = _figure(7.0, 1.2 + 0.35 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    pts = np.array([m.macro_f1.point for m in rows])
    lo = np.array([m.macro_f1.low for m in rows])
    hi = np.array([m.macro_f1.high for m in rows])
    colors = ["tab:red" if m.mode == "oracle" else "tab:blue" for m in rows]
    ax.hlines(y, lo, hi, colors=colors, linewidth=2)
    ax.scatter(pts, y, c=colors, zorder=3, s=25)
    base = comp.baseline.macro_f1
    ax.axvspan(base.low, base.high, color="0.85", zorder=0)
    ax.axvline(base.point, color="0.4", linestyle="--", linewidth=1,
               label=f"majority baseline ({comp.class_names[comp.majority_class]})")
    ax.set_yticks(y, [m.name for m in rows])
    ax.set_xlabel(f"macro F1 ({comp.confidence:.0%} episode-bootstrap CI, "
                  f"B={comp.n_resamples}, seed={comp.seed})")
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")  # the rows sort best-first: top left is empty
    ax.set_title(f"Test split: {comp.n_windows} windows, {comp.n_episodes} episodes")
    return _save(fig, path)


def confusion_plot(m: ModelEval, class_names, path: str | os.PathLike) -> Path:
    """Row-normalised confusion matrix (recall per true class) with raw counts."""
    cm = np.asarray(m.confusion, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig = _figure(5.2, 4.4)
    ax = fig.add_subplot()
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    k = len(class_names)
    for t in range(k):
        for p in range(k):
            ax.text(p, t, f"{int(cm[t, p])}\n{norm[t, p]:.2f}", ha="center", va="center",
                    fontsize=7, color="white" if norm[t, p] > 0.6 else "black")
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{m.name}: macro F1 {m.macro_f1.point:.3f} "
                 f"[{m.macro_f1.low:.3f}, {m.macro_f1.high:.3f}]", fontsize=9)
    fig.colorbar(im, ax=ax, label="share of true class")
    return _save(fig, path)


def importance_plot(comp: Comparison, path: str | os.PathLike) -> Path | None:
    """Heatmap of macro F1 drop, models × channels; None if no model has importances."""
    rows = [m for m in comp.models if m.importance is not None]
    if not rows:
        return None
    channels = sorted({c for m in rows for c in m.importance.drop})
    mat = np.array([[m.importance.drop.get(c, np.nan) for c in channels] for m in rows])
    xlabels, ylabels = channels, [m.name for m in rows]
    if len(channels) > 12:             # many channels: one row per channel, models across
        mat, xlabels, ylabels = mat.T, ylabels, xlabels
    n_y, n_x = mat.shape
    fig = _figure(max(5.0, 2.4 + 0.65 * n_x), 1.8 + 0.3 * n_y)
    ax = fig.add_subplot()
    vmax = max(float(np.nanmax(np.abs(mat))) if np.isfinite(mat).any() else 0.0, 1e-3)
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    for i in range(n_y):
        for j in range(n_x):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:+.3f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(mat[i, j]) > 0.6 * vmax else "black")
    ax.set_xticks(range(n_x), xlabels, rotation=40, ha="right")
    ax.set_yticks(range(n_y), ylabels)
    ax.set_title("Permutation importance\n(macro F1 drop when the channel is shuffled)",
                 fontsize=9)
    fig.colorbar(im, ax=ax, label="macro F1 drop")
    return _save(fig, path)
