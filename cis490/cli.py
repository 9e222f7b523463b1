"""The ``cis490`` command: pipeline verbs (synth, validate, features, tensors, eval, replay).

This module only assembles sub-commands; each verb lives with its package in
a ``cli`` module exposing ``register(subparsers)``, which adds a parser whose
``func(args) -> int`` does the work. Library errors become one-line messages
on stderr here, in one place: exit 1 for operational errors, 2 for usage.

It sits on top of every layer, so it also joins what a layer may not import
itself: ``eval`` reads the spool's artifact store through
:func:`spool_artifacts` (``cis490.fleet.store`` seen as
``cis490.evaluate.run.ArtifactSource``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cis490.common import UserError, os_error_line

# Packages contributing verbs, in help order. A package whose cli module is
# not there yet is simply absent from the help.
VERB_MODULES = ("cis490.data.cli", "cis490.evaluate.cli", "cis490.replay")


# ---------------------------------------------------------------- the spool's store, for eval
# (cis490.fleet.store, imported when used: zstandard)

@dataclass(frozen=True)
class StoredArtifact:
    """One ``models/<model_mode>/<digest>/`` directory of the store
    (``cis490.evaluate.run.StoredArtifact``)."""

    model_mode: str
    path: Path

    @property
    def digest(self) -> str:
        return self.path.name

    @property
    def published(self) -> bool:
        from cis490.fleet import store

        return (self.path / store.RECORD).is_file()

    def extract(self, dest: Path) -> None:
        from cis490.evaluate.run import ArtifactUnusable
        from cis490.fleet import store

        try:
            store.extract(self.path, dest)
        except store.StoreError as exc:
            raise ArtifactUnusable(str(exc)) from None

    def read_curves(self) -> list[dict] | None:
        from cis490.evaluate.run import ArtifactUnusable
        from cis490.fleet import store

        try:
            return store.read_curves(self.path)
        except store.StoreError as exc:
            raise ArtifactUnusable(str(exc)) from None


@dataclass(frozen=True)
class SpoolArtifacts:
    """A spool's artifact store (``cis490.evaluate.run.ArtifactSource``)."""

    root: Path

    def artifacts(self) -> Iterator[StoredArtifact]:
        from cis490.fleet import store

        if not (self.root / "models").is_dir():
            raise FileNotFoundError(f"{self.root}: no models/ directory (is this a spool?)")
        for model_mode, digest_dir in store.iter_artifacts(self.root):
            yield StoredArtifact(model_mode, digest_dir)


def spool_artifacts(spool: Path) -> SpoolArtifacts:
    """The store of the spool at ``spool``, as ``cis490 eval`` reads it."""
    return SpoolArtifacts(Path(spool))


def _register_kwargs(modname: str) -> dict:
    """What a verb module's ``register`` is handed besides the subparsers."""
    return {"open_spool": spool_artifacts} if modname == "cis490.evaluate.cli" else {}


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
        mod.register(sub, **_register_kwargs(modname))
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
    except UserError as exc:  # bad input or a refusal: one line (anything else is a bug)
        print(f"cis490 {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the environment's answer (no such file, permission, disk full)
        print(f"cis490 {args.verb}: error: {os_error_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
