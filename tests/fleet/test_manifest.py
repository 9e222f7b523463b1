"""Manifest validation, stable job ids, idempotent all-or-nothing reload."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cis490.fleet.claim import claim_next
from cis490.fleet import JobState, ManifestError
from cis490.fleet.manifest import load_manifest, parse_manifest
from cis490.fleet.spec import JobSpec, SpecError, driver_argv, job_id, parse_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "etc" / "training_manifest.toml.example"


def test_example_manifest_has_six_models_by_two_modes_plus_smoke():
    m = load_manifest(EXAMPLE)
    pairs = {(j.model, j.mode) for j in m.jobs if j.model != "smoke"}
    assert pairs == {(model, mode) for model in ("gbt", "mlp", "cnn", "gru", "lstm", "transformer",
                                                 "minirocket")
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

    claim = claim_next(spool, worker_info())
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
    ('[[jobs]]\nmodel="mlp"\nmode="oracle"\nhyper={epochs="many"}\n',
     r"jobs\[0\].*hyper 'epochs': expected an integer"),
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
    # seed lists: every bad one names the job and the field
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[]\n', r"jobs\[0\] \(gbt/oracle\): seed: .*1\.\.64 seeds, got 0"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[0, 1, 0]\n', r"jobs\[0\].*seed: the list repeats 0"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[0, -1]\n', r"jobs\[0\].*seed\[1\]: -1 is not an integer"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[0, "1"]\n', r"jobs\[0\].*seed\[1\]: '1' is not an integer"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[1.5]\n', r"jobs\[0\].*seed\[0\]: 1.5 is not an integer"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[true]\n', r"jobs\[0\].*seed\[0\]: True is not an integer"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[4294967296]\n', r"jobs\[0\].*seed\[0\]"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[[1]]\n', r"jobs\[0\].*seed\[0\]"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=true\n', r"jobs\[0\].*field 'seed' has the wrong type"),
    ('[defaults]\nseed=' + str(list(range(65))) + '\n[[jobs]]\nmodel="gbt"\nmode="oracle"\n',
     r"jobs\[0\].*seed: .*got 65"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nsplit_seed=-1\n', r"jobs\[0\].*split_seed must be in"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[0, 1]\nsplit_seed=false\n', r"jobs\[0\].*'split_seed'"),
    # duplicates after expansion
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[0, 1]\n[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=0\n',
     r"jobs\[1\] duplicates jobs\[0\].*seed 0\)"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[0, 1]\n[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=1\n'
     'split_seed=0\n', r"jobs\[1\] duplicates jobs\[0\].*seed 1, split_seed 0"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[2, 3]\nsplit_seed=0\n[[jobs]]\nmodel="gbt"\nmode="oracle"\n'
     'seed=[3, 4]\nsplit_seed=0\n', r"jobs\[1\] duplicates jobs\[0\].*seed 3, split_seed 0"),
    # leave-one-host-out: the pool is required, >= 2 hosts, no repeats; errors name the job
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\n[[jobs]]\nmodel="mlp"\nmode="oracle"\n'
     'split_recipe="leave-one-host-out"\n',
     r"jobs\[1\] \(mlp/oracle\): train_hosts: split_recipe 'leave-one-host-out' needs the host pool"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nsplit_recipe="leave-one-host-out"\ntrain_hosts=["a"]\n',
     r"jobs\[0\] \(gbt/oracle\): train_hosts: the leave-one-host-out pool needs >= 2 hosts, got 1 \(a\)"),
    ('[defaults]\nsplit_recipe="leave-one-host-out"\ntrain_hosts=[]\n[[jobs]]\nmodel="gbt"\nmode="oracle"\n',
     r"jobs\[0\].*pool needs >= 2 hosts, got 0"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nsplit_recipe="leave-one-host-out"\ntrain_hosts=["a", "b", "a"]\n',
     r"jobs\[0\].*train_hosts: the leave-one-host-out pool repeats a"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nsplit_recipe="leave-one-host-out"\ntrain_hosts="a,b"\n',
     r"jobs\[0\].*pool must be a list of host ids"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nsplit_recipe="leave-one-host-out"\ntrain_hosts=["a", "b/c"]\n',
     r"jobs\[0\].*invalid host id 'b/c'"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nsplit_recipe="leave-one-host-out"\nseed=' + str(list(range(64)))
     + '\ntrain_hosts=' + str([f"h{i}" for i in range(17)]).replace("'", '"') + '\n',
     r"jobs\[0\].*64 seeds x 17 folds = 1088 jobs, more than 1024 for one entry"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nsplit_recipe="loho"\ntrain_hosts=["a", "b"]\n',
     r"jobs\[0\].*split_recipe must be one of host, sample, time, leave-one-host-out, not 'loho'"),
    # a fold another entry already lists is a duplicate job, named as any other
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\ntrain_hosts=["b", "c"]\n[[jobs]]\nmodel="gbt"\nmode="oracle"\n'
     'split_recipe="leave-one-host-out"\ntrain_hosts=["a", "b", "c"]\n', r"jobs\[1\] duplicates jobs\[0\].*seed 0\)"),
    ('[[jobs]]\nmodel="gbt"\nmode="oracle"\nsplit_recipe="leave-one-host-out"\ntrain_hosts=["a", "b"]\n'
     '[[jobs]]\nmodel="gbt"\nmode="oracle"\nsplit_recipe="leave-one-host-out"\ntrain_hosts=["b", "a"]\n',
     r"jobs\[1\] duplicates jobs\[0\]"),
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



# --- seed lists and split seeds ---------------------------------------------------


def old_job_id(model, mode, hyper, split_recipe, train_hosts, seed) -> str:
    """The identity formula as it was before split seeds: existing job ids must not move."""
    ident = {"model": model, "mode": mode, "hyper": hyper, "split_recipe": split_recipe,
             "train_hosts": sorted(train_hosts), "seed": seed}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def test_int_seed_keeps_its_job_id_and_spec_bytes():
    text = (b'[defaults]\ntrain_hosts=["h2","h1"]\n[[jobs]]\nmodel="gbt"\nmode="oracle"\n'
            b'hyper={epochs=5}\nseed=7\n[[jobs]]\nmodel="mlp"\nmode="realistic"\n'
            b'[[jobs]]\nmodel="cnn"\nmode="oracle"\nseed=3\nsplit_seed=3\n')
    gbt, mlp, cnn = parse_manifest(text).jobs
    assert gbt.id == old_job_id("gbt", "oracle", {"epochs": 5}, "host", ["h1", "h2"], 7)
    assert mlp.id == old_job_id("mlp", "realistic", {}, "host", ["h1", "h2"], 0)
    assert cnn.id == old_job_id("cnn", "oracle", {}, "host", ["h1", "h2"], 3)  # split_seed == seed
    for spec in (gbt, mlp, cnn):
        assert spec.split_seed is None and "split_seed" not in spec.to_dict()
        assert b"split_seed" not in spec.to_bytes()
        assert driver_args(spec).count("--split-seed") == 0


def test_seed_list_expands_to_one_job_per_seed_sharing_one_split():
    m = parse_manifest(b'[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[5, 1, 2]\npriority=3\n'
                       b'[[jobs]]\nmodel="mlp"\nmode="oracle"\nseed=[0, 1]\nsplit_seed=9\n')
    assert [(j.model, j.seed, j.split_seed) for j in m.jobs] == [
        ("gbt", 5, None), ("gbt", 1, 5), ("gbt", 2, 5),  # the first seed's split for all
        ("mlp", 0, 9), ("mlp", 1, 9)]
    assert len({j.name for j in m.jobs}) == 5 and all(j.priority == 3 for j in m.jobs[:3])
    # the first seed's job is exactly the job an int seed names
    assert m.jobs[0].name == parse_manifest(b'[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=5\n'
                                            b'priority=3\n').jobs[0].name
    for spec in m.jobs:  # every split seed reaches the driver, and the bytes round-trip
        argv = driver_args(spec)
        split = spec.seed if spec.split_seed is None else spec.split_seed
        assert argv[argv.index("--seed") + 1] == str(spec.seed)
        assert ("--split-seed" in argv) == (spec.split_seed is not None)
        if spec.split_seed is not None:
            assert argv[argv.index("--split-seed") + 1] == str(split)
            assert spec.to_dict()["split_seed"] == split
        assert parse_spec(spec.to_bytes(), spec.name) == spec


def test_seed_list_expansion_is_idempotent_at_reload(spool, tmp_path):
    m = tmp_path / "m.toml"
    base = '[[jobs]]\nmodel="smoke"\nmode="check"\nseed={}\n[[jobs]]\nmodel="smoke"\nmode="other"\n'
    m.write_text(base.format("[0, 1, 2]"))
    assert spool.reload(m).to_dict() == {"new": 4, "unchanged": 0, "updated": 0, "orphaned": 0}
    first = sorted(p.name for p in (spool.root / "pending").iterdir())
    assert spool.reload(m).to_dict() == {"new": 0, "unchanged": 4, "updated": 0, "orphaned": 0}
    assert sorted(p.name for p in (spool.root / "pending").iterdir()) == first
    m.write_text(base.format("[0, 1, 2, 3]"))  # one more seed: one more job, no renames
    assert spool.reload(m).to_dict() == {"new": 1, "unchanged": 4, "updated": 0, "orphaned": 0}
    now = sorted(p.name for p in (spool.root / "pending").iterdir())
    assert set(first) < set(now) and len(now) == 5
    specs = [spool.read_spec(loc.path) for loc in spool.scan(JobState.PENDING)]
    assert sorted((s.seed, s.split_seed) for s in specs if s.mode == "check") == [
        (0, None), (1, 0), (2, 0), (3, 0)]


def test_split_seed_is_validated_in_spool_files_and_enters_the_id():
    spec = parse_manifest(b'[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[0, 1]\n').jobs[1]
    assert spec.id == job_id("gbt", "oracle", {}, "host", [], 1, 0)
    assert spec.id != job_id("gbt", "oracle", {}, "host", [], 1)
    good = spec.to_dict()
    for bad, message in ((-1, "split_seed must be in"), (2**32, "split_seed must be in"),
                         (True, "'split_seed' has the wrong type"), ("0", "wrong type"),
                         (None, "wrong type")):
        with pytest.raises(SpecError, match=message):
            parse_spec(json.dumps({**good, "split_seed": bad}).encode())
    with pytest.raises(SpecError, match="edited or forged"):
        parse_spec(json.dumps({**good, "split_seed": 2}).encode())
    with pytest.raises(SpecError, match="edited or forged"):  # dropping it renames the job too
        parse_spec(json.dumps({k: v for k, v in good.items() if k != "split_seed"}).encode())


def test_split_seed_spec_is_format_2_so_an_older_worker_leaves_it_alone(monkeypatch):
    from cis490.fleet import spec as spec_mod
    from cis490.fleet.spec import SpecTooNew

    plain, shared = parse_manifest(b'[[jobs]]\nmodel="gbt"\nmode="oracle"\nseed=[0, 1]\n').jobs
    assert plain.to_dict()["format"] == 1 and shared.to_dict()["format"] == 2
    with pytest.raises(SpecError, match="'split_seed' needs spec format 2"):
        parse_spec(json.dumps({**shared.to_dict(), "format": 1}).encode())
    monkeypatch.setattr(spec_mod, "SPEC_FORMAT", 1)  # a worker from before split seeds
    assert parse_spec(plain.to_bytes()) == plain
    with pytest.raises(SpecTooNew):
        parse_spec(shared.to_bytes())


# --- leave one host out ------------------------------------------------------------

LOHO = (b'[[jobs]]\nmodel="gbt"\nmode="realistic"\nhyper={max_depth=4}\npriority=4\n'
        b'split_recipe="leave-one-host-out"\ntrain_hosts=["pi", "elliott-thinkpad", "k-gamingcom"]\n')
POOL = ("pi", "elliott-thinkpad", "k-gamingcom")


def _hand_written(held: str, seed: str = "0", split_seed: str = "") -> JobSpec:
    hosts = ", ".join(f'"{h}"' for h in POOL if h != held)
    text = (f'[[jobs]]\nmodel="gbt"\nmode="realistic"\nhyper={{max_depth=4}}\npriority=4\n'
            f'split_recipe="host"\ntrain_hosts=[{hosts}]\nseed={seed}\n{split_seed}')
    [spec] = parse_manifest(text.encode()).jobs
    return spec


def test_leave_one_host_out_expands_to_one_host_job_per_pool_host_in_pool_order():
    from cis490.data.splits import LEAVE_ONE_HOST_OUT
    from cis490.fleet import manifest as manifest_mod

    assert manifest_mod.LEAVE_ONE_HOST_OUT == LEAVE_ONE_HOST_OUT  # one spelling on both sides
    jobs = parse_manifest(LOHO).jobs
    assert len(jobs) == 3
    assert [j.train_hosts for j in jobs] == [("elliott-thinkpad", "k-gamingcom"), ("k-gamingcom", "pi"),
                                             ("elliott-thinkpad", "pi")]  # pool minus pi, then ...
    assert all(j.split_recipe == "host" and j.seed == 0 and j.split_seed is None and j.priority == 4
               and j.hyper == {"max_depth": 4} for j in jobs)
    assert jobs == tuple(_hand_written(h) for h in POOL)  # the same jobs, the same ids
    assert [j.name for j in jobs] == [_hand_written(h).name for h in POOL]
    for j in jobs:  # an ordinary spec file: format 1, round-trips, no trace of the manifest recipe
        assert j.to_dict()["format"] == 1 and b"leave-one-host-out" not in j.to_bytes()
        assert parse_spec(j.to_bytes(), j.name) == j
        argv = driver_args(j)
        assert argv[argv.index("--split-recipe") + 1] == "host"
    # from [defaults] too
    text = (b'[defaults]\nsplit_recipe="leave-one-host-out"\ntrain_hosts=["pi", "elliott-thinkpad", '
            b'"k-gamingcom"]\n[[jobs]]\nmodel="gbt"\nmode="realistic"\nhyper={max_depth=4}\npriority=4\n'
            b'[[jobs]]\nmodel="smoke"\nmode="check"\nsplit_recipe="time"\n')
    m = parse_manifest(text)
    assert m.jobs[:3] == jobs and len(m.jobs) == 4
    assert m.jobs[3].split_recipe == "time" and m.jobs[3].train_hosts == tuple(sorted(POOL))


def test_leave_one_host_out_times_a_seed_list_shares_one_split_seed():
    jobs = parse_manifest(LOHO + b"seed=[5, 1]\n").jobs
    assert [(j.seed, j.split_seed, j.train_hosts) for j in jobs] == [
        (s, None if s == 5 else 5, hosts) for s in (5, 1)
        for hosts in (("elliott-thinkpad", "k-gamingcom"), ("k-gamingcom", "pi"), ("elliott-thinkpad", "pi"))]
    assert list(jobs) == [_hand_written(h, s, "split_seed=5\n") for s in ("5", "1") for h in POOL]
    pinned = parse_manifest(LOHO + b"seed=[5, 1]\nsplit_seed=0\n").jobs
    assert len(pinned) == 6 and {j.split_seed for j in pinned} == {0}
    assert len({j.name for j in pinned} | {j.name for j in jobs}) == 12


def test_reload_enqueues_the_folds_and_is_idempotent(spool, tmp_path):
    m = tmp_path / "m.toml"
    m.write_text('[[jobs]]\nmodel="smoke"\nmode="fold"\nsplit_recipe="leave-one-host-out"\n'
                 'train_hosts=["a", "b", "c"]\nseed=[0, 1]\n')
    assert spool.reload(m).to_dict() == {"new": 6, "unchanged": 0, "updated": 0, "orphaned": 0}
    specs = [spool.read_spec(loc.path) for loc in spool.scan(JobState.PENDING)]
    assert sorted((s.seed, s.split_seed, s.train_hosts) for s in specs) == sorted(
        (seed, None if seed == 0 else 0, hosts) for seed in (0, 1)
        for hosts in (("b", "c"), ("a", "c"), ("a", "b")))
    assert all(s.split_recipe == "host" for s in specs)
    assert sorted(p.name[:-5] for p in (spool.root / "pending").iterdir()) == sorted(
        j.name for j in load_manifest(m).jobs)
    assert spool.reload(m).to_dict() == {"new": 0, "unchanged": 6, "updated": 0, "orphaned": 0}
    # the same folds written by hand are the same jobs
    m.write_text("".join(f'[[jobs]]\nmodel="smoke"\nmode="fold"\ntrain_hosts={hosts}\nseed=[0, 1]\n'
                         for hosts in ('["b", "c"]', '["a", "c"]', '["a", "b"]')))
    assert spool.reload(m).to_dict() == {"new": 0, "unchanged": 6, "updated": 0, "orphaned": 0}


def driver_args(spec) -> list[str]:
    paths = {k: f"/d/{k}" for k in ("validation", "summary", "tensors", "schema")}
    return driver_argv(spec, "/out", paths)


def test_a_training_driver_gets_curves_dir_and_the_smoke_job_none():
    gbt, smoke = parse_manifest(b'[[jobs]]\nmodel="gbt"\nmode="oracle"\ntrain_hosts=["a"]\n'
                                b'[[jobs]]\nmodel="smoke"\nmode="check"\n').jobs
    paths = {k: f"/d/{k}" for k in ("validation", "summary", "tensors", "schema")}
    argv = driver_argv(gbt, "/w/out", paths, "/w/curves")
    assert argv[argv.index("--curves") + 1] == "/w/curves" and argv[argv.index("--out") + 1] == "/w/out"
    assert "--curves" not in driver_argv(gbt, "/w/out", paths)
    assert "--curves" not in driver_argv(smoke, "/w/out", paths, "/w/curves")


def test_the_examples_commented_leave_one_host_out_entry_works_as_written():
    text = EXAMPLE.read_text()
    block = text[text.index('# [[jobs]]\n# model = "gbt"\n# mode = "realistic"\n# split_recipe'):
                 text.index("# --- smoke jobs")]
    live = text.replace(block, "".join(l[2:] + "\n" if l.startswith("# ") else l + "\n"
                                       for l in block.splitlines()))
    base, more = parse_manifest(text.encode()), parse_manifest(live.encode())
    added = [j for j in more.jobs if j.name not in {b.name for b in base.jobs}]
    assert len(added) == 8 and {j.seed for j in added} == {1, 2} and {j.split_seed for j in added} == {0}
    pool = {"elliott-thinkpad", "j-workstation", "k-gamingcom", "r-minipc"}
    assert {frozenset(pool - set(j.train_hosts)) for j in added} == {frozenset([h]) for h in pool}


def test_a_leave_one_host_out_entry_does_not_take_the_defaults_train_hosts_as_its_pool():
    doc = ('[defaults]\ntrain_hosts = ["a", "b", "c"]\n[[jobs]]\nmodel = "gbt"\nmode = "oracle"\n'
           'split_recipe = "leave-one-host-out"\n')
    with pytest.raises(ManifestError, match=r"jobs\[0\].*names its own host pool"):
        parse_manifest(doc.encode())
    # a pool in [defaults] that asks for leave-one-host-out itself is a pool
    doc = doc.replace('[defaults]\n', '[defaults]\nsplit_recipe = "leave-one-host-out"\n')
    assert len(parse_manifest(doc.encode()).jobs) == 3
