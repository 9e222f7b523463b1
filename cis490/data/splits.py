"""Split recipes: which episodes train, validate and test a model.

Invariants (each guarded by a test):

- Splits are **by episode**: an episode's windows are all in one part, and no
  episode is in two parts. ``invalid`` episodes are in none.
- ``train_hosts`` bounds what a model may learn from: train and val episodes
  come only from those hosts, in every recipe.
- ``host`` (primary): test = every episode of the other hosts.
- ``sample``: per profile, one sample name (chosen from the seed) is held out
  for test; profiles with fewer than ``min_samples`` unique sample names
  cannot be tested on an unseen sample and are excluded from all three
  parts, and reported in ``excluded_profiles`` with the reason. Test comes
  from the train hosts (so the recipe measures the sample effect alone).
- ``time``: ordered by ``(started_at_ns, episode_id)``, the latest
  ``test_frac`` of the train hosts' episodes are test and the latest
  ``val_frac`` of the rest are val: train on the past, tune on the recent
  past, test on the future. Every train episode starts strictly before every
  val episode, and every val episode strictly before every test episode
  (ties at either cut go to the later part). If ties at the val cut would
  leave no train episode, the cut moves to the next later start time (no
  val if there is none). ``val_frac = 0`` or fewer than 2 episodes before
  the test cut: no val. The seed plays no part in this recipe.
- ``host`` and ``sample``: validation is carved from the train part by
  episode, per profile, in an order fixed by ``sha256(seed:episode_id)``:
  deterministic, and stable when unrelated episodes come or go.
- ``untested_profiles``: profiles present in train but absent from test
  (e.g. ``scan-and-dial`` under ``host``). Reported, never averaged in.
- ``leave_one_host_out``: one ``host`` split per host with usable episodes,
  trained on every other host, so each fold's test is exactly that host
  (needs >= 2 such hosts). The fleet manifest's
  ``split_recipe = "leave-one-host-out"`` expands to the same folds as jobs.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field
from cis490.common import InputError

__all__ = ["LEAVE_ONE_HOST_OUT", "RECIPES", "Split", "leave_one_host_out", "make_split",
           "usable_hosts"]

RECIPES = ("host", "sample", "time")
# not a recipe of one split: a set of `host` splits, one per held-out host (leave_one_host_out)
LEAVE_ONE_HOST_OUT = "leave-one-host-out"


@dataclass(frozen=True)
class Split:
    recipe: str
    seed: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    train_hosts: tuple[str, ...]
    test_hosts: tuple[str, ...]
    untested_profiles: tuple[str, ...] = ()
    excluded_profiles: dict[str, str] = field(default_factory=dict)
    held_out_samples: tuple[str, ...] = ()
    n_invalid: int = 0

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("train", "val", "test"):
            d[f"n_{k}"] = len(d[k])
        return d


def _order_key(seed: int, episode_id: str) -> str:
    return hashlib.sha256(f"{seed}:{episode_id}".encode()).hexdigest()


def _carve_val(df, seed: int, val_frac: float) -> tuple[list[str], list[str]]:
    train, val = [], []
    for _, g in sorted(df.groupby("profile"), key=lambda kv: kv[0]):
        ids = sorted(g["episode_id"], key=lambda e: _order_key(seed, e))
        n_val = 0 if len(ids) < 2 else min(len(ids) - 1, max(1, round(val_frac * len(ids))))
        val += ids[:n_val]
        train += ids[n_val:]
    return sorted(train), sorted(val)


def _carve_val_by_time(df, val_frac: float) -> tuple[list[str], list[str]]:
    """The latest ``val_frac`` of ``df``'s episodes by start time; ties at the cut go to val."""
    ordered = df.sort_values(["started_at_ns", "episode_id"], kind="mergesort")
    ids, starts = list(ordered["episode_id"]), [int(t) for t in ordered["started_at_ns"]]
    n = len(ids)
    if n < 2 or val_frac == 0:
        return sorted(ids), []
    first_val = n - min(n - 1, max(1, round(val_frac * n)))
    cut = starts[first_val]
    if cut == starts[0]:  # the tie at the cut would take every episode: cut at the next start
        later = [t for t in starts if t > cut]
        if not later:
            return sorted(ids), []
        cut = later[0]
    train = [e for e, t in zip(ids, starts) if t < cut]
    val = [e for e, t in zip(ids, starts) if t >= cut]
    return sorted(train), sorted(val)


def _load(validation):
    import pandas as pd

    if isinstance(validation, (str, os.PathLike)):
        from .validate import read_validation

        return read_validation(validation)
    if isinstance(validation, pd.DataFrame):
        return validation
    raise TypeError("validation: expected a path to validation_v1.parquet or a DataFrame")


def make_split(validation, recipe: str, train_hosts=None, seed: int = 0, *, val_frac: float = 0.2,
               test_frac: float = 0.3, min_samples: int = 2) -> Split:
    """Split the usable episodes of ``validation`` (path or DataFrame) by ``recipe``."""
    if recipe not in RECIPES:
        raise InputError(f"split recipe: unknown {recipe!r} (expected one of {', '.join(RECIPES)})")
    if not 0.0 <= val_frac < 1.0:
        raise InputError(f"val_frac must be in [0, 1), got {val_frac}")
    if not 0.0 < test_frac < 1.0:
        raise InputError(f"test_frac must be in (0, 1), got {test_frac}")
    if isinstance(train_hosts, str):
        train_hosts = [h for h in train_hosts.split(",") if h]
    df = _load(validation)
    n_invalid = int((df["status"] == "invalid").sum())
    df = df[df["status"] != "invalid"]
    hosts = sorted(df["host_id"].unique())
    train_hosts = tuple(sorted(set(train_hosts or ())))
    unknown = [h for h in train_hosts if h not in hosts]
    if unknown:
        raise InputError(f"train_hosts: {', '.join(unknown)} not in the data (hosts: {', '.join(hosts)})")
    if recipe == "host" and not train_hosts:
        raise InputError("train_hosts: the host recipe needs at least one train host")
    pool = df[df["host_id"].isin(train_hosts)] if train_hosts else df
    excluded: dict[str, str] = {}
    held_out: tuple[str, ...] = ()

    if recipe == "host":
        train_df, test_df = pool, df[~df["host_id"].isin(train_hosts)]
    elif recipe == "sample":
        keep = []
        for prof, g in sorted(pool.groupby("profile"), key=lambda kv: kv[0]):
            names = sorted(g["sample_name"].unique())
            if len(names) < min_samples:
                excluded[prof] = (f"only {len(names)} unique sample_name(s) ({', '.join(names)}); "
                                  f"a held-out-sample test needs >= {min_samples}")
                continue
            keep.append(prof)
            held_out += (min(names, key=lambda s: _order_key(seed, s)),)
        pool = pool[pool["profile"].isin(keep)]
        is_test = pool["sample_name"].isin(held_out)
        train_df, test_df = pool[~is_test], pool[is_test]
    else:  # time
        ordered = pool.sort_values(["started_at_ns", "episode_id"], kind="mergesort")
        if len(ordered) < 2:
            raise InputError("time recipe: fewer than 2 usable episodes on the train hosts")
        cut_i = min(len(ordered) - 1, max(1, math.ceil(len(ordered) * (1 - test_frac))))
        cut = int(ordered["started_at_ns"].iloc[cut_i])
        train_df, test_df = ordered[ordered["started_at_ns"] < cut], ordered[ordered["started_at_ns"] >= cut]

    if len(train_df) == 0 or len(test_df) == 0:
        raise InputError(f"{recipe} recipe: empty {'train' if len(train_df) == 0 else 'test'} part "
                         f"(train_hosts={', '.join(train_hosts) or 'all'})")
    if recipe == "time":
        train, val = _carve_val_by_time(train_df, val_frac)
    else:
        train, val = _carve_val(train_df, seed, val_frac)
    untested = sorted(set(train_df["profile"]) - set(test_df["profile"]))
    return Split(
        recipe=recipe, seed=seed, train=tuple(train), val=tuple(val),
        test=tuple(sorted(test_df["episode_id"])),
        train_hosts=tuple(sorted(train_df["host_id"].unique())),
        test_hosts=tuple(sorted(test_df["host_id"].unique())),
        untested_profiles=tuple(untested), excluded_profiles=excluded,
        held_out_samples=tuple(sorted(held_out)), n_invalid=n_invalid,
    )


def usable_hosts(df) -> list[str]:
    """The hosts with usable (status != invalid) episodes, sorted: the folds of a
    leave-one-host-out, here and in the evaluation."""
    return sorted(str(h) for h in df.loc[df["status"] != "invalid", "host_id"].unique())


def leave_one_host_out(validation, seed: int = 0, **kwargs) -> dict[str, Split]:
    """One ``host`` split per host with usable episodes, keyed by the held-out host.

    Fold ``h`` trains (and validates) on every other host and tests on ``h``
    alone. ``kwargs`` go to ``make_split`` (``val_frac``, ``test_frac``,
    ``min_samples``). Needs at least two hosts with usable episodes.
    """
    df = _load(validation)
    hosts = usable_hosts(df)
    if len(hosts) < 2:
        raise InputError(f"{LEAVE_ONE_HOST_OUT}: needs >= 2 hosts with usable episodes, "
                         f"got {len(hosts)} ({', '.join(hosts) or 'none'})")
    return {h: make_split(df, "host", [o for o in hosts if o != h], seed, **kwargs) for h in hosts}
