"""Write a ``Comparison`` as ``comparison.md``, per-model JSON and PNGs; render it for the terminal.

Layout of ``reports/eval/`` (every file published with ``atomic_write``):

- ``comparison.md``         the report a reviewer reads (see docs/EVALUATION.md)
- ``comparison.json``       everything in ``comparison.md``, machine-readable
- ``<model>_<mode>_eval.json``  one per model: metrics with CIs, per class, per
  profile / host, paired test vs best, importance, digests, bootstrap settings
- ``forest_macro_f1.png``   macro F1 with CIs, best on top, baseline band
- ``<model>_<mode>_confusion.png``  one per model
- ``importance.png``        models × channels macro F1 drop (if computed)

``render_table(comp)`` is pure: it builds a ``rich.table.Table`` and prints
nothing, so it is tested with ``Console(file=io.StringIO())``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cis490.fleet.atomic import atomic_write

from .compare import MIN_CI_EPISODES, Comparison, ModelEval

__all__ = ["comparison_markdown", "model_json", "render_table", "write_report"]


def _ci(ci) -> str:
    return f"{ci.point:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.3f}"


def _ci_dict(ci, reported: bool = True) -> dict:
    if not reported:
        return {"point": ci.point, "low": None, "high": None}
    return {"point": ci.point, "low": ci.low, "high": ci.high}


def _stratum_cell(s) -> str:
    if s.ci_reported:
        return _ci(s.macro_f1)
    return f"{s.macro_f1.point:.3f} (no CI: {s.n_episodes} ep.)"


def model_json(m: ModelEval, comp: Comparison) -> dict:
    """Everything known about one model's test score, JSON-ready."""
    return {
        "model": m.model,
        "mode": m.mode,
        "name": m.name,
        "n_windows": m.n_windows,
        "n_episodes": m.n_episodes,
        "macro_f1": _ci_dict(m.macro_f1),
        "accuracy": _ci_dict(m.accuracy),
        "per_class": {c.name: {"label": c.label, "support": c.support, "f1": _ci_dict(c.f1)}
                      for c in m.per_class},
        "confusion": [list(r) for r in m.confusion],
        "breakdowns": {key: {s.value: {"n_windows": s.n_windows, "n_episodes": s.n_episodes,
                                       "ci_reported": s.ci_reported,
                                       "macro_f1": _ci_dict(s.macro_f1, s.ci_reported),
                                       "accuracy": _ci_dict(s.accuracy, s.ci_reported)}
                              for s in strata}
                       for key, strata in m.breakdowns.items()},
        "untested_profiles": list(comp.untested_profiles),
        "vs_best": None if m.vs_best is None else {
            "best": comp.best, **m.vs_best.as_dict(), "pvalue_holm": m.p_holm},
        "importance": None if m.importance is None else m.importance.as_dict(),
        "checkpoint_digest": m.checkpoint_digest,
        "schema_hash": m.schema_hash,
        "data_digests": dict(m.data_digests),
        "bootstrap": {"unit": "episode", "method": "percentile",
                      "n_resamples": comp.n_resamples, "confidence": comp.confidence,
                      "seed": comp.seed},
        "labels_averaged": [comp.class_names[c] for c in comp.labels],
    }


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _breakdown_table(comp: Comparison, key: str) -> list[str]:
    models = [m for m in comp.models if key in m.breakdowns]
    values = sorted({s.value for m in models for s in m.breakdowns[key]})
    if not values:
        return []
    extra = list(comp.untested_profiles) if key == "profile" else []
    header = ["model", *values, *(f"{v} (untested)" for v in extra)]
    rows = []
    for m in [*models, comp.baseline]:
        cells = {s.value: _stratum_cell(s) for s in m.breakdowns.get(key, ())}
        rows.append([m.name, *(cells.get(v, "—") for v in values), *("untested" for _ in extra)])
    n_ep = {s.value: s.n_episodes for s in models[0].breakdowns[key]} if models else {}
    lines = [f"## Macro F1 per {key}", "",
             "Each cell bootstraps only that stratum's episodes "
             f"({', '.join(f'{v}: {n_ep.get(v, 0)} episodes' for v in values)}); "
             "intervals of small strata are wide, by design, and a stratum with fewer than "
             f"{MIN_CI_EPISODES} episodes gets no interval (too few distinct resamples).", ""]
    return lines + _table(header, rows)


def comparison_markdown(comp: Comparison, *, plots: dict[str, str] | None = None) -> str:
    """The text of ``comparison.md``."""
    plots = plots or {}
    pct = f"{comp.confidence:.0%}"
    averaged = ", ".join(comp.class_names[c] for c in comp.labels)
    lines = [
        "# Model comparison on the held-out test split", "",
        f"Test split: **{comp.n_windows} windows from {comp.n_episodes} episodes**. "
        f"Intervals are {pct} percentile-bootstrap intervals over **episodes** "
        f"(windows of one episode are correlated), {comp.n_resamples} resamples, "
        f"seed {comp.seed}. Macro F1 is the unweighted mean of the per-class F1 of: "
        f"{averaged}.", "",
        f"Δ vs best = this model's macro F1 minus that of the best ({comp.best}), on the "
        "same resamples; p is the two-sided paired-bootstrap p-value, p (Holm) is "
        f"Holm-adjusted over the {max(len(comp.models) - 1, 0)} comparisons with the best. "
        f"The smallest attainable p is 2/(B+1) = {2 / (comp.n_resamples + 1):.4f}. The best "
        "is the reference row only; no model is selected on the test split.", "",
    ]
    if comp.n_episodes < 30:
        lines += [f"**Caution:** only {comp.n_episodes} test episodes. The percentile "
                  "bootstrap under-covers with few clusters (in our simulation a nominal 95 % "
                  "interval covers ~89 % at 12 episodes, ~92 % at 30, ~94 % at 100): read the "
                  "intervals as optimistic.", ""]
    lines += ["## Models by macro F1", ""]
    rows = []
    for i, m in enumerate(comp.models, 1):
        d = m.vs_best
        rows.append([str(i), m.model, m.mode, _ci(m.macro_f1), _ci(m.accuracy),
                     "reference" if d is None else
                     f"{d.difference:+.3f} [{d.low:+.3f}, {d.high:+.3f}]",
                     _p(None if d is None else d.pvalue), _p(m.p_holm)])
    b = comp.baseline
    rows.append(["—", f"majority: always `{comp.class_names[comp.majority_class]}`",
                 f"baseline ({comp.majority_source} majority)", _ci(b.macro_f1),
                 _ci(b.accuracy), "", "", ""])
    lines += _table(["#", "model", "mode", f"macro F1 [{pct} CI]", f"accuracy [{pct} CI]",
                     "Δ vs best [CI]", "p", "p (Holm)"], rows)
    if "forest" in plots:
        lines += [f"![macro F1 with {pct} CIs]({plots['forest']})", ""]

    lines += ["## Per-class (per-phase) F1", ""]
    rows = [[m.name, *(_ci(c.f1) for c in m.per_class)] for m in [*comp.models, b]]
    support = ", ".join(f"{c.name}: {c.support}" for c in b.per_class)
    lines += [f"Test windows per class — {support}.", ""]
    lines += _table(["model", *comp.class_names], rows)

    lines += ["## Untested profiles", ""]
    if comp.untested_profiles:
        lines += [f"- `{p}`: no test windows under this split — not scored, and not "
                  "averaged into any number in this report." for p in comp.untested_profiles]
    else:
        lines += ["None: every profile known to the split has test windows."]
    lines += [""]
    lines += _breakdown_table(comp, "profile")
    lines += _breakdown_table(comp, "host")

    imp = [m for m in comp.models if m.importance is not None]
    if imp:
        channels = sorted({c for m in imp for c in m.importance.drop})
        lines += ["## Permutation importance", "",
                  "Drop in test macro F1 when one channel is shuffled across test windows "
                  "(the same permutations for every model; "
                  f"{imp[0].importance.n_repeats} repeat(s), seed {imp[0].importance.seed}). "
                  "Larger = the model relies on it more; blank = the mode lacks the channel.",
                  ""]
        def cell(m, c):
            return f"{m.importance.drop[c]:+.3f}" if c in m.importance.drop else ""

        if len(channels) <= 12:
            rows = [[m.name, f"{m.importance.base_macro_f1:.3f}", *(cell(m, c) for c in channels)]
                    for m in imp]
            lines += _table(["model", "macro F1", *channels], rows)
        else:                         # many channels: one row per channel
            rows = [["(macro F1 intact)", *(f"{m.importance.base_macro_f1:.3f}" for m in imp)]]
            rows += [[c, *(cell(m, c) for m in imp)] for c in channels]
            lines += _table(["channel", *(m.name for m in imp)], rows)
        if "importance" in plots:
            lines += [f"![permutation importance]({plots['importance']})", ""]

    if any(k.startswith("confusion:") for k in plots):
        lines += ["## Confusion matrices", ""]
        lines += [f"![{k[len('confusion:'):]}]({v})" for k, v in plots.items()
                  if k.startswith("confusion:")]
        lines += [""]

    lines += ["## Provenance", ""]
    lines += _table(["model", "checkpoint digest", "schema hash"],
                    [[m.name, f"`{m.checkpoint_digest or '—'}`", f"`{m.schema_hash or '—'}`"]
                     for m in comp.models])
    digests: dict[str, set] = {}
    for m in comp.models:
        for k, v in m.data_digests.items():
            digests.setdefault(k, set()).add(v)
    if digests:
        lines += ["Data digests (sha256):", ""]
        lines += [f"- {k}: `{', '.join(sorted(v))}`" + (" — **differs between models**"
                                                         if len(v) > 1 else "")
                  for k, v in sorted(digests.items())]
        lines += [""]
    return "\n".join(lines)


def write_report(comp: Comparison, out_dir: str | os.PathLike, *, plots: bool = True) -> list[Path]:
    """Write every report file into ``out_dir`` (created); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    refs: dict[str, str] = {}
    if plots:
        from .plots import confusion_plot, forest_plot, importance_plot
        written.append(forest_plot(comp, out / "forest_macro_f1.png"))
        refs["forest"] = "forest_macro_f1.png"
        for m in comp.models:
            p = confusion_plot(m, comp.class_names, out / f"{m.name}_confusion.png")
            written.append(p)
            refs[f"confusion:{m.name}"] = p.name
        p = importance_plot(comp, out / "importance.png")
        if p is not None:
            written.append(p)
            refs["importance"] = p.name
    for m in comp.models:
        path = out / f"{m.name}_eval.json"
        atomic_write(path, json.dumps(model_json(m, comp), indent=2, sort_keys=True) + "\n")
        written.append(path)
    summary = {"best": comp.best, "untested_profiles": list(comp.untested_profiles),
               "models": [model_json(m, comp) for m in comp.models],
               "baseline": {**model_json(comp.baseline, comp),
                            "majority_class": comp.class_names[comp.majority_class],
                            "majority_source": comp.majority_source}}
    path = out / "comparison.json"
    atomic_write(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    written.append(path)
    path = out / "comparison.md"
    atomic_write(path, comparison_markdown(comp, plots=refs) + "\n")
    written.append(path)
    return written


def render_table(comp: Comparison):
    """The terminal view: models by macro F1 with CIs and significance vs best."""
    from rich.table import Table

    pct = f"{comp.confidence:.0%}"
    t = Table(title=f"Test split: {comp.n_windows} windows, {comp.n_episodes} episodes "
                    f"({pct} episode-bootstrap CIs, B={comp.n_resamples}, seed={comp.seed})",
              caption=("untested profiles: " + ", ".join(comp.untested_profiles))
              if comp.untested_profiles else "untested profiles: none")
    for col, just in (("#", "right"), ("model", "left"), ("mode", "left"),
                      ("macro F1", "right"), (f"{pct} CI", "left"), ("accuracy", "right"),
                      ("Δ vs best", "right"), ("p (Holm)", "right")):
        t.add_column(col, justify=just)
    for i, m in enumerate(comp.models, 1):
        d = m.vs_best
        sig = d is not None and m.p_holm is not None and m.p_holm < 1 - comp.confidence
        t.add_row(str(i), m.model, m.mode, f"{m.macro_f1.point:.3f}",
                  f"[{m.macro_f1.low:.3f}, {m.macro_f1.high:.3f}]", f"{m.accuracy.point:.3f}",
                  "best" if d is None else f"{d.difference:+.3f}",
                  "" if m.p_holm is None else f"{m.p_holm:.3f}" + (" *" if sig else ""),
                  style="bold" if d is None else None)
    b = comp.baseline
    t.add_row("—", "majority", "baseline", f"{b.macro_f1.point:.3f}",
              f"[{b.macro_f1.low:.3f}, {b.macro_f1.high:.3f}]", f"{b.accuracy.point:.3f}",
              "", "", style="dim")
    return t
