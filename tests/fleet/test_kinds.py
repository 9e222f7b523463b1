"""The job-kind interface: the coordinator runs kinds it is given and knows no model.

``cis490.fleet`` registers only ``smoke``; ``cis490.kinds`` (imported by every entry
point, and by tests/conftest.py for the suite) registers one kind per model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cis490.fleet import kinds
from cis490.fleet.spec import SpecError, build_spec, driver_argv, validate_hyper

REPO = Path(__file__).resolve().parents[2]
ML_PACKAGES = ("cis490.models", "cis490.train", "cis490.data", "cis490.evaluate", "cis490.demo",
               "cis490.replay", "cis490.kinds", "cis490.spool_cli")


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (no conftest, nothing registered); its last
    stdout line is JSON."""
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_coordinator_imports_no_ml_module_and_knows_only_smoke():
    out = _fresh("""
        import json, sys
        import cis490.fleet, cis490.fleet.cli, cis490.fleet.worker, cis490.fleet.spec
        import cis490.fleet.capability, cis490.fleet.manifest, cis490.fleet.smoke
        from cis490.fleet import kinds
        from cis490.fleet.capability import available_kinds
        loaded = sorted(m for m in sys.modules if m.startswith("cis490.") and
                        not m.startswith(("cis490.fleet", "cis490.common")))
        print(json.dumps({"loaded": loaded, "kinds": list(kinds.names()),
                          "available": list(available_kinds()), "data_keys": list(kinds.data_keys())}))
    """)
    assert not [m for m in out["loaded"] if m.startswith(ML_PACKAGES)], out["loaded"]
    assert out["kinds"] == ["smoke"] and out["available"] == ["smoke"] and out["data_keys"] == []


def test_a_worker_without_the_model_kinds_leaves_model_jobs_alone(tmp_path):
    """A process that registered no model kind (an older worker, a bare coordinator) neither
    claims nor quarantines a model job: it stays in pending/ for a worker that knows it."""
    from cis490.fleet.spool import Spool

    spool = Spool.init(tmp_path / "spool")
    manifest = tmp_path / "m.toml"
    manifest.write_text('[data]\nvalidation = "v"\nsummary = "s"\ntensors = "t"\nschema = "x"\n'
                        '[[jobs]]\nmodel = "gbt"\nmode = "oracle"\n')
    spool.reload(manifest)
    out = _fresh(f"""
        import json
        from pathlib import Path
        from cis490.fleet.capability import Capability
        from cis490.fleet.claim import WorkerInfo, claim_next
        from cis490.fleet.spool import Spool
        spool = Spool.open({str(tmp_path / "spool")!r})
        info = WorkerInfo.create("bare", Capability(host_id="bare", cores=4, ram_gib=16))
        claim = claim_next(spool, info)
        root = Path({str(tmp_path / "spool")!r})
        print(json.dumps({{"claim": claim is not None,
                           "pending": sorted(p.name for p in (root / "pending").iterdir()),
                           "quarantine": sorted(p.name for p in (root / "quarantine").iterdir())}}))
    """)
    assert out["claim"] is False and len(out["pending"]) == 1 and out["quarantine"] == []
    assert out["pending"][0].startswith("gbt_oracle.")


def test_registry_register_get_and_conflicts():
    assert kinds.get("smoke") is kinds.SMOKE and kinds.get("no-such-kind") is None
    assert {"smoke", "gbt", "mlp", "cnn", "gru", "lstm", "transformer", "minirocket"} <= set(kinds.names())
    again = kinds.register(kinds.SMOKE)  # equal: a no-op
    assert again is kinds.SMOKE and kinds.get("smoke") is kinds.SMOKE
    other = kinds.JobKind(name="smoke", config=kinds.SmokeConfig, driver="elsewhere",
                          build_args=lambda *a: [])
    with pytest.raises(ValueError, match="already registered differently"):
        kinds.register(other)
    assert kinds.get("smoke") is kinds.SMOKE
    with pytest.raises(SpecError, match="unknown model 'no-such-kind'; known: .*smoke"):
        validate_hyper("no-such-kind", {})


def test_a_kind_brings_its_schema_modes_and_data_keys(monkeypatch):
    seen = []

    def args(spec, out_dir, data_paths, curves_dir):
        seen.append(dict(data_paths))
        return ["--out", out_dir, "--data", data_paths["corpus"]]

    from dataclasses import dataclass

    @dataclass(frozen=True)
    class EchoConfig:
        rounds: int = 1

    kind = kinds.JobKind(name="echo-test", config=EchoConfig, driver="echo.driver", build_args=args,
                         modes=("fast",), data_keys=("corpus",), pythonpath=("/opt/echo",))
    monkeypatch.setitem(kinds._KINDS, "echo-test", kind)
    spec = build_spec({"model": "echo-test", "mode": "fast", "hyper": {"rounds": 3}})
    assert spec.hyper == {"rounds": 3}
    with pytest.raises(SpecError, match="hyper 'rounds': expected an integer"):
        build_spec({"model": "echo-test", "mode": "fast", "hyper": {"rounds": "3"}})
    with pytest.raises(SpecError, match="unknown mode 'slow'; known: fast"):
        build_spec({"model": "echo-test", "mode": "slow"})
    with pytest.raises(SpecError, match=r"no data path\(s\) corpus for this host"):
        driver_argv(spec, "/out", {})
    assert driver_argv(spec, "/out", {"corpus": "/c"}) == ["echo.driver", "--out", "/out", "--data", "/c"]
    assert "corpus" in kinds.data_keys()
    env = kind.env({"PYTHONPATH": "/x", "HOME": "/h"})
    assert env["PYTHONPATH"].split(":") == ["/opt/echo", "/x"] and env["HOME"] == "/h"


def test_model_kind_argv_is_the_training_driver_command():
    """The model kinds build exactly the driver command of docs/CONTRACTS.md."""
    spec = build_spec({"model": "gru", "mode": "realistic", "hyper": {"epochs": 3, "hidden": 16},
                       "train_hosts": ["b", "a"], "seed": 7, "split_seed": 1,
                       "data": {"schema_sha256": "ab" * 32, "validation_sha256": "cd" * 32}})
    paths = {"validation": "/d/v.parquet", "summary": "/d/s.parquet", "tensors": "/d/t",
             "schema": "/d/schema.json"}
    assert driver_argv(spec, "/out", paths, "/curves") == [
        "cis490.train.run", "--model", "gru", "--mode", "realistic",
        "--validation", "/d/v.parquet", "--summary", "/d/s.parquet", "--tensors", "/d/t",
        "--schema", "/d/schema.json", "--split-recipe", "host", "--seed", "7",
        "--hyper", "epochs=3", "--hyper", "hidden=16", "--out", "/out",
        "--split-seed", "1", "--train-hosts", "a,b",
        "--expect-schema-sha256", "ab" * 32, "--expect-validation-sha256", "cd" * 32,
        "--curves", "/curves"]
    gru = kinds.get("gru")
    assert gru.estimates_memory and gru.modes == ("realistic", "oracle")
    assert gru.requires == (("torch", "train"),) and kinds.get("gbt").requires == (("xgboost", "train"),)
    assert kinds.get("minirocket").requires == (("aeon", "minirocket"),)
    assert str(REPO) in gru.env({})["PYTHONPATH"].split(":")
    assert driver_argv(build_spec({"model": "smoke", "mode": "x", "hyper": {"seconds": 0}}), "/o", {}) == [
        "cis490.fleet.smoke", "--out", "/o", "--hyper", "seconds=0.0"]


def test_cis490_spool_demo_verb_comes_from_the_top_level_wiring():
    res = subprocess.run([sys.executable, str(REPO / "bin" / "cis490-spool"), "demo", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--episodes-per-host" in res.stdout, res.stderr
    bare = _fresh("""
        import contextlib, io, json
        from cis490.fleet import cli
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                cli.main(["demo", "--help"])
            except SystemExit as exc:
                code = exc.code
        print(json.dumps({"code": code, "err": err.getvalue()}))
    """)
    assert bare["code"] == 2 and "invalid choice: 'demo'" in bare["err"]
