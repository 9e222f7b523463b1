"""``python -m cis490.train.run``: the contract of docs/CONTRACTS.md, on a tiny real store."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("xgboost")

from cis490 import models  # noqa: E402
from cis490.data import load as data_load  # noqa: E402
from cis490.data import splits as data_splits  # noqa: E402
from cis490.train import run  # noqa: E402

FAST = {"gbt": ["--hyper", "epochs=15"],
        "cnn": ["--hyper", "epochs=2", "--hyper", "filters=[8, 8]", "--hyper", "kernels=[5, 3]",
                "--hyper", "batch_size=64", "--hyper", "min_steps=0",
                "--hyper", "min_check_steps=0"]}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_driver_trains_and_writes_exactly_the_checkpoint(demo_data, tmp_path, capsys):
    out = tmp_path / "out"
    r, w = os.pipe()
    try:
        rc = run.main(demo_data.argv("gbt", out, "--progress-fd", str(w), *FAST["gbt"]))
    finally:
        os.close(w)
        with os.fdopen(r) as fh:
            lines = fh.read().splitlines()
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["gbt_realistic.ckpt.json",
                                                     "gbt_realistic.xgb.json"]
    progress = [json.loads(line) for line in lines]
    assert progress and set(progress[0]) == {"epoch", "epochs", "loss", "val_macro_f1"}
    assert [p["epoch"] for p in progress] == list(range(1, len(progress) + 1))
    assert all(p["epochs"] == 15 for p in progress)

    meta = json.loads((out / "gbt_realistic.ckpt.json").read_bytes())
    assert meta["schema_sha256"] == sha256(demo_data.schema)
    assert meta["data"]["validation_sha256"] == sha256(demo_data.validation)
    assert meta["classes"] == ["clean", "armed", "infecting", "infected_running"]
    assert meta["fit"]["epochs_run"] == len(progress)
    assert str(tmp_path) not in json.dumps(meta) and str(demo_data.root) not in json.dumps(meta)
    assert capsys.readouterr().out == ""  # logs go to stderr only

    model = models.load(out, expect_schema_sha256=sha256(demo_data.schema))
    assert model.mode == "realistic" and model.input_shape["n_features"] > 0


@pytest.mark.parametrize("model", ["gbt", "cnn"])
def test_driver_output_is_byte_identical_across_runs(demo_data, tmp_path, model):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert run.main(demo_data.argv(model, out, *FAST[model])) == 0
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(p.name for p in outs[1].iterdir())
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


@pytest.mark.parametrize("model", ["gbt", "cnn"])
def test_driver_never_passes_test_episode_ids_to_the_loaders(demo_data, tmp_path, monkeypatch,
                                                             model):
    splits, asked = [], []
    real_split = data_splits.make_split

    def spy_split(*a, **kw):
        splits.append(real_split(*a, **kw))
        return splits[-1]

    def spy_loader(real):
        def spy(path, mode, episode_ids=None, **kw):
            assert episode_ids is not None, "a loader was asked for every episode"
            asked.append(set(episode_ids))
            return real(path, mode, episode_ids, **kw)
        return spy

    monkeypatch.setattr(data_splits, "make_split", spy_split)
    monkeypatch.setattr(data_load, "load_summary", spy_loader(data_load.load_summary))
    monkeypatch.setattr(data_load, "load_tensors", spy_loader(data_load.load_tensors))
    assert run.main(demo_data.argv(model, tmp_path, *FAST[model])) == 0
    (split,) = splits
    assert split.test, "the fixture must have test episodes for this to mean anything"
    assert len(asked) == 1
    assert asked[0] == set(split.train) | set(split.val)
    assert not asked[0] & set(split.test)


def test_driver_refuses_a_schema_digest_other_than_the_jobs(demo_data, tmp_path):
    """Run as the worker runs it: a subprocess, exit non-zero, one line naming both hashes."""
    wrong = "0" * 64
    res = subprocess.run(
        [sys.executable, "-m", "cis490.train.run",
         *demo_data.argv("gbt", tmp_path / "out", "--expect-schema-sha256", wrong)],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and wrong in lines[0] and sha256(demo_data.schema) in lines[0]
    assert not (tmp_path / "out").exists()


def test_driver_refuses_a_validation_digest_other_than_the_jobs(demo_data, tmp_path, capsys):
    wrong = "f" * 64
    rc = run.main(demo_data.argv("mlp", tmp_path / "out", "--expect-validation-sha256", wrong))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert wrong in err[0] and sha256(demo_data.validation) in err[0]
    assert not (tmp_path / "out").exists()


def test_driver_accepts_matching_digests(demo_data, tmp_path):
    argv = demo_data.argv("gbt", tmp_path, *FAST["gbt"],
                          "--expect-schema-sha256", sha256(demo_data.schema),
                          "--expect-validation-sha256", sha256(demo_data.validation).upper())
    assert run.main(argv) == 0


def test_driver_refuses_tensors_built_with_another_schema(demo_data, tmp_path, capsys):
    from cis490.data.channels import WindowSpec
    from cis490.data.schema import schema_bytes

    other = tmp_path / "feature_schema_v1.json"  # a valid schema, another window length
    other.write_bytes(schema_bytes(window=WindowSpec(10, 2)))
    argv = demo_data.argv("cnn", tmp_path / "out")
    argv[argv.index("--schema") + 1] = str(other)
    rc = run.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert sha256(other) in err[0] and sha256(demo_data.schema) in err[0]


@pytest.mark.parametrize(
    ("hyper", "key"),
    [("hiden=32", "hiden"), ("hidden=\"wide\"", "hidden"), ("epochs=2.5", "epochs"),
     ("lr=fast", "lr")],
)
def test_driver_refuses_bad_hyper_with_exit_2_naming_the_key(demo_data, tmp_path, capsys,
                                                             hyper, key):
    rc = run.main(demo_data.argv("gru", tmp_path / "out", "--hyper", hyper))
    err = capsys.readouterr().err
    assert rc == 2 and repr(key) in err and len(err.strip().splitlines()) == 1


def test_driver_epochs_flag_conflicting_with_hyper_is_a_usage_error(demo_data, tmp_path, capsys):
    rc = run.main(demo_data.argv("gru", tmp_path, "--epochs", "3", "--hyper", "epochs=4"))
    assert rc == 2 and "'epochs'" in capsys.readouterr().err


def test_driver_refuses_a_window_length_other_than_the_datas(demo_data, tmp_path, capsys):
    rc = run.main(demo_data.argv("mlp", tmp_path, "--hyper", "window_s=7"))
    err = capsys.readouterr().err
    assert rc == 1 and "window_s=7" in err


def test_unknown_model_is_a_usage_error(demo_data, tmp_path):
    with pytest.raises(SystemExit) as exc:
        run.main(demo_data.argv("rnn", tmp_path))
    assert exc.value.code == 2


def test_driver_output_is_identical_across_processes_and_hash_seeds(demo_data, tmp_path):
    """Regression guard for order that leaks from set/dict iteration (PYTHONHASHSEED)."""
    outs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        res = subprocess.run([sys.executable, "-m", "cis490.train.run",
                              *demo_data.argv("gbt", out, "--hyper", "epochs=5")],
                             capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        outs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert outs[0] == outs[1] and len(outs[0]) == 2


def test_driver_splits_with_split_seed_and_trains_with_seed(demo_data, tmp_path, monkeypatch):
    """Seeds of one manifest list share one split: --split-seed carves it, --seed trains."""
    from cis490.train import data as train_data

    seeds = []
    real_split = data_splits.make_split

    def spy_split(validation, recipe, train_hosts, seed, **kw):
        seeds.append(seed)
        return real_split(validation, recipe, train_hosts, seed, **kw)

    monkeypatch.setattr(data_splits, "make_split", spy_split)
    metas = {}
    for name, extra in (("shared", ["--seed", "3", "--split-seed", "0"]), ("own", ["--seed", "3"])):
        out = tmp_path / name
        assert run.main(demo_data.argv("gbt", out, "--hyper", "epochs=5", *extra)) == 0
        metas[name] = json.loads((out / "gbt_realistic.ckpt.json").read_bytes())
    assert seeds == [0, 3]
    shared, own = metas["shared"], metas["own"]
    assert shared["data"]["split"]["seed"] == 0 and shared["data"]["train_seed"] == 3
    assert own["data"]["split"]["seed"] == 3 and own["data"]["train_seed"] == 3
    assert shared["val_metrics"]["seed"] == own["val_metrics"]["seed"] == 3
    split0 = real_split(str(demo_data.validation), "host", ["elliott-thinkpad"], 0)
    assert shared["data"]["val_episodes_sha256"] == train_data.episodes_digest(split0.val)
    assert shared["data"]["train_episodes_sha256"] == train_data.episodes_digest(split0.train)


def test_driver_refuses_a_negative_split_seed_as_a_usage_error(demo_data, tmp_path):
    with pytest.raises(SystemExit) as exc:
        run.main(demo_data.argv("gbt", tmp_path, "--split-seed", "-1"))
    assert exc.value.code == 2
