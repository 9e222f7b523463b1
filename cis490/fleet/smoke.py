"""The built-in ``smoke`` job: the whole worker path, without training.

    python -m cis490.fleet.smoke --out DIR [--hyper seconds=0.5] [--hyper fail=true]
                                 [--hyper payload="x"] [--hyper epochs=2] [--progress-fd FD]

Sleeps ``seconds`` split over ``epochs`` progress lines, then writes
``DIR/smoke.json`` whose bytes depend only on the hyper values, so two runs
of the same spec give the same artifact digest (the store deduplicates).
With ``fail=true`` it exits 3 after running, with a message on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from cis490.common import HyperError, atomic_write, parse_hyper_args
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
    args = ap.parse_args(argv)
    try:
        hyper = parse_hyper(args.hyper, "smoke")
    except SpecError as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return 2
    cfg = SmokeConfig(**hyper)
    progress = os.fdopen(args.progress_fd, "w", buffering=1) if args.progress_fd else None
    epochs = max(1, cfg.epochs)
    for epoch in range(1, epochs + 1):
        time.sleep(cfg.seconds / epochs)
        line = {"epoch": epoch, "epochs": epochs, "loss": round(1.0 / epoch, 6),
                "val_macro_f1": round(epoch / epochs, 6)}
        print(f"smoke: epoch {epoch}/{epochs}", flush=True)
        if progress:
            progress.write(json.dumps(line) + "\n")
    if cfg.fail:
        print("smoke: failing on purpose (hyper fail=true)", file=sys.stderr, flush=True)
        return 3
    os.makedirs(args.out, exist_ok=True)
    body = {"kind": "smoke", "payload": cfg.payload, "seconds": cfg.seconds, "epochs": epochs}
    atomic_write(os.path.join(args.out, "smoke.json"), json.dumps(body, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
