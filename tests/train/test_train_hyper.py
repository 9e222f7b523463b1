"""Hyper validation against the config dataclasses: messages name the key."""

from __future__ import annotations

import pytest

from cis490.models import configs


@pytest.mark.parametrize("model", sorted(configs.CONFIGS))
def test_defaults_validate_and_round_trip(model):
    cfg = configs.validate_hyper(model, {})
    assert cfg == configs.CONFIGS[model]()
    assert configs.config_from_dict(model, configs.config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("model", "hyper", "key"),
    [
        ("gru", {"hiden": 32}, "hiden"),
        ("gbt", {"hidden": 32}, "hidden"),
        ("gru", {"hidden": "32"}, "hidden"),
        ("gru", {"hidden": 32.5}, "hidden"),
        ("gru", {"epochs": True}, "epochs"),
        ("gru", {"bidirectional": 1}, "bidirectional"),
        ("mlp", {"hidden": 64}, "hidden"),
        ("mlp", {"hidden": [64, "x"]}, "hidden"),
        ("mlp", {"lr": "fast"}, "lr"),
        ("cnn", {"epochs": 0}, "epochs"),
        ("cnn", {"dropout": 1.5}, "dropout"),
        ("gbt", {"subsample": 0.0 - 1}, "subsample"),
        ("transformer", {"lr": float("nan")}, "lr"),
    ],
)
def test_bad_hyper_is_refused_naming_the_key(model, hyper, key):
    with pytest.raises(configs.HyperError, match=repr(key)):
        configs.validate_hyper(model, hyper)


def test_numbers_are_coerced_to_the_field_type():
    cfg = configs.validate_hyper("mlp", {"lr": 1, "hidden": [16, 8]})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.hidden == (16, 8)


def test_transformer_heads_must_divide_width():
    with pytest.raises(configs.HyperError, match="n_heads"):
        configs.validate_hyper("transformer", {"d_model": 30, "n_heads": 4})


def test_unknown_model_is_refused():
    with pytest.raises(configs.HyperError, match="'rnn'"):
        configs.validate_hyper("rnn", {})


def test_parse_hyper_args_takes_json_values():
    assert configs.parse_hyper_args(["epochs=5", "hidden=[64, 32]", "bidirectional=true"]) == {
        "epochs": 5, "hidden": [64, 32], "bidirectional": True}
    with pytest.raises(configs.HyperError, match="'lr'"):
        configs.parse_hyper_args(["lr=fast"])
    with pytest.raises(configs.HyperError, match="'epochs'"):
        configs.parse_hyper_args(["epochs=1", "epochs=2"])
    with pytest.raises(configs.HyperError, match="key=JSON"):
        configs.parse_hyper_args(["epochs"])


def test_configs_module_imports_without_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys, cis490.models, cis490.models.configs; "
            "bad = [m for m in ('torch', 'xgboost', 'numpy', 'pandas') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
