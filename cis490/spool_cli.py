"""``cis490-spool``: the coordinator's CLI with the model job kinds and the ``demo`` verb.

``cis490.fleet.cli`` is the coordinator's own CLI and knows no model. This
module sits on top: importing :mod:`cis490.kinds` registers the seven model
kinds, and it adds the ``demo`` verb (the whole pipeline on this machine).
``bin/cis490-spool`` and the ``cis490-spool`` console script call :func:`main`.
"""

from __future__ import annotations

import cis490.kinds  # noqa: F401 - registers the model job kinds
from cis490.fleet import cli

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``cis490-spool``: the coordinator's CLI with the model kinds and the ``demo`` verb."""
    return cli.main(argv, extra_verbs=[_demo_verb])


def _demo_verb(verb) -> None:
    """Add ``cis490-spool demo`` (the whole pipeline on this machine) to the CLI."""
    sp = verb("demo", _cmd_demo,
              "the whole pipeline on this machine: data, two workers, evaluation (~10 min)")
    sp.add_argument("--episodes-per-host", type=int, default=None, help="default 20 (cis490/demo.py)")
    sp.add_argument("--min-duration-s", type=int, default=None, help="shortest episode (default 60)")
    sp.add_argument("--max-duration-s", type=int, default=None, help="longest episode (default 240)")
    sp.add_argument("--duration-s", type=int, default=None, help="every episode exactly S seconds")
    sp.add_argument("--benign-frac", type=float, default=None, help="benign-only share (default 0.55)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--quiet", action="store_true", help="plain progress lines instead of the live view")


def _cmd_demo(args) -> int:
    from cis490.demo import run_demo

    world = {k: getattr(args, k) for k in ("episodes_per_host", "min_duration_s", "max_duration_s",
                                            "benign_frac") if getattr(args, k) is not None}
    if args.duration_s is not None:  # every episode this long
        world.update(min_duration_s=args.duration_s, max_duration_s=args.duration_s)
    return run_demo(args.spool, world=world, seed=args.seed, quiet=args.quiet)


if __name__ == "__main__":
    import sys

    sys.exit(main())
