"""Resume state of a fit: what the loops save and read back, and the file that holds it.

Stdlib only (no numpy, torch or xgboost), like :mod:`cis490.models.base`: the driver
reads, checks and writes the file (``python -m cis490.train.run --resume-dir DIR``,
``DIR/resume.ckpt``); the loops (:func:`cis490.models.loop.fit_torch`,
:func:`cis490.models.boost.fit_xgb`) fill and apply a :class:`ResumeState` through a
:class:`ResumeHook`. docs/MODELS.md, "Resuming", has the contract.

The file, ``cis490-resume/1``: never a pickle (it comes from a directory other hosts
write), every byte covered by a sha256::

    b"cis490-resume/1\\n"
    <sha256 hex of everything after this line>  b"\\n"
    <header: one line of JSON>                  b"\\n"      {"fingerprint", "state", "blobs"}
    <blob bytes, in the header's order>

``fingerprint`` names the job the state belongs to (the driver compares it with its own
and ignores a state of another job); ``state`` is the loop's JSON part (epoch, batch,
counters, RNG states, early stopping, history); ``blobs`` lists ``[name, length]`` of the
binary parts: for the nets one safetensors blob of tensors (read back with
``safetensors.torch.load``), for gbt XGBoost's UBJSON model. A truncated, altered or
foreign file raises :class:`ResumeFileError` with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["FORMAT", "MAX_BYTES", "ResumeFileError", "ResumeHook", "ResumeState",
           "TrainingInterrupted", "decode", "encode", "read_file"]

FORMAT = "cis490-resume/1"
_MAGIC = FORMAT.encode() + b"\n"
MAX_BYTES = 8 << 30  # a larger file is refused unread (the biggest nets' states are MBs)


class ResumeFileError(ValueError):
    """A resume file that cannot be used; ``str(exc)`` says why (one line)."""


@dataclass
class ResumeState:
    """A loop's state: JSON-able ``meta`` and named binary ``blobs``."""

    meta: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)


class TrainingInterrupted(Exception):
    """A fit stopped by a signal between two batches (rounds). ``epoch``, ``batch``: the
    position the saved state continues from (epoch in progress, its batches done; gbt:
    the next round, batch 0); ``saved``: whether the state was written."""

    def __init__(self, signame: str, epoch: int, batch: int, saved: bool):
        super().__init__(f"interrupted by {signame} at epoch {epoch}, batch {batch}")
        self.signame, self.epoch, self.batch, self.saved = signame, epoch, batch, saved


def _never() -> str | None:
    return None


def _nothing(*_args: Any) -> None:
    return None


@dataclass
class ResumeHook:
    """What a loop needs from the driver to keep and continue a resume state.

    - ``state``: the state to continue from (already checked to be this job's), or None;
    - ``save(state) -> bool``: publish a state (False: it could not be written);
    - ``stop() -> str | None``: the name of the signal that asks the fit to stop, if any
      (asked after every batch / round);
    - ``begin()``: called once the loop is about to train (before it, a signal may end
      the process at once: there is nothing to save);
    - ``restored(epoch, batch, units_done, history)``: the loop continues from ``state``
      (``units_done``: optimizer steps for the nets, rounds for gbt; ``history``: the
      ``EpochRecord``\\ s so far);
    - ``rejected(why)``: ``state`` could not be applied; the loop starts from scratch;
    - ``save_every_s``: gbt saves after a round when this long has passed since the last
      save (and always at the end and when stopped); the nets save after every epoch.
    """

    state: ResumeState | None = None
    save: Callable[[ResumeState], bool] = lambda _state: True
    stop: Callable[[], str | None] = _never
    begin: Callable[[], None] = _nothing
    restored: Callable[..., None] = _nothing
    rejected: Callable[[str], None] = _nothing
    save_every_s: float = 2.0


def encode(fingerprint: dict[str, Any], state: ResumeState) -> bytes:
    """The file's bytes for ``state`` of the job ``fingerprint``."""
    names = sorted(state.blobs)
    header = json.dumps({"fingerprint": fingerprint, "state": state.meta,
                         "blobs": [[name, len(state.blobs[name])] for name in names]},
                        sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    body = [header.encode("ascii"), b"\n", *(state.blobs[name] for name in names)]
    digest = hashlib.sha256()
    for part in body:
        digest.update(part)
    return b"".join([_MAGIC, digest.hexdigest().encode("ascii"), b"\n", *body])


def decode(data: bytes) -> tuple[dict[str, Any], ResumeState]:
    """``(fingerprint, state)`` from the file's bytes; ResumeFileError says why not."""
    if not data.startswith(_MAGIC):
        raise ResumeFileError("not a cis490 resume file" if data else "empty")
    at = len(_MAGIC)
    digest_end = data.find(b"\n", at)
    if digest_end != at + 64:
        raise ResumeFileError("truncated or damaged (no checksum line)")
    want = data[at:digest_end].decode("ascii", "replace")
    body = memoryview(data)[digest_end + 1:]
    if hashlib.sha256(body).hexdigest() != want:
        raise ResumeFileError(f"truncated or damaged (sha256 mismatch, {len(data)} bytes)")
    header_end = data.find(b"\n", digest_end + 1)
    if header_end < 0:
        raise ResumeFileError("no header line")
    try:
        header = json.loads(data[digest_end + 1:header_end])
        fingerprint, meta, blobs = header["fingerprint"], header["state"], header["blobs"]
        if not (isinstance(fingerprint, dict) and isinstance(meta, dict) and isinstance(blobs, list)):
            raise TypeError("wrong types")
        out: dict[str, bytes] = {}
        pos = header_end + 1
        for name, length in blobs:
            if not (isinstance(name, str) and isinstance(length, int) and length >= 0):
                raise TypeError("bad blob entry")
            out[name] = data[pos:pos + length]
            pos += length
    except (ValueError, KeyError, TypeError) as exc:
        raise ResumeFileError(f"unreadable header ({type(exc).__name__}: {exc})") from None
    if pos != len(data):
        raise ResumeFileError(f"blob lengths ({pos} bytes) do not match the file ({len(data)} bytes)")
    return fingerprint, ResumeState(meta, out)


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file (a symlink is never followed), at most :data:`MAX_BYTES`.
    OSError (no such file, permission) and ResumeFileError (not a regular file, too big)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                 | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ResumeFileError("not a regular file")
        if st.st_size > MAX_BYTES:
            raise ResumeFileError(f"larger than {MAX_BYTES} bytes")
        return fh.read()
