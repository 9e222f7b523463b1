"""Summary features and tensor shards: layout, determinism, loading, refusals."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from cis490.data.channels import REGISTRY, Registry, channel_names
from cis490.data.features import FEATURES_NAME, build_features
from cis490.data.features import MANIFEST_NAME as FEATURES_MANIFEST
from cis490.data.load import NpyRows, RowArray, load_summary, load_tensors
from cis490.data.schema import SCHEMA_NAME, feature_names, schema_bytes
from cis490.data.tensors import MANIFEST_NAME, build_tensors
from cis490.data.validate import read_validation

from .conftest import WINDOW


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_features_parquet_layout_and_schema_hash(tiny_features, tiny_validation):
    out, summary = tiny_features
    schema = json.loads((out / SCHEMA_NAME).read_text())
    table = pq.read_table(out / FEATURES_NAME)
    assert table.column_names == [c["name"] for c in schema["summary"]["columns"]]
    sha = hashlib.sha256((out / SCHEMA_NAME).read_bytes()).hexdigest()
    assert sha == summary.schema_sha256
    assert table.schema.metadata[b"cis490.schema_sha256"].decode() == sha
    df = table.to_pandas()
    assert list(zip(df.episode_id, df.t_end_ns)) == sorted(zip(df.episode_id, df.t_end_ns))
    assert set(df.label) <= {0, 1, 2, 3} and summary.windows == len(df)
    val = read_validation(tiny_validation[0])
    status = dict(zip(val.episode_id, val.status))
    assert {status[e] for e in df.episode_id} == {"ok", "degraded"}  # invalid skipped, degraded kept
    deg = df[df.episode_id.map(status) == "degraded"]
    ok = df[df.episode_id.map(status) == "ok"]
    assert deg["netflow.flows__mean"].isna().all() and ok["netflow.flows__mean"].notna().all()
    # host channels stay on degraded episodes (but for short collector gaps)
    assert deg["host.load1__mean"].notna().mean() > 0.8


def test_outputs_are_byte_identical_across_jobs(tiny_store, tiny_validation, tiny_features, tiny_tensors, tmp_path):
    build_features(tiny_validation[0], tiny_store[0], tmp_path / "f", jobs=2, window=WINDOW)
    build_tensors(tiny_validation[0], tiny_store[0], tmp_path / "t", jobs=2, window=WINDOW)
    assert _tree_bytes(tmp_path / "f") == _tree_bytes(tiny_features[0])
    assert _tree_bytes(tmp_path / "t") == _tree_bytes(tiny_tensors[0])
    # both builders record the same schema
    assert (tmp_path / "f" / SCHEMA_NAME).read_bytes() == (tmp_path / "t" / SCHEMA_NAME).read_bytes()


def test_load_summary_selects_mode_columns_and_episodes(tiny_features):
    out, _ = tiny_features
    oracle = load_summary(out, "oracle")
    real = load_summary(out / FEATURES_NAME, "realistic")
    assert real.feature_names == feature_names(mode="realistic")
    assert oracle.feature_names[: len(real.feature_names)] == real.feature_names
    assert not any(n.startswith("proc.") for n in real.feature_names)
    assert real.X.dtype == np.float32 and real.y.dtype == np.int64 and real.X.shape[0] == oracle.X.shape[0]
    np.testing.assert_array_equal(real.X, oracle.X[:, : len(real.feature_names)])
    ids = sorted(set(oracle.meta.episode_id))[:2]
    sub = load_summary(out, "oracle", ids)
    assert set(sub.meta.episode_id) == set(ids)
    assert list(sub.meta.columns) == ["episode_id", "host_id", "profile", "sample_name", "t_end_ns", "label"]
    assert load_summary(out, "oracle", []).X.shape == (0, len(oracle.feature_names))
    with pytest.raises(ValueError, match="unknown mode"):
        load_summary(out, "psychic")


def test_tensors_load_lazily_by_pread(tiny_tensors, tiny_features):
    out, summary = tiny_tensors
    td = load_tensors(out, "oracle")
    assert all(isinstance(s, NpyRows) for s in td.X.shards + td.mask.shards)
    # the rows read equal numpy's own reading of the shard files, for any index
    whole = np.concatenate([np.load(s.path) for s in td.X.shards])
    assert len(whole) == td.X.shape[0]
    rng = np.random.default_rng(0)
    for idx in (rng.permutation(len(whole))[:7], np.array([3, 3, 1, 0]), slice(2, 9), slice(None)):
        got = td.X[idx]
        rows = np.arange(len(whole))[idx]
        ref = np.stack([np.load(td.X.shards[td.X._shard_of[r]].path, mmap_mode="r")[td.X._row_of[r]]
                        for r in rows])
        np.testing.assert_array_equal(got, ref)
    sub = td.X.take(np.array([5, 2, 2]))
    assert sub.shape == (3,) + td.X.shape[1:]
    np.testing.assert_array_equal(sub[:], td.X[np.array([5, 2, 2])])
    np.testing.assert_array_equal(td.X[4], td.X[np.array([4])][0])
    n = summary.windows
    assert td.X.shape == (n, len(REGISTRY.channels), WINDOW.length_s) and len(td.y) == n
    real = load_tensors(out, "realistic")
    assert real.X.shape[1] == len(channel_names("realistic")) == len(real.channel_names)
    idx = np.array([0, n - 1, n // 2])
    batch = td.X[idx]
    assert batch.dtype == np.float32 and batch.shape == (3,) + td.X.shape[1:]
    np.testing.assert_array_equal(real.X[idx], batch[:, : real.X.shape[1]])
    np.testing.assert_array_equal(td.mask[idx], (~np.isnan(batch)).astype(np.uint8))
    # the tensors and the summary features describe the same windows
    feats = load_summary(tiny_features[0], "oracle")
    assert feats.meta[["episode_id", "t_end_ns"]].equals(td.meta[["episode_id", "t_end_ns"]])
    np.testing.assert_array_equal(feats.y, td.y)
    j = feats.feature_names.index("host.load1__mean")
    c = td.channel_names.index("host.load1")
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        # a collector gap can blank a whole window of load1: its mean is NaN on both sides
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        np.testing.assert_allclose(feats.X[:, j], np.nanmean(np.asarray(td.X)[:, c], -1), rtol=1e-5)
    ids = sorted(set(td.meta.episode_id))[-2:]
    sub = load_tensors(out, "realistic", ids)
    assert set(sub.meta.episode_id) == set(ids) and len(sub.X) == len(sub.y) > 0


def test_summary_spill_reads_back_the_same_rows(tiny_features, tmp_path):
    out = tiny_features[0]
    ids = sorted(set(load_summary(out, "oracle").meta.episode_id))[1::2]
    mem = load_summary(out, "realistic", ids)
    lazy = load_summary(out, "realistic", ids, spill_dir=tmp_path)
    assert isinstance(lazy.X, RowArray) and lazy.X.shape == mem.X.shape
    np.testing.assert_array_equal(np.asarray(lazy.X), mem.X)
    assert lazy.meta.equals(mem.meta)
    idx = np.array([4, 0, 4, 1])
    np.testing.assert_array_equal(lazy.X[idx], mem.X[idx])
    np.testing.assert_array_equal(lazy.X.take(idx)[1:3], mem.X[idx][1:3])
    assert (tmp_path / "summary-realistic.npy").is_file()


def test_tensor_shards_are_per_host_and_record_the_schema_hash(tiny_tensors):
    out, summary = tiny_tensors
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["schema_sha256"] == summary.schema_sha256
    assert (out / "schema.sha256").read_text().strip() == summary.schema_sha256
    from tests.data.conftest import TINY

    assert sorted(p.name for p in out.glob("host=*")) == sorted(f"host={h}" for h in TINY.host_ids)
    for host, info in manifest["hosts"].items():
        w = pq.read_table(out / info["dir"] / "windows.parquet").to_pandas()
        assert set(w.host_id) == {host} and len(w) == info["windows"]


def test_builders_refuse_a_tarball_changed_since_validation(tiny_store, tiny_validation, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(tiny_store[0], store)
    val = read_validation(tiny_validation[0])
    victim = val[val.status == "ok"].iloc[0]
    (store / victim.path).write_bytes((store / val[val.status == "degraded"].iloc[0].path).read_bytes())
    with pytest.raises(ValueError, match="changed since validation"):
        build_features(tiny_validation[0], store, tmp_path / "f", window=WINDOW)
    assert not (tmp_path / "f" / FEATURES_MANIFEST).exists()  # nothing half-written published
    with pytest.raises(ValueError, match="features not built"):
        load_summary(tmp_path / "f", "oracle")


def test_loaders_refuse_a_schema_from_another_registry(tiny_features, tiny_tensors, tmp_path):
    other = schema_bytes(Registry(1, REGISTRY.channels[:-1]), WINDOW)
    for src, load in ((tiny_features[0], load_summary), (tiny_tensors[0], load_tensors)):
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        (dst / SCHEMA_NAME).write_bytes(other)
        with pytest.raises(ValueError, match="does not match"):
            load(dst, "oracle")


def test_tensors_split_into_several_shards_load_the_same(tiny_store, tiny_validation, tiny_tensors, tmp_path,
                                                         monkeypatch):
    build_tensors(tiny_validation[0], tiny_store[0], tmp_path / "t", window=WINDOW, shard_episodes=2)
    manifest = json.loads((tmp_path / "t" / MANIFEST_NAME).read_text())
    for h in manifest["hosts"].values():
        assert len(h["shards"]) >= 2 and sum(s["windows"] for s in h["shards"]) == h["windows"]
    many, one = load_tensors(tmp_path / "t", "oracle"), load_tensors(tiny_tensors[0], "oracle")
    np.testing.assert_array_equal(np.asarray(many.X), np.asarray(one.X))
    np.testing.assert_array_equal(np.asarray(many.mask), np.asarray(one.mask))
    assert many.meta.equals(one.meta)
    # shard k of a host = that host's episodes [2k, 2k + 2): the same bytes with two workers
    build_tensors(tiny_validation[0], tiny_store[0], tmp_path / "t2", window=WINDOW, shard_episodes=2, jobs=2)
    assert _tree_bytes(tmp_path / "t2") == _tree_bytes(tmp_path / "t")
    for host, h in manifest["hosts"].items():
        eps = sorted(set(one.meta.episode_id[one.meta.host_id == host]))
        assert [s["episodes"] for s in h["shards"]] == [len(eps[i:i + 2]) for i in range(0, len(eps), 2)]
        w = pq.read_table(tmp_path / "t" / h["dir"] / "windows.parquet").to_pandas()
        for k, s in enumerate(h["shards"]):
            assert sorted(set(w.episode_id[w.shard == k])) == eps[2 * k: 2 * k + 2]
            assert sorted(w.row[w.shard == k]) == list(range(s["windows"]))
    # a rebuild with larger shards removes the files the new manifest does not list
    build_tensors(tiny_validation[0], tiny_store[0], tmp_path / "t", window=WINDOW)
    assert sorted(p.name for p in (tmp_path / "t" / "host=k-gamingcom").glob("shard-*")) == \
        ["shard-00000.mask.npy", "shard-00000.x.npy"]
    build_tensors(tiny_validation[0], tiny_store[0], tmp_path / "t", window=WINDOW, shard_episodes=2)
    shard = np.load(tmp_path / "t" / "host=k-gamingcom" / "shard-00001.x.npy", mmap_mode="r")
    assert shard.dtype == np.float32 and shard.shape[1:] == (len(REGISTRY.channels), WINDOW.length_s)
