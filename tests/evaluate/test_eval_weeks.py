"""Detection per test week and TESSERACT's area under time (AUT), checked by hand."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cis490.evaluate.compare import CLASS_NAMES, compare
from cis490.evaluate.predictions import Predictions, Windows, read_predictions, write_predictions
from cis490.evaluate.report import comparison_markdown, model_json, write_report
from cis490.evaluate.scoring import WEEK_NS, Context, aut, episode_weeks
from predsim import STRIDE_S, predictions, world

DAY = 86400 * 10**9
T0 = 1_780_000_000 * 10**9              # the earliest test episode's start
STRIDE = 2.0
DETECT, MISS, CLEAN, FALSE_ALARM = 0.05, 0.5, 0.95, 0.05   # P(clean) of a window

# (episode, start offset, kind): 4 windows each; infected = clean, clean, malicious, malicious
#   wk 0: a0 detected, a1 missed, a2 benign-only with one false alarm (its windows end in wk 1)
#   wk 1: a3 detected (starts exactly at the boundary), a4 benign-only
#   wk 2: nothing;  wk 3: a5 benign-only (no infected episode: skipped by AUT)
#   wk 4: a6 missed, a7 detected, a8 detected
EPISODES = (("a0", 0, "detected"), ("a1", 1 * DAY, "missed"),
            ("a2", 7 * DAY - 25 * 10**9, "benign-fa"), ("a3", 7 * DAY, "detected"),
            ("a4", 13 * DAY, "benign"), ("a5", 22 * DAY, "benign"), ("a6", 28 * DAY, "missed"),
            ("a7", 30 * DAY, "detected"), ("a8", 35 * DAY - 60 * 10**9, "detected"))


def _windows(episodes, *, with_starts: bool = True, flip: tuple[str, ...] = ()) -> Windows:
    """Hand-built test windows; the episodes in ``flip`` swap detected and missed."""
    cols = {k: [] for k in ("e", "t", "y", "p", "s", "o")}
    for eid, off, kind in episodes:
        kind = {"detected": "missed", "missed": "detected"}.get(kind, kind) if eid in flip else kind
        start = T0 + off
        t_end = start + (20 + STRIDE * np.arange(4)).astype(np.int64) * 10**9
        infected = kind in ("detected", "missed")
        y = np.array([0, 0, 3, 3] if infected else [0, 0, 0, 0])
        p = {"detected": [CLEAN, CLEAN, DETECT, DETECT], "missed": [CLEAN, CLEAN, MISS, MISS],
             "benign-fa": [CLEAN, FALSE_ALARM, CLEAN, CLEAN], "benign": [CLEAN] * 4}[kind]
        cols["e"] += [eid] * 4
        cols["t"].append(t_end)
        cols["y"].append(y)
        cols["p"] += p
        cols["s"] += [start] * 4
        cols["o"] += [int(t_end[2]) - 10**9 if infected else -1] * 4
    p_clean = np.asarray(cols["p"], dtype=np.float32)
    proba = np.column_stack([p_clean, *(np.zeros_like(p_clean),) * 2, 1 - p_clean])
    n = p_clean.size
    return Windows(np.asarray(cols["e"]), np.full(n, "h1"), np.full(n, "beacon"),
                   np.concatenate(cols["t"]), np.concatenate(cols["y"]), proba,
                   np.asarray(cols["o"], dtype=np.int64),
                   np.asarray(cols["s"], dtype=np.int64) if with_starts else None)


def _val() -> Windows:
    """Validation where every τ in (0.1, 0.9] on the score separates perfectly: τ = 0.9."""
    eps = (("v0", -60 * DAY, "detected"), ("v1", -59 * DAY, "benign"))
    w = _windows(eps)
    p = np.where(w.y_true == 0, 0.9, 0.1).astype(np.float32)
    proba = np.column_stack([p, np.zeros_like(p), np.zeros_like(p), 1 - p])
    return dataclasses.replace(w, proba=proba)


def _pred(test: dict[int, Windows], name: str = "gbt") -> Predictions:
    return Predictions(name, "realistic", "realistic", {s: _val() for s in test}, test,
                       CLASS_NAMES, meta={"stride_s": STRIDE})


def _ctx(*ws: Windows) -> Context:
    onsets = {}
    for w in ws:
        known = w.onset_ns >= 0
        onsets.update(zip(w.episode_id[known].tolist(), w.onset_ns[known].tolist()))
    return Context(onset_ns=onsets, stride_s=STRIDE)


def _benign_days(n_windows: int) -> float:
    return n_windows * STRIDE / 86400


def test_per_week_figures_and_aut_match_a_hand_computation(tmp_path):
    test = _windows(EPISODES)
    comp = compare([_pred({0: test})], _ctx(test, _val()), n_resamples=200)
    m = comp.models[0]
    assert m.detection.thresholds[0] == pytest.approx(0.9)      # τ as built (alarm iff P ≤ 0.1)
    ot = m.over_time
    by = {w.week: w for w in ot.weeks}
    assert sorted(by) == [0, 1, 3, 4]                           # week 2 holds no episode
    # by hand: (infected, benign-only, benign windows, detected, false alarms) per week
    want = {0: (2, 1, 2 + 2 + 4, 1, 1), 1: (1, 1, 2 + 4, 1, 0), 3: (0, 1, 4, 0, 0),
            4: (3, 0, 2 + 2 + 2, 2, 0)}
    for k, (n_inf, n_ben, n_benign_w, n_det, n_fa) in want.items():
        w = by[k]
        assert (w.n_infected, w.n_benign_only, w.n_episodes) == (n_inf, n_ben, n_inf + n_ben)
        assert w.start_ns == T0 + k * WEEK_NS
        assert w.benign_host_seconds == n_benign_w * STRIDE
        assert w.false_alarms_per_host_day.point == pytest.approx(n_fa / _benign_days(n_benign_w))
        if n_inf:
            assert w.detection_rate.point == pytest.approx(n_det / n_inf)
        else:
            assert np.isnan(w.detection_rate.point)
    f = [1 / 2, 1 / 1, 2 / 3]                                   # weeks 0, 1, 4
    hand = ((f[0] + f[1]) / 2 + (f[1] + f[2]) / 2) / (3 - 1)
    assert ot.weeks_used == (0, 1, 4) and ot.skipped == (3,)
    assert ot.aut.point == pytest.approx(hand)
    assert ot.aut.point == pytest.approx(np.trapezoid(f, dx=1.0) / (len(f) - 1))
    # 6 infected episodes: enough for an interval, but a resample often draws no infected
    # episode of week 1 (one episode): AUT undefined there, so no interval, and it says why
    assert np.isnan(ot.aut.low) and "undefined in" in m.detection.ci_notes["aut_detection_rate"]
    data = model_json(m, comp)
    a = data["aut_detection_rate"]
    assert a["value"] == pytest.approx(hand) and a["ci"] is None
    assert a["weeks_used"] == [0, 1, 4] and a["weeks_skipped"] == [3]
    assert "skipped" in a["note"] and "no interval" in a["note"]
    weeks = data["per_week"]
    assert [w["week"] for w in weeks] == [0, 1, 3, 4]
    assert [w["in_aut"] for w in weeks] == [True, True, False, True]
    assert weeks[2]["episode_detection_rate"]["point"] is None
    assert weeks[0]["n_infected_episodes"] == 2 and weeks[0]["n_benign_only_episodes"] == 1
    assert weeks[0]["benign_host_days"] == pytest.approx(_benign_days(8))
    md = comparison_markdown(comp)
    section = md[md.index("## Detection over time (test weeks)"):]
    assert "Pendlebury" in section and "USENIX Security 2019" in section
    header = next(line for line in section.splitlines() if line.startswith("| model |"))
    start4 = np.datetime64(T0 + 4 * WEEK_NS, "ns").astype("datetime64[D]")
    assert f"wk 4 · {start4} (3 inf / 0 ben)" in header and "wk 2" not in header
    row = next(line for line in section.splitlines() if line.startswith("| gbt_realistic |"))
    assert row.split(" | ")[1:5] == ["0.50", "1.00", "—", "0.67"]
    assert "weeks without an infected episode were skipped (3)" in section


def test_seeds_are_combined_per_week_like_the_other_metrics():
    one, two = _windows(EPISODES), _windows(EPISODES, flip=("a1",))   # seed 1 also detects a1
    comp = compare([_pred({0: one, 1: two})], _ctx(one, _val()), n_resamples=200)
    ot = comp.models[0].over_time
    by = {w.week: w for w in ot.weeks}
    assert by[0].detection_rate.point == pytest.approx((1 / 2 + 1) / 2)    # mean over seeds
    per_seed = [aut([1 / 2, 1, 2 / 3]), aut([1, 1, 2 / 3])]
    assert ot.aut.point == pytest.approx(np.mean(per_seed))
    assert ot.aut.point == pytest.approx(aut([0.75, 1, 2 / 3]))             # AUT is linear


def test_aut_is_the_unit_spaced_trapezoid_over_n_minus_one():
    rng = np.random.default_rng(5)
    for n in (2, 3, 7, 20):
        f = rng.random(n)
        assert aut(f) == pytest.approx(np.trapezoid(f, dx=1.0) / (n - 1), abs=1e-15)
    rows = rng.random((4, 6))
    assert np.allclose(aut(rows), np.trapezoid(rows, dx=1.0, axis=1) / 5)
    assert aut([0.3, 0.3, 0.3]) == pytest.approx(0.3)               # a constant f is its AUT
    assert np.isnan(aut([0.5, np.nan, 1.0]))
    with pytest.raises(ValueError, match=">= 2 time points"):
        aut([0.5])


def test_weeks_are_made_of_whole_episodes():
    test = _windows(EPISODES)
    uni, codes = np.unique(test.episode_id, return_inverse=True)
    weeks = episode_weeks(uni, [test], [codes.astype(np.int64)])
    assert weeks.origin_ns == T0 and weeks.n_unknown == 0
    assert dict(zip(uni.tolist(), weeks.week.tolist())) == {
        "a0": 0, "a1": 0, "a2": 0, "a3": 1, "a4": 1, "a5": 3, "a6": 4, "a7": 4, "a8": 4}
    # a2's last windows end after the week-1 boundary; the episode stays in week 0
    a2 = test.t_end_ns[test.episode_id == "a2"]
    assert a2.min() < T0 + WEEK_NS < a2.max()
    # the weeks' episodes add up to the test split, each once
    comp = compare([_pred({0: test})], _ctx(test, _val()), n_resamples=50)
    assert sum(w.n_episodes for w in comp.models[0].over_time.weeks) == uni.size
    # windows that disagree on an episode's start are refused
    bad = dataclasses.replace(test, started_ns=np.where(test.episode_id == "a4",
                                                        test.started_ns + 1, test.started_ns))
    with pytest.raises(ValueError, match="disagree on the start of test episode a4"):
        episode_weeks(uni, [test, bad], [codes.astype(np.int64)] * 2)


def test_files_without_started_ns_still_read_and_give_no_weeks(tmp_path):
    import pyarrow.parquet as pq

    test = _windows(EPISODES)
    path = write_predictions(_pred({0: test}), tmp_path / "gbt_realistic.parquet")
    back = read_predictions(path)
    assert np.array_equal(back.test[0].started_ns, test.started_ns)        # round trip
    table = pq.read_table(path)
    old = table.drop_columns(["started_ns"]).replace_schema_metadata(table.schema.metadata)
    pq.write_table(old, path)                                             # an older file
    back = read_predictions(path)
    assert (back.test[0].started_ns == -1).all() and (back.val[0].started_ns == -1).all()
    assert (_windows(EPISODES, with_starts=False).started_ns == -1).all()
    comp = compare([back], Context.from_predictions([back]), n_resamples=50)
    m = comp.models[0]
    assert m.over_time.weeks == () and np.isnan(m.over_time.aut.point)
    assert "start of 9 test episode(s) is unknown" in m.over_time.reason
    assert "unknown" in m.detection.ci_notes["aut_detection_rate"]
    write_report(comp, tmp_path / "r", plots=False)
    data = json.loads((tmp_path / "r" / "gbt_realistic_eval.json").read_text())
    assert data["per_week"] == [] and data["aut_detection_rate"]["value"] is None
    md = (tmp_path / "r" / "comparison.md").read_text()
    assert "No per-week figures: the start of 9 test episode(s) is unknown" in md


def test_a_test_split_within_one_week_says_so_in_one_line(tmp_path):
    val, test = world(20, 1, prefix="v"), world(30, 2, prefix="t")      # 30 episodes in 3.4 days
    comp = compare([predictions("gbt", "realistic", 0.8, val, test)],
                   Context(onset_ns={**val[5], **test[5]}, stride_s=STRIDE_S), n_resamples=100)
    ot = comp.models[0].over_time
    assert [w.week for w in ot.weeks] == [0] and ot.weeks[0].n_episodes == 30
    assert np.isnan(ot.aut.point) and "less than 2 weeks" in ot.reason
    md = comparison_markdown(comp)
    section = md[md.index("## Detection over time"):md.index("## Operating point")]
    body = [line for line in section.splitlines()[1:] if line.strip()]
    assert len(body) == 1 and body[0].startswith("The test split spans less than 2 weeks")
    a = model_json(comp.models[0], comp)["aut_detection_rate"]
    assert a["value"] is None and a["ci"] is None and "less than 2 weeks" in a["note"]


def test_aut_gets_an_interval_with_enough_episodes_in_every_week():
    val = world(20, 1, prefix="v")
    test = world(80, 2, prefix="t", spacing_s=86400 // 2)              # 40 days: 6 weeks
    ctx = Context(onset_ns={**val[5], **test[5]}, stride_s=STRIDE_S)
    comp = compare([predictions("gbt", "realistic", 0.5, val, test)], ctx, n_resamples=300)
    m = comp.models[0]
    ot = m.over_time
    assert len(ot.weeks_used) == 6 and ot.reason is None
    assert all(w.n_infected >= 10 for w in ot.weeks)
    assert ot.aut.low <= ot.aut.point <= ot.aut.high and ot.aut.low < ot.aut.high
    assert "aut_detection_rate" not in m.detection.ci_notes
    f = [w.detection_rate.point for w in ot.weeks]
    assert ot.aut.point == pytest.approx(np.trapezoid(f) / (len(f) - 1))
    a = model_json(m, comp)["aut_detection_rate"]
    assert a["ci"] == {"low": ot.aut.low, "high": ot.aut.high}
    # the same model on four infected episodes (two weeks): no interval, and the reason
    few = world(4, 2, prefix="t", spacing_s=3 * 86400)
    m = compare([predictions("gbt", "realistic", 0.5, val, few)],
                Context(onset_ns={**val[5], **few[5]}, stride_s=STRIDE_S), n_resamples=300).models[0]
    assert m.over_time.weeks_used == (0, 1) and np.isfinite(m.over_time.aut.point)
    assert np.isnan(m.over_time.aut.low)
    assert m.detection.ci_notes["aut_detection_rate"] == "4 episode(s) behind it"
