"""Per-channel permutation importance on the test split (the seed's ``xai/``).

A channel's importance is how much macro F1 drops when that channel's values
are shuffled across test windows, breaking its link to the label while keeping
its marginal distribution (and, within the channel, the joint distribution of
its columns / time steps, because one permutation moves a whole window's
slice of the channel at once).

Same permutations for every model: the permutation of channel c, repeat r is
drawn from ``numpy.random.default_rng([seed, r, crc32(c)])`` and depends only
on (seed, repeat, channel name, number of windows) — so two models evaluated
on the same windows are disturbed identically, and their importances are
comparable (a paired comparison, like the bootstrap).

A channel is addressed either by summary-feature column indices (a sequence
of ints into axis 1 of a 2-D ``(N, F)`` array) or by a tensor channel index
(an int into axis 1 of ``(N, C, T)``). ``X`` may be one array or a tuple of
arrays sharing axes 0 and 1 — e.g. ``(values, mask)`` for the sequence
models; each member is permuted the same way, so a channel's missingness
mask travels with its values.

Importance is reported in macro F1 points (positive: the model relies on the
channel; ~0: it ignores it; negative: noise the model is better without).

Bounded: ``cis490 eval`` computes it on a sample of test episodes
(``sample_episodes``: at most ``max_episodes``, the first in the order of
``sha256(f"{seed}:{episode_id}")``, so every model gets the same episodes),
materialising only those windows; ``Importance.sample`` records which
(``n_episodes`` of ``n_episodes_total``, the windows, a digest of the ids), and
the report states it.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence, Union

import numpy as np

from .metrics import confusion_matrix, macro_f1, validate_labels

__all__ = ["Importance", "SAMPLE_ORDER", "channel_permutation", "permutation_importance",
           "sample_episodes", "sample_record"]

SAMPLE_ORDER = "sha256(seed:episode)"   # how the episodes of the sample are ordered

ChannelSpec = Union[int, Sequence[int]]
Arrays = Union[np.ndarray, tuple]


@dataclass(frozen=True)
class Importance:
    """Drop in macro F1 per channel (mean and spread over repeats)."""

    base_macro_f1: float
    drop: Mapping[str, float]           # channel -> mean drop over repeats
    drop_std: Mapping[str, float]       # channel -> std over repeats (0 if one)
    n_repeats: int
    seed: int
    sample: Mapping | None = field(default=None, compare=False)  # sample_record(); None: all

    def as_dict(self) -> dict:
        return {"base_macro_f1": self.base_macro_f1, "drop": dict(self.drop),
                "drop_std": dict(self.drop_std), "n_repeats": self.n_repeats,
                "seed": self.seed, "sample": None if self.sample is None else dict(self.sample)}


def sample_episodes(episode_ids: Iterable[str], max_episodes: int, seed: int) -> list[str]:
    """The episodes importance is computed on: at most ``max_episodes`` (0 = all) of
    ``episode_ids``, the first in ``sha256(f"{seed}:{episode_id}")`` order; returned sorted.

    A pure function of the ids, the cap and the seed: every model evaluated on the same
    test episodes gets the same sample (and so the same windows, and permutations).
    """
    if isinstance(max_episodes, bool) or not isinstance(max_episodes, (int, np.integer)) \
            or max_episodes < 0:
        raise ValueError(f"`max_episodes` must be an integer >= 0 (0 = all), got {max_episodes!r}")
    ids = sorted({str(e) for e in episode_ids})
    if max_episodes and len(ids) > max_episodes:
        ids = sorted(sorted(ids, key=lambda e: hashlib.sha256(f"{seed}:{e}".encode()).hexdigest())
                     [:int(max_episodes)])
    return ids


def sample_record(chosen: Sequence[str], n_total: int, n_windows: int, n_windows_total: int,
                  max_episodes: int, seed: int) -> dict:
    """What ``Importance.sample`` (and the report) says about a sample of test episodes."""
    return {"n_episodes": len(chosen), "n_episodes_total": int(n_total),
            "n_windows": int(n_windows), "n_windows_total": int(n_windows_total),
            "max_episodes": int(max_episodes), "order": SAMPLE_ORDER, "seed": int(seed),
            "episodes_sha256": hashlib.sha256("\n".join(sorted(chosen)).encode()).hexdigest()}


def channel_permutation(channel: str, n_windows: int, seed: int, repeat: int) -> np.ndarray:
    """The permutation used for ``channel`` — identical for every model."""
    rng = np.random.default_rng([int(seed), int(repeat), zlib.crc32(channel.encode("utf-8"))])
    return rng.permutation(n_windows)


def _members(X: Arrays) -> tuple[np.ndarray, ...]:
    members = X if isinstance(X, tuple) else (X,)
    if not members:
        raise ValueError("`X` must be an array or a non-empty tuple of arrays")
    n = members[0].shape[0]
    for i, a in enumerate(members):
        if not isinstance(a, np.ndarray) or a.ndim < 2:
            raise ValueError(f"`X` member {i} must be an array with >= 2 dimensions")
        if a.shape[0] != n:
            raise ValueError(f"`X` members must share axis 0 (windows): {a.shape[0]} != {n}")
    return members


def _check_channels(channels: Mapping[str, ChannelSpec], width: int) -> dict[str, np.ndarray]:
    if not channels:
        raise ValueError("`channels` must name at least one channel")
    out = {}
    for name, spec in channels.items():
        idx = np.atleast_1d(np.asarray(spec, dtype=np.int64))
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"`channels[{name!r}]` must be an index or a non-empty "
                             f"sequence of indices")
        if idx.min() < 0 or idx.max() >= width:
            raise ValueError(f"`channels[{name!r}]` indexes outside axis 1 of `X` "
                             f"(width {width}): {idx.tolist()}")
        out[str(name)] = idx
    return out


def permutation_importance(
    predict: Callable[[Arrays], np.ndarray],
    X: Arrays,
    y_true,
    channels: Mapping[str, ChannelSpec],
    *,
    n_repeats: int = 1,
    seed: int = 0,
    n_classes: int | None = None,
    labels: Sequence[int] | None = None,
) -> Importance:
    """Macro F1 drop when each channel is permuted across windows.

    ``predict(X) -> labels`` is called once on the intact data and
    ``n_repeats`` times per channel; ``X`` is never modified (one working
    copy is disturbed and restored channel by channel).
    """
    members = _members(X)
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, (int, np.integer)) or n_repeats < 1:
        raise ValueError(f"`n_repeats` must be a positive integer, got {n_repeats!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
    chans = _check_channels(channels, members[0].shape[1])
    for i, a in enumerate(members[1:], 1):
        if a.shape[1] != members[0].shape[1]:
            raise ValueError(f"`X` member {i} must share axis 1 (channels) with member 0")
    n = members[0].shape[0]
    yt = np.asarray(y_true)
    if yt.shape != (n,):
        raise ValueError(f"`y_true` must have one label per window ({n}), got shape {yt.shape}")

    def score(arrs: tuple[np.ndarray, ...]) -> float:
        pred = predict(arrs if isinstance(X, tuple) else arrs[0])
        yt_, yp, k, lab = validate_labels(yt, pred, n_classes=n_classes, labels=labels,
                                          pred_name="predict(X)")
        return float(macro_f1(confusion_matrix(yt_, yp, k), lab))

    base = score(members)
    work = tuple(a.copy() for a in members)
    drop, drop_std = {}, {}
    for name, idx in chans.items():
        drops = []
        for r in range(int(n_repeats)):
            perm = channel_permutation(name, n, seed, r)
            for w, a in zip(work, members):
                w[:, idx] = a[np.ix_(perm, idx)]     # the whole channel slice moves together
            drops.append(base - score(work))
            for w, a in zip(work, members):
                w[:, idx] = a[:, idx]                # restore
        drop[name] = float(np.mean(drops))
        drop_std[name] = float(np.std(drops, ddof=1)) if len(drops) > 1 else 0.0
    return Importance(base, drop, drop_std, int(n_repeats), int(seed))
