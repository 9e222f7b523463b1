"""``cis490 eval --split-recipe leave-one-host-out`` end to end on a tiny real store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from cis490.cli import main as cis490_main
from evalstore import build_store, data_args, train_gbt

pytest.importorskip("pyarrow")
pytest.importorskip("xgboost")


@dataclass(frozen=True)
class Loho:
    root: Path
    artifacts: Path
    hosts: tuple[str, ...]          # every host with usable episodes (one fold each)
    trained: tuple[str, ...]        # folds with checkpoints (gbt realistic; gbt oracle in the first)

    def argv(self, *extra: str) -> list[str]:
        return ["eval", *data_args(self.root), "--artifacts", str(self.artifacts),
                "--split-recipe", "leave-one-host-out", "--n-resamples", "1000",
                "--importance", "none", "--quiet", *extra]


@pytest.fixture(scope="module")
def loho(tmp_path_factory) -> Loho:
    """A small store; the cheapest model trained for the first two folds, the others untrained."""
    from cis490.data.splits import usable_hosts
    from cis490.data.validate import read_validation

    root = tmp_path_factory.mktemp("lohodemo")
    hosts = tuple(usable_hosts(read_validation(build_store(root, 8, 90))))
    assert len(hosts) >= 3, hosts  # two trained folds and one untrained (the world has 4 hosts)
    artifacts = root / "artifacts"
    trained = hosts[:2]
    jobs = [(h, "realistic") for h in trained] + [(trained[0], "oracle")]
    for held_out, mode in jobs:     # what a leave-one-host-out manifest entry expands into
        train_gbt(root, artifacts / f"gbt_{mode}_{held_out}", mode,
                  ",".join(h for h in hosts if h != held_out), 0)
    return Loho(root, artifacts, hosts, trained)


def test_leave_one_host_out_writes_each_fold_and_a_summary(loho, tmp_path, capsys):
    reports = tmp_path / "reports"
    rc = cis490_main(loho.argv("--reports-dir", str(reports)))
    out = capsys.readouterr().out
    assert rc == 0
    untrained = [h for h in loho.hosts if h not in loho.trained]
    # each trained fold: a full evaluation of the host split that holds that host out
    for h in loho.trained:
        fold = reports / "leave-one-host-out" / h
        for name in ("comparison.md", "comparison.json", "gbt_realistic_eval.json",
                     "clock-only_eval.json", "roc_pr.png", "predictions/gbt_realistic.parquet",
                     "predictions/logreg.parquet"):
            assert (fold / name).is_file(), (h, name)
        prov = json.loads((fold / "comparison.json").read_text())["provenance"]
        assert prov["recipe"] == "host" and prov["test_hosts"] == [h]
        assert prov["train_hosts"] == [o for o in loho.hosts if o != h]
        test = pd.read_parquet(fold / "predictions" / "gbt_realistic.parquet")
        assert set(test.loc[test["split"] == "test", "host_id"]) == {h}
        assert h not in set(test.loc[test["split"] == "val", "host_id"])
        assert "## Detection over time (test weeks)" in (fold / "comparison.md").read_text()
    for h in untrained:
        assert not (reports / "leave-one-host-out" / h).exists()
    assert not (reports / "predictions").exists()             # nothing outside the folds
    # the summary
    data = json.loads((reports / "comparison.json").read_text())
    assert data["recipe"] == "leave-one-host-out" and data["hosts"] == list(loho.hosts)
    assert data["missing_folds"] == untrained
    status = {f["held_out_host"]: f for f in data["folds"]}
    for h in loho.hosts:
        f = status[h]
        assert f["status"] == ("evaluated" if h in loho.trained else "not trained")
        assert f["train_hosts"] == [o for o in loho.hosts if o != h] and f["n_test_episodes"] > 0
        assert (f["report"] == f"leave-one-host-out/{h}/comparison.md") == (h in loho.trained)
    models = {m["name"]: m for m in data["models"]}
    assert set(models) == {"gbt_realistic", "gbt_oracle"}
    assert set(data["baselines"]) == {"majority", "clock-only", "rule-zscore", "logreg"}
    real = models["gbt_realistic"]["per_fold"]
    assert set(real) == set(loho.trained)
    assert models["gbt_oracle"]["per_fold"][loho.trained[1]] is None     # that fold lacks it
    for h in loho.trained:                                    # the fold's own numbers
        own = json.loads((reports / "leave-one-host-out" / h / "gbt_realistic_eval.json")
                         .read_text())["detection"]
        for key in ("episode_detection_rate", "false_alarms_per_host_day", "roc_auc"):
            assert real[h][key] == own[key]
        assert real[h]["n_test_episodes"] == status[h]["n_test_episodes"]
    md = (reports / "comparison.md").read_text()
    assert "## Leave-one-host-out" in md and "**not trained**" in md
    for h in loho.trained:
        assert f"[comparison.md](leave-one-host-out/{h}/comparison.md)" in md
        assert f"`{h}` detection rate at τ" in md
    oracle_row = next(line for line in md.splitlines() if line.startswith("| gbt_oracle |"))
    assert oracle_row.rstrip(" |").endswith("— | — | —")
    assert "| logreg (baseline) |" in md
    assert "Test episodes per fold:" in md and all(f"`{h}` " in md for h in loho.hosts)
    # the terminal
    assert "Leave-one-host-out" in out and "not trained: " + ", ".join(untrained) in out
    line = next(line for line in out.splitlines() if line.startswith("eval: leave-one-host-out"))
    assert f"over {len(loho.hosts)} hosts" in line and f"{len(untrained)} not trained" in line


def test_leave_one_host_out_refuses_train_hosts(loho, tmp_path, capsys):
    rc = cis490_main(loho.argv("--reports-dir", str(tmp_path / "r"),
                               "--train-hosts", loho.hosts[0]))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "--train-hosts cannot be combined" in err[0] and "fixed by the data's hosts" in err[0]
    assert not (tmp_path / "r").exists()


def test_leave_one_host_out_without_any_trained_fold_is_an_error(loho, tmp_path, capsys):
    rc = cis490_main(loho.argv("--reports-dir", str(tmp_path / "r"), "--seed", "1"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "no checkpoint trained for any leave-one-host-out fold" in err[0]
    assert "split seed 1" in err[0] and f"{loho.hosts[0]} held out" in err[0]
    assert not (tmp_path / "r" / "comparison.md").exists()


def test_leave_one_host_out_needs_two_hosts():
    from cis490.evaluate.run import loho_folds

    df = pd.DataFrame({"host_id": ["a", "a", "b"], "status": ["ok", "ok", "invalid"]})
    with pytest.raises(ValueError, match="needs >= 2 hosts with usable episodes.*found 1 \\(a\\)"):
        loho_folds(df)
    df.loc[2, "status"] = "degraded"
    assert loho_folds(df) == [("a", ("b",), 2), ("b", ("a",), 1)]


def test_a_refused_fold_is_reported_and_the_others_still_count(loho, tmp_path, capsys, monkeypatch):
    from cis490.evaluate import run

    real = run.evaluate
    bad = loho.trained[0]

    def refuse_one(settings, chosen, **kw):
        if settings.reports_dir.name == bad:
            raise run.EvalRefused("the validation split has no malicious window (test double)")
        return real(settings, chosen, **kw)

    monkeypatch.setattr(run, "evaluate", refuse_one)
    reports = tmp_path / "reports"
    assert cis490_main(loho.argv("--reports-dir", str(reports))) == 0
    data = json.loads((reports / "comparison.json").read_text())
    status = {f["held_out_host"]: f for f in data["folds"]}
    assert status[bad]["status"] == "refused" and "no malicious window" in status[bad]["refused"]
    assert status[loho.trained[1]]["status"] == "evaluated"
    assert data["refused_folds"] == {bad: status[bad]["refused"]} and bad not in data["missing_folds"]
    md = (reports / "comparison.md").read_text()
    assert "**refused**" in md and "Refused (the evaluation would not score the fold" in md
    assert "refused: " + bad in capsys.readouterr().out
    # every trained fold refused: one error naming the reasons
    monkeypatch.setattr(run, "evaluate", lambda *a, **k: (_ for _ in ()).throw(
        run.EvalRefused("nothing to score (test double)")))
    assert cis490_main(loho.argv("--reports-dir", str(tmp_path / "r2"))) == 1
    assert "every fold with checkpoints was refused" in capsys.readouterr().err
