"""The report lists every model, the untested profiles, the baseline and the digests."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console

from cis490.evaluate.compare import Run, compare
from cis490.evaluate.importance import Importance
from cis490.evaluate.report import render_table, write_report
from evalsim import predict, simulate

PROFILES = ("beacon", "cpu-saturate", "fork-storm", "io-walk", "low-and-slow")
UNTESTED = ("scan-and-dial",)
SKILLS = {("gbt", "realistic"): 0.80, ("mlp", "realistic"): 0.70,
          ("cnn", "oracle"): 0.90, ("gru", "realistic"): 0.55}


def _runs(seed=0):
    rng = np.random.default_rng(seed)
    G, m = 60, 12
    yt, _, groups = simulate(G, m, rng=rng)
    ep_profile = np.array(PROFILES)[rng.integers(0, len(PROFILES), G)]
    ep_host = np.where(np.arange(G) % 3 == 0, "elliott-thinkpad", "k-gamingcom")
    episodes = np.array([f"ep{g:04d}" for g in range(G)])
    meta = {"profile": ep_profile[groups], "host_id": ep_host[groups]}
    runs = []
    for (model, mode), skill in SKILLS.items():
        u = np.clip(rng.beta(5 * skill, 5 * (1 - skill), G), 0, 1)[groups]
        imp = Importance(0.7, {"host": 0.2, "netflow": 0.1, **({"proc": 0.3}
                                                                if mode == "oracle" else {})},
                         {"host": 0.0, "netflow": 0.0}, 1, 0)
        runs.append(Run(model=model, mode=mode, y_true=yt, y_pred=predict(yt, u, 4, rng),
                        groups=episodes[groups], meta=meta,
                        checkpoint_digest=f"{model}{mode}".encode().hex()[:16].ljust(64, "0"),
                        schema_hash="ab" * 32,
                        data_digests={"validation": "cd" * 32, "summary": "ef" * 32},
                        importance=imp))
    return runs


@pytest.fixture(scope="module")
def comp():
    return compare(_runs(), n_resamples=500, seed=7, untested_profiles=UNTESTED)


def test_models_are_sorted_by_macro_f1_with_cis(comp):
    points = [m.macro_f1.point for m in comp.models]
    assert points == sorted(points, reverse=True)
    assert comp.best == comp.models[0].name and comp.models[0].vs_best is None
    for m in comp.models:
        assert m.macro_f1.low <= m.macro_f1.point <= m.macro_f1.high
    others = comp.models[1:]
    assert all(m.vs_best is not None and m.p_holm >= m.vs_best.pvalue for m in others)
    assert all(m.vs_best.difference <= 0 for m in others)


def test_baseline_is_the_majority_class(comp):
    assert comp.class_names[comp.majority_class] == "infected_running"
    assert comp.majority_source == "test"
    assert comp.baseline.per_class[0].f1.point == 0
    assert comp.baseline.macro_f1.point < comp.models[-1].macro_f1.point


def test_report_lists_untested_profiles_and_every_model(comp, tmp_path):
    written = write_report(comp, tmp_path)
    md = (tmp_path / "comparison.md").read_text()
    for run in _runs():
        assert f"| {run.model} | {run.mode} |" in md
        assert f"`{run.checkpoint_digest}`" in md
        data = json.loads((tmp_path / f"{run.name}_eval.json").read_text())
        assert data["untested_profiles"] == list(UNTESTED)
        assert set(data["breakdowns"]["profile"]) == set(PROFILES)   # never the untested one
        assert data["bootstrap"] == {"unit": "episode", "method": "percentile",
                                     "n_resamples": 500, "confidence": 0.95, "seed": 7}
        assert data["checkpoint_digest"] == run.checkpoint_digest
        assert (tmp_path / f"{run.name}_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Untested profiles" in md and "`scan-and-dial`: no test windows" in md
    assert "scan-and-dial (untested)" in md
    assert "majority: always `infected_running`" in md
    assert "cd" * 32 in md and "ab" * 32 in md
    assert "## Permutation importance" in md and "proc" in md
    for name in ("forest_macro_f1.png", "importance.png", "comparison.json"):
        assert (tmp_path / name) in written
    assert not list(tmp_path.glob(".*.tmp"))          # atomic writes left no debris


def test_untested_profile_with_test_windows_is_refused():
    with pytest.raises(ValueError, match="declared untested"):
        compare(_runs(), n_resamples=50, untested_profiles=("beacon",))


def test_render_table_shows_every_model(comp):
    buf = io.StringIO()
    Console(file=buf, width=140, color_system=None).print(render_table(comp))
    out = buf.getvalue()
    for m in comp.models:
        assert m.model in out
    assert "majority" in out and "scan-and-dial" in out and "best" in out


def test_same_inputs_give_identical_report_bytes(comp, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_report(comp, a)
    write_report(compare(_runs(), n_resamples=500, seed=7, untested_profiles=UNTESTED), b)
    for f in sorted(a.iterdir()):
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name


def test_duplicate_model_is_refused():
    runs = _runs()
    with pytest.raises(ValueError, match="same \\(model, mode\\) twice"):
        compare([runs[0], runs[0]], n_resamples=50)


def test_a_stratum_with_too_few_episodes_gets_no_interval(tmp_path):
    runs = _runs()
    profile = runs[0].meta["profile"].copy()
    groups = runs[0].groups
    profile[np.isin(groups, ["ep0000", "ep0001"])] = "rare"      # two episodes only
    meta = {**runs[0].meta, "profile": profile}
    runs = [Run(**{**r.__dict__, "meta": meta}) for r in runs]
    comp = compare(runs, n_resamples=200, untested_profiles=UNTESTED)
    write_report(comp, tmp_path, plots=False)
    data = json.loads((tmp_path / f"{runs[0].name}_eval.json").read_text())
    rare = data["breakdowns"]["profile"]["rare"]
    assert rare["n_episodes"] == 2 and rare["ci_reported"] is False
    assert rare["macro_f1"]["low"] is None and rare["macro_f1"]["point"] is not None
    assert data["breakdowns"]["profile"]["beacon"]["ci_reported"] is True
    assert "(no CI: 2 ep.)" in (tmp_path / "comparison.md").read_text()


def test_many_channels_are_tabulated_one_per_row(tmp_path):
    chans = {f"host.c{i:02d}": 0.01 * i for i in range(20)}
    runs = [Run(**{**r.__dict__, "importance": Importance(0.7, chans, {}, 1, 0)})
            for r in _runs()]
    comp = compare(runs, n_resamples=100, untested_profiles=UNTESTED)
    write_report(comp, tmp_path)
    md = (tmp_path / "comparison.md").read_text()
    assert "| host.c19 | +0.190 |" in md
    assert (tmp_path / "importance.png").is_file()
