"""The ``cis490`` command: pipeline verbs (synth, validate, features, tensors, eval, replay).

This module only assembles sub-commands; each verb lives with its package in
a ``cli`` module exposing ``register(subparsers)``, which adds a parser whose
``func(args) -> int`` does the work. Library errors become one-line messages
on stderr here, in one place: exit 1 for operational errors, 2 for usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Packages contributing verbs, in help order. A package whose cli module is
# not there yet is simply absent from the help.
VERB_MODULES = ("cis490.data.cli", "cis490.evaluate.cli", "cis490.replay")


class CLIError(Exception):
    """An operational error: printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cis490",
        description="Episode data -> features/tensors -> evaluation. "
        "Training jobs run through the spool: see bin/cis490-spool.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for modname in VERB_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cis490.heap import fix_mmap_threshold

    fix_mmap_threshold()  # eval and the data verbs stream batches (cis490/heap.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cis490: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, OSError) as exc:
        print(f"cis490 {args.verb}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
