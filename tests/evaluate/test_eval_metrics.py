"""Point metrics must equal scikit-learn's, absent classes included."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from cis490.evaluate import point_metrics
from cis490.evaluate.metrics import episode_confusions, validate_groups


def _cases():
    rng = np.random.default_rng(20261129)
    for i in range(25):
        n = int(rng.integers(1, 400))
        k = int(rng.integers(2, 6))
        yt = rng.integers(0, k, n)
        yp = np.where(rng.random(n) < rng.random(), yt, rng.integers(0, k, n))
        if i % 3 == 0:            # a class absent from y_true but predicted
            yt[yt == k - 1] = 0
        if i % 4 == 0:            # a class absent from both
            yt[yt == 1] = 0
            yp[yp == 1] = 0
        yield yt, yp, k
    yield np.array([2, 2, 2]), np.array([2, 2, 2]), 4     # one class, perfect
    yield np.array([0, 0]), np.array([1, 1]), 2           # all wrong


@pytest.mark.parametrize("yt,yp,k", list(_cases()))
def test_point_metrics_equal_sklearn(yt, yp, k):
    pm = point_metrics(yt, yp, n_classes=k)
    present = np.unique(yt)
    assert pm.macro_f1 == pytest.approx(
        skm.f1_score(yt, yp, labels=present, average="macro", zero_division=0), abs=1e-12)
    assert pm.accuracy == pytest.approx(skm.accuracy_score(yt, yp), abs=1e-12)
    np.testing.assert_allclose(
        pm.f1, skm.f1_score(yt, yp, labels=np.arange(k), average=None, zero_division=0),
        atol=1e-12)
    np.testing.assert_array_equal(pm.confusion,
                                  skm.confusion_matrix(yt, yp, labels=np.arange(k)))
    assert pm.labels == tuple(present)


@pytest.mark.parametrize("yt,yp,k", list(_cases())[:8])
def test_explicit_labels_equal_sklearn(yt, yp, k):
    labels = np.arange(k)                        # absent classes averaged in as 0
    pm = point_metrics(yt, yp, n_classes=k, labels=labels)
    assert pm.macro_f1 == pytest.approx(
        skm.f1_score(yt, yp, labels=labels, average="macro", zero_division=0), abs=1e-12)


def test_episode_confusions_sum_to_the_confusion_matrix():
    rng = np.random.default_rng(1)
    yt, yp = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    codes, uniq = validate_groups(rng.choice(["a", "b", "c", "d"], 500), 500)
    per = episode_confusions(codes, uniq.size, yt, yp, 4)
    assert per.shape == (4, 16)
    np.testing.assert_array_equal(per.sum(0).reshape(4, 4),
                                  skm.confusion_matrix(yt, yp, labels=range(4)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(y_true=[0, 1], y_pred=[0]), "same length"),
    (dict(y_true=[], y_pred=[]), "must not be empty"),
    (dict(y_true=[0, -1], y_pred=[0, 0]), "y_true.*non-negative"),
    (dict(y_true=[0, 1], y_pred=[0.5, 1]), "y_pred.*integer"),
    (dict(y_true=[[0, 1]], y_pred=[[0, 1]]), "y_true.*one-dimensional"),
    (dict(y_true=[0, 5], y_pred=[0, 1], n_classes=4), "n_classes"),
    (dict(y_true=[0, 1], y_pred=[0, 1], labels=[0, 0]), "labels.*repeat"),
])
def test_validation_names_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        point_metrics(kwargs.pop("y_true"), kwargs.pop("y_pred"), **kwargs)


def test_per_episode_confusion_names_its_episodes():
    from cis490.evaluate.metrics import per_episode_confusion

    ids, cms = per_episode_confusion([0, 1, 1, 0, 2], [0, 1, 0, 0, 2], ["b", "a", "a", "b", "c"])
    assert ids.tolist() == ["a", "b", "c"] and cms.shape == (3, 3, 3)
    np.testing.assert_array_equal(cms[0], [[0, 0, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(cms[1], [[2, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert cms[2, 2, 2] == 1
