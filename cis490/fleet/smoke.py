"""The built-in ``smoke`` job: the whole worker path, without training.

    python -m cis490.fleet.smoke --out DIR [--hyper seconds=0.5] [--hyper fail=true]
                                 [--hyper payload="x"] [--hyper epochs=2] [--progress-fd FD]
                                 [--resume-dir DIR]

Sleeps ``seconds`` split over ``epochs`` progress lines, then writes
``DIR/smoke.json`` whose bytes depend only on the hyper values, so two runs
of the same spec give the same artifact digest (the store deduplicates).
With ``fail=true`` it exits 3 after running, with a message on stderr.

Resumable like a training driver (docs/SPOOL.md, "Resume state"): with
``--resume-dir`` it writes ``resume.ckpt`` there after every epoch, continues
from the epoch such a file names (when its hyper values are this job's), and
on SIGTERM or SIGUSR1 saves and exits ``EXIT_RESUMABLE`` (75) at once. The
artifact does not depend on where it resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from cis490.common import EXIT_RESUMABLE, HyperError, atomic_write, parse_hyper_args
from cis490.fleet.kinds import SmokeConfig
from cis490.fleet.spec import SpecError, validate_hyper


def parse_hyper(pairs: list[str], kind: str) -> dict:
    """``--hyper key=JSON`` pairs, parsed and validated like the training driver's."""
    try:
        raw = parse_hyper_args(pairs)
    except HyperError as exc:
        raise SpecError(str(exc)) from None
    return validate_hyper(kind, raw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cis490.fleet.smoke")
    ap.add_argument("--out", required=True)
    ap.add_argument("--hyper", action="append", default=[])
    ap.add_argument("--progress-fd", type=int)
    ap.add_argument("--resume-dir", default=None)
    args = ap.parse_args(argv)
    try:
        hyper = parse_hyper(args.hyper, "smoke")
    except SpecError as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return 2
    cfg = SmokeConfig(**hyper)
    progress = os.fdopen(args.progress_fd, "w", buffering=1) if args.progress_fd else None
    epochs = max(1, cfg.epochs)
    state = Path(args.resume_dir) / "resume.ckpt" if args.resume_dir else None
    fingerprint = {"kind": "smoke", "hyper": hyper}
    start = _resume_epoch(state, fingerprint, epochs)
    stop: list[str] = []
    if state is not None:
        for sig in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if sig is not None:
                signal.signal(sig, lambda signum, _frame: stop.append(signal.Signals(signum).name))
    for epoch in range(start + 1, epochs + 1):
        until = time.monotonic() + cfg.seconds / epochs
        while (left := until - time.monotonic()) > 0 and not stop:
            time.sleep(min(left, 0.05))
        if stop:
            _save(state, fingerprint, epoch - 1)
            print(f"smoke: interrupted by {stop[0]}: resume state saved (epoch {epoch - 1})",
                  file=sys.stderr, flush=True)
            return EXIT_RESUMABLE
        line = {"epoch": epoch, "epochs": epochs, "loss": round(1.0 / epoch, 6),
                "val_macro_f1": round(epoch / epochs, 6)}
        print(f"smoke: epoch {epoch}/{epochs}", flush=True)
        if progress:
            progress.write(json.dumps(line) + "\n")
        if state is not None:
            _save(state, fingerprint, epoch)
    if cfg.fail:
        print("smoke: failing on purpose (hyper fail=true)", file=sys.stderr, flush=True)
        return 3
    os.makedirs(args.out, exist_ok=True)
    body = {"kind": "smoke", "payload": cfg.payload, "seconds": cfg.seconds, "epochs": epochs}
    atomic_write(os.path.join(args.out, "smoke.json"), json.dumps(body, sort_keys=True) + "\n")
    return 0


def _save(state: Path, fingerprint: dict, epoch: int) -> None:
    state.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(state, json.dumps({**fingerprint, "epoch": epoch}, sort_keys=True) + "\n")


def _resume_epoch(state: Path | None, fingerprint: dict, epochs: int) -> int:
    """The epoch a resume state of this job names (0: none, or not this job's)."""
    if state is None or not state.exists():
        return 0
    try:
        saved = json.loads(state.read_bytes()[:65536])
        if not isinstance(saved, dict) or {k: saved.get(k) for k in fingerprint} != fingerprint:
            raise ValueError("another job's state")
        epoch = saved["epoch"]
        if not isinstance(epoch, int) or not 0 <= epoch <= epochs:
            raise ValueError(f"epoch {epoch!r} out of range")
    except (OSError, ValueError, KeyError) as exc:
        print(f"smoke: ignoring resume state {state}: {exc}", file=sys.stderr, flush=True)
        return 0
    print(f"smoke: resuming from epoch {epoch}", file=sys.stderr, flush=True)
    return epoch


if __name__ == "__main__":
    sys.exit(main())
