"""Loop-level resume (``cis490.models.resume``): the torch loop and XGBoost continue from a
saved state to the very bytes of an uninterrupted fit; the file format refuses damage.

The driver's side (``--resume-dir``, signals, exit 75, fingerprints) is tested in
tests/train/test_resume.py."""

from __future__ import annotations

import math

import pytest
from tests.models.models_helpers import new_model, task_for

from cis490.models import resume
from cis490.models.resume import ResumeHook, ResumeState, TrainingInterrupted


def saved_bytes(model, out) -> dict[str, bytes]:
    model.save(out)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def through_file(state: ResumeState) -> ResumeState:
    """The state as a later attempt reads it back: encoded and decoded."""
    fingerprint, back = resume.decode(resume.encode({"job": 1}, state))
    assert fingerprint == {"job": 1}
    return back


class Recorder:
    """A hook that keeps every saved state and asks to stop after ``stop_after`` stop() calls
    (one per batch for the nets, per round for gbt)."""

    def __init__(self, state: ResumeState | None = None, stop_after: int | None = None):
        self.states: list[ResumeState] = []
        self.asked = 0
        self.stop_after = stop_after
        self.restored: list[tuple] = []
        self.rejected: list[str] = []
        self.hook = ResumeHook(state=state, save=self.save, stop=self.stop, save_every_s=0.0,
                               restored=lambda *a: self.restored.append(a),
                               rejected=self.rejected.append)

    def save(self, state: ResumeState) -> bool:
        self.states.append(through_file(state))
        return True

    def stop(self) -> str | None:
        self.asked += 1
        return "SIGTEST" if self.stop_after is not None and self.asked >= self.stop_after else None


# (model, hyper overrides, stop after this many stop() calls: one after every batch and one
# after every epoch but the last for the nets, one after every round for gbt)
CASES = [
    ("mlp", {"epochs": 6}, 17),      # mid-epoch: epoch 2, batch 3 (13 batches an epoch)
    ("mlp", {"epochs": 6}, 27),      # epoch 2's last batch, before its check
    ("mlp", {"epochs": 6}, 28),      # after epoch 2's check: epoch 3, batch 0
    ("gru", {"epochs": 4}, 20),      # dropout and an RNN, mid-epoch
    ("gbt", {"epochs": 25}, 9),      # after round 9
]


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    cache: dict[tuple, dict[str, bytes]] = {}

    def get(name: str, hyper: dict) -> dict[str, bytes]:
        key = (name, tuple(sorted(hyper.items())))
        if key not in cache:
            model = new_model(name, **hyper)
            model.fit(*task_for(name), seed=3)
            cache[key] = saved_bytes(model, tmp_path_factory.mktemp(name))
        return cache[key]

    return get


@pytest.mark.parametrize(("name", "hyper", "stop_after"), CASES)
def test_a_fit_continued_from_its_saved_state_gives_the_uninterrupted_bytes(
        baselines, tmp_path, name, hyper, stop_after):
    data = task_for(name)
    first = Recorder(stop_after=stop_after)
    model = new_model(name, **hyper)
    model.resume = first.hook
    with pytest.raises(TrainingInterrupted) as exc:
        model.fit(*data, seed=3)
    assert exc.value.saved and exc.value.signame == "SIGTEST"
    state = first.states[-1]
    if name == "gbt":
        assert state.meta["rounds"] == stop_after and exc.value.epoch == stop_after + 1
    else:
        assert (state.meta["epoch"], state.meta["batch"]) == (exc.value.epoch, exc.value.batch)

    second = Recorder(state=state)
    model = new_model(name, **hyper)
    model.resume = second.hook
    report = model.fit(*data, seed=3)
    assert not second.rejected and len(second.restored) == 1
    epoch, batch, _units, history = second.restored[0]
    assert (epoch, batch) == (exc.value.epoch, exc.value.batch)
    assert history == report.history[:len(history)]
    assert saved_bytes(model, tmp_path) == baselines(name, hyper)
    assert second.states[-1].meta["done"] is True  # the final state is left for a rerun


@pytest.mark.parametrize("name", ["mlp", "gbt"])
def test_saving_every_epoch_changes_nothing_and_every_saved_state_continues_exactly(
        baselines, tmp_path, name):
    hyper = {"epochs": 4} if name == "mlp" else {"epochs": 12}
    data = task_for(name)
    rec = Recorder()
    model = new_model(name, **hyper)
    model.resume = rec.hook
    model.fit(*data, seed=3)
    assert saved_bytes(model, tmp_path / "saving") == baselines(name, hyper)
    assert len(rec.states) == hyper["epochs"] or rec.states[-1].meta["done"]
    for i, state in enumerate(rec.states):  # the last one is done: nothing left to train
        model = new_model(name, **hyper)
        model.resume = Recorder(state=state).hook
        model.fit(*data, seed=3)
        assert saved_bytes(model, tmp_path / str(i)) == baselines(name, hyper), i


def test_a_state_the_loop_cannot_apply_is_rejected_and_the_fit_starts_from_scratch(baselines, tmp_path):
    hyper = {"epochs": 4}
    rec = Recorder(stop_after=7)
    model = new_model("mlp", **hyper)
    model.resume = rec.hook
    with pytest.raises(TrainingInterrupted):
        model.fit(*task_for("mlp"), seed=3)
    bad = rec.states[-1]
    bad.meta["plan"]["batch_size"] += 1  # planned for another budget
    again = Recorder(state=bad)
    model = new_model("mlp", **hyper)
    model.resume = again.hook
    model.fit(*task_for("mlp"), seed=3)
    assert len(again.rejected) == 1 and "another budget" in again.rejected[0]
    assert not again.restored
    assert saved_bytes(model, tmp_path) == baselines("mlp", hyper)


def test_the_file_round_trips_and_refuses_every_truncation_and_a_flipped_byte():
    state = ResumeState({"epoch": 3, "best": -math.inf, "rng": {"state": 2**127 + 5}},
                        {"tensors": b"\x00\x01binary\n", "booster": b"{ubj}"})
    data = resume.encode({"model": "mlp", "seed": 0}, state)
    fingerprint, back = resume.decode(data)
    assert fingerprint == {"model": "mlp", "seed": 0}
    assert back.meta == state.meta and back.blobs == state.blobs
    for cut in range(len(data)):
        with pytest.raises(resume.ResumeFileError):
            resume.decode(data[:cut])
    for at in (0, 20, len(data) // 2, len(data) - 1):
        damaged = bytearray(data)
        damaged[at] ^= 0x01
        with pytest.raises(resume.ResumeFileError):
            resume.decode(bytes(damaged))
    with pytest.raises(resume.ResumeFileError, match="not a cis490 resume file"):
        resume.decode(b"\x80\x04\x95pickle")
