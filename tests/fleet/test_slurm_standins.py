"""``cis490-spool slurm`` and the pilot's Slurm logic against stand-in sbatch/squeue/scontrol/
scancel scripts on PATH (each records its argv). The real single-node Slurm is in tests/slurm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cis490.fleet import JobState
from cis490.fleet import slurm

from .conftest import BIN, cli
from .test_resume_and_walltime import records, signal_mid_job, smoke_job
from .test_worker import names

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and process groups")


@pytest.fixture
def fake_slurm(tmp_path):
    """A PATH directory of stand-ins; ``calls()`` lists ``[prog, *argv]`` per call."""
    bindir, calls = tmp_path / "fakebin", tmp_path / "calls.jsonl"
    bindir.mkdir()
    squeue_out = tmp_path / "squeue.out"
    squeue_out.write_text("")
    scripts = {
        "sbatch": 'cp "${@: -1}" "$FAKE_DIR/submitted.sbatch"; echo "4242;cluster"',
        "squeue": 'cat "$FAKE_DIR/squeue.out"',
        "scontrol": 'exit 0',
        "scancel": 'exit 0',
    }
    for prog, body in scripts.items():
        p = bindir / prog
        p.write_text(f'#!/bin/bash\n{sys.executable} -c \'import json,sys; print(json.dumps(sys.argv[1:]))\' '
                     f'"{prog}" "$@" >> "$FAKE_DIR/calls.jsonl"\n{body}\n')
        p.chmod(0o755)

    class Fake:
        dir = tmp_path
        env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "FAKE_DIR": str(tmp_path)}

        @staticmethod
        def calls() -> list[list[str]]:
            return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []

        @staticmethod
        def squeue(text: str) -> None:
            squeue_out.write_text(text)

    return Fake


def test_dry_run_prints_the_array_script_and_submits_nothing(spool, fake_slurm):
    r = cli("--spool", str(spool.root), "slurm", "submit", "--dry-run", "--pilots", "8", "--throttle", "2",
            "--time", "90", "--signal-lead", "240", "--cpus-per-task", "4", "--mem", "16G", "--gres", "gpu:1",
            "--partition", "gpu", "--account", "lab", "--extra=--qos=long", env=fake_slurm.env)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    for line in ("#SBATCH --array=0-7%2", "#SBATCH --time=90", "#SBATCH --signal=B:USR1@240",
                 "#SBATCH --requeue", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16G", "#SBATCH --gres=gpu:1",
                 "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --qos=long",
                 "export CIS490_SIGNAL_LEAD=240", "export CIS490_REQUEUE_CAP=3"):
        assert line in text.splitlines(), line
    [exec_line] = [ln for ln in text.splitlines() if ln.startswith("exec ")]
    assert f"--spool {spool.root} work --drain --slurm --cuda-only" in exec_line
    assert fake_slurm.calls() == [] and not (spool.root / "slurm").exists()
    # the script is valid bash
    script = fake_slurm.dir / "s.sh"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.parametrize("args, message", [
    (["--signal-lead", "60"], "at least 61 s"),
    (["--time", "5", "--signal-lead", "300"], "leaves nothing"),
    (["--pilots", "2", "--throttle", "3"], "--throttle 3"),
    (["--extra", "--qos=a\n#SBATCH --x"], "one sbatch option per --extra"),
    (["--mem", "16G; rm -rf /"], "unexpected characters"),
])
def test_bad_submit_options_are_one_line_errors(spool, fake_slurm, args, message):
    r = cli("--spool", str(spool.root), "slurm", "submit", *args, env=fake_slurm.env)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert fake_slurm.calls() == []


def test_submit_writes_the_script_into_the_spool_and_status_and_cancel_use_its_ids(spool, fake_slurm):
    r = cli("--spool", str(spool.root), "slurm", "submit", "--pilots", "3", "--time", "30", env=fake_slurm.env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4242"
    [(prog, *argv)] = fake_slurm.calls()
    assert prog == "sbatch" and argv[0] == "--parsable"
    script = Path(argv[-1])
    assert script.parent == spool.root / "slurm" and script.suffix == ".sbatch"
    assert (fake_slurm.dir / "submitted.sbatch").read_text() == script.read_text()
    assert "#SBATCH --array=0-2" in script.read_text()
    rec = json.loads((spool.root / "slurm" / "submitted" / "4242.json").read_text())
    assert rec["job_id"] == "4242" and rec["pilots"] == 3

    fake_slurm.squeue("4242_0|RUNNING|1:00|30:00|node1\n4242_[1-2]|PENDING|0:00|30:00|(JobArrayTaskLimit)\n")
    st = cli("--spool", str(spool.root), "slurm", "status", "--json", env=fake_slurm.env)
    assert st.returncode == 0, st.stderr
    rows = json.loads(st.stdout)
    assert [r["state"] for r in rows] == ["RUNNING", "PENDING"]
    assert fake_slurm.calls()[-1][:7] == ["squeue", "-h", "-r", "--me", "--name=cis490-pilot", "-j", "4242"]
    c = cli("--spool", str(spool.root), "slurm", "cancel", env=fake_slurm.env)
    assert c.returncode == 0 and "4242" in c.stdout
    assert fake_slurm.calls()[-1] == ["scancel", "4242"]


def test_status_of_pilots_the_controller_has_forgotten_is_empty(spool, fake_slurm):
    (spool.root / "slurm" / "submitted").mkdir(parents=True)
    (spool.root / "slurm" / "submitted" / "9.json").write_text('{"job_id": "9"}')
    squeue = Path(fake_slurm.env["PATH"].split(os.pathsep)[0]) / "squeue"
    squeue.write_text(squeue.read_text().replace('cat "$FAKE_DIR/squeue.out"',
                                                 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1'))
    r = cli("--spool", str(spool.root), "slurm", "status", env=fake_slurm.env)
    assert r.returncode == 0 and "no pilots of this spool" in r.stdout, r.stderr
    c = cli("--spool", str(spool.root), "slurm", "cancel", env=fake_slurm.env)
    assert c.returncode == 0 and not [x for x in fake_slurm.calls() if x[0] == "scancel"]


def test_a_log_dir_an_sbatch_line_cannot_hold_is_refused(spool, fake_slurm):
    r = cli("--spool", str(spool.root), "slurm", "submit", "--log-dir", "/tmp/my logs", env=fake_slurm.env)
    assert r.returncode == 1 and "no spaces" in r.stderr and fake_slurm.calls() == []


def test_status_without_slurm_on_path_is_one_line(spool, tmp_path):
    (spool.root / "slurm" / "submitted").mkdir(parents=True)
    (spool.root / "slurm" / "submitted" / "7.json").write_text('{"job_id": "7"}')
    r = cli("--spool", str(spool.root), "slurm", "status", env={"PATH": str(tmp_path)})
    assert r.returncode == 1 and "squeue not found on PATH" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def pilot_env(fake, *, restart: int = 0, end_in_s: float | None = 400, lead: int = 61) -> dict:
    env = {**os.environ, **fake.env, "SLURM_JOB_ID": "101", "SLURM_ARRAY_JOB_ID": "100",
           "SLURM_ARRAY_TASK_ID": "1", "SLURM_RESTART_COUNT": str(restart), "SLURMD_NODENAME": "node7",
           "CIS490_SIGNAL_LEAD": str(lead)}
    if end_in_s is not None:
        env["SLURM_JOB_END_TIME"] = str(int(time.time() + end_in_s))
    return env


def start_pilot(root: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(BIN), "--spool", str(root), "work", "--drain", "--slurm",
                             "--poll-s", "0.2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _signal_pilot_mid_job(spool, fake, tmp_path, sig, *, then=None, **env_kw):
    name = smoke_job(spool, tmp_path, seconds=60, epochs=60, payload=f"p{sig}")
    out = signal_mid_job(spool, start_pilot(spool.root, pilot_env(fake, **env_kw)), name, sig, then=then)
    return name, out


def test_usr1_releases_the_job_with_its_state_and_requeues_only_this_array_task(spool, fake_slurm, tmp_path):
    name, out = _signal_pilot_mid_job(spool, fake_slurm, tmp_path, signal.SIGUSR1)
    [rec] = records(spool, name)
    assert rec["outcome"] == "released" and "SIGUSR1" in rec["error"] and rec["resume_saved"]
    assert rec["slurm"] == {"job_id": "101", "array_job_id": "100", "array_task_id": "1", "task": "100_1",
                            "restart_count": 0, "node": "node7"}
    assert ["scontrol", "requeue", "100_1"] in fake_slurm.calls(), out


def test_no_requeue_past_the_restart_cap(spool, fake_slurm, tmp_path):
    _name, out = _signal_pilot_mid_job(spool, fake_slurm, tmp_path, signal.SIGUSR1, restart=3)
    assert not [c for c in fake_slurm.calls() if c[0] == "scontrol"]
    assert "restarted 3 times (cap 3)" in out


def test_sigterm_releases_but_never_requeues(spool, fake_slurm, tmp_path):
    # scancel sends SIGTERM too, and Slurm lets a task being cancelled requeue itself
    # (tests/slurm: test_slurm_cancel_...): a requeue here would bring a cancelled pilot back
    _name, out = _signal_pilot_mid_job(spool, fake_slurm, tmp_path, signal.SIGTERM)
    assert not [c for c in fake_slurm.calls() if c[0] == "scontrol"]
    assert "stopped by SIGTERM" in out and "not requeueing 100_1" in out


def test_the_time_limits_sigterm_during_a_warned_stop_does_not_undo_the_requeue(spool, fake_slurm, tmp_path):
    # a pilot still stopping for its USR1 (or deadline) when the limit's SIGTERM comes acts
    # on the first reason: the job is released with its state and the task requeued
    name, out = _signal_pilot_mid_job(spool, fake_slurm, tmp_path, signal.SIGUSR1, then=signal.SIGTERM)
    [rec] = records(spool, name)
    assert rec["outcome"] == "released" and "SIGUSR1" in rec["error"] and rec["resume_saved"], rec
    assert ["scontrol", "requeue", "100_1"] in fake_slurm.calls(), out


def test_no_requeue_when_no_work_fits_a_walltime(spool, fake_slurm, tmp_path):
    # end in 400 s, lead 61: a window of ~339 s; a 30-minute job can never fit one
    name = smoke_job(spool, tmp_path, seconds=1, epochs=1, expected=30, payload="never", resume=False)
    proc = start_pilot(spool.root, pilot_env(fake_slurm))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert names(spool, JobState.PENDING) == [name] and records(spool, name) == []
    assert not [c for c in fake_slurm.calls() if c[0] == "scontrol"]  # it ran out of work: no signal


def test_the_end_time_comes_from_squeue_when_the_environment_lacks_it(spool, fake_slurm, tmp_path):
    end = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 3600))
    fake_slurm.squeue(end + "\n")
    task = slurm.SlurmTask.from_env({**pilot_env(fake_slurm, end_in_s=None)})
    assert abs(task.end() - (time.time() + 3600)) < 2
    assert ["squeue", "-h", "-j", "100_1", "-o", "%e"] in fake_slurm.calls()  # the task, not the array
    fake_slurm.squeue("N/A\n")
    with pytest.raises(slurm.SlurmError, match="cannot read Slurm's end time"):
        task.end()


def test_pilot_outside_slurm_is_a_one_line_error(spool):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    r = cli("--spool", str(spool.root), "work", "--drain", "--slurm", env=env)
    assert r.returncode == 1 and "no SLURM_JOB_ID" in r.stderr
