"""``python -m cis490.train.run --resume-dir DIR``: interrupted, resumed, byte-identical.

The contract (docs/MODELS.md, "Resuming"): with ``--resume-dir`` the driver keeps
``DIR/resume.ckpt`` (every epoch / round), SIGTERM or SIGUSR1 finish the batch, save
the state and exit 75 (``EXIT_RESUMABLE``), a rerun with the same DIR continues from
it, and its ``--out`` is byte-identical to an uninterrupted run's. A state of another
job, a truncated or damaged file is ignored with one line. The signals here are real:
sent by the test to its own process from the progress callback (the driver's handler
takes them as in a worker's job), and once to a driver subprocess's process group.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("xgboost")

from cis490.common import EXIT_RESUMABLE  # noqa: E402
from cis490.models import resume  # noqa: E402
from cis490.train import run  # noqa: E402

EXACT = ["--hyper", "min_steps=0", "--hyper", "min_check_steps=0"]
# 252 train windows on the demo store: mlp 4 batches an epoch, gru 2; gbt: rounds
FAST = {
    "mlp": ["--hyper", "epochs=5", "--hyper", "hidden=[16]", "--hyper", "batch_size=64", *EXACT],
    "gru": ["--hyper", "epochs=3", "--hyper", "hidden=8", "--hyper", "batch_size=128", *EXACT],
    "gbt": ["--hyper", "epochs=15", "--hyper", "max_depth=3"],
}
# long enough for a subprocess to be signalled after its first epoch
SLOW_MLP = ["--hyper", "epochs=40", "--hyper", "patience=1000", "--hyper", "hidden=[16]",
            "--hyper", "batch_size=64", *EXACT]


def files(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def baseline(demo_data, tmp_path_factory):
    """The uninterrupted run's checkpoint files (no --resume-dir), once per (model, extra)."""
    cache: dict[tuple, dict[str, bytes]] = {}

    def get(model: str, hyper: tuple[str, ...] | None = None) -> dict[str, bytes]:
        hyper = tuple(FAST[model] if hyper is None else hyper)
        if (model, hyper) not in cache:
            out = tmp_path_factory.mktemp(f"baseline-{model}") / "out"
            assert run.main(demo_data.argv(model, out, *hyper)) == 0
            cache[model, hyper] = files(out)
        return cache[model, hyper]

    return get


@pytest.fixture
def signal_at(monkeypatch):
    """``signal_at(where, sig)``: the test process sends itself ``sig`` right after batch
    ``where = (epoch, batch)`` of a net (the driver's progress callback), or after round
    ``where = (round,)`` of gbt."""
    step, epoch = run._TrainProgress.step, run._TrainProgress.epoch

    def arm(where: tuple[int, ...], sig: int = signal.SIGTERM) -> None:
        def on_step(self, e, epochs, b, batches):
            step(self, e, epochs, b, batches)
            if (e, b) == where:
                os.kill(os.getpid(), sig)

        def on_epoch(self, rec):
            epoch(self, rec)
            if where == (rec.epoch,):
                os.kill(os.getpid(), sig)

        monkeypatch.setattr(run._TrainProgress, "step", on_step)
        monkeypatch.setattr(run._TrainProgress, "epoch", on_epoch)

    yield arm
    monkeypatch.undo()


def driver_lines(err: str) -> list[str]:
    """The driver's log lines, less the progress lines."""
    return [line for line in err.splitlines()
            if line.startswith("cis490.train.run: ") and " batches (" not in line and " rounds (" not in line]


@pytest.mark.parametrize(("model", "where", "sig", "position"), [
    ("mlp", (2, 2), signal.SIGTERM, (2, 2)),     # mid-epoch
    ("mlp", (2, 4), signal.SIGUSR1, (2, 4)),     # the epoch's last batch, before its check
    ("mlp", (1, 1), signal.SIGTERM, (1, 1)),     # the very first batch
    ("gru", (2, 1), signal.SIGTERM, (2, 1)),     # dropout and an RNN
    ("gbt", (5,), signal.SIGTERM, (6, 0)),       # after round 5: round 6 is next
])
def test_an_interrupted_run_resumes_to_the_uninterrupted_bytes(demo_data, tmp_path, capsys, baseline,
                                                               signal_at, model, where, sig, position):
    want = baseline(model)
    rdir, out = tmp_path / "resume", tmp_path / "out"
    argv = demo_data.argv(model, out, *FAST[model], "--resume-dir", str(rdir))
    capsys.readouterr()
    handler = signal.getsignal(signal.SIGTERM)
    signal_at(where, sig)
    assert run.main(argv) == EXIT_RESUMABLE
    lines = driver_lines(capsys.readouterr().err)
    e, b = position
    assert lines[-1] == (f"cis490.train.run: interrupted by {signal.Signals(sig).name}: resume state saved "
                         f"(epoch {e}, batch {b})")
    assert (rdir / "resume.ckpt").is_file() and not out.exists()
    assert signal.getsignal(signal.SIGTERM) is handler  # the handlers are put back

    signal_at((0, 0))  # never
    assert run.main(argv) == 0
    lines = driver_lines(capsys.readouterr().err)
    assert f"cis490.train.run: {model}/realistic: resuming from epoch {e}, batch {b} ({rdir / 'resume.ckpt'})" \
        in lines
    assert not [line for line in lines if "ignoring" in line]
    assert files(out) == want
    assert [p.name for p in rdir.iterdir()] == ["resume.ckpt"]  # the final state stays; no temp files


def test_twice_interrupted_then_finished_is_still_the_same_and_the_curves_and_progress_are_whole(
        demo_data, tmp_path, capsys, baseline, signal_at):
    want = baseline("mlp")
    rdir, out, curves = tmp_path / "resume", tmp_path / "out", tmp_path / "curves"
    argv = demo_data.argv("mlp", out, *FAST["mlp"], "--resume-dir", str(rdir))
    signal_at((1, 3))
    assert run.main(argv) == EXIT_RESUMABLE
    signal_at((3, 1))
    assert run.main(argv) == EXIT_RESUMABLE
    signal_at((0, 0))
    r, w = os.pipe()
    try:
        assert run.main([*argv, "--curves", str(curves), "--progress-fd", str(w)]) == 0
    finally:
        os.close(w)
        with os.fdopen(r) as fh:
            progress = [json.loads(line) for line in fh.read().splitlines()]
    assert files(out) == want
    epochs = json.loads(want["mlp_realistic.ckpt.json"])["fit"]["epochs_run"]
    # the epochs of the earlier attempts are replayed first, so the worker and the curves see all
    assert [p["epoch"] for p in progress if "loss" in p] == list(range(1, epochs + 1))
    rows = [json.loads(line) for line in (curves / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(1, epochs + 1))
    assert [row["seconds"] is None for row in rows] == [True, True] + [False] * (epochs - 2)
    assert "resuming from epoch 3, batch 1" in capsys.readouterr().err


def test_an_uninterrupted_run_with_resume_dir_is_the_same_and_its_final_state_reproduces_it(
        demo_data, tmp_path, capsys, baseline):
    for model in ("mlp", "gbt"):
        rdir, out = tmp_path / model / "resume", tmp_path / model / "out"
        argv = demo_data.argv(model, out, *FAST[model], "--resume-dir", str(rdir))
        assert run.main(argv) == 0
        assert files(out) == baseline(model)
        _, state = resume.decode((rdir / "resume.ckpt").read_bytes())
        assert state.meta["done"] is True
        capsys.readouterr()
        assert run.main(argv) == 0  # the finished state: nothing left to train, the same files
        assert files(out) == baseline(model)
        assert "resuming from epoch" in capsys.readouterr().err


def test_a_state_of_another_job_is_ignored_with_one_line(demo_data, tmp_path, capsys, baseline, signal_at):
    rdir = tmp_path / "resume"
    signal_at((2, 1))
    other = demo_data.argv("mlp", tmp_path / "other", *FAST["mlp"], "--resume-dir", str(rdir),
                           "--split-seed", "0")
    other[other.index("--seed") + 1] = "1"
    assert run.main(other) == EXIT_RESUMABLE
    signal_at((0, 0))
    capsys.readouterr()
    argv = demo_data.argv("mlp", tmp_path / "out", *FAST["mlp"], "--resume-dir", str(rdir), "--split-seed", "0")
    assert run.main(argv) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "resume state" in line]
    assert lines == [f"cis490.train.run: ignoring resume state {rdir / 'resume.ckpt'}: "
                     "it belongs to another job (seed: 1, this job: 0)"]
    assert files(tmp_path / "out") == baseline("mlp")  # --split-seed 0 is --seed 0's split


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty", "pickle", "directory"])
def test_a_truncated_or_damaged_state_is_ignored_with_one_line(demo_data, tmp_path, capsys, baseline,
                                                               signal_at, damage):
    rdir = tmp_path / "resume"
    state = rdir / "resume.ckpt"
    argv = demo_data.argv("gbt", tmp_path / "out", *FAST["gbt"], "--resume-dir", str(rdir))
    signal_at((4,))
    assert run.main(argv) == EXIT_RESUMABLE
    signal_at((0,))
    data = state.read_bytes()
    if damage == "truncated":
        state.write_bytes(data[:len(data) * 2 // 3])
    elif damage == "flipped":
        state.write_bytes(data[:-10] + bytes([data[-10] ^ 0x20]) + data[-9:])
    elif damage == "empty":
        state.write_bytes(b"")
    elif damage == "pickle":
        state.write_bytes(b"\x80\x04\x95\x00\x00cos\nsystem\n")
    else:
        state.unlink()
        state.mkdir()
    capsys.readouterr()
    rc = run.main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if "resume state" in line]
    if damage == "directory":  # nothing can replace it: the run goes on, said once
        assert rc == 0 and len(lines) == 2 and "cannot write resume state" in lines[1]
    else:
        assert rc == 0 and len(lines) == 1
    assert lines[0].startswith(f"cis490.train.run: ignoring resume state {state}: ")
    assert files(tmp_path / "out") == baseline("gbt")


def test_a_state_whose_content_the_loop_cannot_apply_is_ignored_with_one_line(
        demo_data, tmp_path, capsys, baseline, signal_at):
    rdir = tmp_path / "resume"
    argv = demo_data.argv("mlp", tmp_path / "out", *FAST["mlp"], "--resume-dir", str(rdir))
    signal_at((2, 2))
    assert run.main(argv) == EXIT_RESUMABLE
    signal_at((0, 0))
    fingerprint, state = resume.decode((rdir / "resume.ckpt").read_bytes())
    state.blobs["tensors"] = state.blobs["tensors"][:-4]  # a sound file, a broken tensor blob
    (rdir / "resume.ckpt").write_bytes(resume.encode(fingerprint, state))
    capsys.readouterr()
    assert run.main(argv) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "resume state" in line]
    assert len(lines) == 1 and "cannot continue from it" in lines[0]
    assert files(tmp_path / "out") == baseline("mlp")


def test_a_signal_while_the_data_loads_exits_75_and_saves_nothing(demo_data, tmp_path, capsys, monkeypatch):
    from cis490.train import data as train_data

    real = train_data.load_train_val

    def load(*a, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **kw)

    monkeypatch.setattr(train_data, "load_train_val", load)
    rdir = tmp_path / "resume"
    rc = run.main(demo_data.argv("mlp", tmp_path / "out", *FAST["mlp"], "--resume-dir", str(rdir)))
    err = capsys.readouterr().err
    assert rc == EXIT_RESUMABLE
    assert "cis490.train.run: interrupted by SIGTERM before training: no resume state saved" in err
    assert not (rdir / "resume.ckpt").exists() and not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".cis490-scratch-*"))  # the scratch directory is removed


def test_without_resume_dir_no_handler_is_installed(demo_data, tmp_path, monkeypatch):
    seen = []
    step = run._TrainProgress.step

    def on_step(self, *a):
        seen.append(signal.getsignal(signal.SIGTERM))
        step(self, *a)

    monkeypatch.setattr(run._TrainProgress, "step", on_step)
    before = signal.getsignal(signal.SIGTERM)
    assert run.main(demo_data.argv("mlp", tmp_path / "a", *FAST["mlp"])) == 0
    assert set(seen) == {before}
    seen.clear()
    assert run.main(demo_data.argv("mlp", tmp_path / "b", *FAST["mlp"], "--resume-dir", str(tmp_path / "r"))) == 0
    assert seen and all(callable(h) and h not in (before, signal.SIG_IGN) for h in seen)
    assert signal.getsignal(signal.SIGTERM) is before


def test_resume_dir_inside_out_is_a_usage_error(demo_data, tmp_path):
    with pytest.raises(SystemExit) as exc:
        run.main(demo_data.argv("mlp", tmp_path / "out", "--resume-dir", str(tmp_path / "out" / "r")))
    assert exc.value.code == 2


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")
def test_sigterm_to_the_jobs_process_group_saves_exits_75_and_the_rerun_is_identical(
        demo_data, tmp_path, baseline):
    """As the fleet's worker does it: SIGTERM to the job's process group once the progress
    fd shows an epoch done, with DataLoader worker processes reading the batches (the CUDA
    path), which must not die of it."""
    rdir, out = tmp_path / "resume", tmp_path / "out"
    argv = demo_data.argv("mlp", out, *SLOW_MLP, "--resume-dir", str(rdir))
    r, w = os.pipe()
    env = dict(os.environ, CIS490_LOADER_WORKERS="1")
    proc = subprocess.Popen([sys.executable, "-m", "cis490.train.run", *argv, "--progress-fd", str(w)],
                            pass_fds=(w,), stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    os.close(w)
    children = f"/proc/{proc.pid}/task/{proc.pid}/children"
    try:
        with os.fdopen(r) as fh:
            for line in fh:
                if "loss" in json.loads(line):  # epoch 1 is done
                    break
            deadline = time.monotonic() + 10
            while os.path.exists(children) and not open(children).read().split() \
                    and time.monotonic() < deadline:
                time.sleep(0.005)  # Linux: until a DataLoader worker reads epoch 2's batches
            os.killpg(proc.pid, signal.SIGTERM)
            fh.read()  # as the worker does: read the progress to its end
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == EXIT_RESUMABLE, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cis490.train.run: interrupted by SIGTERM: resume state saved (epoch ")
    assert (rdir / "resume.ckpt").is_file()
    started = time.monotonic()
    assert run.main(argv) == 0  # in this process, without loader workers: the same bytes
    assert files(out) == baseline("mlp", SLOW_MLP)
    assert time.monotonic() - started < 120


@pytest.mark.skipif(importlib.util.find_spec("aeon") is None, reason="aeon (cis490[minirocket]) absent")
def test_minirocket_keeps_no_state_and_says_so_once(demo_data, tmp_path, capsys):
    rdir = tmp_path / "resume"
    rdir.mkdir()
    (rdir / "resume.ckpt").write_bytes(b"an earlier attempt's")
    rc = run.main(demo_data.argv("minirocket", tmp_path / "out", "--hyper", "n_kernels=840",
                                 "--hyper", "epochs=2", "--resume-dir", str(rdir)))
    lines = [line for line in capsys.readouterr().err.splitlines() if "resume state" in line]
    assert rc == 0
    assert lines == [f"cis490.train.run: ignoring resume state {rdir / 'resume.ckpt'}: "
                     "minirocket keeps no resume state (it restarts from scratch)"]
    assert [p.name for p in rdir.iterdir()] == ["resume.ckpt"]
    assert (rdir / "resume.ckpt").read_bytes() == b"an earlier attempt's"  # deleted nothing


def test_a_signal_inside_xgboosts_data_callback_is_deferred_to_the_start_of_training():
    """XGBoost builds its matrices by calling Python back through ctypes, which swallows an
    exception raised there (XGBoost would read it as "no more batches": a truncated matrix).
    A stop signal that lands inside such a callback only marks the stop; ``begin`` (the loop
    about to train, in plain Python) then exits as before training."""
    import signal as _signal
    import sys as _sys

    from cis490.train.run import _in_library_callback, _Stopped, _StopSignals

    stops = _StopSignals()
    ns = {"__name__": "xgboost.core", "stops": stops, "sys": _sys, "SIG": _signal.SIGTERM}
    exec("def _next_wrapper():\n    stops._handle(SIG, sys._getframe())\n", ns)
    ns["_next_wrapper"]()  # inside the "library": no exception
    assert stops.deferred and stops.signame == "SIGTERM"
    with pytest.raises(_Stopped):
        stops.begin()
    assert not _in_library_callback(_sys._getframe())
    plain = _StopSignals()
    with pytest.raises(_Stopped):  # anywhere else before training: at once
        plain._handle(_signal.SIGTERM, _sys._getframe())
