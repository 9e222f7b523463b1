"""The synthetic store: determinism and the world of DATA.md."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cis490.data.channels import REGISTRY
from cis490.data.episode import decode_bytes
from cis490.data.synth import SynthConfig, pack_episode, plan_store, render_episode, synthesize
from cis490.data.windows import episode_grid
from cis490.data.world import HOSTS, PROFILES, SAMPLES, samples_of


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_a_byte_identical_store_whatever_jobs(tmp_path):
    cfg = SynthConfig(episodes_per_host=4, duration_s=60, seed=5)
    synthesize(tmp_path / "a", cfg, jobs=1)
    synthesize(tmp_path / "b", cfg, jobs=2)
    synthesize(tmp_path / "c", SynthConfig(episodes_per_host=4, duration_s=60, seed=6))
    a, b, c = (_tree_bytes(tmp_path / x) for x in "abc")
    assert a == b and len(a) == 8 + 1
    assert a["index.jsonl"] != c["index.jsonl"]


def test_world_has_the_hosts_profiles_and_samples_of_data_md():
    assert [h.host_id for h in HOSTS] == ["elliott-thinkpad", "k-gamingcom"]
    assert len(SAMPLES) == 12 and len({s.name for s in SAMPLES}) == 12
    n = {p: len(samples_of(p)) for p in PROFILES}
    assert n["cpu-saturate"] == n["low-and-slow"] == 1
    assert n["io-walk"] == max(n.values()) and sorted(n.values()).count(n["io-walk"]) == 1
    plans = plan_store(SynthConfig(episodes_per_host=60, duration_s=120, seed=0))
    by_host = {h.host_id: [p for p in plans if p.host_id == h.host_id] for h in HOSTS}
    assert "scan-and-dial" not in {p.profile for p in by_host["k-gamingcom"]}
    assert all(p.netflow for p in by_host["elliott-thinkpad"])
    assert sum(not p.netflow for p in by_host["k-gamingcom"]) > 0.6 * 60  # most degraded
    prof = Counter(p.profile for p in by_host["elliott-thinkpad"])
    assert prof.most_common(1)[0][0] == "io-walk" and set(prof) == set(PROFILES)
    assert Counter(p.defect for p in plans) == Counter({"": 117, "truncated": 1, "no_meta": 1, "counter_reset": 1})


def _running_medians(seed=0):
    """Median running-phase value of a few signature channels, per profile (thinkpad)."""
    cfg = SynthConfig(episodes_per_host=12, duration_s=120, seed=seed, defects=False)
    plans = [p for p in plan_store(cfg) if p.host_id == "elliott-thinkpad"]
    idx = {c.name: i for i, c in enumerate(REGISTRY.channels)}
    out = {}
    for prof in PROFILES:
        plan = next(p for p in plans if p.profile == prof)
        g = episode_grid(decode_bytes(pack_episode(render_episode(plan, cfg.seed))))
        run = g.labels == 3
        out[prof] = {k: float(np.nanmedian(g.values[idx[k], run])) for k in (
            "host.cpu_user_pct", "host.disk_write_ops_total", "host.forks_total",
            "netflow.dst_ports", "proc.connects_total")}
        out[prof]["phase_share"] = np.bincount(g.labels, minlength=4) / len(g.labels)
    return out


def test_profiles_have_distinct_signatures_and_phases_are_imbalanced():
    med = _running_medians()
    signature = {"cpu-saturate": "host.cpu_user_pct", "io-walk": "host.disk_write_ops_total",
                 "fork-storm": "host.forks_total", "scan-and-dial": "netflow.dst_ports"}
    for prof, ch in signature.items():
        assert max(med, key=lambda p: med[p][ch]) == prof, (prof, ch)
    for m in med.values():
        clean, armed, infecting, running = m["phase_share"]
        assert armed < 0.12 and infecting < 0.15 and running > 0.4 and clean > 0.15


@pytest.mark.parametrize("kwargs,msg", [
    (dict(episodes_per_host=2), "episodes_per_host must be >= 4"),
    (dict(duration_s=10), "duration_s"),
    (dict(episodes_per_host=0, defects=False), "episodes_per_host"),
])
def test_synth_config_is_validated(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        SynthConfig(**kwargs)


def test_synth_refuses_to_overwrite_a_store(tiny_store):
    with pytest.raises(ValueError, match="already holds a store"):
        synthesize(tiny_store[0], SynthConfig(episodes_per_host=4, duration_s=60))
