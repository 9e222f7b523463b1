"""A job's training curves: ``metrics.jsonl`` and TensorBoard events (``--curves DIR``).

    DIR/metrics.jsonl     one JSON object per epoch (a boosting round for gbt):
                          {"epoch", "train_loss", "val_loss", "val_macro_f1", "lr", "seconds"}
    DIR/tensorboard/      one event file, written by tensorboard's own ``EventFileWriter``
                          (the writer under ``torch.utils.tensorboard.SummaryWriter``,
                          used directly so a gbt job never imports torch: +185 MiB)

Invariants: the curves live outside the driver's ``--out``, so the checkpoint
stays byte-identical (``seconds``, TensorBoard's wall times and its event
file's name, which holds the host name, are not); the worker stores them
beside the bundle, outside its digest (``cis490.fleet.store``). One writer
per job; the TensorBoard scalars are the ``metrics.jsonl`` numbers, at step =
epoch (``TAGS``). A number that is unknown or not finite is ``null`` in
``metrics.jsonl`` and absent from the events. ``seconds`` is wall time from
the previous epoch's end (the first: from the start of the fit); a resumed fit
(``--resume-dir``) first replays the epochs of the earlier attempts, with
``seconds`` null (their times are not kept).
``metrics.jsonl`` is published atomically when the writer closes.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from cis490.common import METRICS, TENSORBOARD, atomic_write

__all__ = ["KEYS", "TAGS", "CurveWriter"]

KEYS = ("epoch", "train_loss", "val_loss", "val_macro_f1", "lr", "seconds")
# metrics.jsonl key -> TensorBoard scalar tag
TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "val_macro_f1": "val/macro_f1",
        "lr": "lr", "seconds": "time/epoch_seconds"}


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class CurveWriter:
    """Collects one row per epoch; ``start()`` right before the fit, ``close()`` after."""

    def __init__(self, directory: str | Path) -> None:
        # only when --curves is given; tensorboard alone (~40 MiB), not torch
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        self.writer = EventFileWriter(str(self.dir / TENSORBOARD))
        self.last = time.perf_counter()

    def _scalar(self, tag: str, value: float, step: int) -> None:
        summary = self._summary(value=[self._summary.Value(tag=tag, simple_value=float(value))])
        self.writer.add_event(self._event(wall_time=time.time(), step=int(step), summary=summary))

    def start(self) -> None:
        self.last = time.perf_counter()

    def epoch(self, rec, *, replayed: bool = False) -> dict:
        """One epoch's row; ``replayed``: an epoch of an earlier attempt (seconds unknown)."""
        now = time.perf_counter()
        row = {"epoch": int(rec.epoch), "train_loss": _number(rec.loss),
               "val_loss": _number(getattr(rec, "val_loss", None)),
               "val_macro_f1": _number(rec.val_macro_f1),
               "lr": _number(getattr(rec, "lr", None)),
               "seconds": None if replayed else now - self.last}
        self.rows.append(row)
        for key, tag in TAGS.items():
            if row[key] is not None:
                self._scalar(tag, row[key], row["epoch"])
        if not replayed:
            self.last = now  # this writing counts towards the next epoch: the rows sum to the fit
        return row

    def close(self) -> None:
        self.writer.close()
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows)
        atomic_write(self.dir / METRICS, text)
