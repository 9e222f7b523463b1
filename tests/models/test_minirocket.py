"""minirocket: MiniRocket features from aeon + a class-weighted ridge.

The shared suite (test_models_suite.py) covers the interface; here: same seed same bytes
(threads included), a loaded checkpoint rebuilds the same transform, the ridge is
sklearn's, the alpha choice and its history, the train cap, the masks, the driver, a
public dataset (GunPoint) and the optional dependency (everything else imports without
aeon, and minirocket says which extra to install).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tests.models.models_helpers import HAVE_AEON, N_CHANNELS, N_CLASSES, new_model, task_for

from cis490.models import rules

needs_aeon = pytest.mark.skipif(not HAVE_AEON, reason="aeon (cis490[minirocket]) absent")

# the one thing a blocked aeon import must leave working: the coordinator, configs, the
# model registry; and the one line minirocket gives instead
NO_AEON = textwrap.dedent("""
    import sys

    class NoAeon:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "aeon" or name.startswith("aeon."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoAeon)
    import cis490.fleet, cis490.fleet.cli, cis490.fleet.worker, cis490.fleet.spec
    import cis490.models, cis490.models.configs
    from cis490.models import configs
    assert "minirocket" in configs.CONFIGS and "minirocket" in configs.SEQUENCE_MODELS
    assert configs.validate_hyper("minirocket", {"n_kernels": 840}).n_kernels == 840
    from cis490 import models
    try:
        models.create("minirocket", n_classes=2, n_channels=3, n_steps=20)
    except ImportError as exc:
        print("REFUSED:", exc)
    print("aeon loaded:", any(m.split(".")[0] == "aeon" for m in sys.modules))
""")


def test_everything_but_minirocket_imports_without_aeon():
    res = subprocess.run([sys.executable, "-c", NO_AEON], capture_output=True, text=True,
                         check=True)
    lines = res.stdout.splitlines()
    refused = [line for line in lines if line.startswith("REFUSED:")]
    assert len(refused) == 1 and "pip install 'cis490[minirocket]'" in refused[0]
    assert "\n" not in refused[0] and "aeon" in refused[0]
    assert "aeon loaded: False" in lines


def test_a_host_without_aeon_does_not_claim_minirocket(monkeypatch):
    from cis490.fleet import capability
    from cis490.fleet.manifest import HostPolicy
    from cis490.fleet.spec import build_spec

    real = capability._version
    monkeypatch.setattr(capability, "_version", lambda d: None if d == "aeon" else real(d))
    kinds = capability.available_kinds()
    assert "minirocket" not in kinds and {"gbt", "cnn", "smoke"} <= set(kinds)
    cap = capability.Capability(host_id="small", kinds=kinds)
    spec = build_spec({"model": "minirocket", "mode": "realistic"})
    verdict = capability.eligible(spec, cap, HostPolicy())
    assert not verdict.ok and "pip install 'cis490[minirocket]'" in verdict.reason
    assert capability.eligible(build_spec({"model": "gbt", "mode": "oracle"}), cap, HostPolicy()).ok
    monkeypatch.setattr(capability, "_version", real)
    if HAVE_AEON:
        assert "minirocket" in capability.available_kinds()


def test_memory_estimate_needs_no_aeon_and_names_its_terms():
    from cis490.models import configs
    from cis490.train import memory

    cfg = configs.validate_hyper("minirocket", {})
    small = memory.estimate("minirocket", cfg, {"n_channels": 27, "n_steps": 20}, 3000, 1000, 4)
    huge = memory.estimate("minirocket", cfg, {"n_channels": 27, "n_steps": 20}, 2_000_000,
                           500_000, 4)
    assert small.parts["features"] == 3000 * 9996 * 4 and small.parts["gram"] == 3000 ** 2 * 8
    # capped: the train size past max_train_windows only adds per-window bookkeeping
    assert huge.parts["features"] == 4096 * 9996 * 4
    assert huge.peak_bytes - small.peak_bytes < 2.5e9
    if HAVE_AEON:
        from cis490.models import minirocket

        assert (memory.MINIROCKET_CHUNK_ROWS, memory.MINIROCKET_COL_BLOCK) == (
            minirocket.CHUNK_ROWS, minirocket.COL_BLOCK)


@needs_aeon
def test_same_seed_same_bytes_and_threads_do_not_change_them(tmp_path):
    data = task_for("minirocket", n_train=400, n_val=100)  # 400 > the 300-window cap
    sides, jsons = [], []
    for run, threads in (("a", 1), ("b", 1), ("c", 2)):
        model = new_model("minirocket", threads=threads)
        model.fit(*data, seed=7)
        path = model.save(tmp_path / run)
        jsons.append(path.read_bytes())
        sides.append((tmp_path / run / "minirocket_custom.safetensors").read_bytes())
    assert jsons[0] == jsons[1] and sides[0] == sides[1]
    assert sides[2] == sides[0]  # numba's threads (one window each) and BLAS's threads
    other = new_model("minirocket")
    other.fit(*data, seed=8)
    other.save(tmp_path / "d")
    assert (tmp_path / "d" / "minirocket_custom.safetensors").read_bytes() != sides[0]


@needs_aeon
def test_a_loaded_checkpoint_rebuilds_the_same_transform(fitted, tmp_path):
    from cis490 import models

    model, _, (_, _, Xva, _) = fitted("minirocket")
    loaded = models.load(model.save(tmp_path))
    U = model._inputs(Xva)
    assert np.array_equal(loaded.transform.transform(U), model.transform.transform(U))
    assert np.array_equal(loaded._features(U), model._features(U))
    for a, b in zip(loaded.transform.parameters, model.transform.parameters):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert loaded.temperature == model.temperature and loaded.alpha == model.alpha
    assert np.array_equal(loaded.mask_index, model.mask_index)
    from safetensors.numpy import load

    keys = list(load((tmp_path / "minirocket_custom.safetensors").read_bytes()))
    assert {"minirocket.biases", "minirocket.dilations", "minirocket.n_features_per_dilation",
            "minirocket.channel_indices", "minirocket.n_channels_per_combination",
            "ridge.coef", "ridge.intercept", "features.mean", "features.scale",
            "input.mask_channels", "ridge.temperature", "ridge.alpha"} == set(keys)


@needs_aeon
@pytest.mark.parametrize(("n", "p"), [(60, 200), (300, 40)])  # the dual and the primal solve
def test_the_ridge_is_sklearns_weighted_ridge_classifier(n, p):
    from sklearn.linear_model import RidgeClassifier

    from cis490.models.minirocket import _ridge_path

    rng = np.random.default_rng(0)
    F = rng.normal(size=(n, p)).astype(np.float32)
    y = rng.integers(0, 3, n)
    sw = rng.uniform(0.5, 3.0, n)
    alphas = np.array([30.0, 0.3])
    coefs, intercepts, losses = _ridge_path(F.copy(), y, sw, 3, alphas)
    for alpha, coef, icpt, loss in zip(alphas, coefs, intercepts, losses):
        ref = RidgeClassifier(alpha=alpha, solver="cholesky").fit(
            F.astype(np.float64), y, sample_weight=sw)
        assert np.allclose(coef, ref.coef_.T, atol=1e-7) and np.allclose(icpt, ref.intercept_, atol=1e-7)
        d = F.astype(np.float64) @ coef + icpt
        target = np.where(np.arange(3)[None, :] == y[:, None], 1.0, -1.0)
        # (the design is held in float32: a near-interpolating fit agrees to ~1e-6 relative)
        assert loss == pytest.approx((sw[:, None] * (target - d) ** 2).sum() / (sw.sum() * 3), rel=1e-4)


@needs_aeon
def test_every_alpha_is_a_record_and_the_best_val_macro_f1_wins(fitted):
    from cis490.models.minirocket import ridge_alphas

    model, report, (_, _, Xva, yva) = fitted("minirocket")
    alphas = ridge_alphas(model.config)
    assert len(alphas) == model.config.epochs == 10 and alphas[0] == 1e3 and alphas[-1] == 1e-3
    assert [r.lr for r in report.history] == list(alphas)  # largest first
    f1s = [r.val_macro_f1 for r in report.history]
    assert report.best_val_macro_f1 == max(f1s) == f1s[report.best_epoch - 1]
    assert model.alpha == alphas[report.best_epoch - 1]
    assert all(r.val_loss > 0 and r.loss > 0 for r in report.history)
    assert report.history[-1].loss < report.history[0].loss  # less penalty, closer fit
    pred = model.predict_proba(Xva).argmax(axis=1)
    assert rules.macro_f1(yva, pred, N_CLASSES, labels=rules.present_labels(yva)) == \
        report.best_val_macro_f1


@needs_aeon
def test_patience_ends_the_alpha_list(monkeypatch):
    script = iter([0.5, 0.9, 0.4, 0.3, 0.2, 0.95, 0.1, 0.1, 0.1, 0.1])
    real = rules.macro_f1
    Xtr, ytr, Xva, yva = task_for("minirocket", n_train=120, n_val=48)
    monkeypatch.setattr(rules, "macro_f1", lambda yt, yp, k, *, labels: next(script)
                        if len(yt) == len(yva) else real(yt, yp, k, labels=labels))
    report = new_model("minirocket", patience=3).fit(Xtr, ytr, Xva, yva, seed=0)
    assert report.epochs_run == len(report.history) == 5 and report.best_epoch == 2


@needs_aeon
def test_a_val_macro_f1_tie_goes_to_the_lower_val_log_loss_then_the_larger_alpha(monkeypatch):
    from cis490.models import minirocket

    Xtr, ytr, Xva, yva = task_for("minirocket", n_train=120, n_val=48)  # one val chunk
    real = rules.macro_f1
    monkeypatch.setattr(rules, "macro_f1", lambda yt, yp, k, *, labels: 0.5
                        if len(yt) == len(yva) else real(yt, yp, k, labels=labels))
    losses = iter([3.0, 2.0, 1.0, 1.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])  # one call per alpha
    monkeypatch.setattr(minirocket, "_weighted_nll",
                        lambda d, y, w: np.full(len(minirocket.TEMPERATURES), next(losses)))
    model = new_model("minirocket")
    report = model.fit(Xtr, ytr, Xva, yva, seed=0)
    assert report.best_epoch == 3 and model.alpha == report.history[2].lr


@needs_aeon
def test_the_cap_samples_train_from_the_seed_and_masks_follow_missingness():
    Xtr, ytr, Xva, yva = task_for("minirocket", n_train=400, n_val=60)
    Xtr[:, 2, :] = np.where(np.isnan(Xtr[:, 2, :]), 0.0, Xtr[:, 2, :])  # channel 2: complete
    model = new_model("minirocket", max_train_windows=100, epochs=1)
    state = np.random.get_state()
    model.fit(Xtr, ytr, Xva, yva, seed=3)
    assert np.array_equal(np.random.get_state()[1], state[1])  # aeon's np.random.seed undone
    assert model.val_metrics["n_train"] == 400
    assert list(model.mask_index) == [0, 1, 3, 4]  # channels with a missing value
    assert model.transform.metadata_["n_channels"] == N_CHANNELS + 4
    assert model.transform.metadata_["n_cases"] == 100  # fitted on the sample only
    p = model.predict_proba(Xva)
    assert np.isfinite(p).all()
    plain = new_model("minirocket", max_train_windows=100, epochs=1, mask_channels=False)
    plain.fit(Xtr, ytr, Xva, yva, seed=3)
    assert plain.mask_index.size == 0


@needs_aeon
def test_class_weights_weight_the_ridge(monkeypatch):
    from cis490.models import minirocket

    seen = []
    real = minirocket._ridge_path
    monkeypatch.setattr(minirocket, "_ridge_path",
                        lambda F, y, sw, k, a: seen.append((y.copy(), sw.copy())) or real(F, y, sw, k, a))
    Xtr, ytr, Xva, yva = task_for("minirocket", n_train=120, n_val=40)
    model = new_model("minirocket", epochs=1)
    model.fit(Xtr, ytr, Xva, yva, seed=0)
    (y, sw), = seen
    assert np.array_equal(sw, model.class_weights[y]) and len(set(sw.tolist())) > 1


@needs_aeon
def test_short_windows_are_refused_at_create():
    from cis490 import models

    with pytest.raises(ValueError, match="n_steps >= 9"):
        models.create("minirocket", n_classes=2, n_channels=3, n_steps=8)


@needs_aeon
def test_gunpoint_at_defaults_reaches_published_accuracy():
    """UCR GunPoint as aeon ships it (offline): 50 train series of 150 steps, a stratified
    fifth for val, seed 0, the default config. Published MiniRocket: 0.993 (Dempster et al.
    2021, trained on all 50 with leave-one-out alphas); measured here: 0.987."""
    datasets = pytest.importorskip("aeon.datasets")
    from sklearn.model_selection import train_test_split

    from cis490 import models

    X, y = datasets.load_gunpoint(split="train")
    Xt, yt = datasets.load_gunpoint(split="test")
    classes = sorted(set(y))
    y = np.array([classes.index(v) for v in y])
    yt = np.array([classes.index(v) for v in yt])
    Xtr, Xva, ytr, yva = train_test_split(X.astype(np.float32), y, test_size=0.2,
                                          random_state=0, stratify=y)
    model = models.create("minirocket", n_classes=2, n_channels=1, n_steps=X.shape[2])
    model.fit(Xtr, ytr, Xva, yva, seed=0)
    acc = float((model.predict_proba(Xt.astype(np.float32)).argmax(axis=1) == yt).mean())
    assert acc >= 0.95, acc


@needs_aeon
def test_the_driver_trains_minirocket_on_tensors(tmp_path):
    """``python -m cis490.train.run --model minirocket`` on a tiny real store: exit 0, the
    checkpoint, one progress line per alpha, same bytes twice, the estimate."""
    import os

    from tests.train.conftest import build_demo_data

    from cis490 import models
    from cis490.train import run

    d = build_demo_data(tmp_path / "data")
    outs = []
    for run_name in ("a", "b"):
        r, w = os.pipe()
        out = tmp_path / run_name
        assert run.main(d.argv("minirocket", out, "--progress-fd", str(w), "--hyper",
                               "n_kernels=840")) == 0
        os.close(w)
        with os.fdopen(r) as fh:
            lines = [json.loads(line) for line in fh.read().splitlines()]
        outs.append(out)
    ends = [rec for rec in lines if "loss" in rec]
    assert [rec["epoch"] for rec in ends] == list(range(1, 11))
    assert sorted(p.name for p in outs[0].iterdir()) == [
        "minirocket_realistic.ckpt.json", "minirocket_realistic.safetensors"]
    for f in outs[0].iterdir():
        assert f.read_bytes() == (outs[1] / f.name).read_bytes(), f.name
    meta = json.loads((outs[0] / "minirocket_realistic.ckpt.json").read_bytes())
    assert "device" not in meta["data"] and meta["libraries"]["aeon"] != "absent"
    assert models.load(outs[0]).name == "minirocket"
