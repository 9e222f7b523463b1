"""Per-job training curves: the driver's ``--curves`` (metrics.jsonl + TensorBoard events),
outside the checkpoint, and through a worker into the store beside the bundle."""

from __future__ import annotations

import json
import math
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("xgboost")
pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from cis490.train import run  # noqa: E402
from cis490.train.curves import KEYS, TAGS  # noqa: E402

from .test_train_driver import FAST  # noqa: E402


def read_metrics(curves) -> list[dict]:
    return [json.loads(line) for line in (curves / "metrics.jsonl").read_text().splitlines()]


def scalars(tb_dir) -> dict[str, list]:
    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module", params=["gbt", "cnn"])
def trained(request, demo_data, tmp_path_factory):
    """One run per model with --curves and --progress-fd: (model, out, curves, progress)."""
    import os

    model = request.param
    root = tmp_path_factory.mktemp(f"curves-{model}")
    out, curves = root / "out", root / "curves"
    r, w = os.pipe()
    try:
        rc = run.main(demo_data.argv(model, out, "--curves", str(curves), "--progress-fd", str(w),
                                     *FAST[model]))
    finally:
        os.close(w)
        with os.fdopen(r) as fh:
            progress = [json.loads(line) for line in fh.read().splitlines()]
    assert rc == 0
    return model, out, curves, [p for p in progress if "epoch_fraction" not in p]


def test_metrics_jsonl_has_one_line_per_epoch_with_finite_numbers(trained):
    model, out, curves, progress = trained
    rows = read_metrics(curves)
    assert [r["epoch"] for r in rows] == [p["epoch"] for p in progress] == list(range(1, len(rows) + 1))
    meta = json.loads((out / f"{model}_realistic.ckpt.json").read_bytes())
    assert len(rows) == meta["fit"]["epochs_run"]
    for r, p in zip(rows, progress):
        assert set(r) == set(KEYS)
        assert all(isinstance(r[k], (int, float)) and math.isfinite(r[k]) for k in KEYS), r
        assert r["train_loss"] == p["loss"] and r["val_macro_f1"] == p["val_macro_f1"]
        assert r["val_loss"] > 0 and r["lr"] > 0 and r["seconds"] >= 0
    history = meta["fit"]["history"]  # the checkpoint's history is the same epochs
    assert [h["loss"] for h in history] == [r["train_loss"] for r in rows]


def test_tensorboard_events_are_readable_and_equal_metrics_jsonl(trained):
    _, _, curves, _ = trained
    rows = read_metrics(curves)
    events = list((curves / "tensorboard").iterdir())
    assert len(events) == 1 and events[0].name.startswith("events.out.tfevents.")  # one writer
    got = scalars(curves / "tensorboard")
    assert set(got) == set(TAGS.values())
    for key, tag in TAGS.items():
        assert [e.step for e in got[tag]] == [r["epoch"] for r in rows], tag
        assert [e.value for e in got[tag]] == pytest.approx([r[key] for r in rows], rel=1e-6), tag


def test_out_holds_only_the_checkpoint_and_stays_byte_identical_with_curves(trained, demo_data,
                                                                             tmp_path):
    model, out, curves, _ = trained
    again, curves2, plain = tmp_path / "out", tmp_path / "curves", tmp_path / "plain"
    assert run.main(demo_data.argv(model, again, "--curves", str(curves2), *FAST[model])) == 0
    assert run.main(demo_data.argv(model, plain, *FAST[model])) == 0  # writing them changes nothing
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in again.iterdir()) == sorted(p.name for p in plain.iterdir())
    assert not any(n.endswith(".jsonl") or n == "tensorboard" for n in names)
    for name in names:
        assert (out / name).read_bytes() == (again / name).read_bytes() == (plain / name).read_bytes(), name
    # the curves themselves differ (seconds, TensorBoard's wall times): hence outside --out
    assert [r["epoch"] for r in read_metrics(curves2)] == [r["epoch"] for r in read_metrics(curves)]


def test_curves_inside_out_is_a_usage_error(demo_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run.main(demo_data.argv("gbt", tmp_path / "out", "--curves", str(tmp_path / "out" / "c")))
    assert exc.value.code == 2 and "--curves must lie outside --out" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_without_curves_the_driver_writes_nothing_else(demo_data, tmp_path):
    assert run.main(demo_data.argv("gbt", tmp_path / "out", *FAST["gbt"])) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_worker_stores_the_curves_beside_the_bundle_outside_its_digest(demo_data, tmp_path):
    """A real gbt job through the spool: bundle = exactly the checkpoint, curves.tar.zst +
    record listing, `models --tensorboard` lays out what TensorBoard's reader reads."""
    from cis490.fleet import store
    from cis490.fleet.capability import Capability
    from cis490.fleet.claim import WorkerInfo
    from cis490.fleet.cli import main as spool_main
    from cis490.fleet.fsck import fsck
    from cis490.fleet.spool import Spool
    from cis490.fleet.worker import Worker, WorkerOptions

    spool = Spool.init(tmp_path / "spool", heartbeat_s=0.5, stale_after_s=30.0)
    manifest = tmp_path / "m.toml"
    manifest.write_text(textwrap.dedent(f"""\
        [data]
        validation = "{demo_data.validation}"
        summary = "{demo_data.summary}"
        tensors = "{demo_data.tensors}"
        schema = "{demo_data.schema}"
        [[jobs]]
        model = "gbt"
        mode = "realistic"
        split_recipe = "host"
        train_hosts = ["elliott-thinkpad"]
        hyper = {{ epochs = 4 }}
        """))
    spool.reload(manifest)
    opts = WorkerOptions(mode="drain", max_jobs=1, work_root=tmp_path / "work",
                         lock_dir=tmp_path / "locks", watch=False, poll_s=0.2)
    info = WorkerInfo.create("h1", Capability(host_id="h1", cores=4, ram_gib=16.0, cuda=False))
    worker = Worker(spool, info, opts)
    assert worker.run() == 0
    assert list(worker.outcomes.values()) == ["done"], worker.outcomes
    [(mm, d)] = list(store.iter_artifacts(spool.root))
    assert mm == "gbt_realistic"
    record = json.loads((d / "record.json").read_text())
    assert [f["path"] for f in record["files"]] == ["gbt_realistic.ckpt.json",
                                                    "gbt_realistic.xgb.json"]
    assert sorted(p.name for p in d.iterdir()) == ["bundle.tar.zst", "curves.tar.zst", "record.json"]
    assert [c["path"] for c in record["curves"]][0] == "metrics.jsonl"
    rows = store.read_curves(d)
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 1
    assert fsck(spool)[0] == []

    tb = tmp_path / "tb"
    assert spool_main(["--spool", str(spool.root), "models", "--tensorboard", str(tb)]) == 0
    model_dir = tb / "gbt_realistic" / d.name[:12]
    assert [json.loads(x) for x in (model_dir / "metrics.jsonl").read_text().splitlines()] == rows
    got = scalars(model_dir / "tensorboard")
    assert [e.value for e in got["val/macro_f1"]] == pytest.approx([r["val_macro_f1"] for r in rows])
