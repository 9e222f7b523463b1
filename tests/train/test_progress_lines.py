"""Progress without a terminal: plain lines at least every interval, with done/total, rate, ETA."""

from __future__ import annotations

import io
import re

from cis490.progress import LineProgress, fmt_duration, interval_s


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_lines_come_at_the_interval_with_done_total_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    p = LineProgress("features", 10, unit="episodes", stream=out, interval=30, clock=clock)
    for _ in range(3):          # 3 steps within 20 s: no line yet
        clock.t += 6.7
        p.advance()
    clock.t += 10.0             # 30.1 s since the start line: one line
    p.advance()
    for _ in range(6):
        clock.t += 1.0
        p.advance()             # the 10th is the last: a final line at once
    p.close()                   # nothing new to say
    lines = out.getvalue().splitlines()
    assert lines[0] == "features: 0/10 episodes (0 %)"
    assert lines[1] == "features: 4/10 episodes (40 %), 0.133/s, ETA 45s"
    assert lines[2] == "features: 10/10 episodes (100 %), 0.277/s, took 36s"
    assert len(lines) == 3


def test_close_reports_a_run_that_ended_early_and_detail_is_shown():
    out, clock = io.StringIO(), Clock()
    where = {"s": "epoch 1/5"}
    p = LineProgress("train", 50, unit="batches", stream=out, interval=5, clock=clock,
                     detail=lambda: where["s"])
    assert out.getvalue().splitlines() == ["train: 0/50 batches (0 %), epoch 1/5"]
    clock.t += 5
    p.advance(20)               # due: 5 s since the last line
    assert out.getvalue().splitlines()[-1] == "train: 20/50 batches (40 %), epoch 1/5, 4/s, ETA 8s"
    where["s"] = "epoch 2/5"
    clock.t += 1
    p.close()                   # early stopping: 20 of at most 50, and the line says it ended
    assert out.getvalue().splitlines()[-1] == "train: 20/50 batches (40 %), epoch 2/5, 3.33/s, took 6s"
    assert len(out.getvalue().splitlines()) == 3


def test_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("CIS490_PROGRESS_S", raising=False)
    assert interval_s() == 30.0
    monkeypatch.setenv("CIS490_PROGRESS_S", "0")
    assert interval_s() == 0.0
    monkeypatch.setenv("CIS490_PROGRESS_S", "soon")
    assert interval_s() == 30.0
    assert [fmt_duration(s) for s in (5, 75, 3725)] == ["5s", "1m15s", "1h02m"]


def test_the_training_driver_logs_batches_and_rounds_without_a_terminal(demo_data, tmp_path, capsys,
                                                                         monkeypatch):
    from cis490.train import run

    monkeypatch.setenv("CIS490_PROGRESS_S", "0")      # a line on every step
    assert run.main(demo_data.argv("mlp", tmp_path / "mlp", "--hyper", "epochs=2",
                                   "--hyper", "min_steps=0", "--hyper", "min_check_steps=0")) == 0
    err = capsys.readouterr().err
    batches = [l for l in err.splitlines() if "batches (" in l]
    assert batches[0].startswith("cis490.train.run: mlp/realistic: 0/")
    assert any(re.search(r": \d+/\d+ batches \(\d+ %\), epoch 2/2, batch \d+/\d+, [\d.e+]+/s", l)
               for l in batches)
    assert run.main(demo_data.argv("gbt", tmp_path / "gbt", "--hyper", "epochs=3")) == 0
    rounds = [l for l in capsys.readouterr().err.splitlines() if "rounds (" in l]
    assert rounds[0].endswith("0/3 rounds (0 %)") and "val macro F1" in rounds[-1]


def test_the_driver_tells_the_worker_how_far_the_epoch_has_got(demo_data, tmp_path, monkeypatch):
    import json
    import os

    from cis490.train import run

    monkeypatch.setenv("CIS490_PROGRESS_S", "0")
    r, w = os.pipe()
    try:
        assert run.main(demo_data.argv("mlp", tmp_path / "m", "--hyper", "epochs=2",
                                       "--hyper", "batch_size=32", "--hyper", "min_steps=0",
                                       "--hyper", "min_check_steps=0", "--progress-fd", str(w))) == 0
    finally:
        os.close(w)
    with os.fdopen(r) as fh:
        events = [json.loads(line) for line in fh]
    within = [e for e in events if "epoch_fraction" in e]
    done = [e for e in events if "val_macro_f1" in e]
    assert [e["epoch"] for e in done] == [1, 2]
    assert within and all(0 < e["epoch_fraction"] < 1 and e["epochs"] == 2 for e in within)
    assert {e["epoch"] for e in within} == {1, 2}


def test_the_worker_merges_epoch_lines_and_the_epoch_in_progress():
    import json
    import os

    from cis490.fleet.snapshot import epoch_cell
    from cis490.fleet.worker import Worker

    class FakeClaim:
        def __init__(self):
            self.records = []

        def progress(self, event):
            self.records.append(event)

    lines = [{"epoch": 1, "epochs": 20, "loss": 0.9, "val_macro_f1": 0.5},
             {"epoch": 2, "epochs": 20, "epoch_fraction": 0.41},
             {"epoch": 2, "epochs": 20, "loss": 0.7, "val_macro_f1": 0.6}]
    r, w = os.pipe()
    os.write(w, "".join(json.dumps(x) + "\n" for x in lines).encode() + b"not json\n")
    os.close(w)
    claim = FakeClaim()
    Worker._relay_progress(None, claim, r)
    mid, last = claim.records[1], claim.records[2]
    assert mid == {"epoch": 2, "epochs": 20, "loss": 0.9, "val_macro_f1": 0.5, "epoch_fraction": 0.41}
    assert epoch_cell(mid) == "2/20, 41 %"                   # what status shows mid-epoch
    assert last == {"epoch": 2, "epochs": 20, "loss": 0.7, "val_macro_f1": 0.6}
    assert epoch_cell(last) == "2/20" and epoch_cell({}) == "–"
