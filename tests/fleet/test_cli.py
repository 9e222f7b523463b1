"""The operator script's contract: verbs, --json shapes, exit codes, the token guard."""

from __future__ import annotations

import json

from .conftest import cli, smoke_manifest


def init(tmp_path, *extra, env=None):
    root = tmp_path / "spool"
    r = cli("--spool", str(root), "init", "--heartbeat-s", "0.2", "--stale-after-s", "2", *extra, env=env)
    assert r.returncode == 0, r.stderr
    return root


def test_status_list_reload_json_shapes(tmp_path):
    root = init(tmp_path)
    m = smoke_manifest(tmp_path / "m.toml", 3)
    r = cli("--spool", str(root), "reload", str(m), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"new": 3, "unchanged": 0, "updated": 0, "orphaned": 0}
    r = cli("--spool", str(root), "status", "--json")
    snap = json.loads(r.stdout)
    assert snap["counts"] == {"pending": 3, "claimed": 0, "done": 0, "failed": 0, "cancelled": 0}
    assert snap["workers"] == []
    rows = json.loads(cli("--spool", str(root), "list", "--state", "pending", "--json").stdout)
    assert len(rows) == 3
    assert set(rows[0]) >= {"name", "id", "state", "model", "mode", "worker", "attempts"}
    assert rows[0]["state"] == "pending" and rows[0]["model"] == "smoke" and len(rows[0]["id"]) == 64


def test_spool_defaults_to_env_then_dot_spool(tmp_path):
    root = init(tmp_path)
    r = cli("status", "--json", env={"CIS490_SPOOL": str(root)})
    assert r.returncode == 0 and json.loads(r.stdout)["spool"] == str(root)


def test_work_show_logs_models_workers_fsck(tmp_path):
    root = init(tmp_path)
    cli("--spool", str(root), "reload", str(smoke_manifest(tmp_path / "m.toml", 1, seconds=0.2)), check=True)
    r = cli("--spool", str(root), "work", "--drain", "--host-id", "h1")
    assert r.returncode == 0, r.stderr
    name = json.loads(cli("--spool", str(root), "list", "--json").stdout)[0]["name"]
    show = json.loads(cli("--spool", str(root), "show", name[:15], "--json").stdout)
    assert show["state"] == "done" and show["attempts"][0]["outcome"] == "done"
    assert "epoch 1/1" in cli("--spool", str(root), "logs", name).stdout
    models = json.loads(cli("--spool", str(root), "models", "--json").stdout)
    assert len(models) == 1 and models[0]["job"] == name
    assert models[0]["curves"] is False                  # the smoke job writes no curves
    assert sorted(p.name for p in (root / "models" / "smoke_check").glob("*/*")) == [
        "bundle.tar.zst", "record.json"]
    assert json.loads(cli("--spool", str(root), "workers", "--json").stdout) == []
    fs = cli("--spool", str(root), "fsck", "--json")
    assert fs.returncode == 0 and json.loads(fs.stdout)["ok"] is True


def test_unknown_job_exits_1_with_one_line(tmp_path):
    root = init(tmp_path)
    for verb in ("show", "logs", "cancel", "requeue"):
        r = cli("--spool", str(root), verb, "nosuchjob")
        assert r.returncode == 1, verb
        assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
        assert "no job matches 'nosuchjob'" in r.stderr


def test_bad_usage_exits_2(tmp_path):
    assert cli("frobnicate").returncode == 2
    assert cli("list", "--state", "sleeping").returncode == 2
    assert cli("work", "--once", "--drain").returncode == 2


def test_not_a_spool_exits_1(tmp_path):
    r = cli("--spool", str(tmp_path / "nope"), "status")
    assert r.returncode == 1 and "cis490-spool init" in r.stderr


def test_invalid_manifest_exits_1_naming_job_and_field(tmp_path):
    root = init(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[jobs]]\nmodel="mlp"\nmode="oracle"\nhyper={lr_rate=1}\n')
    r = cli("--spool", str(root), "reload", str(bad))
    assert r.returncode == 1
    assert "jobs[0]" in r.stderr and "lr_rate" in r.stderr
    assert json.loads(cli("--spool", str(root), "status", "--json").stdout)["counts"]["pending"] == 0


def test_operator_verbs_need_the_token_recorded_at_init(tmp_path):
    env = {"CIS490_OPERATOR_TOKEN": "s3cret"}
    root = init(tmp_path, env=env)
    m = smoke_manifest(tmp_path / "m.toml", 1)
    no_token = {"CIS490_OPERATOR_TOKEN": ""}
    r = cli("--spool", str(root), "reload", str(m), env=no_token)
    assert r.returncode == 1 and "CIS490_OPERATOR_TOKEN" in r.stderr
    r = cli("--spool", str(root), "reload", str(m), env={"CIS490_OPERATOR_TOKEN": "wrong"})
    assert r.returncode == 1 and "does not match" in r.stderr
    assert cli("--spool", str(root), "reload", str(m), env=env).returncode == 0
    name = json.loads(cli("--spool", str(root), "list", "--json").stdout)[0]["name"]
    assert cli("--spool", str(root), "cancel", name, env=no_token).returncode == 1
    assert cli("--spool", str(root), "cancel", name, env=env).returncode == 0
    assert cli("--spool", str(root), "requeue", name, env=no_token).returncode == 1
    assert cli("--spool", str(root), "requeue", name, env=env).returncode == 0
    assert "s3cret" not in (root / "spool.toml").read_text()


def test_sweep_json(tmp_path):
    root = init(tmp_path)
    (root / "pending" / "junk.txt").write_text("x")
    r = cli("--spool", str(root), "sweep", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["quarantined"] == ["pending/junk.txt"]


def test_models_tensorboard_lays_out_every_models_curves(tmp_path):
    from cis490.fleet import store

    from .test_store import model_dir, write_curves

    root = init(tmp_path)
    stored = {}
    for mm, rows in (("gbt_oracle", ((1, 0.9),)), ("cnn_realistic", ((1, 0.8), (2, 0.6)))):
        stored[mm] = store.put(root, mm, model_dir(tmp_path, mm, mm), {"job": mm},
                               curves_dir=write_curves(tmp_path / f"c-{mm}", rows=rows))
    store.put(root, "smoke_check", model_dir(tmp_path, "smoke"), {"job": "s"})  # no curves
    listing = cli("--spool", str(root), "models").stdout
    assert "(no curves)" in next(line for line in listing.splitlines() if "smoke_check" in line)
    tb = tmp_path / "tb"
    r = cli("--spool", str(root), "models", "--tensorboard", str(tb))
    assert r.returncode == 0, r.stderr
    for mm, s in stored.items():
        d = tb / mm / s.digest[:12]
        assert f"wrote {d}/: metrics.jsonl, 1 event file(s)" in r.stdout
        assert (d / "metrics.jsonl").read_bytes() == (tmp_path / f"c-{mm}" / "metrics.jsonl").read_bytes()
        assert [p.name for p in (d / "tensorboard").iterdir()] == ["events.out.tfevents.1.somehost.1.0"]
    assert sorted(p.relative_to(tb).as_posix() for p in tb.glob("*/*")) == sorted(
        f"{mm}/{s.digest[:12]}" for mm, s in stored.items())         # nothing for the smoke job
    assert f"2 model(s) with curves under {tb}; 1 without" in r.stdout
    assert f"tensorboard --logdir {tb}" in r.stdout
    rows = json.loads(cli("--spool", str(root), "models", "--tensorboard", str(tb), "--json").stdout)
    assert {(x["model_mode"], x["digest"]) for x in rows} == {(mm, s.digest) for mm, s in stored.items()}
    assert all(x["files"] == ["metrics.jsonl", "tensorboard/events.out.tfevents.1.somehost.1.0"]
               for x in rows)

    # a tampered curves file is named on one line and skipped; the others are still written
    (stored["gbt_oracle"].path / "curves.tar.zst").write_bytes(b"not zstd")
    fresh = tmp_path / "tb2"
    r = cli("--spool", str(root), "models", "--tensorboard", str(fresh))
    assert r.returncode == 1
    [err] = r.stderr.strip().splitlines()
    assert f"gbt_oracle/{stored['gbt_oracle'].digest[:12]}" in err and "fsck" in err
    assert (fresh / "cnn_realistic" / stored["cnn_realistic"].digest[:12] / "metrics.jsonl").is_file()
    assert not (fresh / "gbt_oracle").exists()
