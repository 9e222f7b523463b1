"""Split guards: by episode, no leakage, exclusions and untested profiles reported."""

from __future__ import annotations

import pandas as pd
import pytest

from cis490.data.splits import LEAVE_ONE_HOST_OUT, leave_one_host_out, make_split

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


def _timed(starts, host="h1", profiles=("beacon", "io-walk")):
    """One host's episodes with the given start times (episode ids in list order)."""
    return pd.DataFrame([{"episode_id": f"t{i:03d}", "host_id": host, "profile": profiles[i % len(profiles)],
                          "sample_name": "s", "status": "ok", "started_at_ns": t}
                         for i, t in enumerate(starts)])


def _parts_in_time_order(df, sp):
    t = dict(zip(df.episode_id, df.started_at_ns))
    assert max(t[e] for e in sp.train) < min(t[e] for e in sp.val)
    assert max(t[e] for e in sp.val) < min(t[e] for e in sp.test)


@pytest.mark.parametrize("seed", [0, 3])
def test_time_recipe_validates_on_the_latest_train_episodes(seed):
    df = _frame()
    sp = make_split(df, "time", [TRAIN], seed=seed, val_frac=0.2, test_frac=0.3)
    _parts_in_time_order(df, sp)
    n_before_test = len(sp.train) + len(sp.val)
    assert len(sp.val) == round(0.2 * n_before_test)  # no ties in this frame at the val cut
    # the val part is exactly the latest episodes before the test cut, not a per-profile draw
    t = dict(zip(df.episode_id, df.started_at_ns))
    latest = sorted(sp.train + sp.val, key=lambda e: (t[e], e))[-len(sp.val):]
    assert sorted(latest) == list(sp.val)


def test_time_recipe_ties_go_to_the_later_part_at_both_cuts():
    # 10 episodes; the test cut (index 7) lands on the second of two t=7, the val cut
    # (index 5 of the 6 left) on the second of two t=5: each tie goes whole to the later part
    starts = [1, 2, 3, 4, 5, 5, 7, 7, 8, 9]
    df = _timed(starts)
    sp = make_split(df, "time", seed=0, val_frac=0.2, test_frac=0.3)
    by_t = {e: t for e, t in zip(df.episode_id, df.started_at_ns)}
    assert sorted(by_t[e] for e in sp.test) == [7, 7, 8, 9]
    assert sorted(by_t[e] for e in sp.val) == [5, 5]
    assert sorted(by_t[e] for e in sp.train) == [1, 2, 3, 4]
    _parts_in_time_order(df, sp)
    # the episode-id tie-break fixes the order of equal starts, so a reorder of the rows changes nothing
    assert make_split(df.iloc[::-1], "time", seed=0, val_frac=0.2, test_frac=0.3) == sp


def test_time_recipe_val_cut_moves_later_when_ties_would_empty_train():
    df = _timed([1, 1, 1, 1, 2, 9, 9])  # test = t 9; the val cut lands on the t=1 tie
    sp = make_split(df, "time", seed=0, val_frac=0.9, test_frac=0.3)
    t = dict(zip(df.episode_id, df.started_at_ns))
    assert [t[e] for e in sp.val] == [2] and len(sp.train) == 4
    _parts_in_time_order(df, sp)
    same = make_split(_timed([1, 1, 1, 9, 9]), "time", seed=0, val_frac=0.5, test_frac=0.3)
    assert sp.train and same.val == () and len(same.train) == 3  # nothing later to validate on


def test_time_recipe_without_val():
    df = _frame()
    sp = make_split(df, "time", [TRAIN], seed=0, val_frac=0.0)
    assert sp.val == () and sp.train
    assert make_split(df, "time", [TRAIN], seed=0) != sp
    one = make_split(_timed([1, 5, 6]), "time", seed=0, val_frac=0.5, test_frac=0.7)
    assert len(one.train) == 1 and one.val == ()  # one episode before the test cut: no val


def test_time_recipe_is_deterministic_and_ignores_the_seed():
    df = _frame()
    a = make_split(df, "time", [TRAIN], seed=1)
    assert a == make_split(df, "time", [TRAIN], seed=1)
    b = make_split(df, "time", [TRAIN], seed=2)
    assert (a.train, a.val, a.test) == (b.train, b.val, b.test)
    shuffled = df.sample(frac=1.0, random_state=0)
    assert make_split(shuffled, "time", [TRAIN], seed=1) == a


@pytest.mark.parametrize("recipe", ["host", "sample"])
def test_host_and_sample_keep_the_hashed_per_profile_carve(recipe):
    from cis490.data.splits import _order_key

    df = _frame()
    sp = make_split(df, recipe, [TRAIN], seed=4)
    prof = dict(zip(df.episode_id, df.profile))
    for p in {prof[e] for e in sp.train + sp.val}:
        ids = sorted((e for e in sp.train + sp.val if prof[e] == p), key=lambda e: _order_key(4, e))
        n_val = min(len(ids) - 1, max(1, round(0.2 * len(ids))))
        assert sorted(ids[:n_val]) == sorted(e for e in sp.val if prof[e] == p)


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
    train_hosts = sorted(set(df.host_id) - {"k-gamingcom"})  # the world's train hosts
    sp = make_split(tiny_validation[0], "host", train_hosts, seed=0)
    prof = dict(zip(df.episode_id, df.profile))
    assert sp.test_hosts == ("k-gamingcom",)
    assert "scan-and-dial" not in {prof[e] for e in sp.test}  # the held-out host never ran it
    assert set(sp.untested_profiles) == {prof[e] for e in sp.train} - {prof[e] for e in sp.test}
    assert sp.as_dict()["n_test"] == len(sp.test) > 0


# --- leave one host out --------------------------------------------------------------


def _three_hosts():
    df = _frame()
    third = _frame()
    third["host_id"] = third["host_id"].map({TRAIN: "pi", "k-gamingcom": "pi"})
    third["episode_id"] = "p" + third["episode_id"]
    return pd.concat([df, third], ignore_index=True)


def test_leave_one_host_out_has_one_fold_per_host_testing_only_that_host():
    df = _three_hosts()
    folds = leave_one_host_out(df, seed=2)
    assert list(folds) == sorted(["k-gamingcom", "pi", TRAIN])
    host = dict(zip(df.episode_id, df.host_id))
    usable = set(df.loc[df.status != "invalid", "episode_id"])
    for held, sp in folds.items():
        assert sp.recipe == "host" and sp.seed == 2
        assert sp.test_hosts == (held,) and {host[e] for e in sp.test} == {held}
        assert held not in {host[e] for e in sp.train + sp.val} and held not in sp.train_hosts
        assert set(sp.test) == {e for e in usable if host[e] == held}  # all of that host
        others = sorted(set(folds) - {held})
        assert sp == make_split(df, "host", others, seed=2)
    assert leave_one_host_out(df, seed=2, val_frac=0.5)[TRAIN] == make_split(
        df, "host", ["k-gamingcom", "pi"], seed=2, val_frac=0.5)


def test_leave_one_host_out_skips_hosts_without_usable_episodes_and_needs_two():
    df = _frame()
    dead = _timed([1, 2], host="dead").assign(status="invalid")
    assert list(leave_one_host_out(pd.concat([df, dead], ignore_index=True))) == sorted([TRAIN, "k-gamingcom"])
    with pytest.raises(ValueError, match=f"^{LEAVE_ONE_HOST_OUT}: needs >= 2 hosts.*got 1 \\({TRAIN}\\)$"):
        leave_one_host_out(df[df.host_id == TRAIN])
    with pytest.raises(ValueError, match="got 1"):
        leave_one_host_out(pd.concat([df[df.host_id == TRAIN], dead], ignore_index=True))
