"""PNG plots of a ``Comparison``.

Detection: ROC and PR curves, the operating curve (episode detection rate
against false alarms per host-day as τ varies, the validation-fixed τ
marked), the time-to-detect CDF, reliability diagrams (validation beside
test). Training: learning curves per epoch — train loss, validation loss
and validation macro F1 from the job's stored ``metrics.jsonl``
(``meta["curves"][seed]``), else train loss and validation macro F1 from
the checkpoint's history (``meta["history"][seed]``; it has no validation
loss). Phase attribution: forest plot of macro F1, confusion matrices,
importance heatmap.

Curves are drawn for the realistic family and the baselines (the oracle
family, a ceiling, is dashed where shown); a model with several seeds is
drawn from its lowest seed. Uses matplotlib's object-oriented API (no
pyplot, no display backend) and writes through ``atomic_writer``; PNG
metadata that varies between runs is dropped, so the same comparison gives
the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cis490.common import atomic_writer

from .compare import Comparison, ModelEval

__all__ = ["confusion_plot", "forest_plot", "importance_plot", "learning_plot", "learning_series",
           "operating_plot", "reliability_plot", "roc_pr_plot", "ttd_plot"]

_META = {"Software": None}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # Agg canvas on savefig; pyplot never loaded
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_writer(path) as fh:
        fig.savefig(fh, format="png", metadata=_META)
    return path


def _curve_models(comp: Comparison) -> list[ModelEval]:
    return [*comp.family("realistic"), *comp.baselines]


def _style(m: ModelEval) -> dict:
    return {"linestyle": ":" if m.is_baseline else "-", "linewidth": 1.0 if m.is_baseline else 1.4}


def _curves(m: ModelEval) -> dict:
    return m.curves[min(m.curves)] if m.curves else {}


def roc_pr_plot(comp: Comparison, path) -> Path | None:
    models = [m for m in _curve_models(comp) if "roc" in _curves(m)]
    if not models:
        return None
    fig = _figure(10.0, 4.4)
    ax_roc, ax_pr = fig.subplots(1, 2)
    for m in models:
        c = _curves(m)
        auc, ap = m.detection.ci["roc_auc"].point, m.detection.ci["pr_auc"].point
        ax_roc.plot(*c["roc"], label=f"{m.name} ({auc:.3f})", **_style(m))
        ax_pr.step(*c["pr"], where="post", label=f"{m.name} ({ap:.3f})", **_style(m))
    ax_roc.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
    ax_roc.set(xlabel="false positive rate (benign windows)", ylabel="true positive rate",
               title="ROC, test windows (AUC)", xlim=(0, 1), ylim=(0, 1.01))
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision–recall, test (AP)",
              xlim=(0, 1), ylim=(0, 1.01))
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="lower right" if ax is ax_roc else "lower left")
    return _save(fig, path)


def operating_plot(comp: Comparison, path) -> Path | None:
    models = [m for m in _curve_models(comp) if _curves(m).get("operating", (None,))[0] is not None]
    if not models:
        return None
    fig = _figure(7.0, 4.6)
    ax = fig.add_subplot()
    floor = None
    for m in models:
        fa, rate = _curves(m)["operating"]   # one point per threshold, ascending tau
        x = np.maximum(fa, 1e-2)[::-1]       # log axis: 0 false alarms is drawn at 0.01
        (line,) = ax.plot(x, rate[::-1], label=m.name, **_style(m))
        ci = m.detection.ci
        ax.plot([max(ci["false_alarms_per_host_day"].point, 1e-2)],
                [ci["episode_detection_rate"].point], "o", color=line.get_color(), markersize=5)
        floor = 1e-2
    ax.axvline(comp.budget, color="0.5", linestyle="--", linewidth=0.8,
               label=f"budget {comp.budget:g}/host-day (on validation)")
    ax.set_xscale("log")
    ax.set(xlabel="false alarms per benign host-day (test; 0 drawn at 0.01)",
           ylabel="episode detection rate (test)",
           title="Operating curve as τ varies; dot = the τ fixed on validation", ylim=(0, 1.02))
    if floor:
        ax.set_xlim(left=floor / 1.5)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="x-small", loc="lower right")
    return _save(fig, path)


def ttd_plot(comp: Comparison, path) -> Path | None:
    models = [m for m in _curve_models(comp) if len(_curves(m).get("ttd", ())) > 0]
    if not models:
        return None
    fig = _figure(7.0, 4.4)
    ax = fig.add_subplot()
    for m in models:
        ttd = _curves(m)["ttd"]
        n_inf = max(m.detection.n_infected, 1)
        y = np.arange(1, ttd.size + 1) / n_inf          # share of ALL infected episodes
        ax.step(np.concatenate([[0], ttd]), np.concatenate([[0], y]), where="post",
                label=f"{m.name} ({ttd.size}/{m.detection.n_infected})", **_style(m))
    ax.set(xlabel="seconds from infection onset to the alarm", ylabel="share of infected episodes detected",
           title="Time to detect at the validation-fixed τ (test)", ylim=(0, 1.02))
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="lower right")
    return _save(fig, path)


def reliability_plot(comp: Comparison, path) -> Path | None:
    models = [m for m in _curve_models(comp) if "reliability_test" in _curves(m)]
    if not models:
        return None
    fig = _figure(10.0, 4.6)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, ("reliability_val", "reliability_test"), ("validation", "test")):
        for m in models:
            mean_s, frac, count = _curves(m)[key]
            ok = np.asarray(count) > 0
            ece = m.calibration.ece_val if key.endswith("val") else m.calibration.ece_test.point
            ax.plot(np.asarray(mean_s)[ok], np.asarray(frac)[ok], marker=".",
                    label=f"{m.name} (ECE {ece:.3f})", **_style(m))
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8)
        ax.set(xlabel="mean score in bin (1 − P(clean))", title=f"reliability, {title}",
               xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper left")
    axes[0].set_ylabel("share of malicious windows in bin")
    return _save(fig, path)


def _seed_order(seed: str):
    return (0, int(seed), "") if str(seed).lstrip("-").isdigit() else (1, 0, str(seed))


def _finite(rows: list[dict], key: str) -> tuple[list, list]:
    pts = [(r["epoch"], float(r[key])) for r in rows
           if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]
    return [e for e, _ in pts], [v for _, v in pts]


def learning_series(m: ModelEval) -> dict[str, list[dict]]:
    """Per training seed, rows ``{epoch, train_loss, val_loss, val_macro_f1}``: the job's
    ``metrics.jsonl`` when it was stored, else the checkpoint's history (val_loss None)."""
    curves = m.meta.get("curves") or {}
    history = m.meta.get("history") or {}
    out = {}
    for seed in sorted({*curves, *history}, key=_seed_order):
        if curves.get(seed):
            out[seed] = [{k: r.get(k) for k in ("epoch", "train_loss", "val_loss", "val_macro_f1")}
                         for r in curves[seed]]
        elif history.get(seed):
            out[seed] = [{"epoch": h["epoch"], "train_loss": h.get("loss"), "val_loss": None,
                          "val_macro_f1": h.get("val_macro_f1")} for h in history[seed]]
    return out


def learning_plot(comp: Comparison, path) -> Path | None:
    series = {m.name: learning_series(m) for m in comp.models}
    models = [m for m in comp.models if series[m.name]]
    if not models:
        return None
    n = len(models)
    cols = min(4, n)
    rows = -(-n // cols)
    fig = _figure(3.2 * cols, 2.4 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, m in zip(axes, models):
        twin = ax.twinx()
        has_val_loss = False
        for _seed, seed_rows in series[m.name].items():
            ax.plot(*_finite(seed_rows, "train_loss"), color="tab:blue", linewidth=1)
            ep, val_loss = _finite(seed_rows, "val_loss")
            if ep:
                has_val_loss = True
                ax.plot(ep, val_loss, color="tab:blue", linewidth=1, linestyle="--")
            twin.plot(*_finite(seed_rows, "val_macro_f1"), color="tab:orange", linewidth=1)
        ax.set_title(m.name, fontsize=8)
        ax.tick_params(labelsize=6)
        twin.tick_params(labelsize=6)
        twin.set_ylim(0, 1)
        ax.set_xlabel("epoch (round for gbt)", fontsize=6)
        ax.set_ylabel("loss: train —, val --" if has_val_loss else "train loss", fontsize=6,
                      color="tab:blue")
        twin.set_ylabel("val macro F1", fontsize=6, color="tab:orange")
    for ax in axes[n:]:
        ax.set_visible(False)
    return _save(fig, path)


def forest_plot(comp: Comparison, path: str | os.PathLike) -> Path:
    """Macro F1 point and CI per model, families apart; baselines as grey rows."""
    rows: list[ModelEval] = [*comp.family("realistic"), *comp.family("oracle"), *comp.baselines]
    fig = _figure(7.0, 1.2 + 0.35 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    pts = np.array([m.macro_f1.point for m in rows])
    lo = np.array([m.macro_f1.low for m in rows])
    hi = np.array([m.macro_f1.high for m in rows])
    colors = ["0.5" if m.is_baseline else "tab:red" if m.family == "oracle" else "tab:blue"
              for m in rows]
    ax.hlines(y, lo, hi, colors=colors, linewidth=2)
    ax.scatter(pts, y, c=colors, zorder=3, s=25)
    ax.set_yticks(y, [m.name for m in rows])
    ax.set_xlabel(f"phase macro F1 ({comp.confidence:.0%} episode-bootstrap CI, "
                  f"B={comp.n_resamples}); blue realistic, red oracle (ceiling), grey baselines")
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
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
    seeds = f", summed over {len(m.seeds)} seeds" if len(m.seeds) > 1 else ""
    ax.set_title(f"{m.name}: macro F1 {m.macro_f1.point:.3f} "
                 f"[{m.macro_f1.low:.3f}, {m.macro_f1.high:.3f}]{seeds}", fontsize=9)
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
