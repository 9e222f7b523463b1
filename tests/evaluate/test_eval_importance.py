"""Permutation importance finds the channel a toy model relies on."""

from __future__ import annotations

import numpy as np
import pytest

from cis490.evaluate import permutation_importance
from cis490.evaluate.importance import channel_permutation


def _summary_task(n=600, seed=0):
    """Features: channel a = columns 0-1 (carry the label), b = 2-3, c = 4 (noise)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    X = rng.normal(size=(n, 5))
    X[:, 0] += 3 * y
    X[:, 1] -= 3 * y
    return X, y


def _uses_channel_a(X):
    return np.clip(np.rint((X[:, 0] - X[:, 1]) / 6), 0, 3).astype(int)


CHANNELS = {"a": [0, 1], "b": [2, 3], "c": 4}


def test_importance_concentrates_on_the_channel_the_model_uses():
    X, y = _summary_task()
    before = X.copy()
    imp = permutation_importance(_uses_channel_a, X, y, CHANNELS, n_repeats=3, seed=1)
    assert imp.base_macro_f1 > 0.9
    assert imp.drop["a"] > 0.5
    assert imp.drop["b"] == 0 and imp.drop["c"] == 0
    assert imp.drop_std["a"] > 0 and imp.n_repeats == 3 and imp.seed == 1
    np.testing.assert_array_equal(X, before)          # input untouched


def test_tensor_channels_and_masks_move_together():
    rng = np.random.default_rng(3)
    n, c, t = 400, 3, 8
    y = rng.integers(0, 4, n)
    x = rng.normal(size=(n, c, t)).astype(np.float32)
    x[:, 2, :] += 4 * y[:, None]
    mask = np.ones((n, c, t), dtype=bool)
    mask[:, 2, :] = (y[:, None] % 2).astype(bool)  # mask carries a bit of the label too

    seen_masks = []

    def predict(arrs):
        values, m = arrs
        seen_masks.append(m[:, 2, 0].copy())
        return np.clip(np.rint(values[:, 2, :].mean(axis=1) / 4), 0, 3).astype(int)

    imp = permutation_importance(predict, (x, mask), y, {"h0": 0, "h1": 1, "h2": 2}, seed=0)
    assert imp.drop["h2"] > 0.5 and imp.drop["h0"] == 0 and imp.drop["h1"] == 0
    # the call that permuted channel 2 saw the mask permuted the same way
    perm = channel_permutation("h2", n, 0, 0)
    np.testing.assert_array_equal(seen_masks[3], mask[perm, 2, 0])


def test_the_same_permutations_are_used_for_every_model():
    X, y = _summary_task()
    seen: dict[str, list] = {"m1": [], "m2": []}

    def spy(name):
        def predict(Xp):
            seen[name].append(Xp[:, 2].copy())
            return _uses_channel_a(Xp)
        return predict

    permutation_importance(spy("m1"), X, y, CHANNELS, n_repeats=2, seed=5)
    permutation_importance(spy("m2"), X, y, CHANNELS, n_repeats=2, seed=5)
    for a, b in zip(seen["m1"], seen["m2"]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(channel_permutation("a", 50, 5, 0),
                              channel_permutation("b", 50, 5, 0))


@pytest.mark.parametrize("channels,match", [
    ({}, "channels"),
    ({"a": 9}, r"channels\['a'\]"),
    ({"a": []}, r"channels\['a'\]"),
])
def test_importance_validation_names_the_parameter(channels, match):
    X, y = _summary_task(50)
    with pytest.raises(ValueError, match=match):
        permutation_importance(_uses_channel_a, X, y, channels)
