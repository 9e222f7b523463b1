"""Wall-clock alignment, reset-safe rates, labels at window end, NaN-aware stats."""

from __future__ import annotations

import numpy as np
import pytest

from cis490.data.channels import REGISTRY, WindowSpec
from cis490.data.episode import Episode, decode_bytes
from cis490.data.synth import SynthConfig, pack_episode, plan_store, render_episode
from cis490.data.windows import (STATS, counter_rate, episode_grid, make_windows,
                                 phase_per_second, summary_stats)

NS = 10**9
T0 = 1_772_000_000 * NS
CH = {c.name: i for i, c in enumerate(REGISTRY.channels)}


def _meta(duration=60, edges=(0, 30, 35, 40, 60)):
    phases = [{"phase": p, "start_wall_ns": T0 + a * NS, "end_wall_ns": T0 + b * NS}
              for p, a, b in zip(REGISTRY.phases, edges, edges[1:])]
    return {"t0_wall_ns": T0, "duration_s": duration, "phases": phases}


def _host_rows(n=60, **counter):
    rows = []
    for s in range(n):
        r = {"t_wall_ns": T0 + s * NS + 7_000_000, "t_mono_ns": s * NS, "load1": float(s)}
        for k, f in counter.items():
            r[k] = f(s)
        rows.append(r)
    return rows


def test_netflow_aligns_on_wall_clock():
    """Regression (seed): netflow t_mono_ns is system uptime, only t_wall_ns aligns."""
    uptime = 5 * 86400 * NS
    flows = [(37.2, 100), (37.5, 50), (37.9, 10), (12.0, 7)]
    rows = [{"t_wall_ns": T0 + int(t * NS), "t_mono_ns": uptime + int(t * NS * 1.001), "bytes": b,
             "packets": 1, "direction": "out", "dst_port": 443, "dst_ip": "1.2.3.4"} for t, b in flows]
    ep = Episode(meta=_meta(), streams={"host": _host_rows(), "netflow": rows})
    g = episode_grid(ep).values
    expected = np.zeros(60)
    expected[37], expected[12] = 3, 1
    np.testing.assert_array_equal(g[CH["netflow.flows"]], expected)
    assert g[CH["netflow.bytes_out"], 37] == 160 and g[CH["netflow.bytes_in"], 37] == 0
    # the test discriminates: binning the monotonic clock (as if episode-relative)
    # would put every flow outside the episode
    mono_bins = np.array([r["t_mono_ns"] for r in rows]) // NS
    assert not np.any((mono_bins >= 0) & (mono_bins < 60))


def test_synthetic_netflow_lands_in_its_wall_clock_second():
    cfg = SynthConfig(episodes_per_host=1, duration_s=60, seed=11, defects=False)
    plan = next(p for p in plan_store(cfg) if p.netflow)
    ep = decode_bytes(pack_episode(render_episode(plan, cfg.seed)))
    flows = ep.streams["netflow"]
    t0 = ep.meta["t0_wall_ns"]
    wall = np.bincount([(r["t_wall_ns"] - t0) // NS for r in flows], minlength=60)
    first_mono = flows[0]["t_mono_ns"]
    mono = np.bincount([min(59, (r["t_mono_ns"] - first_mono) // NS) for r in flows], minlength=60)
    got = episode_grid(ep).values[CH["netflow.flows"]]
    np.testing.assert_array_equal(got, wall)
    assert not np.array_equal(got, mono)  # uptime clock drifts: rebasing it does not align either


def test_counter_to_rate_is_reset_safe():
    t = np.array([0, 1, 2, 3, 5]) * NS
    v = np.array([100, 110, 130, 5, 25])  # restart between 2 s and 3 s
    np.testing.assert_allclose(counter_rate(t, v), [np.nan, 10, 20, 5, 10], equal_nan=True)
    assert np.isnan(counter_rate(np.array([0]), np.array([3]))).all()
    assert np.isnan(counter_rate(np.array([0, 0]) * NS, np.array([1, 2]))[1])  # dt <= 0


def test_counter_reset_in_an_episode_gives_no_negative_rate():
    def ctr(s):
        return 1_000_000 + 500 * s if s < 30 else 40 + 500 * (s - 30)
    ep = Episode(meta=_meta(), streams={"host": _host_rows(net_tx_bytes_total=ctr)})
    rate = episode_grid(ep).values[CH["host.net_tx_bytes_total"]]
    assert np.isnan(rate[0])
    assert np.all(rate[1:] >= 0)
    np.testing.assert_allclose(rate[1:30], 500)
    assert rate[30] == pytest.approx(40, rel=0.05)


def test_absent_stream_is_nan_present_silent_netflow_is_zero():
    ep = Episode(meta=_meta(), streams={"host": _host_rows()})
    g = episode_grid(ep).values
    assert np.isnan(g[CH["netflow.flows"]]).all() and np.isnan(g[CH["proc.cpu_pct"]]).all()
    ep.streams["netflow"] = []
    assert (episode_grid(ep).values[CH["netflow.flows"]] == 0).all()


def test_missing_host_sample_is_a_nan_second():
    rows = [r for r in _host_rows() if r["t_mono_ns"] != 20 * NS]
    g = episode_grid(Episode(meta=_meta(), streams={"host": rows})).values
    assert np.isnan(g[CH["host.load1"], 20]) and g[CH["host.load1"], 21] == 21


def test_label_is_the_phase_at_window_end():
    labels = phase_per_second(_meta(), 60)
    assert labels[29] == 0 and labels[30] == 1 and labels[34] == 1 and labels[35] == 2
    ep = Episode(meta=_meta(), streams={"host": _host_rows()})
    x, y, t_end = make_windows(episode_grid(ep), WindowSpec(10, 5))
    assert x.shape == (11, len(REGISTRY.channels), 10)
    ends = (t_end - T0) // NS
    assert list(ends) == list(range(10, 61, 5))
    assert dict(zip(ends, y)) == {10: 0, 15: 0, 20: 0, 25: 0, 30: 0, 35: 1, 40: 2, 45: 3, 50: 3, 55: 3, 60: 3}
    np.testing.assert_array_equal(x[0, CH["host.load1"]], np.arange(10))


def test_summary_stats_match_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3, 12))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[1, 2] = np.nan  # a channel with no observation
    got = summary_stats(x).reshape(5, 3, len(STATS))
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        ref = {"mean": np.nanmean(x, -1), "std": np.nanstd(x, -1), "min": np.nanmin(x, -1),
               "max": np.nanmax(x, -1)}
    for k, v in ref.items():
        np.testing.assert_allclose(got[..., STATS.index(k)], v, rtol=1e-5, equal_nan=True)
    for i in range(5):
        for c in range(3):
            ok = ~np.isnan(x[i, c])
            s = got[i, c]
            if ok.sum() >= 2:
                t = np.arange(12)[ok]
                assert s[STATS.index("slope")] == pytest.approx(np.polyfit(t, x[i, c][ok], 1)[0], rel=1e-4)
                assert s[STATS.index("last")] == pytest.approx(x[i, c][ok][-1])
            elif ok.sum() == 0:
                assert np.isnan(s).all()


def test_grid_summary_stats_equal_the_per_window_reference():
    """The builder's running-sum statistics match the one-window-at-a-time reference."""
    from cis490.data.windows import Grid, grid_summary_stats, window_ends

    rng = np.random.default_rng(1)
    n, spec = 90, WindowSpec(20, 3)
    values = rng.normal(size=(6, n)) * np.array([1, 10, 1e3, 1e6, 1e9, 1])[:, None]
    values[4] += 6e9  # a bytes-sized gauge with a large offset
    values[rng.random(values.shape) < 0.1] = np.nan
    values[2, 30:70] = np.nan  # windows with no or one observation
    values[5] = np.nan  # an absent stream
    labels = np.zeros(n, np.int64)
    labels[40:44] = -1  # unlabelled seconds: windows ending there are dropped
    grid = Grid(values, labels, T0)
    x, _, _ = make_windows(grid, spec)
    ends = window_ends(n, spec, labels)
    fast = grid_summary_stats(values, ends, spec.length_s).reshape(len(ends), 6, len(STATS))
    ref = summary_stats(x).reshape(len(ends), 6, len(STATS))
    assert fast.shape == ref.shape and len(ends) < spec.n_windows(n)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    scale = np.array([np.nanstd(v) if not np.isnan(v).all() else 0.0 for v in values])[None, :, None] + 1.0
    np.testing.assert_allclose(fast / scale, ref / scale, rtol=1e-5, atol=1e-5, equal_nan=True)
    for stat in ("min", "max", "last"):  # taken, not computed: exactly the reference's
        np.testing.assert_array_equal(fast[..., STATS.index(stat)], ref[..., STATS.index(stat)])


def test_batched_statistics_are_bit_identical_to_one_episode_at_a_time(monkeypatch):
    """Episodes of different lengths (padding), with no windows, across batch edges."""
    import cis490.data.windows as wmod
    from cis490.data.windows import grid_summary_stats, grid_summary_stats_many, window_ends

    rng = np.random.default_rng(5)
    spec = WindowSpec(20, 3)
    vals, ends = [], []
    for n in (90, 45, 120, 19, 60, 200, 33):
        v = rng.normal(size=(5, n)) * np.array([1, 1e3, 1e6, 1e9, 1])[:, None]
        v[rng.random(v.shape) < 0.2] = np.nan
        v[4] = np.nan
        vals.append(v)
        ends.append(window_ends(n, spec, np.zeros(n, np.int64)))
    assert len(ends[3]) == 0  # an episode shorter than a window
    one = [grid_summary_stats(v, e, spec.length_s) for v, e in zip(vals, ends)]
    for budget in (wmod.BATCH_VALUES, 5 * 20 * 60, 1):  # all at once, a few per batch, one per batch
        monkeypatch.setattr(wmod, "BATCH_VALUES", budget)
        many = grid_summary_stats_many(vals, ends, spec.length_s)
        assert len(many) == len(one)
        for a, b in zip(many, one):
            assert a.shape == b.shape and a.dtype == np.float32
            np.testing.assert_array_equal(a, b)


def test_a_constant_window_has_std_and_slope_exactly_zero_beside_a_burst():
    """A constant window next to a 1e9 burst, or far from the episode's level, reports
    std 0 and slope 0 exactly, and a slow ramp on a 1e9 level its true slope: the
    statistics come from the window's own values, not differences of running sums."""
    from cis490.data.windows import Grid, grid_summary_stats, window_ends

    spec = WindowSpec(20, 2)
    n = 120
    values = np.full((3, n), 1234.5)
    burst = np.random.default_rng(3).uniform(1e8, 5e9, 20)
    values[0, 10:30] = burst  # bytes-sized burst
    values[1, :] = 7e6
    values[1, 50:60] = np.nan  # gaps do not make a window less constant
    values[2, 60:] = np.arange(60) * 3.0 + 1e9  # a slow ramp on a 1e9 level, after a plateau
    ends = window_ends(n, spec, np.zeros(n, np.int64))
    fast = grid_summary_stats(values, ends, spec.length_s).reshape(len(ends), 3, len(STATS))
    x, _, _ = make_windows(Grid(values, np.zeros(n, np.int64), T0), spec)
    ref = summary_stats(x).reshape(len(ends), 3, len(STATS))
    const = (ends - spec.length_s >= 30) & (ends <= 60)  # channel 0's windows after the burst
    assert const.any() and burst.max() > 1e9
    for c, sel in ((0, const), (1, np.ones(len(ends), bool)), (2, ends <= 60)):
        for stat in ("std", "slope"):
            np.testing.assert_array_equal(fast[sel, c, STATS.index(stat)], 0.0)
    ramp = ends - spec.length_s >= 60
    np.testing.assert_allclose(fast[ramp, 2, STATS.index("slope")], 3.0, rtol=1e-6)
    np.testing.assert_allclose(fast[ramp, 2, STATS.index("std")], ref[ramp, 2, STATS.index("std")], rtol=1e-6)
    np.testing.assert_allclose(fast[ramp, 2, STATS.index("std")], np.sqrt((20 ** 2 - 1) / 12) * 3.0, rtol=1e-6)
