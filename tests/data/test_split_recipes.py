"""Split guards: by episode, no leakage, exclusions and untested profiles reported."""

from __future__ import annotations

import pandas as pd
import pytest

from cis490.data.splits import make_split

TRAIN = "elliott-thinkpad"


def _frame():
    """A synthetic validation table with the world's shape (no tarballs needed)."""
    rows = []
    samples = {"scan-and-dial": ["m1", "m2"], "cpu-saturate": ["x1"], "low-and-slow": ["d1"],
               "io-walk": ["w1", "w2", "w3", "w4"], "beacon": ["b1", "b2"], "fork-storm": ["f1", "f2"]}
    i = 0
    for host in (TRAIN, "k-gamingcom"):
        for prof, names in samples.items():
            if host == "k-gamingcom" and prof == "scan-and-dial":
                continue
            for k in range(6):
                status = "invalid" if i % 17 == 5 else ("degraded" if host != TRAIN and k % 3 else "ok")
                rows.append({"episode_id": f"e{i:04d}", "host_id": host, "profile": prof,
                             "sample_name": names[k % len(names)], "status": status,
                             "started_at_ns": (i * 7919) % 1000 * 10**9 + (i % 3)})
                i += 1
    return pd.DataFrame(rows)


@pytest.mark.parametrize("recipe", ["host", "sample", "time"])
def test_no_episode_in_two_splits_and_invalid_in_none(recipe):
    df = _frame()
    sp = make_split(df, recipe, [TRAIN], seed=3)
    parts = [set(sp.train), set(sp.val), set(sp.test)]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    invalid = set(df.loc[df.status == "invalid", "episode_id"])
    assert not invalid & (parts[0] | parts[1] | parts[2])
    assert sp.n_invalid == len(invalid)


@pytest.mark.parametrize("recipe", ["host", "sample", "time"])
def test_test_hosts_never_in_train(recipe):
    df = _frame()
    sp = make_split(df, recipe, [TRAIN], seed=0)
    host = dict(zip(df.episode_id, df.host_id))
    assert {host[e] for e in sp.train + sp.val} == {TRAIN}
    if recipe == "host":
        assert {host[e] for e in sp.test} == {"k-gamingcom"}


def test_host_recipe_reports_untested_profiles():
    sp = make_split(_frame(), "host", TRAIN, seed=0)
    assert sp.untested_profiles == ("scan-and-dial",)
    assert sp.test_hosts == ("k-gamingcom",) and sp.train_hosts == (TRAIN,)


def test_sample_recipe_excludes_profiles_with_too_few_samples_and_reports_them():
    df = _frame()
    sp = make_split(df, "sample", [TRAIN], seed=0)
    assert set(sp.excluded_profiles) == {"cpu-saturate", "low-and-slow"}
    assert "only 1 unique sample_name" in sp.excluded_profiles["cpu-saturate"]
    prof = dict(zip(df.episode_id, df.profile))
    used = {prof[e] for e in sp.train + sp.val + sp.test}
    assert not used & {"cpu-saturate", "low-and-slow"}
    sample = dict(zip(df.episode_id, df.sample_name))
    test_samples = {sample[e] for e in sp.test}
    assert test_samples == set(sp.held_out_samples) and len(sp.held_out_samples) == 4
    assert not test_samples & {sample[e] for e in sp.train + sp.val}
    assert sp.untested_profiles == ()


def test_time_recipe_puts_all_train_episodes_before_all_test_episodes():
    df = _frame()
    sp = make_split(df, "time", [TRAIN], seed=0, test_frac=0.3)
    t = dict(zip(df.episode_id, df.started_at_ns))
    assert max(t[e] for e in sp.train + sp.val) < min(t[e] for e in sp.test)
    n = len(sp.train) + len(sp.val) + len(sp.test)
    assert 0.2 < len(sp.test) / n < 0.45


def test_validation_is_carved_by_episode_deterministically():
    df = _frame()
    a, b = make_split(df, "host", TRAIN, seed=5), make_split(df, "host", TRAIN, seed=5)
    c = make_split(df, "host", TRAIN, seed=6)
    assert a == b and a.val != c.val
    prof = dict(zip(df.episode_id, df.profile))
    assert {prof[e] for e in a.val} == {prof[e] for e in a.train}  # every train profile validated
    # stable when an unrelated episode disappears
    d = make_split(df[df.episode_id != a.test[0]], "host", TRAIN, seed=5)
    assert d.val == a.val


def test_bad_arguments_name_the_field():
    df = _frame()
    with pytest.raises(ValueError, match="train_hosts: nope"):
        make_split(df, "host", ["nope"])
    with pytest.raises(ValueError, match="needs at least one train host"):
        make_split(df, "host", [])
    with pytest.raises(ValueError, match="split recipe"):
        make_split(df, "random", [TRAIN])
    with pytest.raises(ValueError, match="empty test"):
        make_split(df, "host", [TRAIN, "k-gamingcom"])


def test_split_from_a_real_validation_file(tiny_validation):
    from cis490.data.validate import read_validation

    df = read_validation(tiny_validation[0])
    sp = make_split(tiny_validation[0], "host", TRAIN, seed=0)
    prof = dict(zip(df.episode_id, df.profile))
    assert "scan-and-dial" in sp.untested_profiles
    assert set(sp.untested_profiles) == {prof[e] for e in sp.train} - {prof[e] for e in sp.test}
    assert sp.as_dict()["n_test"] == len(sp.test) > 0
