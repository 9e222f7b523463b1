"""Write a ``Comparison`` as ``comparison.md``, per-model JSON and PNGs; render it for the terminal.

Layout of ``reports/eval/`` (every file published with ``atomic_write``):

- ``comparison.md``         the report a reviewer reads: detection first, phase
                            attribution after (see docs/EVALUATION.md)
- ``comparison.json``       everything in ``comparison.md``, machine-readable
- ``<name>_eval.json``      one per model and baseline (``name`` = ``<model>_<mode>``,
                            or the baseline's name): the keys of docs/EVALUATION.md
- ``predictions/<name>.parquet``  the per-window scores every number comes from
                            (written by ``run.py`` before the report)
- PNGs: ``roc_pr.png``, ``operating_curve.png``, ``time_to_detect.png``,
  ``reliability.png``, ``learning_curves.png``, ``forest_macro_f1.png``,
  ``<name>_confusion.png``, ``importance.png``

JSON holds no NaN: an undefined number is ``null``. ``render_table(comp)`` is
pure: it builds a ``rich.table.Table`` and prints nothing.

Leave-one-host-out (``write_loho_report(result, dir)``, ``run.run_loho``):
each evaluated fold's full report above in ``leave-one-host-out/<host>/``,
and at the top a summary ``comparison.md`` / ``comparison.json`` (per
held-out host: detection rate at τ, false alarms per host-day, ROC AUC; the
folds, the untrained ones, links); ``render_loho_table`` is its terminal view.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

from cis490.common import atomic_write
from cis490.models.checkpoint import json_safe

from .compare import BASE_RATES, MIN_CI_EPISODES, Comparison, ModelEval

__all__ = ["comparison_json", "comparison_markdown", "loho_json", "loho_markdown", "model_json",
           "render_loho_table", "render_table", "write_loho_report", "write_report"]

FLAG_TEXT = "not better than clock-only: may be learning episode time"


def _ci_dict(ci, reported: bool = True) -> dict:
    if not reported:
        return {"point": ci.point, "low": None, "high": None}
    return {"point": ci.point, "low": ci.low, "high": ci.high}


def _num(x, fmt: str = ".3f") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _ci(ci, fmt: str = ".3f") -> str:
    if not math.isfinite(ci.point):
        return "—"
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return f"{format(ci.point, fmt)} (no CI)"
    return f"{format(ci.point, fmt)} [{format(ci.low, fmt)}, {format(ci.high, fmt)}]"


def zero_event_bounds(m: ModelEval, stride_s: float) -> dict:
    """Rule-of-three 95 % bounds where no event was seen (the bootstrap gives [x, x] there).

    Zero false alarms in T benign host-days bound the rate by 3 / T per day; a
    share of n episodes observed at 0 (or 1) is bounded by 3 / n (or 1 − 3 / n);
    no flagged benign window out of n bounds the FPR by 3 / n (counting windows
    as independent, which correlated windows are not: the true bound is looser),
    and so the precision at a base rate from below.
    """
    d, out = m.detection, {}
    days = d.benign_host_seconds / 86400
    if d.ci["false_alarms_per_host_day"].point == 0 and days > 0:
        out["false_alarms_per_host_day_upper_95"] = 3.0 / days
    n_benign = d.benign_host_seconds / stride_s
    tpr = d.ci["tpr"].point
    if d.ci["fpr"].point == 0 and n_benign > 0:
        fpr_hi = min(1.0, 3.0 / n_benign)
        out["fpr_upper_95"] = fpr_hi
        if tpr > 0:
            for r in BASE_RATES:
                pi = float(r)
                out[f"precision@{r}_lower_95"] = tpr * pi / (tpr * pi + fpr_hi * (1 - pi))
    n = d.n_infected
    for key in ("episode_detection_rate", "alarms_before_onset"):
        pt = d.ci[key].point
        if n > 0 and pt == 0:
            out[f"{key}_upper_95"] = min(1.0, 3.0 / n)
        elif n > 0 and pt == 1:
            out[f"{key}_lower_95"] = max(0.0, 1.0 - 3.0 / n)
    return out


def _bounded(m: ModelEval, comp: Comparison, key: str, fmt: str = ".3f") -> str:
    """A CI cell, or the rule-of-three bound when the statistic sits at 0 (or 1)."""
    b = zero_event_bounds(m, comp.stride_s)
    ci = m.detection.ci[key]
    if f"{key}_upper_95" in b:
        return f"{format(ci.point, fmt)} (≤ {format(b[f'{key}_upper_95'], fmt)})"
    if f"{key}_lower_95" in b:
        return f"{format(ci.point, fmt)} (≥ {format(b[f'{key}_lower_95'], fmt)})"
    return _ci(ci, fmt)


def _tau(d, seed: int) -> str:
    """τ on the score, with P(clean) where 1 − P rounds (a confident detector's τ)."""
    t, p = d.thresholds[seed], d.thresholds_p_clean[seed]
    if p < 0:
        return "never alarms"
    return f"{t:.4f}" if p >= 1e-4 else f"{t:.4f} (P(clean) ≤ {p:.2e})"


def _p(t, floor: float, holm: bool = False) -> str:
    if t is None:
        return "—"
    p = t.p_holm if holm else t.pvalue
    return f"≤ {p:.3f}" if t.at_floor else f"{p:.3f}"


def _date(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d")


AUT_CITATION = ("TESSERACT's area under time (Pendlebury et al., \"TESSERACT: Eliminating "
                "Experimental Bias in Malware Classification across Space and Time\", USENIX "
                "Security 2019)")


def _weeks_text(ws) -> str:
    return ", ".join(str(w) for w in ws) or "none"


def aut_note(ot) -> str:
    """One sentence on what entered the AUT (or why there is none)."""
    if ot.reason:
        return f"no AUT: {ot.reason}"
    text = (f"AUT of the episode detection rate over the {len(ot.weeks_used)} test weeks holding "
            f"an infected episode (weeks {_weeks_text(ot.weeks_used)})")
    if ot.skipped:
        text += f"; weeks without an infected episode were skipped ({_weeks_text(ot.skipped)})"
    return text


def _week_json(w, used) -> dict:
    return {"week": w.week, "start_ns": w.start_ns, "start": _date(w.start_ns),
            "n_episodes": w.n_episodes, "n_infected_episodes": w.n_infected,
            "n_benign_only_episodes": w.n_benign_only,
            "benign_host_days": w.benign_host_seconds / 86400,
            "episode_detection_rate": _ci_dict(w.detection_rate),
            "false_alarms_per_host_day": _ci_dict(w.false_alarms_per_host_day),
            "in_aut": w.week in used, "ci_notes": dict(w.ci_notes)}


def _over_time_json(m: ModelEval) -> dict:
    ot = m.over_time
    if ot is None:
        return {"per_week": [], "aut_detection_rate": {
            "value": None, "ci": None, "weeks_used": [], "weeks_skipped": [],
            "note": "no AUT: no test weeks were computed"}}
    ci = None
    if math.isfinite(ot.aut.low) and math.isfinite(ot.aut.high):
        ci = {"low": ot.aut.low, "high": ot.aut.high}
    note = aut_note(ot)
    why = m.detection.ci_notes.get("aut_detection_rate")
    if not ot.reason and why:
        note += f"; no interval: {why}"
    return {"per_week": [_week_json(w, ot.weeks_used) for w in ot.weeks],
            "aut_detection_rate": {"value": ot.aut.point, "ci": ci,
                                   "weeks_used": list(ot.weeks_used),
                                   "weeks_skipped": list(ot.skipped), "note": note,
                                   "method": "1/(N-1) * sum_{k=1}^{N-1} (f(k) + f(k+1)) / 2, "
                                             "f = episode detection rate at tau per test week"}}


def _stratum_cell(s) -> str:
    if s.ci_reported:
        return _ci(s.macro_f1)
    return f"{s.macro_f1.point:.3f} (no CI: {s.n_episodes} ep.)"


# --------------------------------------------------------------------------- JSON


def model_json(m: ModelEval, comp: Comparison) -> dict:
    """Everything known about one model's (or baseline's) score, JSON-ready."""
    d, c = m.detection, m.calibration
    ci = d.ci
    return json_safe({
        "model": m.model, "mode": m.mode, "name": m.name, "family": m.family,
        "seeds": list(m.seeds), "n_windows": m.n_windows, "n_episodes": m.n_episodes,
        "detection": {
            "threshold": d.threshold, "thresholds_per_seed": dict(d.thresholds),
            "threshold_p_clean_per_seed": dict(d.thresholds_p_clean),
            "consecutive": d.consecutive, "budget_false_alarms_per_host_day": d.budget,
            "benign_host_seconds": d.benign_host_seconds,
            "val_benign_host_seconds": d.val_benign_host_seconds,
            "false_alarms_per_host_day": _ci_dict(ci["false_alarms_per_host_day"]),
            "episode_detection_rate": _ci_dict(ci["episode_detection_rate"]),
            "roc_auc": _ci_dict(ci["roc_auc"]), "pr_auc": _ci_dict(ci["pr_auc"]),
            "time_to_detect_s": {"median": _ci_dict(ci["ttd_median"]),
                                 "p90": _ci_dict(ci["ttd_p90"])},
            "alarms_before_onset": _ci_dict(ci["alarms_before_onset"]),
            "precision_at_base_rate": {r: _ci_dict(ci[f"precision@{r}"]) for r in BASE_RATES},
            "tpr": _ci_dict(ci["tpr"]), "fpr": _ci_dict(ci["fpr"]),
            "n_infected_episodes": d.n_infected, "n_detected_episodes": d.n_detected,
            "n_false_alarms": d.n_false_alarms, "validation": dict(d.val),
            "auc_binning_bound": d.auc_bin_bound,
            "zero_event_bounds": zero_event_bounds(m, comp.stride_s),
            "ci_notes": dict(d.ci_notes),
        },
        "calibration": {"ece_val": c.ece_val, "ece_test": c.ece_test.point,
                        "ece_test_ci": _ci_dict(c.ece_test), "bins": 15,
                        "temperature": c.temperature, "ece_val_scaled": c.ece_val_scaled,
                        "ece_test_scaled": c.ece_test_scaled},
        "phase": {
            "macro_f1": _ci_dict(m.macro_f1), "accuracy": _ci_dict(m.accuracy),
            "labels_averaged": [comp.class_names[k] for k in comp.labels],
            "per_class": {s.name: {"label": s.label, "support": s.support, "f1": _ci_dict(s.f1)}
                          for s in m.per_class},
            "confusion": [list(r) for r in m.confusion],
            "breakdowns": {key: {s.value: {"n_windows": s.n_windows, "n_episodes": s.n_episodes,
                                           "ci_reported": s.ci_reported,
                                           "macro_f1": _ci_dict(s.macro_f1, s.ci_reported),
                                           "accuracy": _ci_dict(s.accuracy, s.ci_reported)}
                                 for s in strata} for key, strata in m.breakdowns.items()},
        },
        "vs_best": {k: (None if t is None else t.as_dict()) for k, t in m.vs_best.items()},
        "vs_clock_only": {k: t.as_dict() for k, t in m.vs_clock.items()},
        "clock_only_flag": list(m.clock_flag),
        **_over_time_json(m),
        "untested_profiles": list(comp.untested_profiles),
        "importance": None if m.importance is None else m.importance.as_dict(),
        "provenance": dict(m.meta),
        "bootstrap": {"unit": "episode", "method": "percentile", "n_resamples": comp.n_resamples,
                      "confidence": comp.confidence, "seed": comp.seed,
                      "p_floor": comp.p_floor},
    })


def comparison_json(comp: Comparison) -> dict:
    return json_safe({
        "provenance": dict(comp.provenance),
        "families": {f: [m.name for m in comp.family(f)] for f in ("realistic", "oracle")},
        "best": {f"{fam}/{metric}": name for (fam, metric), name in sorted(comp.best.items())},
        "untested_profiles": list(comp.untested_profiles),
        "models": [model_json(m, comp) for m in comp.models],
        "baselines": {m.name: model_json(m, comp) for m in comp.baselines},
        "settings": {"consecutive": comp.consecutive, "false_alarm_budget_per_host_day": comp.budget,
                     "window_stride_s": comp.stride_s, "n_resamples": comp.n_resamples,
                     "confidence": comp.confidence, "bootstrap_seed": comp.seed},
    })


# --------------------------------------------------------------------------- markdown


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _banner(comp: Comparison) -> list[str]:
    prov = comp.provenance
    lines = []
    if prov.get("synthetic"):
        lines += [f"> **Synthetic data.** This store was written by `cis490 synth` (collector "
                  f"{', '.join(prov.get('collectors') or ['?'])}). The numbers describe the "
                  "generator, not real malware.", ""]
    elif prov.get("collectors") is None:
        lines += ["> **Data origin unknown**: the validation table records no collector version "
                  "(written before it did); re-run `cis490 validate` to record it.", ""]
    rows = [[k, v] for k, v in (
        ("validation table", f"`{prov.get('validation', '?')}` (sha256 `{prov.get('validation_sha256', '?')[:16]}…`)"),
        ("collector(s)", ", ".join(prov.get("collectors") or ["unknown"])),
        ("split", f"{prov.get('recipe', '?')} (split seed {prov.get('split_seed', '?')}); train hosts "
                  f"{', '.join(prov.get('train_hosts', [])) or '—'}; test hosts "
                  f"{', '.join(prov.get('test_hosts', [])) or '—'}"),
        ("episodes", f"train {prov.get('n_train', '?')}, val {prov.get('n_val', '?')}, test "
                     f"{prov.get('n_test', '?')}"),
        ("test windows", f"{comp.n_windows} from {comp.n_episodes} episodes"),
        ("onsets", prov.get("onsets", "?")),
    )]
    return lines + ["What this report ran on:", ""] + _table(["", ""], rows)


def _detection_rows(models, comp: Comparison, *, with_tests: bool) -> list[list[str]]:
    rows = []
    for i, m in enumerate(models, 1):
        ci = m.detection.ci
        t = m.vs_best.get("roc_auc") if with_tests else None
        diff = ("reference" if with_tests and t is None and not m.is_baseline else
                "" if t is None else f"{t.difference:+.3f} [{t.low:+.3f}, {t.high:+.3f}]")
        rows.append([str(i) if not m.is_baseline else "—", m.name, _ci(ci["roc_auc"]),
                     _ci(ci["pr_auc"]), _bounded(m, comp, "false_alarms_per_host_day", ".2f"),
                     _bounded(m, comp, "episode_detection_rate"), _ci(ci["ttd_median"], ".0f"),
                     _ci(ci["ttd_p90"], ".0f"), _bounded(m, comp, "alarms_before_onset"), diff,
                     _p(t, comp.p_floor, holm=True) if with_tests and not m.is_baseline else "",
                     "⚠ clock" if m.clock_flag else ""])
    return rows


_LABEL = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "false_alarms_per_host_day": "false alarms",
          "episode_detection_rate": "detection rate", "ttd_median": "time to detect (median)",
          "ttd_p90": "time to detect (p90)", "alarms_before_onset": "alarms before onset"}

DETECTION_HEADER = ["#", "model", "ROC AUC", "PR AUC", "false alarms / host-day",
                    "episodes detected", "time to detect, median (s)", "p90 (s)",
                    "infected eps. alarmed before onset", "Δ ROC AUC vs best", "p (Holm)", "flag"]


def _detection_section(comp: Comparison, plots: dict) -> list[str]:
    pct = f"{comp.confidence:.0%}"
    lines = ["## Detection: malicious vs benign", "",
             f"Benign = `clean` windows. Each model's threshold τ was fixed on **validation** only: "
             f"the highest validation episode detection rate whose validation false alarms stay "
             f"≤ {comp.budget:g} per benign host-day. An alarm is the first window of a run of "
             f"≥ {comp.consecutive} consecutive window(s) with score ≥ τ (score = 1 − P(clean)); "
             "it is false when that window is benign, and it fires at the run's "
             f"k-th window (k = {comp.consecutive}), from which time to detect is counted (from "
             f"the infection onset). Every figure has a {pct} episode-bootstrap interval "
             f"(B = {comp.n_resamples}); the test data never moves τ. Δ and p compare ROC AUC "
             "with the best model of the same family on the same resamples, Holm-adjusted "
             f"within the family; the smallest attainable p is 2/(B+1) = {comp.p_floor:.4f}, and "
             "a p there is written \"≤\" (an upper bound). Where no event was seen the bootstrap "
             "interval collapses to [0, 0], which would read as certainty; such a cell shows the "
             "95 % rule-of-three bound instead: \"0.00 (≤ b)\" false alarms per host-day with "
             "b = 3 / (test benign host-days), and a share of n infected episodes at 0 or 1 "
             "bounded by 3/n or 1 − 3/n.", ""]
    for family, title in (("realistic", "Realistic models (what a deployed defender sees)"),
                          ("oracle", "Oracle models — a ceiling (they also see the sample's "
                                     "own process tree); never compared with the realistic family")):
        models = comp.family(family)
        if not models:
            continue
        lines += [f"### {title}", ""]
        lines += _table(DETECTION_HEADER, _detection_rows(models, comp, with_tests=True)
                        + _detection_rows(comp.baselines, comp, with_tests=False))
    notes = sorted({f"{m.name}: {_LABEL.get(k, k)} — {why}" for m in comp.everything
                    for k, why in m.detection.ci_notes.items() if k in _LABEL})
    if notes:
        lines += ["No interval where too few episodes stand behind a figure (fewer than "
                  f"{MIN_CI_EPISODES}) or it is undefined in over 5 % of the resamples:", ""]
        lines += [f"- {n}" for n in notes] + [""]
    if comp.baselines:
        lines += ["Baselines (rows `—`, in no family): `majority` (train class frequencies), "
                  "`clock-only` (sees only the seconds since the episode started), `rule-zscore` "
                  "(largest robust |z| of a realistic channel against its host's benign training "
                  "windows), `logreg` (logistic regression on the realistic summary features).", ""]
    for key, name in (("roc_pr", "ROC and PR curves"), ("operating", "operating curve"),
                      ("ttd", "time to detect")):
        if key in plots:
            lines += [f"![{name}]({plots[key]})", ""]
    return lines


def _over_time_section(comp: Comparison) -> list[str]:
    lines = ["## Detection over time (test weeks)", ""]
    ref = next((m.over_time for m in comp.everything if m.over_time is not None), None)
    if ref is None or not ref.weeks:
        why = ref.reason if ref is not None and ref.reason else "no test weeks"
        return lines + [f"No per-week figures: {why}.", ""]
    if len(ref.weeks) < 2:
        w = ref.weeks[0]
        return lines + [f"The test split spans less than 2 weeks (every test episode started in "
                        f"the week from {_date(w.start_ns)}): no per-week table and no AUT.", ""]
    lines += [f"Week k holds the test episodes that started in [t₀ + 7k days, t₀ + 7(k+1) days), "
              f"t₀ = the earliest test episode's start ({_date(ref.weeks[0].start_ns)}); a week "
              "holds whole episodes, and weeks without any test episode are not shown. Cells: the "
              "episode detection rate at each model's validation τ (— = no infected episode that "
              "week); the header gives the week's start and its infected / benign-only episodes. "
              f"AUT = {AUT_CITATION}: AUT(f, N) = 1/(N−1) · Σ_(k=1..N−1) (f(k) + f(k+1)) / 2 over "
              "the N weeks that hold an infected episode, taken in order (weeks without one are "
              f"skipped, not counted as 0); its {comp.confidence:.0%} interval resamples episodes "
              "like every other figure.", ""]
    header = ["model", *(f"wk {w.week} · {_date(w.start_ns)} ({w.n_infected} inf / "
                         f"{w.n_benign_only} ben)" for w in ref.weeks), "AUT"]
    rows = []
    for m in comp.everything:
        ot = m.over_time
        cells = {w.week: _num(w.detection_rate.point, ".2f") for w in (ot.weeks if ot else ())}
        rows.append([m.name, *(cells.get(w.week, "—") for w in ref.weeks),
                     "—" if ot is None else _ci(ot.aut)])
    lines += _table(header, rows)
    lines += [f"- {aut_note(ref)}."]
    notes = sorted({f"{m.name}: AUT — {m.detection.ci_notes['aut_detection_rate']}"
                    for m in comp.everything if m.over_time is not None and not m.over_time.reason
                    and "aut_detection_rate" in m.detection.ci_notes})
    if notes:
        lines += [f"- no AUT interval (fewer than {MIN_CI_EPISODES} infected episodes behind it, "
                  "or undefined in over 5 % of the resamples — a resample that drew no infected "
                  "episode of some week):"] + [f"  - {n}" for n in notes]
    return lines + [""]


def _clock_section(comp: Comparison) -> list[str]:
    if not any(m.vs_clock for m in comp.models):
        return []
    lines = ["## Shortcut check: better than the clock?", "",
             "`clock-only` sees nothing but the seconds since its episode started. A model that "
             "is not significantly better than it (paired bootstrap, Holm within its family, per "
             "metric) may be learning episode time rather than behaviour.", ""]
    rows = []
    for m in comp.models:
        cells = [m.name]
        for metric in ("roc_auc", "macro_f1"):
            t = m.vs_clock.get(metric)
            cells += ["—" if t is None else f"{t.difference:+.3f} [{t.low:+.3f}, {t.high:+.3f}]",
                      _p(t, comp.p_floor, holm=True)]
        cells.append(f"**{FLAG_TEXT}** ({', '.join(m.clock_flag)})" if m.clock_flag else "better")
        rows.append(cells)
    return lines + _table(["model", "Δ ROC AUC vs clock-only", "p (Holm)",
                           "Δ macro F1 vs clock-only", "p (Holm)", "verdict"], rows)


def _operating_section(comp: Comparison) -> list[str]:
    lines = ["## Operating point", "",
             "τ per training seed (an alarm needs score ≥ τ, i.e. P(clean) ≤ 1 − τ; a "
             "detector that could meet the budget only by never alarming shows \"never "
             "alarms\"); validation figures are what τ was chosen on. Precision at a "
             "base rate π (the share of malicious windows a deployment would see) is "
             "TPR·π / (TPR·π + FPR·(1 − π)) from the test TPR and FPR of flagged windows "
             "(windows inside a qualifying run).", ""]
    rows, notes, short, zero_fpr = [], [], {}, []
    for m in comp.everything:
        d = m.detection
        fpr = d.ci["fpr"]
        rows.append([m.name, ", ".join(_tau(d, s) for s in m.seeds),
                     ", ".join(_num(d.val[s]["detection_rate"]) for s in m.seeds),
                     ", ".join(_num(d.val[s]["false_alarms_per_host_day"], ".2f") for s in m.seeds),
                     f"{d.val_benign_host_seconds / 86400:.3f}",
                     f"{d.benign_host_seconds / 86400:.3f}", _ci(d.ci["tpr"]),
                     _bounded(m, comp, "fpr", ".4f"),
                     *(_bounded(m, comp, f"precision@{r}") for r in BASE_RATES)])
        if math.isfinite(fpr.point) and fpr.point == 0 and d.benign_host_seconds > 0:
            zero_fpr.append(m.name)
        days = d.val_benign_host_seconds / 86400
        if days > 0 and comp.budget * days < 1:
            short.setdefault(round(days, 6), []).append(m.name)
    if zero_fpr:
        n_benign = comp.everything[0].detection.benign_host_seconds / comp.stride_s
        notes.append(f"- no flagged benign test window out of {n_benign:.0f} "
                     f"({', '.join(f'`{n}`' for n in zero_fpr)}): FPR 0 is shown with its "
                     "rule-of-three bound (≤ 3/n, counting windows as independent — they are "
                     "not, so the true bound is looser), and the precision at a base rate with "
                     "the lower bound that this FPR bound implies: a precision of 1.000 here "
                     "only says that no false positive was seen.")
    for days, names in sorted(short.items()):
        notes.append(f"- validation holds {days:.3f} benign host-days ({', '.join(f'`{n}`' for n in names)}), "
                     f"so a budget of {comp.budget:g} per host-day allows no validation false alarm "
                     "at all: τ is the threshold with zero validation false alarms.")
    lines += _table(["model", "τ", "val detection", "val FA / host-day", "val benign host-days",
                     "test benign host-days", "TPR", "FPR",
                     *(f"precision @ π={r}" for r in BASE_RATES)], rows)
    return lines + (notes + [""] if notes else [])


def _calibration_section(comp: Comparison, plots: dict) -> list[str]:
    lines = ["## Calibration of the detection score", "",
             "ECE: 15 equal-width bins, Σ |mean(y) − mean(score)| · bin share (y = malicious). "
             "Temperature scaling (T fitted on validation by multiclass log loss) is shown beside "
             "the raw scores; detection figures above use the raw scores.", ""]
    rows = [[m.name, _num(m.calibration.ece_val), _ci(m.calibration.ece_test),
             _num(m.calibration.temperature, ".2f"), _num(m.calibration.ece_val_scaled),
             _num(m.calibration.ece_test_scaled)] for m in comp.everything]
    lines += _table(["model", "ECE val", "ECE test", "T", "ECE val (scaled)", "ECE test (scaled)"],
                    rows)
    if "reliability" in plots:
        lines += [f"![reliability diagrams]({plots['reliability']})", ""]
    return lines


def _phase_rows(models, comp: Comparison) -> list[list[str]]:
    rows = []
    for i, m in enumerate(models, 1):
        t = m.vs_best.get("macro_f1")
        rows.append([str(i) if not m.is_baseline else "—", m.model, m.mode, _ci(m.macro_f1),
                     _ci(m.accuracy),
                     "" if m.is_baseline else "reference" if t is None else
                     f"{t.difference:+.3f} [{t.low:+.3f}, {t.high:+.3f}]",
                     "" if m.is_baseline else _p(t, comp.p_floor),
                     "" if m.is_baseline else _p(t, comp.p_floor, holm=True)])
    return rows


def _breakdown_table(comp: Comparison, key: str) -> list[str]:
    models = [m for m in comp.everything if m.breakdowns.get(key)]
    values = sorted({s.value for m in models for s in m.breakdowns[key]})
    if not values:
        return []
    extra = list(comp.untested_profiles) if key == "profile" else []
    header = ["model", *values, *(f"{v} (untested)" for v in extra)]
    rows = []
    for m in models:
        cells = {s.value: _stratum_cell(s) for s in m.breakdowns.get(key, ())}
        rows.append([m.name, *(cells.get(v, "—") for v in values), *("untested" for _ in extra)])
    n_ep = {s.value: s.n_episodes for s in models[0].breakdowns[key]}
    lines = [f"### Macro F1 per {key}", "",
             "Each cell bootstraps only that stratum's episodes "
             f"({', '.join(f'{v}: {n_ep.get(v, 0)} episodes' for v in values)}); "
             "intervals of small strata are wide, by design, and a stratum with fewer than "
             f"{MIN_CI_EPISODES} episodes gets no interval (too few distinct resamples).", ""]
    return lines + _table(header, rows)


def _phase_section(comp: Comparison, plots: dict) -> list[str]:
    pct = f"{comp.confidence:.0%}"
    averaged = ", ".join(comp.class_names[c] for c in comp.labels)
    lines = ["## Phase attribution", "",
             f"Which phase each window is in (argmax of the probabilities). Macro F1 = the "
             f"unweighted mean of the per-class F1 of: {averaged} — the same function, with the "
             "same label rule (classes present in the truth), that selected each checkpoint on "
             "validation. Δ vs best compares with the best of the same family; p (Holm) is "
             "adjusted within the family.", ""]
    header = ["#", "model", "mode", f"macro F1 [{pct} CI]", f"accuracy [{pct} CI]",
              "Δ vs best [CI]", "p", "p (Holm)"]
    for family in ("realistic", "oracle"):
        models = comp.family(family)
        if models:
            models = sorted(models, key=lambda m: (-m.macro_f1.point, m.name))
            lines += [f"### {family.capitalize()} family", ""]
            lines += _table(header, _phase_rows(models, comp) + _phase_rows(comp.baselines, comp))
    if "forest" in plots:
        lines += [f"![macro F1 with {pct} CIs]({plots['forest']})", ""]
    lines += ["### Per-class (per-phase) F1", ""]
    ref = comp.everything[0]
    lines += [f"Test windows per class — {', '.join(f'{c.name}: {c.support}' for c in ref.per_class)}.", ""]
    lines += _table(["model", *comp.class_names],
                    [[m.name, *(_ci(c.f1) for c in m.per_class)] for m in comp.everything])
    lines += ["### Untested profiles", ""]
    if comp.untested_profiles:
        lines += [f"- `{p}`: no test windows under this split — not scored, and not averaged "
                  "into any number in this report." for p in comp.untested_profiles]
    else:
        lines += ["None: every profile known to the split has test windows."]
    lines += [""] + _breakdown_table(comp, "profile") + _breakdown_table(comp, "host")
    lines += _importance_section(comp, plots)
    conf = [(k, v) for k, v in plots.items() if k.startswith("confusion:")]
    if conf:
        lines += ["### Confusion matrices", ""] + [f"![{k[10:]}]({v})" for k, v in conf] + [""]
    return lines


def _sample_phrase(r) -> str:
    cap = f"at most {r['max_episodes']} episodes" if r["max_episodes"] else "no cap"
    return (f"permutation importance on {r['n_episodes']} of {r['n_episodes_total']} test "
            f"episodes (sample by sha256(seed:episode) order: seed {r['seed']}, {cap}; "
            f"{r['n_windows']} of {r['n_windows_total']} windows)")


def importance_sample_text(imp) -> str:
    """The method statement of the importance sample (``Importance.sample``) — one sentence
    when every model had the same sample, else one per model."""
    records = {m.name: m.importance.sample for m in imp}
    if any(r is None for r in records.values()):      # computed outside `cis490 eval`
        return "Computed on the test windows it was given (no sample recorded)."
    distinct = {tuple(sorted(r.items())) for r in records.values()}
    if len(distinct) == 1:
        text = _sample_phrase(next(iter(records.values())))
        return text[0].upper() + text[1:] + ", the same episodes for every model."
    return "; ".join(f"{n}: {_sample_phrase(r)}" for n, r in records.items()) + "."


def _importance_section(comp: Comparison, plots: dict) -> list[str]:
    imp = [m for m in comp.models if m.importance is not None]
    if not imp:
        return []
    channels = sorted({c for m in imp for c in m.importance.drop})
    lines = ["### Permutation importance", "",
             "Drop in test macro F1 when one channel is shuffled across test windows (the same "
             f"permutations for every model; {imp[0].importance.n_repeats} repeat(s), seed "
             f"{imp[0].importance.seed}; the lowest training seed's checkpoint). Larger = the "
             "model relies on it more; blank = the mode lacks the channel. "
             + importance_sample_text(imp), ""]

    def cell(m, c):
        return f"{m.importance.drop[c]:+.3f}" if c in m.importance.drop else ""

    if len(channels) <= 12:
        rows = [[m.name, f"{m.importance.base_macro_f1:.3f}", *(cell(m, c) for c in channels)]
                for m in imp]
        lines += _table(["model", "macro F1", *channels], rows)
    else:                             # many channels: one row per channel
        rows = [["(macro F1 intact)", *(f"{m.importance.base_macro_f1:.3f}" for m in imp)]]
        rows += [[c, *(cell(m, c) for m in imp)] for c in channels]
        lines += _table(["channel", *(m.name for m in imp)], rows)
    if "importance" in plots:
        lines += [f"![permutation importance]({plots['importance']})", ""]
    return lines


def _seeds_section(comp: Comparison, plots: dict) -> list[str]:
    lines = ["## Training seeds and learning curves", ""]
    multi = [m for m in comp.models if len(m.seeds) > 1]
    if multi:
        lines += ["Models with several training seeds: each figure is the mean over seeds, and "
                  "each resample draws one seed, so the intervals hold seed and episode variance "
                  f"({', '.join(f'`{m.name}`: seeds {list(m.seeds)}' for m in multi)}).", ""]
    if any(len(m.seeds) == 1 for m in comp.models):
        lines += ["Models with ONE training seed: their intervals hold the episode variance only. "
                  "A second seed could land elsewhere inside or outside them (initialisation, "
                  "batch order and the validation carve-out are not resampled); list several "
                  "seeds in the manifest (`seed = [0, 1, 2]`) to measure it.", ""]
    if "learning" in plots:
        lines += [f"![learning curves]({plots['learning']})", ""]
    return lines


def _provenance_section(comp: Comparison) -> list[str]:
    rows = []
    for m in comp.models:
        ck = m.meta.get("checkpoints") or {}
        rows.append([m.name, "<br>".join(f"seed {s}: `{d}`" for s, d in sorted(ck.items())) or "—",
                     f"`{m.meta.get('schema_sha256') or '—'}`"])
    lines = ["## Provenance", ""] + _table(["model", "checkpoint digest(s)", "schema hash"], rows)
    for m in comp.baselines:
        lines.append(f"- `{m.name}`: fitted at evaluation time — "
                     f"{json.dumps(json_safe(m.meta.get('info', {})), sort_keys=True)}")
    return lines + [""]


def comparison_markdown(comp: Comparison, *, plots: dict[str, str] | None = None) -> str:
    """The text of ``comparison.md``: detection first, phase attribution after."""
    plots = plots or {}
    lines = ["# Detector evaluation on the held-out test split", ""]
    lines += _banner(comp)
    if comp.n_episodes < 30:
        lines += [f"**Caution:** only {comp.n_episodes} test episodes. The percentile bootstrap "
                  "under-covers with few clusters (in our simulation a nominal 95 % interval "
                  "covers ~89 % at 12 episodes, ~92 % at 30, ~94 % at 100): read the intervals "
                  "as optimistic.", ""]
    lines += _detection_section(comp, plots)
    lines += _over_time_section(comp)
    lines += _clock_section(comp)
    lines += _operating_section(comp)
    lines += _calibration_section(comp, plots)
    lines += _phase_section(comp, plots)
    lines += _seeds_section(comp, plots)
    lines += _provenance_section(comp)
    return "\n".join(lines)


def write_report(comp: Comparison, out_dir: str | os.PathLike, *, plots: bool = True) -> list[Path]:
    """Write every report file into ``out_dir`` (created); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    refs: dict[str, str] = {}
    if plots:
        from . import plots as p
        for key, fn, name in (("roc_pr", p.roc_pr_plot, "roc_pr.png"),
                              ("operating", p.operating_plot, "operating_curve.png"),
                              ("ttd", p.ttd_plot, "time_to_detect.png"),
                              ("reliability", p.reliability_plot, "reliability.png"),
                              ("learning", p.learning_plot, "learning_curves.png"),
                              ("forest", p.forest_plot, "forest_macro_f1.png"),
                              ("importance", p.importance_plot, "importance.png")):
            path = fn(comp, out / name)
            if path is not None:
                written.append(path)
                refs[key] = path.name
        for m in comp.models:
            path = p.confusion_plot(m, comp.class_names, out / f"{m.name}_confusion.png")
            written.append(path)
            refs[f"confusion:{m.name}"] = path.name
    for m in comp.everything:
        path = out / f"{m.name}_eval.json"
        atomic_write(path, json.dumps(model_json(m, comp), indent=2, sort_keys=True) + "\n")
        written.append(path)
    path = out / "comparison.json"
    atomic_write(path, json.dumps(comparison_json(comp), indent=2, sort_keys=True) + "\n")
    written.append(path)
    path = out / "comparison.md"
    atomic_write(path, comparison_markdown(comp, plots=refs) + "\n")
    written.append(path)
    return written


def render_table(comp: Comparison):
    """The terminal view: detection figures, phase macro F1 and the shortcut flag."""
    from rich import box
    from rich.table import Table

    pct = f"{comp.confidence:.0%}"
    caption = ("untested profiles: " + ", ".join(comp.untested_profiles)
               if comp.untested_profiles else "untested profiles: none")
    if any(m.clock_flag for m in comp.models):
        caption += "   ⚠ = not better than clock-only (may be learning episode time)"
    if comp.provenance.get("synthetic"):
        caption += "\nSYNTHETIC DATA (cis490 synth): the numbers describe the generator, not real malware"
    t = Table(title=f"Test split: {comp.n_windows} windows, {comp.n_episodes} episodes; {pct} "
                    f"episode-bootstrap CIs (B={comp.n_resamples}); τ fixed on validation for "
                    f"≤ {comp.budget:g} false alarm/host-day, k={comp.consecutive}",
              caption=caption, box=box.SIMPLE_HEAD, pad_edge=False)
    for col, just in (("#", "right"), ("model", "left"), (f"ROC AUC [{pct} CI]", "left"),
                      ("FA/day", "right"), ("detected", "right"), ("AUT", "right"),
                      ("TTD s", "right"),
                      ("macro F1", "right"), ("p (Holm)", "right"), ("", "left")):
        t.add_column(col, justify=just, no_wrap=True)

    def cells(m):
        ci = m.detection.ci
        auc = ci["roc_auc"]
        bound = zero_event_bounds(m, comp.stride_s).get("false_alarms_per_host_day_upper_95")
        return [m.name, f"{_num(auc.point)} [{_num(auc.low)}, {_num(auc.high)}]",
                _num(ci["false_alarms_per_host_day"].point, ".1f") if bound is None
                else f"0 (≤{bound:.0f})",
                _num(ci["episode_detection_rate"].point, ".2f"),
                _num(ci["aut_detection_rate"].point if "aut_detection_rate" in ci else None, ".2f"),
                _num(ci["ttd_median"].point, ".0f"), _num(m.macro_f1.point)]

    for family in ("realistic", "oracle"):
        models = comp.family(family)
        for i, m in enumerate(models, 1):
            tst = m.vs_best.get("roc_auc")
            sig = tst is not None and tst.p_holm < 1 - comp.confidence
            t.add_row(str(i), *cells(m),
                      "best" if tst is None else _p(tst, comp.p_floor, holm=True) + (" *" if sig else ""),
                      "⚠" if m.clock_flag else "", style="bold" if tst is None else None,
                      end_section=(i == len(models)))
    for m in comp.baselines:
        t.add_row("—", *cells(m), "", "", style="dim")
    return t


# --------------------------------------------------------------------------- leave-one-host-out

LOHO_DIR = "leave-one-host-out"
LOHO_METRICS = (("episode_detection_rate", "detection rate at τ"),
                ("false_alarms_per_host_day", "false alarms / host-day"),
                ("roc_auc", "ROC AUC"))


def _loho_rows(result) -> list[tuple[str, str, str]]:
    """(name, family, kind) of every model and baseline in any evaluated fold, in report order."""
    from .compare import BASELINE_NAMES

    seen: dict[str, str] = {}
    for f in result.evaluated:
        for m in f.comparison.everything:
            seen.setdefault(m.name, m.family)
    models = [n for fam in ("realistic", "oracle") for n in sorted(seen) if seen[n] == fam]
    base = [n for n in BASELINE_NAMES if n in seen]
    base += sorted(n for n, fam in seen.items() if fam == "baseline" and n not in base)
    return [(n, seen[n], "baseline" if seen[n] == "baseline" else "model") for n in models + base]


def _fold_model(fold, name: str):
    return next((m for m in fold.comparison.everything if m.name == name), None)


def _fold_link(fold, what: str = "comparison.md") -> str:
    return f"{LOHO_DIR}/{fold.held_out}/{what}"


def loho_json(result) -> dict:
    """The leave-one-host-out summary, JSON-ready (``comparison.json`` of the top level)."""
    folds = []
    for f in result.folds:
        c = f.comparison
        folds.append({"held_out_host": f.held_out, "train_hosts": list(f.train_hosts),
                      "status": f.status, "refused": f.refused or None,
                      "n_test_episodes": f.n_test_episodes,
                      "n_test_windows": c.n_windows if c else None,
                      "models": [m.name for m in c.everything] if c else [],
                      "report": _fold_link(f) if c else None,
                      "json": _fold_link(f, "comparison.json") if c else None})

    def per_fold(name: str) -> dict:
        out = {}
        for f in result.evaluated:
            m = _fold_model(f, name)
            if m is None:
                out[f.held_out] = None
                continue
            d = m.detection
            out[f.held_out] = {
                **{k: _ci_dict(d.ci[k]) for k, _ in LOHO_METRICS},
                "threshold": d.threshold, "n_test_episodes": m.n_episodes,
                "n_infected_episodes": d.n_infected,
                "zero_event_bounds": zero_event_bounds(m, f.comparison.stride_s),
                "ci_notes": {k: v for k, v in d.ci_notes.items() if k in dict(LOHO_METRICS)},
                "clock_only_flag": list(m.clock_flag)}
        return out

    rows = _loho_rows(result)
    first = result.evaluated[0].comparison
    return json_safe({
        "recipe": LOHO_DIR, "hosts": [f.held_out for f in result.folds], "folds": folds,
        "missing_folds": [f.held_out for f in result.missing],
        "refused_folds": {f.held_out: f.refused for f in result.refused},
        "models": [{"name": n, "family": fam, "per_fold": per_fold(n)}
                   for n, fam, kind in rows if kind == "model"],
        "baselines": {n: {"per_fold": per_fold(n)} for n, _, kind in rows if kind == "baseline"},
        "settings": {"consecutive": first.consecutive,
                     "false_alarm_budget_per_host_day": first.budget,
                     "window_stride_s": first.stride_s, "n_resamples": first.n_resamples,
                     "confidence": first.confidence, "bootstrap_seed": first.seed},
        "provenance": dict(result.provenance),
    })


def loho_markdown(result) -> str:
    """The top-level ``comparison.md`` of a leave-one-host-out evaluation."""
    prov = result.provenance
    first = result.evaluated[0].comparison
    lines = ["# Leave-one-host-out evaluation", ""]
    if prov.get("synthetic"):
        lines += [f"> **Synthetic data.** This store was written by `cis490 synth` (collector "
                  f"{', '.join(prov.get('collectors') or ['?'])}). The numbers describe the "
                  "generator, not real malware.", ""]
    lines += [f"One fold per host with usable episodes: fold *h* trains on every other host and "
              f"tests on *h* alone — the `host` split with those train hosts (split seed "
              f"{prov.get('split_seed', '?')}), whose checkpoints are the `host`-recipe jobs a "
              "leave-one-host-out manifest entry expands into. Each fold is a full evaluation "
              "(its own thresholds fixed on its validation, baselines fitted on its train split, "
              f"{first.confidence:.0%} episode-bootstrap intervals with B = {first.n_resamples}): "
              "see its report. Validation table "
              f"`{prov.get('validation', '?')}` (sha256 `{str(prov.get('validation_sha256', '?'))[:16]}…`).",
              ""]
    lines += ["## Folds", ""]
    rows = []
    for f in result.folds:
        c = f.comparison
        rows.append([f"`{f.held_out}`", ", ".join(f.train_hosts), str(f.n_test_episodes),
                     str(c.n_windows) if c else "—",
                     ", ".join(m.name for m in c.models) if c else f"**{f.status}**",
                     f"[comparison.md]({_fold_link(f)})" if c else "—"])
    lines += _table(["held-out host", "train hosts", "test episodes", "test windows", "models",
                     "report"], rows)
    if result.missing:
        lines += ["Not trained (no checkpoint for the fold's train hosts; not an error, and not "
                  "averaged into anything): " + ", ".join(
                      f"`{f.held_out}` (train hosts {', '.join(f.train_hosts)})"
                      for f in result.missing) + ".", ""]
    if result.refused:
        lines += ["Refused (the evaluation would not score the fold; its reason): " + "; ".join(
            f"`{f.held_out}`: {f.refused}" for f in result.refused) + ".", ""]
    lines += ["## Leave-one-host-out", "",
              "Per held-out host: the episode detection rate at the fold's validation τ, false "
              "alarms per benign host-day and ROC AUC, each with its interval (or the "
              "rule-of-three bound where no event was seen); — = the fold has no such model. "
              "Folds differ in test host and in training data, so a column is one deployment "
              "scenario, not a resample of another.", ""]
    header = ["model"]
    for f in result.evaluated:
        header += [f"`{f.held_out}` {label}" for _, label in LOHO_METRICS]
    table = []
    for name, _, kind in _loho_rows(result):
        row = [name if kind == "model" else f"{name} (baseline)"]
        for f in result.evaluated:
            m = _fold_model(f, name)
            if m is None:
                row += ["—"] * len(LOHO_METRICS)
                continue
            c = f.comparison
            row += [_bounded(m, c, "episode_detection_rate"),
                    _bounded(m, c, "false_alarms_per_host_day", ".2f"), _ci(m.detection.ci["roc_auc"])]
        table.append(row)
    lines += _table(header, table)
    lines += ["Test episodes per fold: " + ", ".join(
        f"`{f.held_out}` {f.n_test_episodes}" + ("" if f.trained else f" ({f.status})")
        for f in result.folds) + ".", ""]
    return "\n".join(lines)


def write_loho_report(result, out_dir: str | os.PathLike, *, plots: bool = True) -> list[Path]:
    """Each evaluated fold's full report in ``leave-one-host-out/<host>/``, then the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for f in result.evaluated:
        written += write_report(f.comparison, out / LOHO_DIR / f.held_out, plots=plots)
    path = out / "comparison.json"
    atomic_write(path, json.dumps(loho_json(result), indent=2, sort_keys=True) + "\n")
    written.append(path)
    path = out / "comparison.md"
    atomic_write(path, loho_markdown(result) + "\n")
    written.append(path)
    return written


def render_loho_table(result):
    """The terminal view of a leave-one-host-out evaluation (pure)."""
    from rich import box
    from rich.table import Table

    missing = ", ".join(f.held_out for f in result.missing)
    caption = "cell: detection rate at τ / false alarms per host-day / ROC AUC (points; CIs in " \
              "comparison.md)"
    if missing:
        caption += f"\nnot trained: {missing}"
    if result.refused:
        caption += "\nrefused: " + ", ".join(f.held_out for f in result.refused)
    if result.provenance.get("synthetic"):
        caption += "\nSYNTHETIC DATA (cis490 synth): the numbers describe the generator, not real malware"
    t = Table(title=f"Leave-one-host-out: {len(result.evaluated)} of {len(result.folds)} folds "
                    "evaluated (fold = held-out host)", caption=caption, box=box.SIMPLE_HEAD,
              pad_edge=False)
    t.add_column("model", justify="left", no_wrap=True)
    for f in result.evaluated:
        t.add_column(f"{f.held_out} ({f.comparison.n_episodes} ep.)", justify="right", no_wrap=True)
    rows = _loho_rows(result)
    for i, (name, _, kind) in enumerate(rows):
        cells = []
        for f in result.evaluated:
            m = _fold_model(f, name)
            if m is None:
                cells.append("—")
                continue
            ci = m.detection.ci
            cells.append(f"{_num(ci['episode_detection_rate'].point, '.2f')} / "
                         f"{_num(ci['false_alarms_per_host_day'].point, '.1f')} / "
                         f"{_num(ci['roc_auc'].point)}")
        last_model = kind == "model" and (i + 1 == len(rows) or rows[i + 1][2] != "model")
        t.add_row(name, *cells, style="dim" if kind == "baseline" else None,
                  end_section=last_model)
    return t
