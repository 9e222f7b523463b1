"""``cis490 eval`` streams: predictions written batch group by batch group, the
importance sample bounded and stated, progress lines without a terminal, same numbers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cis490.cli import main as cis490_main
from cis490.evaluate.compare import CLASS_NAMES
from cis490.evaluate.importance import sample_episodes
from cis490.evaluate.predictions import (Predictions, PredictionsWriter, SharedColumns, Windows,
                                         read_predictions, write_predictions)
from evalstore import build_store, data_args, run_stage, train_gbt
from predsim import predictions, world

pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("xgboost")

TRAIN_HOSTS = ("elliott-thinkpad", "j-workstation", "r-minipc")  # k-gamingcom tests


# ---------------------------------------------------------------- the predictions file

def _pred(seeds=(0, 1)) -> Predictions:
    val = world(5, 1, prefix="va", windows=12, hosts=("h1",))
    test = world(7, 2, prefix="te", windows=11, hosts=("k-gamingcom",))
    return predictions("gru", "realistic", 0.6, val, test, seeds=seeds)


def _part(w: Windows, sl: slice) -> Windows:
    return Windows(w.episode_id[sl], w.host_id[sl], w.profile[sl], w.t_end_ns[sl], w.y_true[sl],
                   w.proba[sl], w.onset_ns[sl], w.started_ns[sl])


def _same(a: Predictions, b: Predictions) -> None:
    assert (a.model, a.mode, a.family, a.class_names, dict(a.meta)) == \
        (b.model, b.mode, b.family, b.class_names, dict(b.meta))
    for split in ("val", "test"):
        pa_, pb = getattr(a, split), getattr(b, split)
        assert sorted(pa_) == sorted(pb)
        for seed in pa_:
            for f in ("episode_id", "host_id", "profile", "t_end_ns", "y_true", "proba",
                      "onset_ns", "started_ns"):
                assert np.array_equal(getattr(pa_[seed], f), getattr(pb[seed], f)), (split, seed, f)


def test_the_incremental_file_reads_back_as_write_predictions(tmp_path):
    pred = _pred()
    whole = write_predictions(pred, tmp_path / "whole.parquet")
    with PredictionsWriter(tmp_path / "batches.parquet", model=pred.model, mode=pred.mode,
                           family=pred.family, class_names=pred.class_names,
                           meta=pred.meta) as out:
        for split in ("val", "test"):
            part = getattr(pred, split)
            for seed in sorted(part):
                w = part[seed]
                for start in range(0, len(w), 13):          # batch groups of 13 windows
                    out.append(split, seed, _part(w, slice(start, start + 13)))
    batches = out.path
    n_parts = sum(-(-len(w) // 13) for p in (pred.val, pred.test) for w in p.values())
    assert pq.ParquetFile(batches).metadata.num_row_groups == n_parts > 4
    assert pq.ParquetFile(whole).metadata.num_row_groups == 4       # one per split and seed
    a, b = pq.read_table(whole), pq.read_table(batches)
    assert a.equals(b) and a.schema.metadata == b.schema.metadata    # same columns, rows, meta
    _same(read_predictions(batches), read_predictions(whole))
    _same(read_predictions(batches), pred)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_the_read_back_columns_are_compact_str(tmp_path):
    back = read_predictions(write_predictions(_pred(), tmp_path / "p.parquet"))
    w = back.test[0]
    assert all(type(e) is str for e in w.episode_id[:5])
    assert w.episode_id.dtype == object and w.host_id.dtype == object
    assert w.host_id[0] is w.host_id[-1]                    # one object per distinct value
    assert set(np.unique(w.host_id).tolist()) == {"k-gamingcom"}


def test_models_read_through_one_pool_share_their_window_columns(tmp_path):
    val = world(5, 1, prefix="va", windows=12, hosts=("h1",))
    test = world(7, 2, prefix="te", windows=11, hosts=("k-gamingcom",))
    other = world(6, 3, prefix="ot", windows=13, hosts=("k-gamingcom",))  # other windows
    files = [write_predictions(predictions(m, "realistic", 0.6, val, t), tmp_path / f"{m}.parquet")
             for m, t in (("gru", test), ("cnn", test), ("mlp", other))]
    pool = SharedColumns()
    gru, cnn, mlp = (read_predictions(f, shared=pool) for f in files)
    for f, back in zip(files, (gru, cnn, mlp)):
        _same(back, read_predictions(f))                 # the same values as read alone
    for col in ("episode_id", "host_id", "profile", "t_end_ns", "y_true", "onset_ns", "started_ns"):
        for split in ("val", "test"):
            assert getattr(getattr(gru, split)[0], col) is getattr(getattr(cnn, split)[0], col)
        assert getattr(mlp.val[0], col) is getattr(gru.val[0], col)        # same val windows
        if col not in ("host_id", "profile", "onset_ns", "started_ns"):    # these may agree
            assert getattr(mlp.test[0], col) is not getattr(gru.test[0], col)
    assert gru.test[0].proba is not cnn.test[0].proba
    assert not np.array_equal(gru.test[0].proba, cnn.test[0].proba)     # each model its own


def test_the_writer_refuses_rows_out_of_order_and_publishes_nothing(tmp_path):
    pred = _pred(seeds=(0,))
    w = pred.test[0]
    path = tmp_path / "p.parquet"
    with pytest.raises(ValueError, match="sorted by"):
        with PredictionsWriter(path, model="gru", mode="realistic", family="realistic",
                               class_names=CLASS_NAMES) as out:
            out.append("val", 0, pred.val[0])
            out.append("test", 0, _part(w, slice(20, 40)))
            out.append("test", 0, _part(w, slice(0, 20)))   # goes back in time
    with pytest.raises(ValueError, match="sorted by"):
        with PredictionsWriter(path, model="gru", mode="realistic", family="realistic",
                               class_names=CLASS_NAMES) as out:
            out.append("test", 0, w)
            out.append("val", 0, pred.val[0])                 # val after test
    with pytest.raises(ValueError, match="same, non-empty set of seeds"):
        with PredictionsWriter(path, model="gru", mode="realistic", family="realistic",
                               class_names=CLASS_NAMES) as out:
            out.append("val", 0, pred.val[0])
            out.append("val", 1, pred.val[0])
            out.append("test", 0, w)
    with pytest.raises(RuntimeError, match="boom"):
        with PredictionsWriter(path, model="gru", mode="realistic", family="realistic",
                               class_names=CLASS_NAMES) as out:
            out.append("val", 0, pred.val[0])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []                     # nothing published, no temp file


# ---------------------------------------------------------------- the importance sample

def test_the_importance_sample_is_bounded_and_deterministic():
    ids = [f"ep{i:03d}" for i in range(50)]
    got = sample_episodes(ids, 10, 7)
    assert len(got) == 10 and got == sorted(got)
    assert sample_episodes(list(reversed(ids)) + ids[:5], 10, 7) == got   # order, repeats: same
    digest = {e: hashlib.sha256(f"7:{e}".encode()).hexdigest() for e in ids}
    assert got == sorted(sorted(ids, key=digest.get)[:10])                # sha256(seed:episode)
    assert sample_episodes(ids, 10, 8) != got                             # the seed moves it
    assert sample_episodes(ids, 0, 7) == ids == sample_episodes(ids, 80, 7)  # 0 or >= M: all
    assert set(sample_episodes(ids, 20, 7)) >= set(got)                   # a prefix of one order
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="max_episodes"):
            sample_episodes(ids, bad, 7)


def test_eval_settings_check_the_importance_episodes(tmp_path):
    from cis490.evaluate.run import EvalSettings

    p = tmp_path / "x"
    assert EvalSettings(p, p, p, p).importance_max_episodes == 200
    with pytest.raises(ValueError, match="--importance-episodes"):
        EvalSettings(p, p, p, p, importance_max_episodes=-1)


# ---------------------------------------------------------------- baselines read in chunks

def test_baselines_score_lazy_val_and_test_in_chunks_with_the_same_numbers(tmp_path, monkeypatch):
    from cis490.data.load import NpyRows, RowArray
    from cis490.evaluate import baselines
    from test_eval_baselines import _splits

    train, val, test = _splits(3, fixed_onset=False)

    def lazy(d, name):
        np.save(tmp_path / f"{name}.npy", np.ascontiguousarray(d.X, dtype=np.float32))
        return dataclasses.replace(d, X=RowArray(NpyRows(tmp_path / f"{name}.npy")))

    monkeypatch.setattr(baselines, "CHUNK_ROWS", 97)          # many chunks, a ragged last one
    chunked = baselines.fit_baselines(lazy(train, "train"), lazy(val, "val"), lazy(test, "test"),
                                      seed=0, max_train_windows=len(train.y) // 2)
    capped = baselines.fit_baselines(train, val, test, seed=0, max_train_windows=len(train.y) // 2)
    for name in baselines.BASELINES:
        assert np.array_equal(chunked[name].proba_val, capped[name].proba_val), name
        assert np.array_equal(chunked[name].proba_test, capped[name].proba_test), name
        assert json.dumps(chunked[name].info, sort_keys=True) == \
            json.dumps(capped[name].info, sort_keys=True)
    assert capped["logreg"].info["train_capped"]


# ---------------------------------------------------------------- end to end

@dataclass(frozen=True)
class Store:
    root: Path
    artifacts: Path

    def argv(self, reports: Path, *extra: str) -> list[str]:
        return ["eval", *data_args(self.root), "--artifacts", str(self.artifacts),
                "--n-resamples", "1000", "--no-plots", "--reports-dir", str(reports), *extra]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """14 episodes per host; gbt realistic (two seeds) and a one-epoch cnn realistic."""
    from cis490.train.run import main as train_main

    root = tmp_path_factory.mktemp("streamdemo")
    build_store(root, 14, 90)
    artifacts = root / "artifacts"
    for seed in (0, 1):
        train_gbt(root, artifacts / f"gbt_s{seed}", "realistic", ",".join(TRAIN_HOSTS), seed)
    run_stage(train_main, "--model", "cnn", "--mode", "realistic", *data_args(root),
              "--train-hosts", ",".join(TRAIN_HOSTS), "--split-recipe", "host", "--seed", "0",
              "--split-seed", "0", "--hyper", "epochs=1", "--out", str(artifacts / "cnn"))
    return Store(root, artifacts)


def _tables(reports: Path) -> dict:
    return {p.name: pq.read_table(p) for p in sorted((reports / "predictions").iterdir())}


def test_eval_streams_batch_groups_with_progress_lines_and_the_same_numbers(store, tmp_path,
                                                                           capsys, monkeypatch):
    from cis490.evaluate import run

    # default batch groups, quiet: the reference numbers
    ref = tmp_path / "ref"
    assert cis490_main(store.argv(ref, "--quiet")) == 0
    assert capsys.readouterr().err == ""                       # --quiet: no progress lines
    # tiny batch groups, progress on every step, stderr not a terminal (captured)
    monkeypatch.setattr(run, "BATCH_GROUP_WINDOWS", 40)
    monkeypatch.setenv("CIS490_PROGRESS_S", "0")
    small = tmp_path / "small"
    assert cis490_main(store.argv(small)) == 0
    err = capsys.readouterr().err.splitlines()
    for name, seeds in (("gbt_realistic", (0, 1)), ("cnn_realistic", (0,))):
        for seed in seeds:
            for split in ("val", "test"):
                label = f"eval: {name} seed {seed} {split}: "
                mine = [ln for ln in err if ln.startswith(label)]
                total = int(re.match(r".*?: 0/(\d+) windows \(0 %\)$", mine[0]).group(1))
                assert total > 40                                # several batch groups
                assert len(mine) == 1 + -(-total // 40)          # a line per group (interval 0)
                assert any(re.search(r"windows \(\d+ %\), [\d.e+]+/s, ETA \d+s$", ln)
                           for ln in mine[1:-1])
                assert re.search(rf": {total}/{total} windows \(100 %\), [\d.e+]+/s, took \d+s$",
                                 mine[-1])
    assert any(ln.startswith("eval: gbt_realistic importance (") for ln in err)
    # the file has one row group per batch group; rows and every number are the same
    meta = pq.ParquetFile(small / "predictions" / "gbt_realistic.parquet").metadata
    assert meta.num_row_groups > 4
    a, b = _tables(ref), _tables(small)
    assert list(a) == list(b) and all(a[k].equals(b[k]) for k in a)
    assert json.loads((ref / "comparison.json").read_text()) == \
        json.loads((small / "comparison.json").read_text())
    assert not [p for p in (small / "predictions").iterdir() if p.name.startswith(".")]  # spill gone


def test_the_importance_sample_is_bounded_and_stated_in_the_report(store, tmp_path):
    from cis490.data.splits import make_split
    from cis490.data.validate import read_validation

    reports = tmp_path / "reports"
    assert cis490_main(store.argv(reports, "--quiet", "--importance-episodes", "5")) == 0
    split = make_split(read_validation(store.root / "validation_v1.parquet"), "host",
                       TRAIN_HOSTS, 0)
    test_ids = pq.read_table(reports / "predictions" / "gbt_realistic.parquet",
                             filters=[("split", "=", "test"), ("seed", "=", 0)]
                             ).column("episode_id").to_pylist()
    with_windows = sorted(set(test_ids))
    assert len(with_windows) > 5 and set(with_windows) <= set(split.test)
    chosen = sample_episodes(with_windows, 5, 0)
    samples = []
    for name in ("gbt_realistic", "cnn_realistic"):
        s = json.loads((reports / f"{name}_eval.json").read_text())["importance"]["sample"]
        assert s["n_episodes"] == 5 and s["n_episodes_total"] == len(with_windows)
        assert s["n_windows"] == sum(e in chosen for e in test_ids) < s["n_windows_total"]
        assert s["episodes_sha256"] == hashlib.sha256("\n".join(chosen).encode()).hexdigest()
        samples.append(s)
    assert samples[0] == samples[1]                 # the same episodes for every model and kind
    prov = json.loads((reports / "comparison.json").read_text())["provenance"]
    assert prov["importance_sample"]["n_episodes"] == 5
    assert prov["importance_sample"]["max_episodes"] == 5
    assert prov["importance_sample"]["order"] == "sha256(seed:episode)"
    md = (reports / "comparison.md").read_text()
    assert (f"ermutation importance on 5 of {len(with_windows)} test episodes (sample by "
            "sha256(seed:episode) order") in md
    assert "the same episodes for every model" in md
    # 0 = every test episode
    every = tmp_path / "every"
    assert cis490_main(store.argv(every, "--quiet", "--importance-episodes", "0",
                                  "--baselines", "none")) == 0
    s = json.loads((every / "gbt_realistic_eval.json").read_text())["importance"]["sample"]
    assert s["n_episodes"] == s["n_episodes_total"] and s["n_windows"] == s["n_windows_total"]
    assert f"on {len(with_windows)} of {len(with_windows)} test episodes" in \
        (every / "comparison.md").read_text()
