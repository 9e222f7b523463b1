"""Manifest validation, stable job ids, idempotent all-or-nothing reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cis490.fleet import JobState, ManifestError
from cis490.fleet.manifest import load_manifest, parse_manifest
from cis490.fleet.spec import job_id

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "etc" / "training_manifest.toml.example"


def test_example_manifest_has_six_models_by_two_modes_plus_smoke():
    m = load_manifest(EXAMPLE)
    pairs = {(j.model, j.mode) for j in m.jobs if j.model != "smoke"}
    assert pairs == {(model, mode) for model in ("gbt", "mlp", "cnn", "gru", "lstm", "transformer")
                     for mode in ("realistic", "oracle")}
    assert sum(j.model == "smoke" for j in m.jobs) >= 2
    assert m.host("pi").permits("gbt", "oracle") and not m.host("pi").permits("cnn", "oracle")


def test_job_id_is_stable_and_ignores_priority_and_host_order():
    a = job_id("gbt", "realistic", {"epochs": 5}, "host", ["b", "a"], 0)
    b = job_id("gbt", "realistic", {"epochs": 5}, "host", ["a", "b"], 0)
    assert a == b
    assert a != job_id("gbt", "realistic", {"epochs": 6}, "host", ["a", "b"], 0)
    m1 = parse_manifest(b'[[jobs]]\nmodel="gbt"\nmode="oracle"\npriority=1\n')
    m2 = parse_manifest(b'[[jobs]]\nmodel="gbt"\nmode="oracle"\npriority=9\n')
    assert m1.jobs[0].name == m2.jobs[0].name


def test_reload_is_idempotent(spool):
    first = spool.reload(EXAMPLE)
    n = len(load_manifest(EXAMPLE).jobs)
    assert first.to_dict() == {"new": n, "unchanged": 0, "updated": 0, "orphaned": 0}
    before = sorted(p.name for p in (spool.root / "pending").iterdir())
    again = spool.reload(EXAMPLE)
    assert again.to_dict() == {"new": 0, "unchanged": n, "updated": 0, "orphaned": 0}
    assert sorted(p.name for p in (spool.root / "pending").iterdir()) == before
    assert (spool.root / "manifest.toml").read_bytes() == EXAMPLE.read_bytes()


def test_reload_keeps_states_updates_pending_and_counts_orphans(spool, tmp_path):
    m = tmp_path / "m.toml"
    m.write_text('[[jobs]]\nmodel="smoke"\nmode="a"\n[[jobs]]\nmodel="smoke"\nmode="b"\n[[jobs]]\nmodel="smoke"\nmode="c"\n')
    spool.reload(m)
    from .conftest import artifact_dir, worker_info

    claim = spool.claim(worker_info())
    claim.complete(artifact_dir(tmp_path))
    done = claim.name
    # change priority of every job, drop one of the pending ones, add a new one
    m.write_text('[[jobs]]\nmodel="smoke"\nmode="a"\npriority=7\n[[jobs]]\nmodel="smoke"\nmode="b"\npriority=7\n'
                 '[[jobs]]\nmodel="smoke"\nmode="c"\npriority=7\n[[jobs]]\nmodel="smoke"\nmode="d"\n')
    r = spool.reload(m)
    assert r.to_dict() == {"new": 1, "unchanged": 1, "updated": 2, "orphaned": 0}
    assert done in [spool.name_of(l) for l in spool.scan(JobState.DONE)]
    for loc in spool.scan(JobState.PENDING):
        spec = spool.read_spec(loc.path)
        assert spec.priority == (0 if spec.mode == "d" else 7)
    m.write_text('[[jobs]]\nmodel="smoke"\nmode="d"\n')
    r = spool.reload(m)
    assert r.to_dict() == {"new": 0, "unchanged": 1, "updated": 0, "orphaned": 3}
    assert spool.counts()["pending"] == 3  # removed jobs stay until cancelled


@pytest.mark.parametrize("text, message", [
    ('[[jobs]\nmodel="gbt"', "TOML syntax"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nflavour=1\n', r"jobs\[0\].*unknown key\(s\) flavour"),
    ('[[jobs]]\nmodel="resnet"\nmode="oracle"\n', r"jobs\[0\].*unknown model 'resnet'"),
    ('[[jobs]]\nmodel="gbt"\nmode="weird"\n', r"jobs\[0\].*unknown mode 'weird'"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\n[[jobs]]\nmodel="mlp"\nmode="oracle"\nhyper={lr_rate=0.1}\n',
     r"jobs\[1\] \(mlp/oracle\): hyper 'lr_rate' is not a field of mlp's config"),
    ('[[jobs]]\nmodel="mlp"\nmode="oracle"\nhyper={epochs="many"}\n', r"jobs\[0\].*hyper 'epochs': expected an integer"),
    ('[[jobs]]\nmodel="mlp"\nmode="oracle"\nhyper={hidden=[64, "x"]}\n', r"hyper 'hidden': expected an integer"),
    ('[[jobs]]\nmodel="mlp"\nmode="oracle"\nhyper={dropout=1.5}\n', r"jobs\[0\].*hyper 'dropout': 1.5 is above"),
    ('[[jobs]]\nmodel="mlp"\nmode="oracle"\nhyper={lr=inf}\n', r"jobs\[0\].*not finite"),
    ('[[jobs]]\nmodel="smoke"\nmode="x"\nhyper={seconds=-1}\n', r"jobs\[0\].*'seconds'"),
    ('[[jobs]]\nmodel="smoke"\nmode="x"\nhyper={seconds=nan}\n', r"jobs\[0\].*'seconds'"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\n[[jobs]]\nmodel="gbt"\nmode="oracle"\n', r"jobs\[1\] duplicates jobs\[0\]"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nsplit_recipe="random"\n', r"split_recipe must be one of"),
    ('[hosts.pi]\nslots=0\n', r"hosts.pi.slots"),
    ('[hosts.pi]\ncolour="red"\n', r"hosts.pi: unknown key"),
    ('[data]\nfeatures="x"\n', r"data: unknown key"),
    ('[[jobs]]\nmodel="smoke"\nmode="../x"\n', r"invalid mode"),
    ('[[jobs]]\nmodel="smoke"\nmode="con"\n', r"reserved name on Windows"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nallowed_hosts=["a/b"]\n', r"invalid host id"),
    ('oops = 1\n', r"unknown top-level key"),
])
def test_invalid_manifest_changes_nothing(spool, tmp_path, text, message):
    good = tmp_path / "good.toml"
    good.write_text('[[jobs]]\nmodel="smoke"\nmode="ok"\n')
    spool.reload(good)
    before = sorted(p.name for p in spool.root.rglob("*") if p.is_file())
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ManifestError, match=message):
        spool.reload(bad)
    assert sorted(p.name for p in spool.root.rglob("*") if p.is_file()) == before
    assert (spool.root / "manifest.toml").read_bytes() == good.read_bytes()


def test_hyper_float_field_accepts_integers_and_is_normalised():
    m = parse_manifest(b'[[jobs]]\nmodel="mlp"\nmode="oracle"\nhyper={lr=1, hidden=[32,16]}\n')
    assert m.jobs[0].hyper == {"lr": 1.0, "hidden": [32, 16]}


def test_spec_file_is_canonical_json(spool, tmp_path):
    m = tmp_path / "m.toml"
    m.write_text('[[jobs]]\nmodel="mlp"\nmode="oracle"\nhyper={hidden=[8]}\n')
    spool.reload(m, now_ns=5)
    [p] = (spool.root / "pending").iterdir()
    raw = p.read_bytes()
    obj = json.loads(raw)
    assert raw == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    assert obj["name"] == p.name[:-5] and obj["id"].startswith(p.name.split(".")[1][:12])
