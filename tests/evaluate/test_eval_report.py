"""The comparison and its report: detection first, families, shortcut flag, seeds, contract keys."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from rich.console import Console

from cis490.evaluate.compare import BASELINE_NAMES, compare
from cis490.evaluate.importance import Importance
from cis490.evaluate.predictions import Predictions, Windows, read_predictions, write_predictions
from cis490.evaluate.report import render_table, write_report
from cis490.evaluate.scoring import Context
from predsim import STRIDE_S, predictions, scored, world

UNTESTED = ("scan-and-dial",)
VAL = world(24, 1, prefix="v", hosts=("elliott-thinkpad",))
TEST = world(40, 2, prefix="t", hosts=("k-gamingcom", "other-host"))
CTX = Context(onset_ns={**VAL[5], **TEST[5]}, stride_s=STRIDE_S)
SKILLS = {("gbt", "realistic"): 0.8, ("mlp", "realistic"): 0.6, ("gru", "realistic"): 0.45,
          ("cnn", "oracle"): 1.1, ("gbt", "oracle"): 1.0}


def _preds(**over):
    out = [predictions(m, mode, s, VAL, TEST) for (m, mode), s in SKILLS.items()]
    out += [predictions("majority", "baseline", 0.0, VAL, TEST),
            predictions("clock-only", "baseline", 0.0, VAL, TEST, clock=True),
            predictions("rule-zscore", "baseline", 0.3, VAL, TEST),
            predictions("logreg", "baseline", 0.5, VAL, TEST)]
    return out


@pytest.fixture(scope="module")
def comp():
    imp = {"gbt_realistic": Importance(0.7, {"host": 0.2, "netflow": 0.1}, {}, 1, 0)}
    return compare(_preds(), CTX, n_resamples=400, seed=7, untested_profiles=UNTESTED,
                   importance=imp, provenance={"synthetic": True, "collectors": ["cis490-synth/1"]})


def test_oracle_models_are_a_ceiling_never_in_the_realistic_family(comp):
    realistic = [m.name for m in comp.family("realistic")]
    oracle = [m.name for m in comp.family("oracle")]
    assert realistic[0] == "gbt_realistic" and set(oracle) == {"cnn_oracle", "gbt_oracle"}
    # the oracle models are better, yet the realistic family's reference is realistic
    assert comp.best[("realistic", "roc_auc")] == "gbt_realistic"
    assert comp.best[("oracle", "roc_auc")] == "cnn_oracle"
    for m in comp.models:
        for metric, t in m.vs_best.items():
            if t is not None:
                assert t.against == comp.best[(m.family, metric)]
                assert t.p_holm >= t.pvalue
    # Holm within the family: two realistic comparisons, one oracle one
    gru = next(m for m in comp.models if m.name == "gru_realistic").vs_best["roc_auc"]
    cnn = next(m for m in comp.models if m.name == "gbt_oracle").vs_best["roc_auc"]
    assert cnn.p_holm == cnn.pvalue                          # a family of one comparison
    assert gru.p_holm <= min(1.0, 2 * gru.pvalue) + 1e-12
    aucs = [m.detection.ci["roc_auc"].point for m in comp.family("realistic")]
    assert aucs == sorted(aucs, reverse=True)


def test_test_labels_cannot_move_the_threshold(comp):
    rng = np.random.default_rng(3)

    def with_test(fn):
        out = []
        for p in _preds():
            test = {s: dataclasses.replace(w, y_true=fn(w.y_true)) for s, w in p.test.items()}
            out.append(dataclasses.replace(p, test=test))
        return compare(out, CTX, n_resamples=50, seed=7, untested_profiles=UNTESTED)

    shuffled = with_test(lambda y: rng.permutation(y))
    poisoned = with_test(lambda y: np.where(y == 0, 3, 0))
    want = {m.name: m.detection.thresholds for m in comp.everything}
    for other in (shuffled, poisoned):
        assert {m.name: m.detection.thresholds for m in other.everything} == want
    # the check can fail: the validation labels do move it
    val_poisoned = [dataclasses.replace(p, val={s: dataclasses.replace(w, y_true=np.where(
        w.y_true == 0, 3, 0)) for s, w in p.val.items()}) for p in _preds()]
    moved = compare(val_poisoned, CTX, n_resamples=50, seed=7, untested_profiles=UNTESTED)
    assert {m.name: m.detection.thresholds for m in moved.everything} != want


def test_a_model_no_better_than_clock_only_is_flagged():
    preds = [predictions("gbt", "realistic", 0.9, VAL, TEST),
             predictions("cnn", "realistic", 0.0, VAL, TEST, clock=True, salt=5),
             predictions("clock-only", "baseline", 0.0, VAL, TEST, clock=True)]
    comp = compare(preds, CTX, n_resamples=300, untested_profiles=UNTESTED)
    by = {m.name: m for m in comp.models}
    assert by["gbt_realistic"].clock_flag == ()
    assert set(by["cnn_realistic"].clock_flag) == {"roc_auc", "macro_f1"}
    assert by["cnn_realistic"].vs_clock["roc_auc"].against == "clock-only"


def test_report_leads_with_detection_and_lists_every_model_and_baseline(comp, tmp_path):
    written = write_report(comp, tmp_path)
    md = (tmp_path / "comparison.md").read_text()
    assert md.index("## Detection") < md.index("## Phase attribution")
    assert md.index("### Realistic models") < md.index("### Oracle models")
    assert "**Synthetic data.**" in md and "not real malware" in md
    for m in comp.everything:
        assert f"| {m.name} |" in md
        assert (tmp_path / f"{m.name}_eval.json").is_file()
    for m in comp.models:
        assert f"`{m.meta['checkpoints']['0']}`" in md
        assert (tmp_path / f"{m.name}_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "`scan-and-dial`: no test windows" in md and "scan-and-dial (untested)" in md
    assert "### Permutation importance" in md
    for name in ("roc_pr.png", "operating_curve.png", "time_to_detect.png", "reliability.png",
                 "learning_curves.png", "forest_macro_f1.png", "importance.png", "comparison.json"):
        assert (tmp_path / name) in written, name
    assert not list(tmp_path.glob(".*.tmp"))          # atomic writes left no debris


def test_eval_json_has_the_keys_scripts_rely_on(comp, tmp_path):
    write_report(comp, tmp_path, plots=False)
    ci = {"point", "low", "high"}
    for m in comp.everything:
        data = json.loads((tmp_path / f"{m.name}_eval.json").read_text())
        d = data["detection"]
        for key in ("threshold", "consecutive", "budget_false_alarms_per_host_day",
                    "benign_host_seconds", "val_benign_host_seconds"):
            assert isinstance(d[key], (int, float)), key
        for key in ("false_alarms_per_host_day", "episode_detection_rate", "roc_auc", "pr_auc"):
            assert set(d[key]) == ci, key
        assert set(d["time_to_detect_s"]) == {"median", "p90"}
        assert all(set(v) == ci for v in d["time_to_detect_s"].values())
        assert set(d["precision_at_base_rate"]) == {"1e-2", "1e-3", "1e-4"}
        assert isinstance(data["calibration"]["ece_val"], float)
        assert isinstance(data["calibration"]["ece_test"], float)
        assert set(data["phase"]["macro_f1"]) == ci
        assert d["benign_host_seconds"] == STRIDE_S * np.count_nonzero(TEST[4] == 0)
        assert d["val_benign_host_seconds"] == STRIDE_S * np.count_nonzero(VAL[4] == 0)
        assert set(data["phase"]["breakdowns"]["profile"]) == {"beacon", "io-walk", "fork-storm"}
        assert data["untested_profiles"] == list(UNTESTED)
    summary = json.loads((tmp_path / "comparison.json").read_text())
    assert set(summary["baselines"]) == set(BASELINE_NAMES)     # named exactly so
    assert summary["families"]["oracle"] == ["cnn_oracle", "gbt_oracle"]


def test_p_at_the_bootstrap_floor_is_written_as_a_bound(comp, tmp_path):
    mlp = next(m for m in comp.models if m.name == "mlp_realistic")
    t = mlp.vs_best["macro_f1"]
    assert t.at_floor and t.pvalue == pytest.approx(comp.p_floor)
    write_report(comp, tmp_path, plots=False)
    md = (tmp_path / "comparison.md").read_text()
    assert f"≤ {comp.p_floor:.3f}" in md
    data = json.loads((tmp_path / "mlp_realistic_eval.json").read_text())
    assert data["vs_best"]["macro_f1"]["p_at_floor"] is True


def test_seeds_are_combined_with_the_seed_variance():
    one = [predictions("gbt", "realistic", s, VAL, TEST, salt=i) for i, s in enumerate((0.4, 0.9))]
    both = dataclasses.replace(one[0], val={0: one[0].val[0], 1: one[1].val[0]},
                               test={0: one[0].test[0], 1: one[1].test[0]})
    singles = [compare([p], CTX, n_resamples=400).models[0] for p in one]
    multi = compare([both], CTX, n_resamples=400).models[0]
    assert multi.seeds == (0, 1)
    for metric in ("roc_auc", "episode_detection_rate"):
        pts = [s.detection.ci[metric].point for s in singles]
        ci = multi.detection.ci[metric]
        assert ci.point == pytest.approx(np.mean(pts))
        assert ci.low <= min(pts) and ci.high >= max(pts) or ci.high - ci.low > max(
            s.detection.ci[metric].high - s.detection.ci[metric].low for s in singles)
    assert multi.macro_f1.point == pytest.approx(np.mean([s.macro_f1.point for s in singles]))
    assert multi.macro_f1.high - multi.macro_f1.low > max(
        s.macro_f1.high - s.macro_f1.low for s in singles)
    assert set(multi.detection.thresholds) == {0, 1}


def test_render_table_shows_every_model_and_the_flags(comp):
    buf = io.StringIO()
    Console(file=buf, width=160, color_system=None).print(render_table(comp))
    out = buf.getvalue()
    for m in comp.everything:
        assert m.name in out
    assert "scan-and-dial" in out and "best" in out and "SYNTHETIC" in out


def test_same_inputs_give_identical_report_bytes(comp, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_report(comp, a)
    imp = {"gbt_realistic": Importance(0.7, {"host": 0.2, "netflow": 0.1}, {}, 1, 0)}
    write_report(compare(_preds(), CTX, n_resamples=400, seed=7, untested_profiles=UNTESTED,
                         importance=imp, provenance=dict(comp.provenance)), b)
    for f in sorted(a.iterdir()):
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name


def test_untested_profile_with_test_windows_is_refused():
    with pytest.raises(ValueError, match="declared untested"):
        compare(_preds(), CTX, n_resamples=50, untested_profiles=("beacon",))


def test_duplicate_model_is_refused():
    p = _preds()
    with pytest.raises(ValueError, match="same model twice"):
        compare([p[0], p[0]], CTX, n_resamples=50)


def test_a_stratum_with_too_few_episodes_gets_no_interval(tmp_path):
    e, h, prof, t, y, on = TEST
    prof = prof.copy()
    prof[np.isin(e, ["t0000", "t0001"])] = "rare"              # two episodes only
    test = (e, h, prof, t, y, on)
    comp = compare([predictions("gbt", "realistic", 0.8, VAL, test)], CTX, n_resamples=200)
    write_report(comp, tmp_path, plots=False)
    data = json.loads((tmp_path / "gbt_realistic_eval.json").read_text())
    rare = data["phase"]["breakdowns"]["profile"]["rare"]
    assert rare["n_episodes"] == 2 and rare["ci_reported"] is False
    assert rare["macro_f1"]["low"] is None and rare["macro_f1"]["point"] is not None
    assert data["phase"]["breakdowns"]["profile"]["beacon"]["ci_reported"] is True
    assert "(no CI: 2 ep.)" in (tmp_path / "comparison.md").read_text()


def test_many_channels_are_tabulated_one_per_row(tmp_path):
    chans = {f"host.c{i:02d}": 0.01 * i for i in range(20)}
    comp = compare(_preds()[:2], CTX, n_resamples=100,
                   importance={n: Importance(0.7, chans, {}, 1, 0)
                               for n in ("gbt_realistic", "mlp_realistic")})
    write_report(comp, tmp_path)
    md = (tmp_path / "comparison.md").read_text()
    assert "| host.c19 | +0.190 | +0.190 |" in md
    assert (tmp_path / "importance.png").is_file()


def test_predictions_round_trip_and_bad_files_are_one_line_errors(tmp_path):
    p = predictions("gru", "realistic", 0.7, VAL, TEST, seeds=(0, 3))
    path = write_predictions(p, tmp_path / "gru_realistic.parquet")
    back = read_predictions(path)
    assert (back.model, back.mode, back.family, back.seeds) == ("gru", "realistic", "realistic", (0, 3))
    for s in (0, 3):
        for part in ("val", "test"):
            a, b = getattr(p, part)[s], getattr(back, part)[s]
            for f in ("episode_id", "host_id", "profile", "t_end_ns", "y_true", "proba"):
                assert np.array_equal(getattr(a, f), getattr(b, f)), (part, f)
            assert np.array_equal(a.score, b.score)
    assert back.meta["checkpoints"] == p.meta["checkpoints"]
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable predictions file"):
        read_predictions(tmp_path / "junk.parquet")
    with pytest.raises(ValueError, match="sorted"):
        w = p.test[0]
        Windows(w.episode_id[::-1], w.host_id, w.profile, w.t_end_ns, w.y_true, w.proba)
    with pytest.raises(ValueError, match="same, non-empty set of seeds"):
        Predictions("gru", "realistic", "realistic", {0: p.val[0]}, {1: p.test[3]}, p.class_names)


def test_the_report_is_computed_from_the_files_alone(comp, tmp_path):
    """Writing every prediction and comparing what was read back gives the same numbers."""
    back = []
    for p in _preds():
        back.append(read_predictions(write_predictions(p, tmp_path / f"{p.name}.parquet")))
    ctx = Context.from_predictions(back)                 # onsets and stride from the files too
    assert ctx == CTX
    again = compare(back, ctx, n_resamples=400, seed=7, untested_profiles=UNTESTED)
    assert [m.name for m in comp.everything] == [m.name for m in again.everything]
    def same(x, y):
        return all(np.array_equal(np.float64(getattr(x, f)), np.float64(getattr(y, f)),
                                  equal_nan=True) for f in ("point", "low", "high"))

    for a, b in zip(comp.everything, again.everything):
        assert set(a.detection.ci) == set(b.detection.ci)
        assert all(same(a.detection.ci[k], b.detection.ci[k]) for k in a.detection.ci)
        assert same(a.macro_f1, b.macro_f1) and a.detection.thresholds == b.detection.thresholds


def test_a_constant_scorer_alarms_everywhere_or_nowhere():
    """The majority baseline's score is constant: ROC AUC 0.5 and one threshold above it."""
    comp = compare([predictions("majority", "baseline", 0.0, VAL, TEST)], CTX, n_resamples=100)
    m = comp.baselines[0]
    const = Windows(*TEST[:5], np.tile(np.float32([0.3, 0.1, 0.1, 0.5]), (TEST[4].size, 1)))
    p = Predictions("majority", "baseline", "baseline", {0: scored(VAL, 0.0, 1)}, {0: const},
                    m.class_names if hasattr(m, "class_names") else comp.class_names)
    c2 = compare([p], CTX, n_resamples=100).baselines[0]
    assert c2.detection.ci["roc_auc"].point == pytest.approx(0.5)


def test_zero_events_get_a_rule_of_three_bound_not_a_collapsed_interval(comp, tmp_path):
    write_report(comp, tmp_path, plots=False)
    md = (tmp_path / "comparison.md").read_text()
    zero = [m for m in comp.everything if m.detection.ci["false_alarms_per_host_day"].point == 0]
    assert zero, "the fixture should hold a model with no false alarm on test"
    days = zero[0].detection.benign_host_seconds / 86400
    for m in zero:
        data = json.loads((tmp_path / f"{m.name}_eval.json").read_text())
        bounds = data["detection"]["zero_event_bounds"]
        assert bounds["false_alarms_per_host_day_upper_95"] == pytest.approx(3 / days)
        row = next(l for l in md.splitlines() if l.startswith("| ") and f" {m.name} |" in l)
        assert f"0.00 (≤ {3 / days:.2f})" in row
        if m.detection.ci["fpr"].point == 0 and m.detection.ci["tpr"].point > 0:
            n = m.detection.benign_host_seconds / STRIDE_S
            tpr = m.detection.ci["tpr"].point
            assert bounds["fpr_upper_95"] == pytest.approx(3 / n)
            assert bounds["precision@1e-3_lower_95"] == pytest.approx(
                tpr * 1e-3 / (tpr * 1e-3 + 3 / n * (1 - 1e-3)))
    busy = [m for m in comp.everything if m.detection.ci["false_alarms_per_host_day"].point > 0]
    for m in busy:
        data = json.loads((tmp_path / f"{m.name}_eval.json").read_text())
        assert "false_alarms_per_host_day_upper_95" not in data["detection"]["zero_event_bounds"]


def test_a_statistic_on_too_few_episodes_gets_no_interval():
    """One detected episode: its time to detect is a number, never an interval [x, x]."""
    few = world(40, 2, prefix="t", hosts=("k-gamingcom",))
    p = predictions("gbt", "realistic", 0.8, VAL, few)
    w = p.test[0]
    proba = w.proba.copy()
    proba[:, 0] = np.where(w.episode_id == "t0000", proba[:, 0], 1.0)   # one episode can alarm
    proba[:, 1:] = np.where((w.episode_id == "t0000")[:, None], proba[:, 1:], 0.0)
    p = dataclasses.replace(p, test={0: dataclasses.replace(w, proba=proba)})
    m = compare([p], CTX, n_resamples=200).models[0]
    ttd = m.detection.ci["ttd_median"]
    assert m.detection.n_detected == 1
    assert np.isfinite(ttd.point) and np.isnan(ttd.low) and np.isnan(ttd.high)
    assert "1 episode(s)" in m.detection.ci_notes["ttd_median"]
    assert np.isfinite(m.detection.ci["roc_auc"].low)         # 40 episodes: an interval


def test_a_test_split_without_benign_windows_reports_what_it_can():
    e, h, prof, t, y, on = TEST
    mal_only = (e, h, prof, t, np.where(y == 0, 3, y), on)
    comp = compare([predictions("gbt", "realistic", 0.8, VAL, mal_only)], CTX, n_resamples=100)
    d = comp.models[0].detection
    assert np.isnan(d.ci["roc_auc"].point) and np.isnan(d.ci["false_alarms_per_host_day"].point)
    assert d.benign_host_seconds == 0 and np.isfinite(d.ci["episode_detection_rate"].point)


def test_validation_without_benign_or_malicious_windows_is_refused_in_one_line():
    from cis490.evaluate.run import _check_validation

    _check_validation(np.array([0, 3, 3]))
    with pytest.raises(ValueError, match="no benign \\(clean\\) window"):
        _check_validation(np.array([1, 3, 3]))
    with pytest.raises(ValueError, match="no malicious window"):
        _check_validation(np.array([0, 0]))


def test_the_clock_check_is_holm_adjusted_within_each_family():
    """Adding oracle models must not change a realistic model's clock-only verdict."""
    base = [predictions("gbt", "realistic", 0.8, VAL, TEST),
            predictions("mlp", "realistic", 0.5, VAL, TEST),
            predictions("clock-only", "baseline", 0.0, VAL, TEST, clock=True)]
    more = base + [predictions(m, "oracle", 1.0 + 0.1 * i, VAL, TEST)
                   for i, m in enumerate(("gbt", "cnn", "gru", "lstm"))]
    a = {m.name: m for m in compare(base, CTX, n_resamples=200).models}
    b = {m.name: m for m in compare(more, CTX, n_resamples=200).models}
    for name in ("gbt_realistic", "mlp_realistic"):
        for metric in ("roc_auc", "macro_f1"):
            assert a[name].vs_clock[metric].p_holm == b[name].vs_clock[metric].p_holm


def test_temperature_scaling_is_skipped_for_a_scorer_with_structural_zeros():
    p = predictions("rule-zscore", "baseline", 0.3, VAL, TEST)
    for part in (p.val, p.test):
        w = part[0]
        proba = np.zeros_like(w.proba)
        proba[:, 0], proba[:, 3] = w.proba[:, 0], 1.0 - w.proba[:, 0]  # no phase attribution
        part[0] = dataclasses.replace(w, proba=proba)
    m = compare([p, predictions("gbt", "realistic", 0.8, VAL, TEST)], CTX, n_resamples=100)
    rule = m.baselines[0]
    assert rule.calibration.temperature is None and rule.calibration.ece_test_scaled is None
    assert m.models[0].calibration.temperature is not None


def test_the_reported_threshold_is_one_a_seed_uses():
    p = predictions("gbt", "realistic", 0.8, VAL, TEST, seeds=(0, 1))
    d = compare([p], CTX, n_resamples=100).models[0].detection
    assert d.threshold in d.thresholds.values()
    for s, tau in d.thresholds.items():
        assert tau == pytest.approx(1 - d.thresholds_p_clean[s])
