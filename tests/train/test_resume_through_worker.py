"""Resume end to end: a real model job through real workers on a spool.

A worker is stopped (SIGTERM) while the job trains; the job goes back to
``pending/`` with its resume state in the spool; a second worker on another
"host" continues it. The artifact it stores has the same digest (the bundle's
content hash) as an uninterrupted run of the same job on a fresh spool, and
the resume state is gone once the job is done.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cis490.fleet import JobState, Spool
from cis490.fleet.attempts import counted_attempts

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin" / "cis490-spool"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc")


def manifest(path: Path, demo_data, model: str, hyper: str) -> Path:
    path.write_text(
        f'[defaults]\ntrain_hosts = ["elliott-thinkpad"]\nsplit_recipe = "host"\nseed = 0\n\n'
        f'[data]\nvalidation = "{demo_data.validation}"\nsummary = "{demo_data.summary}"\n'
        f'schema = "{demo_data.schema}"\ntensors = "{demo_data.tensors}"\n\n'
        f'[[jobs]]\nmodel = "{model}"\nmode = "realistic"\nhyper = {{ {hyper} }}\n')
    return path


def new_spool(root: Path, m: Path) -> tuple[Spool, str]:
    spool = Spool.init(root, heartbeat_s=0.3, stale_after_s=30.0)
    spool.reload(m)
    [loc] = spool.scan(JobState.PENDING)
    return spool, spool.name_of(loc)


def drain(spool: Spool, host: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BIN), "--spool", str(spool.root), "work", "--drain",
                           "--poll-s", "0.2", "--host-id", host], capture_output=True, text=True, timeout=600)


def digest(spool: Spool, name: str) -> str:
    recs = [json.loads(p.read_text()) for p in spool.attempts_dir(name).glob("*@*[0-9a-f].json")]
    [done] = [r for r in recs if r["outcome"] == "done"]
    return done["digest"]


@pytest.mark.slow
@pytest.mark.parametrize("model, hyper", [
    ("gbt", "epochs = 400, patience = 400, learning_rate = 0.02"),
    ("gru", "epochs = 12, patience = 12"),
])
def test_a_job_stopped_mid_training_resumes_on_another_worker_to_the_same_artifact(
        demo_data, tmp_path, model, hyper):
    m = manifest(tmp_path / "m.toml", demo_data, model, hyper)
    reference, ref_name = new_spool(tmp_path / "reference", m)
    r = drain(reference, "h-ref")
    assert r.returncode == 0, r.stderr
    want = digest(reference, ref_name)

    spool, name = new_spool(tmp_path / "spool", m)
    assert name == ref_name
    state = spool.resume_dir(name) / "resume.ckpt"
    proc = subprocess.Popen([sys.executable, str(BIN), "--spool", str(spool.root), "work", "--poll-s", "0.2",
                             "--host-id", "h1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        t0 = time.monotonic()
        while not state.exists():  # the first epoch's state reached the spool
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() - t0 < 300, "no resume state in the spool"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    if spool.scan(JobState.DONE):
        pytest.fail(f"the job finished before the worker was stopped: make it longer\n{out}")
    assert [spool.name_of(loc) for loc in spool.scan(JobState.PENDING)] == [name]
    assert counted_attempts(spool.attempts_dir(name)) == 0
    [rec] = [json.loads(p.read_text()) for p in spool.attempts_dir(name).glob("*@*[0-9a-f].json")]
    assert rec["outcome"] == "released" and rec["resume_saved"] is True, rec
    assert state.exists()

    r = drain(spool, "h2")
    assert r.returncode == 0, r.stderr
    log = next(spool.logs_dir(name).glob("2@*.log")).read_text()
    assert "resuming from" in log, log[-2000:]
    assert digest(spool, name) == want  # the same bytes as the uninterrupted run
    assert not spool.resume_dir(name).exists()
