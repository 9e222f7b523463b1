"""The summary features as a dataset of parts: fixed episode ranges, manifest last,
stale parts removed, a mixed read refused, parts outside the requested ids skipped."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cis490.data.features import FEATURES_NAME, MANIFEST_NAME, build_features, usable_episodes
from cis490.data.load import load_summary

from .conftest import WINDOW


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(out):
    return json.loads((out / MANIFEST_NAME).read_text())


def test_parts_hold_fixed_episode_ranges_whatever_jobs(tiny_store, tiny_validation, tiny_features, tmp_path):
    refs, _ = usable_episodes(tiny_validation[0])
    assert len(refs) >= 7  # enough for three parts of 3
    one = build_features(tiny_validation[0], tiny_store[0], tmp_path / "j1", window=WINDOW, part_episodes=3)
    build_features(tiny_validation[0], tiny_store[0], tmp_path / "j2", window=WINDOW, part_episodes=3, jobs=2)
    assert _tree(tmp_path / "j1") == _tree(tmp_path / "j2")
    parts = _manifest(tmp_path / "j1")["parts"]
    ids = [r.episode_id for r in refs]
    assert [p["name"] for p in parts] == [f"part-{k:05d}.parquet" for k in range(len(parts))]
    assert [p["episodes"] for p in parts] == [len(ids[i:i + 3]) for i in range(0, len(ids), 3)]
    assert [(p["first_episode"], p["last_episode"]) for p in parts] == \
        [(ids[i], ids[min(i + 2, len(ids) - 1)]) for i in range(0, len(ids), 3)]
    for p in parts:  # each part is one row group holding exactly its episodes
        pf = pq.ParquetFile(tmp_path / "j1" / FEATURES_NAME / p["name"])
        got = pf.read(columns=["episode_id"]).column(0).to_pylist()
        assert pf.metadata.num_row_groups == 1 and len(got) == p["windows"]
        assert sorted(set(got)) == [e for e in ids if p["first_episode"] <= e <= p["last_episode"]]
    assert sum(p["windows"] for p in parts) == one.windows
    # the part size changes the files, not the data
    a, b = load_summary(tmp_path / "j1", "oracle"), load_summary(tiny_features[0], "oracle")
    np.testing.assert_array_equal(a.X, b.X)
    assert a.meta.equals(b.meta)
    # and pyarrow reads the parts directory as one dataset, in order
    assert pq.read_table(tmp_path / "j1" / FEATURES_NAME).num_rows == one.windows


def test_a_rebuild_removes_parts_the_new_manifest_does_not_list(tiny_store, tiny_validation, tmp_path):
    out = tmp_path / "f"
    build_features(tiny_validation[0], tiny_store[0], out, window=WINDOW, part_episodes=2)
    assert len(list((out / FEATURES_NAME).glob("part-*.parquet"))) >= 4
    build_features(tiny_validation[0], tiny_store[0], out, window=WINDOW)
    assert [p.name for p in (out / FEATURES_NAME).iterdir()] == ["part-00000.parquet"]
    assert [p["name"] for p in _manifest(out)["parts"]] == ["part-00000.parquet"]


def test_a_part_from_another_build_is_refused(tiny_store, tiny_validation, tmp_path):
    # the same rows, written differently: another validation sha256
    other_val = tmp_path / "validation_v1.parquet"
    pq.write_table(pq.read_table(tiny_validation[0]), other_val, compression="none")
    build_features(tiny_validation[0], tiny_store[0], tmp_path / "a", window=WINDOW, part_episodes=3)
    build_features(other_val, tiny_store[0], tmp_path / "b", window=WINDOW, part_episodes=3)
    shutil.copy(tmp_path / "b" / FEATURES_NAME / "part-00001.parquet", tmp_path / "a" / FEATURES_NAME)
    with pytest.raises(ValueError, match="not the part .* lists"):
        load_summary(tmp_path / "a", "oracle")


def test_a_part_replaced_between_its_two_reads_is_refused(tiny_store, tiny_validation, tmp_path,
                                                          monkeypatch):
    # the loader reads each part twice (ids, then features); a rebuild in between
    # must not mix one build's row selection with another build's rows
    out = tmp_path / "f"
    build_features(tiny_validation[0], tiny_store[0], out, window=WINDOW, part_episodes=3)
    part = out / FEATURES_NAME / _manifest(out)["parts"][0]["name"]
    concat = pa.concat_tables

    def rebuild_then_concat(tables):
        t = pq.read_table(part)
        pq.write_table(t.slice(0, t.num_rows - 1).replace_schema_metadata(t.schema.metadata), part)
        return concat(tables)

    monkeypatch.setattr(pa, "concat_tables", rebuild_then_concat)
    with pytest.raises(ValueError, match="changed while it was being read"):
        load_summary(out, "oracle", spill_dir=tmp_path)


def test_parts_outside_the_requested_episodes_are_not_read(tiny_store, tiny_validation, tmp_path):
    out = tmp_path / "f"
    build_features(tiny_validation[0], tiny_store[0], out, window=WINDOW, part_episodes=3)
    parts = _manifest(out)["parts"]
    full = load_summary(out, "realistic")
    wanted = [parts[0]["first_episode"], parts[-1]["last_episode"]]
    (out / FEATURES_NAME / parts[1]["name"]).unlink()  # a read of it would fail
    sub = load_summary(out, "realistic", wanted)
    sel = full.meta.episode_id.isin(wanted).to_numpy()
    np.testing.assert_array_equal(sub.X, full.X[sel])
    assert sub.meta.equals(full.meta[sel].reset_index(drop=True))
    with pytest.raises(FileNotFoundError):
        load_summary(out, "realistic")


def test_a_single_parquet_file_still_loads_and_is_replaced_on_rebuild(tiny_store, tiny_validation, tmp_path):
    out = tmp_path / "f"
    build_features(tiny_validation[0], tiny_store[0], out, window=WINDOW, part_episodes=2)
    table = pq.read_table(out / FEATURES_NAME)
    single = tmp_path / "old" / FEATURES_NAME
    single.parent.mkdir()
    shutil.copy(out / "feature_schema_v1.json", single.parent)
    pq.write_table(table.replace_schema_metadata(pq.ParquetFile(out / FEATURES_NAME / "part-00000.parquet")
                                                 .schema_arrow.metadata), single)
    a, b = load_summary(single, "oracle"), load_summary(out, "oracle")
    np.testing.assert_array_equal(a.X, b.X)
    # a build of the earlier version (one file at the parts' path) is replaced by the parts
    build_features(tiny_validation[0], tiny_store[0], single.parent, window=WINDOW)
    assert (single.parent / FEATURES_NAME).is_dir() and (single.parent / MANIFEST_NAME).is_file()
    np.testing.assert_array_equal(load_summary(single.parent, "oracle").X, b.X)


@pytest.mark.parametrize("bad", ["{", '{"format": "other", "version": 1}',
                                 '{"format": "cis490.features", "version": 1, "parts": [{"name": "../x"}]}'])
def test_a_broken_manifest_is_a_one_line_error(tiny_features, tmp_path, bad):
    dst = tmp_path / "f"
    shutil.copytree(tiny_features[0], dst)
    (dst / MANIFEST_NAME).write_text(bad)
    with pytest.raises(ValueError, match=MANIFEST_NAME.replace(".", r"\.")):
        load_summary(dst, "oracle")


def test_an_empty_store_builds_empty_outputs(tiny_store, tiny_validation, tmp_path):
    val = pq.read_table(tiny_validation[0])
    empty = tmp_path / "validation_v1.parquet"
    pq.write_table(val.filter(pa.compute.equal(val["status"], "invalid")), empty)
    s = build_features(empty, tiny_store[0], tmp_path / "f", window=WINDOW, jobs=2)
    assert s.windows == 0 and s.episodes_built == 0
    assert load_summary(tmp_path / "f", "oracle").X.shape[0] == 0
    from cis490.data.load import load_tensors
    from cis490.data.tensors import build_tensors

    t = build_tensors(empty, tiny_store[0], tmp_path / "t", window=WINDOW, jobs=2)
    assert t.windows == 0 and len(load_tensors(tmp_path / "t", "oracle").X) == 0


def _rewrite(src, dst, fn):
    table = pq.read_table(src)
    pq.write_table(fn(table), dst)
    return dst


def test_the_episode_index_streams_in_batches_and_sorts_an_unsorted_table(tiny_validation, tmp_path, monkeypatch):
    import cis490.data.features as features_mod
    from cis490.data.features import EpisodeIndex

    whole, counts = usable_episodes(tiny_validation[0])
    monkeypatch.setattr(features_mod, "INDEX_BATCH", 3)  # several batches, and batch edges inside the checks
    index = EpisodeIndex(tiny_validation[0])
    assert index.sorted and list(index) == whole and len(index) == len(whole) and index.counts == counts
    assert [r.episode_id for r in whole] == sorted(r.episode_id for r in whole)
    # reversed rows: detected, sorted in memory, same episodes in the same order
    rev = _rewrite(tiny_validation[0], tmp_path / "rev.parquet", lambda t: t.take(list(range(t.num_rows))[::-1]))
    index = EpisodeIndex(rev)
    assert not index.sorted and list(index) == whole and index.counts == counts
    # unsorted only across a batch edge
    def swap_edge(t):
        order = list(range(t.num_rows))
        order[2], order[3] = order[3], order[2]
        return t.take(order)
    index = EpisodeIndex(_rewrite(tiny_validation[0], tmp_path / "edge.parquet", swap_edge))
    assert not index.sorted and list(index) == whole


@pytest.mark.parametrize("column,value,match", [("host_id", "../etc", "not a safe directory name"),
                                                ("path", "/etc/passwd", "unsafe path"),
                                                ("path", "a/../../b.tar.zst", "unsafe path")])
def test_a_hostile_validation_row_is_refused_before_any_work(tiny_store, tiny_validation, tmp_path, column, value,
                                                             match):
    def poison(t):
        i = t.column_names.index(column)
        vals = t.column(column).to_pylist()
        ok = t.column("status").to_pylist().index("ok")
        vals[ok] = value
        return t.set_column(i, column, pa.array(vals, pa.string()))
    bad = _rewrite(tiny_validation[0], tmp_path / "bad.parquet", poison)
    with pytest.raises(ValueError, match=match):
        build_features(bad, tiny_store[0], tmp_path / "f", window=WINDOW)
    assert not (tmp_path / "f").exists()  # refused before the output dir was made
