"""``cis490 eval`` end to end on a tiny real store, and its refusals."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cis490.cli import main as cis490_main
from evalstore import build_store, data_args, train_gbt
from cis490.evaluate.run import (Candidate, EvalRefused, SchemaRefused, check_against_split,
                                 select)

pytest.importorskip("pyarrow")
pytest.importorskip("xgboost")


@dataclass(frozen=True)
class Demo:
    root: Path
    artifacts: Path
    spool: Path

    def argv(self, *extra: str) -> list[str]:
        return ["eval", *data_args(self.root), "--n-resamples", "1000", "--quiet", *extra]


TRAIN_HOSTS = ("elliott-thinkpad", "j-workstation", "r-minipc")  # the world's; k-gamingcom tests


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    """14 episodes per host; gbt trained in both modes (3 rounds), stored in a spool."""
    from cis490.fleet import store
    from cis490.fleet.spool import Spool
    root = tmp_path_factory.mktemp("evaldemo")
    build_store(root, 14, 90)
    artifacts, spool = root / "artifacts", root / "spool"
    Spool.init(spool)
    # gbt in both modes; the realistic one with two training seeds sharing split seed 0
    for mode, seed in (("realistic", 0), ("oracle", 0), ("realistic", 1)):
        out = artifacts / f"gbt_{mode}_s{seed}"
        train_gbt(root, out, mode, ",".join(TRAIN_HOSTS), seed)
        store.put(spool, f"gbt_{mode}", out, {"spec": {"model": "gbt", "mode": mode}})
    return Demo(root, artifacts, spool)


def test_eval_from_the_spool_writes_the_report(demo, tmp_path, capsys):
    import pyarrow.parquet as pq

    reports = tmp_path / "reports"
    rc = cis490_main(demo.argv("--spool", str(demo.spool), "--reports-dir", str(reports)))
    out = capsys.readouterr().out
    assert rc == 0
    for name in ("gbt_realistic", "gbt_oracle", "majority", "clock-only", "rule-zscore", "logreg"):
        assert name in out
    assert "synthetic data" in out
    md = (reports / "comparison.md").read_text()
    assert md.index("## Detection") < md.index("## Phase attribution")
    assert "| gbt | realistic |" in md and "| gbt | oracle |" in md
    assert "`scan-and-dial`: no test windows" in md           # held-out host never ran it
    assert "**Synthetic data.**" in md and "cis490-synth/2" in md
    assert "labelled onset of each episode" in md
    data = json.loads((reports / "gbt_realistic_eval.json").read_text())
    digests = {p.name for p in (demo.spool / "models" / "gbt_realistic").iterdir()}
    assert data["seeds"] == [0, 1]                            # two training seeds, one row
    assert set(data["provenance"]["checkpoints"].values()) == digests   # the store's digests
    assert data["bootstrap"]["n_resamples"] == 1000
    assert set(data["importance"]["drop"]) == {"host", "netflow"}
    assert 0 <= data["detection"]["threshold"] <= 1
    oracle = json.loads((reports / "gbt_oracle_eval.json").read_text())
    assert set(oracle["importance"]["drop"]) == {"host", "netflow", "proc"}
    assert (reports / "roc_pr.png").is_file() and (reports / "learning_curves.png").is_file()
    # the audit trail: one row per val and test window of every seed, every class' probability
    files = sorted(p.name for p in (reports / "predictions").iterdir())
    assert files == sorted(f"{n}.parquet" for n in ("gbt_realistic", "gbt_oracle", "majority",
                                                     "clock-only", "rule-zscore", "logreg"))
    table = pq.read_table(reports / "predictions" / "gbt_realistic.parquet")
    assert {"episode_id", "host_id", "split", "t_end_ns", "y_true", "p_clean", "p_armed",
            "p_infecting", "p_infected_running", "score", "seed"} <= set(table.column_names)
    df = table.to_pandas()
    assert set(df["split"]) == {"val", "test"} and set(df["seed"]) == {0, 1}
    test = df[(df["split"] == "test") & (df["seed"] == 0)]
    assert len(test) == data["n_windows"] and set(test["host_id"]) == {"k-gamingcom"}
    assert set(df[df["split"] == "val"]["host_id"]) <= set(TRAIN_HOSTS)
    assert np.allclose(df["score"], 1 - df["p_clean"].astype(float))


def test_eval_refuses_a_checkpoint_with_another_schema(demo, tmp_path, capsys):
    from cis490.models import checkpoint

    src = checkpoint.find_checkpoint(demo.artifacts / "gbt_realistic_s0")
    meta, sidecar = checkpoint.read_checkpoint(src)
    meta = {k: v for k, v in meta.items() if k not in ("format", "sidecar")}
    meta["schema_sha256"] = "0" * 64                              # trained on another schema
    stale = tmp_path / "stale"
    checkpoint.write_checkpoint(stale, "gbt_realistic", meta, sidecar, ".xgb.json")
    rc = cis490_main(demo.argv("--artifacts", str(stale), "--reports-dir",
                               str(tmp_path / "reports")))
    err = capsys.readouterr().err
    assert rc == 1
    assert "schema" in err and "000000000000" in err and "refusing" in err
    assert not (tmp_path / "reports" / "comparison.md").exists()


def test_eval_refuses_data_built_with_another_schema(demo, tmp_path, capsys):
    other = tmp_path / "feature_schema_v1.json"
    shutil.copy(demo.root / "features" / "feature_schema_v1.json", other)
    other.write_bytes(other.read_bytes() + b" ")                  # another schema hash
    argv = demo.argv("--artifacts", str(demo.artifacts), "--reports-dir", str(tmp_path / "r"))
    argv[argv.index("--schema") + 1] = str(other)
    assert cis490_main(argv) == 1
    assert "schema" in capsys.readouterr().err


# ---------------------------------------------------------------- selection


def _cand(model="gbt", mode="realistic", digest="a" * 64, schema="s" * 64, val=0.5,
          split=None, train_seed=None):
    split = {"recipe": "host", "train_hosts": ["h1"], "seed": 0} if split is None else split
    data = {"split": split} if train_seed is None else {"split": split, "train_seed": train_seed}
    meta = {"model": model, "mode": mode, "schema_sha256": schema,
            "fit": {"best_val_macro_f1": val}, "data": data}
    return Candidate(model, mode, digest, Path(f"/nonexistent/{digest}"), meta)


def _select(cands, **kw):
    notes = []
    chosen = select(cands, schema_sha256="s" * 64, recipe="host", train_hosts=["h1"], seed=0,
                    note=notes.append, **kw)
    return chosen, notes


def test_selection_uses_validation_f1_never_test():
    chosen, _ = _select([_cand(digest="a" * 64, val=0.6), _cand(digest="b" * 64, val=0.7),
                         _cand(mode="oracle", digest="c" * 64, val=0.1)])
    assert [(c.name, c.digest[0]) for c in chosen] == [("gbt_oracle", "c"), ("gbt_realistic", "b")]


def test_selection_keeps_only_the_evaluated_split():
    chosen, _ = _select([
        _cand(digest="a" * 64, val=0.9, split={"recipe": "time", "train_hosts": ["h1"], "seed": 0}),
        _cand(digest="b" * 64, val=0.8, split={"recipe": "host", "train_hosts": ["h2"], "seed": 0}),
        _cand(digest="c" * 64, val=0.7, split={"recipe": "host", "train_hosts": ["h1"], "seed": 1}),
        _cand(digest="d" * 64, val=0.1)])
    assert [c.digest[0] for c in chosen] == ["d"]


def test_selection_skips_a_stale_schema_when_a_current_one_exists():
    chosen, notes = _select([_cand(digest="a" * 64, val=0.9, schema="x" * 64),
                             _cand(digest="b" * 64, val=0.2)])
    assert [c.digest[0] for c in chosen] == ["b"]
    assert any("skipping" in n and "aaaaaaaaaaaa" in n for n in notes)


def test_selection_refuses_when_only_a_stale_schema_exists():
    with pytest.raises(SchemaRefused, match="refusing"):
        _select([_cand(schema="x" * 64), _cand(mode="oracle")])


def test_eval_refuses_a_corrupt_bundle(demo, tmp_path, capsys):
    spool = tmp_path / "spool"
    shutil.copytree(demo.spool, spool)
    bundle = next((spool / "models" / "gbt_oracle").glob("*/bundle.tar.zst"))
    bundle.write_bytes(bundle.read_bytes()[:-40])                 # truncated on the share
    rc = cis490_main(demo.argv("--spool", str(spool), "--reports-dir", str(tmp_path / "r")))
    err = capsys.readouterr().err
    assert rc == 1 and "gbt_oracle" in err and "fsck" in err


def test_selection_keeps_one_checkpoint_per_training_seed():
    chosen, _ = _select([_cand(digest="a" * 64, val=0.6, train_seed=0),
                         _cand(digest="b" * 64, val=0.7, train_seed=0),
                         _cand(digest="c" * 64, val=0.1, train_seed=2)])
    assert [(c.digest[0], c.train_seed) for c in chosen] == [("b", 0), ("c", 2)]


def test_a_checkpoint_without_a_split_record_is_refused():
    with pytest.raises(EvalRefused, match="records no split"):
        _select([_cand(digest="a" * 64, split={}), _cand(digest="b" * 64)])


def _altered(demo, tmp_path, edit):
    from cis490.models import checkpoint

    src = checkpoint.find_checkpoint(demo.artifacts / "gbt_realistic_s0")
    meta, sidecar = checkpoint.read_checkpoint(src)
    meta = {k: v for k, v in meta.items() if k not in ("format", "sidecar")}
    edit(meta)
    out = tmp_path / "altered"
    checkpoint.write_checkpoint(out, "gbt_realistic", meta, sidecar, ".xgb.json")
    return out


def test_eval_refuses_a_checkpoint_without_a_split_record(demo, tmp_path, capsys):
    arts = _altered(demo, tmp_path, lambda m: m["data"].pop("split"))
    rc = cis490_main(demo.argv("--artifacts", str(arts), "--reports-dir", str(tmp_path / "r"),
                               "--train-hosts", ",".join(TRAIN_HOSTS)))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "records no split" in err[0] and "refusing" in err[0]
    assert not (tmp_path / "r" / "comparison.md").exists()


def test_eval_refuses_a_checkpoint_trained_on_other_episodes(demo, tmp_path, capsys):
    def edit(m):
        m["data"]["train_episodes_sha256"] = "0" * 64          # e.g. the test host included
    arts = _altered(demo, tmp_path, edit)
    rc = cis490_main(demo.argv("--artifacts", str(arts), "--reports-dir", str(tmp_path / "r")))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "other train episodes" in err[0]


def test_a_checkpoint_trained_on_a_test_host_is_refused():
    from cis490.data.splits import Split

    from cis490.train.data import episodes_digest

    split = Split(recipe="host", seed=0, train=("a",), val=("b",), test=("c",),
                  train_hosts=("h1",), test_hosts=("h2", "h3"))

    def cand(hosts, **digests):
        c = _cand(split={"recipe": "host", "train_hosts": hosts, "seed": 0})
        c.meta["data"].update(digests)
        return c

    good = {"train_episodes_sha256": episodes_digest(["a"]),
            "val_episodes_sha256": episodes_digest(["b"])}
    check_against_split([cand(["h1"], **good)], split)
    with pytest.raises(EvalRefused, match="h3, a test host"):
        check_against_split([cand(["h1", "h3"], **good)], split)
    # a partial record cannot be checked: refused, not waved through
    with pytest.raises(EvalRefused, match="does not record val_episodes_sha256"):
        check_against_split([cand(["h1"], train_episodes_sha256=good["train_episodes_sha256"])],
                            split)
