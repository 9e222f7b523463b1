"""Memory needs are known before claiming.

The driver estimates a job's peak from the data's shape and the model's
config (``--estimate-memory``); the estimate must be an upper bound of the
peak RSS measured on real data, and a worker must leave a job whose estimate
exceeds the host's free share pending, with the reason, and claim it when it
fits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cis490.fleet.memory import MemoryGate
from cis490.fleet.spool import Spool
from cis490.fleet.worker import Worker, WorkerOptions
from tests.fleet.conftest import worker_info
from tests.peak_rss import peak_rss

GIB = 1 << 30




@pytest.mark.parametrize("model,hyper", [("gbt", "epochs=5"), ("cnn", "epochs=1"),
                                         ("transformer", "epochs=1")])
def test_the_estimate_bounds_the_measured_peak(demo_data, tmp_path, model, hyper):
    argv = demo_data.argv(model, tmp_path / "out", "--hyper", hyper)
    res = subprocess.run([sys.executable, "-m", "cis490.train.run", *argv, "--estimate-memory"],
                         capture_output=True, text=True, check=True)
    est = json.loads(res.stdout)
    assert not (tmp_path / "out").exists()  # estimating trains nothing
    assert est["peak_bytes"] == int(sum(est["parts"].values()) * 1.25)
    peak, log = peak_rss("cis490.train.run", argv, tmp_path)
    assert f"{est['n_train']} train windows" in log and f"{est['n_val']} val windows" in log
    assert peak <= est["peak_bytes"] <= 3 * peak, (peak, est)


def test_free_share_holds_what_running_jobs_will_still_grow_into():
    rss = {11: 1 * GIB}
    gate = MemoryGate(available=lambda: 4 * GIB, rss=rss.get)
    assert gate.free_share() == 4 * GIB
    gate.reserve("a", 3 * GIB)
    assert gate.free_share() == 1 * GIB  # not started yet: all 3 GiB held
    gate.attach("a", 11)
    assert gate.free_share() == 2 * GIB  # 1 GiB resident already counts in MemAvailable
    assert gate.fits(2 * GIB) == (True, "")
    ok, why = gate.fits(int(2.5 * GIB))
    assert not ok and "needs ~2.50 GiB by its memory estimate, 2.00 GiB free" in why
    gate.release("a")
    assert gate.free_share() == 4 * GIB and gate.fits(None) == (True, "")
    assert MemoryGate(available=lambda: None).fits(100 * GIB) == (True, "")  # no /proc: no gate


def _spool_with_gbt_job(tmp_path, demo_data) -> Spool:
    spool = Spool.init(tmp_path / "spool", heartbeat_s=0.2, stale_after_s=5.0, max_attempts=3)
    m = tmp_path / "m.toml"
    m.write_text(textwrap.dedent(f"""
        [data]
        validation = "{demo_data.validation}"
        summary = "{demo_data.summary}"
        schema = "{demo_data.schema}"
        tensors = "{demo_data.tensors}"

        [[jobs]]
        model = "gbt"
        mode = "realistic"
        split_recipe = "host"
        train_hosts = ["elliott-thinkpad"]
        hyper = {{ epochs = 3 }}
    """))
    spool.reload(m)
    return spool


def test_a_worker_refuses_a_job_that_cannot_fit_and_claims_it_when_it_can(tmp_path, demo_data,
                                                                         caplog):
    spool = _spool_with_gbt_job(tmp_path, demo_data)
    w = Worker(Spool.open(spool.root), worker_info("h"),
               WorkerOptions(mode="drain", slots=1, poll_s=0.1, work_root=tmp_path / "work"))
    w.memory = MemoryGate(available=lambda: 64 << 20)  # 64 MiB free: nothing trains in that
    with caplog.at_level("INFO", logger="cis490.worker"):
        assert w.run() == 0
    assert spool.counts()["pending"] == 1 and spool.counts()["claimed"] == 0
    assert "by its memory estimate" in caplog.text and "0.06 GiB free for it" in caplog.text
    (name, why), = w.claimer.skipped.items()
    assert "needs ~" in why

    w2 = Worker(Spool.open(spool.root), worker_info("h"),
                WorkerOptions(mode="drain", slots=1, poll_s=0.1, work_root=tmp_path / "work"))
    w2.memory = MemoryGate(available=lambda: 64 * GIB)
    assert w2.run() == 0
    assert spool.counts()["done"] == 1 and spool.counts()["pending"] == 0
