"""The synthetic store: determinism and the world of docs/DATA_PIPELINE.md (no shortcuts)."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from cis490.data import synth as synth_mod
from cis490.data import world as world_mod
from cis490.data.channels import DEFAULT_WINDOW, REGISTRY
from cis490.data.episode import decode_bytes
from cis490.data.splits import make_split
from cis490.data.synth import (WEEK_S, SynthConfig, episode_phases, pack_episode, plan_store,
                               render_episode, synthesize)
from cis490.data.windows import episode_grid, phase_per_second
from cis490.data.world import (BENIGN_PROFILES, HOSTS, PROFILES, SAMPLES, WORKLOADS, benign_weights,
                               samples_of)

DEFAULT = SynthConfig()
HELD_OUT = "k-gamingcom"
TRAIN_HOSTS = tuple(h for h in DEFAULT.host_ids if h != HELD_OUT)


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_a_byte_identical_store_whatever_jobs(tmp_path):
    cfg = SynthConfig(episodes_per_host=4, min_duration_s=60, max_duration_s=120, seed=5)
    synthesize(tmp_path / "a", cfg, jobs=1)
    synthesize(tmp_path / "b", cfg, jobs=2)
    synthesize(tmp_path / "c", SynthConfig(episodes_per_host=4, min_duration_s=60, max_duration_s=120, seed=6))
    a, b, c = (_tree_bytes(tmp_path / x) for x in "abc")
    assert a == b and len(a) == 4 * len(HOSTS) + 1
    assert a["index.jsonl"] != c["index.jsonl"]


def test_world_has_four_hosts_the_seeds_two_in_their_roles_and_the_seeds_samples():
    ids = [h.host_id for h in HOSTS]
    assert len(ids) >= 4 and ids[:2] == ["elliott-thinkpad", HELD_OUT] and DEFAULT.hosts == len(ids)
    assert len({(h.cores, h.mem_gib, h.disk_speed) for h in HOSTS}) == len(HOSTS)  # own hardware each
    assert "scan-and-dial" not in {p for p in HOSTS[1].profiles}
    assert len(SAMPLES) == 12 and len({s.name for s in SAMPLES}) == 12
    n = {p: len(samples_of(p)) for p in PROFILES}
    assert n["cpu-saturate"] == n["low-and-slow"] == 1
    assert n["io-walk"] == max(n.values()) and sorted(n.values()).count(n["io-walk"]) == 1
    assert len(BENIGN_PROFILES) == 6 and all(p.startswith("benign-") for p in BENIGN_PROFILES)
    assert {w.profile for w in WORKLOADS} == set(BENIGN_PROFILES)
    plans = plan_store(SynthConfig(episodes_per_host=60, seed=0))
    assert Counter(p.defect for p in plans) == Counter({"": 237, "truncated": 1, "no_meta": 1, "counter_reset": 1})
    held = [p for p in plans if p.host_id == HELD_OUT]
    assert "scan-and-dial" not in {p.profile for p in held}
    assert sum(not p.netflow for p in held) > 0.6 * len(held)  # the held-out host stays mostly degraded
    assert set(p.profile for p in plans if p.host_id == "elliott-thinkpad" and not p.benign) == set(PROFILES)


def test_benign_only_episodes_are_the_majority_on_every_host_and_all_clean():
    plans = plan_store(DEFAULT)
    for host in DEFAULT.host_ids:
        mine = [p for p in plans if p.host_id == host]
        benign = [p for p in mine if p.benign]
        assert len(benign) >= 0.5 * len(mine) and len(benign) < len(mine)
        assert all(p.profile in BENIGN_PROFILES for p in benign)
    assert len({p.profile for p in plans if p.benign}) == len(BENIGN_PROFILES)
    seen = set()
    for p in plans:
        if p.profile in seen:
            continue
        seen.add(p.profile)
        phases = [ph["phase"] for ph in episode_phases(p, DEFAULT.seed)]
        assert (phases == ["clean"]) == p.benign, (p.profile, phases)
    # rendered: every window of a benign-only episode is clean, and its meta says so
    for p in [p for p in plans if p.benign and not p.defect][:3]:
        g = episode_grid(decode_bytes(pack_episode(render_episode(p, DEFAULT.seed))))
        assert set(np.unique(g.labels)) == {0}
    assert SynthConfig(benign_frac=0.8).benign_frac == 0.8  # configurable


def test_netflow_is_missing_on_some_episodes_of_every_train_host():
    plans = plan_store(DEFAULT)
    for host in TRAIN_HOSTS:
        mine = [p for p in plans if p.host_id == host]
        missing = sum(not p.netflow for p in mine) / len(mine)
        assert 0 < missing < 0.5, (host, missing)


def test_collector_gaps_leave_short_nan_stretches_in_present_streams():
    cfg = SynthConfig(episodes_per_host=8, min_duration_s=60, max_duration_s=120, defects=False)
    host_ch = [i for i, c in enumerate(REGISTRY.channels) if c.source == "host"]
    gapped = 0
    for p in plan_store(cfg):
        g = episode_grid(decode_bytes(pack_episode(render_episode(p, cfg.seed))))
        nan_run = np.isnan(g.values[host_ch, 2:]).sum(axis=1).max()  # beyond the first rates
        gapped += nan_run >= 5
    assert 0 < gapped < len(plan_store(cfg))


def test_episode_lengths_vary_and_episodes_span_weeks():
    plans = plan_store(DEFAULT)
    d = np.array([p.duration_s for p in plans])
    assert d.min() >= DEFAULT.min_duration_s and d.max() <= DEFAULT.max_duration_s and d.std() > 100
    start = np.array([p.started_at_ns for p in plans]) / 1e9
    assert (start.max() - start.min()) / WEEK_S > DEFAULT.weeks - 1
    for host in DEFAULT.host_ids:  # one host's episodes never overlap
        mine = sorted((p.started_at_ns, p.duration_s) for p in plans if p.host_id == host)
        assert all(a + d * 10**9 < b for (a, d), (b, _) in zip(mine, mine[1:]))


def test_new_samples_appear_only_in_later_weeks():
    cfg = SynthConfig(episodes_per_host=200)
    plans = plan_store(cfg)
    t0 = min(p.started_at_ns for p in plans)
    span = cfg.weeks * WEEK_S * 10**9
    late = [s for s in SAMPLES if s.first_frac > 0]
    assert len(late) >= 3
    for s in late:
        when = [p.started_at_ns for p in plans if p.sample_name == s.name]
        assert when, s.name  # it does appear
        assert min(when) - t0 >= s.first_frac * span - 600 * 10**9, s.name
    first_weeks = {p.sample_name for p in plans if p.started_at_ns - t0 < 2 * WEEK_S * 10**9}
    assert not first_weeks & {s.name for s in late}


def test_the_benign_mix_drifts_over_the_weeks():
    assert benign_weights(0.0) != benign_weights(1.0)
    plans = [p for p in plan_store(SynthConfig(episodes_per_host=400)) if p.benign]
    plans.sort(key=lambda p: p.started_at_ns)
    third = len(plans) // 3
    early = Counter(p.profile for p in plans[:third])
    late = Counter(p.profile for p in plans[-third:])
    assert late["benign-videocall"] > 2 * early["benign-videocall"]
    assert early["benign-compile"] > 1.4 * late["benign-compile"]


def _validation_frame(plans):
    return pd.DataFrame({
        "episode_id": [p.episode_id for p in plans], "host_id": [p.host_id for p in plans],
        "profile": [p.profile for p in plans], "sample_name": [p.sample_name for p in plans],
        "started_at_ns": [p.started_at_ns for p in plans], "status": "ok"})


def test_time_recipe_validates_on_later_weeks_than_train_and_tests_later_still():
    plans = plan_store(DEFAULT)
    start = {p.episode_id: p.started_at_ns for p in plans}
    sp = make_split(_validation_frame(plans), "time", list(TRAIN_HOSTS), seed=0)
    assert sp.val and sp.test
    assert max(start[e] for e in sp.train) < min(start[e] for e in sp.val)
    assert max(start[e] for e in sp.val) < min(start[e] for e in sp.test)
    # the test part holds samples train never saw (decay can show)
    sample = {p.episode_id: p.sample_name for p in plans}
    assert {sample[e] for e in sp.test} - {sample[e] for e in sp.train}


def _clock_windows(plans, seed):
    """(t_since_start_s, label, episode, host) of every window, from the labels alone."""
    rows = []
    for p in plans:
        if p.defect in ("truncated", "no_meta"):
            continue
        lab = phase_per_second({"t0_wall_ns": p.started_at_ns, "phases": episode_phases(p, seed)},
                               p.duration_s)
        ends = np.arange(DEFAULT_WINDOW.length_s, p.duration_s + 1, DEFAULT_WINDOW.stride_s)
        rows.append((ends.astype(float), lab[ends - 1], p.episode_id, p.host_id))
    return rows


def _clock_only_on_held_out(cfg):
    """The evaluation's clock-only baseline, trained on the train hosts, on the held-out host."""
    from sklearn.metrics import roc_auc_score

    from cis490.evaluate.baselines import BaselineData, fit_baselines
    from cis490.evaluate.metrics import macro_f1_score

    parts = {"train": [], "val": [], "test": []}
    for r in _clock_windows(plan_store(cfg), cfg.seed):
        val = int(hashlib.sha256(r[2].encode()).hexdigest(), 16) % 5 == 0
        parts["test" if r[3] == HELD_OUT else "val" if val else "train"].append(r)

    def data(rows):
        y = np.concatenate([r[1] for r in rows])
        return BaselineData(X=np.zeros((y.size, 0), np.float32), feature_names=[], y=y,
                            episode_id=np.concatenate([[r[2]] * len(r[1]) for r in rows]),
                            host_id=np.concatenate([[r[3]] * len(r[1]) for r in rows]),
                            t_since_start_s=np.concatenate([r[0] for r in rows]))

    tr, va, te = (data(parts[k]) for k in ("train", "val", "test"))
    fits = fit_baselines(tr, va, te, names=["majority", "clock-only"], seed=cfg.seed)
    out = {}
    for name, fit in fits.items():
        p = fit.proba_test.astype(np.float64)
        out[name] = (macro_f1_score(te.y, p.argmax(1), labels=[0, 1, 2, 3]),
                     roc_auc_score(te.y > 0, -p[:, 0]))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_a_clock_only_model_is_near_chance_on_the_held_out_host(seed):
    got = _clock_only_on_held_out(SynthConfig(seed=seed))
    f1, auc = got["clock-only"]
    assert abs(auc - 0.5) < 0.07, got
    assert f1 < got["majority"][0] + 0.05, got
    # and time itself, as a raw score over every window of the world: no monotone trend either
    from sklearn.metrics import roc_auc_score

    rows = _clock_windows(plan_store(SynthConfig(seed=seed)), seed)
    t = np.concatenate([r[0] for r in rows])
    y = np.concatenate([r[1] for r in rows])
    assert abs(roc_auc_score(y > 0, t) - 0.5) < 0.07


def _fixed_fraction_timeline(rng, duration_s):
    """The first generator's timeline: phases at fixed fractions of the episode."""
    d = float(duration_s)
    b1 = d * rng.uniform(0.22, 0.34)
    b2 = b1 + max(3.0, d * rng.uniform(0.05, 0.08))
    b3 = b2 + max(4.0, d * rng.uniform(0.08, 0.12))
    lab = np.rint(np.array([b1, b2, b3])).astype(int)
    z = np.zeros(duration_s)
    return world_mod.Timeline((b1, b2, b3), tuple(int(x) for x in lab), z, z, z)


def test_the_clock_measurement_does_find_the_first_generators_shortcut(monkeypatch):
    """The instrument above can fail: on fixed-length, fixed-fraction episodes, all infected
    (the first world), the same clock-only model detects almost perfectly."""
    monkeypatch.setattr(synth_mod, "draw_timeline", _fixed_fraction_timeline)
    f1, auc = _clock_only_on_held_out(SynthConfig(duration_s=120, benign_frac=0.0))["clock-only"]
    assert auc > 0.9 and f1 > 0.5


def _running_medians(seed=0):
    """Median running-phase value of a few signature channels, per profile (thinkpad)."""
    cfg = SynthConfig(episodes_per_host=120, duration_s=150, seed=seed, defects=False, hosts=2)
    plans = [p for p in plan_store(cfg) if p.host_id == "elliott-thinkpad"]
    idx = {c.name: i for i, c in enumerate(REGISTRY.channels)}
    out = {}
    for prof in PROFILES + BENIGN_PROFILES:
        plan = next((p for p in plans if p.profile == prof and not p.workload and p.netflow), None)
        if plan is None:
            continue
        g = episode_grid(decode_bytes(pack_episode(render_episode(plan, cfg.seed))))
        act = g.labels == 3 if prof in PROFILES else np.ones(g.labels.size, bool)
        out[prof] = {k: float(np.nanmedian(g.values[idx[k], act])) for k in (
            "host.cpu_user_pct", "host.disk_write_ops_total", "host.disk_read_bytes_total",
            "host.forks_total", "netflow.dst_ports", "proc.connects_total")}
        out[prof]["phase_share"] = np.bincount(g.labels, minlength=4) / len(g.labels)
    return out


def test_profiles_have_distinct_signatures_and_benign_workloads_resemble_some():
    med = _running_medians()
    signature = {"cpu-saturate": "host.cpu_user_pct", "io-walk": "host.disk_write_ops_total",
                 "fork-storm": "host.forks_total", "scan-and-dial": "netflow.dst_ports"}
    for prof, ch in signature.items():
        mal = {p: m for p, m in med.items() if p in PROFILES}
        assert max(mal, key=lambda p: mal[p][ch]) == prof, (prof, ch)
    # false alarms can happen: backup reads like a file walk, a build loads the CPU like a miner
    assert med["benign-backup"]["host.disk_read_bytes_total"] > 0.3 * med["io-walk"]["host.disk_read_bytes_total"]
    assert med["benign-compile"]["host.cpu_user_pct"] > 0.5 * med["cpu-saturate"]["host.cpu_user_pct"]
    for prof in BENIGN_PROFILES:
        if prof in med:
            assert med[prof]["proc.connects_total"] == 0  # no sample, no process tree


def test_phases_are_imbalanced_and_some_episodes_start_mid_infection():
    cfg = SynthConfig(seed=0)
    plans = plan_store(cfg)
    labels = np.concatenate([r[1] for r in _clock_windows(plans, cfg.seed)])
    clean, armed, infecting, running = np.bincount(labels, minlength=4) / labels.size
    assert armed < 0.03 and infecting < 0.06 and running > 0.2 and clean > 0.5
    first = Counter(episode_phases(p, cfg.seed)[0]["phase"] for p in plans if not p.benign)
    assert first["clean"] > 0.5 * sum(first.values())  # most infections start inside the episode
    assert sum(v for k, v in first.items() if k != "clean") > 0.1 * sum(first.values())


def test_the_world_scales_to_the_seeds_full_size():
    plans = plan_store(SynthConfig(episodes_per_host=24_000, defects=True))
    assert len(plans) == 24_000 * len(HOSTS) and len({p.episode_id for p in plans}) == len(plans)
    t = np.array([p.started_at_ns for p in plans]) / 1e9
    span = (t.max() - t.min()) / WEEK_S
    assert span > 8  # 24 k episodes of up to 10 min do not fit 8 weeks of one host: the span grows
    mine = sorted((p.started_at_ns, p.duration_s) for p in plans if p.host_id == HELD_OUT)
    gaps = np.array([b - a - d * 10**9 for (a, d), (b, _) in zip(mine, mine[1:])]) / 1e9
    assert gaps.min() >= 60 and gaps.std() > 60  # the gaps stay random
    # the drift runs over the real span: new samples arrive in proportion, the mix keeps moving
    first = min(p.started_at_ns for p in plans if p.sample_name == "spawnstorm") / 1e9 - t.min()
    assert 0.55 < first / (t.max() - t.min()) < 0.7
    benign = sorted((p for p in plans if p.benign), key=lambda p: p.started_at_ns)
    q = len(benign) // 4
    calls = [sum(p.profile == "benign-videocall" for p in part) for part in (benign[q:2 * q], benign[-q:])]
    assert calls[1] > 1.2 * calls[0]


@pytest.mark.parametrize("kwargs,msg", [
    (dict(episodes_per_host=2), "episodes_per_host must be >= 4"),
    (dict(duration_s=10), "duration_s"),
    (dict(min_duration_s=300, max_duration_s=200), "min_duration_s"),
    (dict(episodes_per_host=0, defects=False), "episodes_per_host"),
    (dict(benign_frac=1.0), "benign_frac"),
    (dict(hosts=1), "hosts"),
    (dict(weeks=0), "weeks"),
])
def test_synth_config_is_validated(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        SynthConfig(**kwargs)


def test_synth_refuses_to_overwrite_a_store(tiny_store):
    with pytest.raises(ValueError, match="already holds a store"):
        synthesize(tiny_store[0], SynthConfig(episodes_per_host=4, duration_s=60))
