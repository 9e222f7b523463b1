"""The product a user touches: the demo end to end at a tiny scale, replay, the README's commands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin" / "cis490-spool"
MODELS = ("gbt", "mlp", "cnn", "gru", "lstm", "transformer", "minirocket")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`cis490-spool demo` on a tiny store, in a scratch directory (data beside the spool)."""
    root = tmp_path_factory.mktemp("demo")
    spool = root / "spool"
    argv = [sys.executable, str(BIN), "--spool", str(spool), "demo", "--episodes-per-host", "8",
            "--duration-s", "60", "--quiet"]
    t0 = time.monotonic()
    first = subprocess.run(argv, capture_output=True, text=True, timeout=1500)
    took = time.monotonic() - t0
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {"root": root, "spool": spool, "first": first.stdout, "second": second.stdout, "took": took}


@pytest.mark.slow
def test_demo_trains_all_fourteen_through_real_workers_and_reports_them(demo):
    spool = demo["spool"]
    done = sorted(p.name for p in (spool / "done").iterdir())
    for model in MODELS:
        for mode in ("realistic", "oracle"):
            assert any(n.startswith(f"{model}_{mode}.") for n in done), (model, mode, done)
    assert not list((spool / "failed").iterdir()) and not list((spool / "pending").iterdir())
    hosts = set()
    for rec in (spool / "attempts").glob("*/*@*[0-9a-f].json"):
        r = json.loads(rec.read_text())
        hosts.add(r["host_id"])
        if r["outcome"] == "done" and r["name"].split("_")[0] in ("cnn", "gru", "lstm", "transformer", "minirocket"):
            assert r["host_id"] == "lab-gpu", "the pi host may only train gbt/mlp"
    assert hosts <= {"pi", "lab-gpu"} and "lab-gpu" in hosts
    report = (demo["root"] / "reports" / "eval" / "comparison.md").read_text()
    assert report.index("## Detection") < report.index("## Phase attribution")
    detection, phase = report.split("## Phase attribution")
    rows = [l.split("|") for l in detection.splitlines() if re.match(r"^\| \d+ \| ", l)]
    assert sorted(r[2].strip() for r in rows) == sorted(
        f"{m}_{mode}" for m in MODELS for mode in ("realistic", "oracle"))
    for baseline in ("majority", "clock-only", "rule-zscore", "logreg"):
        assert f"| — | {baseline} |" in detection
    rows = [l.split("|") for l in phase.splitlines() if re.match(r"^\| \d+ \| ", l)]
    assert {(r[2].strip(), r[3].strip()) for r in rows} == \
        {(m, mode) for m in MODELS for mode in ("realistic", "oracle")} and len(rows) == 14
    assert "scan-and-dial" in report  # the untested profile is reported
    assert "**Synthetic data.**" in report
    preds = demo["root"] / "reports" / "eval" / "predictions"
    assert len(list(preds.glob("*.parquet"))) == 14 + 4
    assert "macro F1" in demo["first"] and "FA/day" in demo["first"] and "report:" in demo["first"]


@pytest.mark.slow
def test_demo_rerun_reuses_everything_and_says_so(demo):
    out = demo["second"]
    for stage in ("synth", "validate", "features", "tensors"):
        assert f"{stage}: up to date" in out and "reused" in out
    assert "nothing to retrain" in out
    assert "0 new" in out


@pytest.mark.slow
def test_replay_predicts_what_the_pipeline_predicts(demo, tmp_path):
    """Replay rebuilds windows from the raw tarball: its predictions must equal the
    model's on the builder's features for the same episode."""
    from cis490.data.load import load_summary
    from cis490.fleet import store
    from cis490.models import load

    root, spool = demo["root"], demo["spool"]
    val = __import__("pandas").read_parquet(root / "demo-data" / "validation_v1.parquet")
    ep = val[(val.host_id == "k-gamingcom") & (val.status != "invalid")].iloc[0]
    path = root / "demo-data" / "store" / ep.path
    r = subprocess.run([sys.executable, "-m", "cis490", "replay", "--episode", str(path), "--model", "gbt_oracle",
                        "--spool", str(spool), "--speed", "0", "--events"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    events_dir = Path(re.search(r"events in (\S+)", r.stdout).group(1))
    events = [json.loads(p.read_text()) for p in sorted(events_dir.iterdir())]
    [digest_dir] = [d for mm, d in store.iter_artifacts(spool) if mm == "gbt_oracle"]
    store.extract(digest_dir, tmp_path / "ckpt")
    model = load(tmp_path / "ckpt")
    data = load_summary(root / "demo-data" / "features" / "features_window_v1.parquet", "oracle", [ep.episode_id])
    order = np.argsort(data.meta["t_end_ns"].to_numpy())
    expected = model.predict_proba(data.X[order]).argmax(1)
    from cis490.data.channels import PHASES

    assert [e["predicted"] for e in events] == [PHASES[i] for i in expected]
    assert [e["true"] for e in events] == [PHASES[i] for i in data.y[order]]
    assert [e["t_end_ns"] for e in events] == list(data.meta["t_end_ns"].to_numpy()[order])


@pytest.mark.slow
def test_replay_keeps_wall_clock_pace(demo):
    root, spool = demo["root"], demo["spool"]
    path = next((root / "demo-data" / "store" / "k-gamingcom").glob("*.tar.zst"))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "cis490", "replay", "--episode", str(path), "--model", "mlp_realistic",
                        "--spool", str(spool), "--speed", "40"], capture_output=True, text=True, timeout=300)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    n = int(re.search(r"replay: (\d+) windows", r.stdout).group(1))
    span = (n - 1) * 2 / 40  # windows are 2 s apart, played 40x faster
    assert took >= span and n > 3
    assert r.stdout.count("true ") == n


def test_readme_starts_with_the_two_commands_ci_runs():
    text = (REPO / "README.md").read_text()
    first_block = re.search(r"```\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert first_block == ["make demo", "make test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
    assert "bin/cis490-spool demo" in makefile and "pytest" in makefile
