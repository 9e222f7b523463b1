"""``cis490`` verbs of the data stages: synth, validate, features, tensors.

Thin: parse, call the library, print. Progress bars and warnings go to
stderr (``--quiet`` silences them); the one-line summary goes to stdout.
Errors are raised (ValueError/OSError) and printed once by ``cis490.cli``.
"""

from __future__ import annotations

import argparse
import os
import sys
from cis490.common import InputError

EXAMPLE_STORE = "demo-data/store"


def _jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or warnings (summary line only)")


def _window(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window-s", type=int, default=None, metavar="S", help="window length in seconds (default 20)")
    p.add_argument("--stride-s", type=int, default=None, metavar="S", help="window stride in seconds (default 2)")


def _spec(args):
    from .channels import DEFAULT_WINDOW, WindowSpec

    return WindowSpec(args.window_s or DEFAULT_WINDOW.length_s, args.stride_s or DEFAULT_WINDOW.stride_s)


def _check_jobs(args) -> None:
    if args.jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {args.jobs}")


def _warn(args, msg: str) -> None:
    if not args.quiet:
        print(f"cis490 {args.verb}: warning: {msg}", file=sys.stderr)


def cmd_synth(args) -> int:
    from .parallel import progress_bar
    from .synth import SynthConfig, synthesize

    _check_jobs(args)
    lengths = ({"duration_s": args.duration_s} if args.duration_s is not None else
               {"min_duration_s": args.min_duration_s, "max_duration_s": args.max_duration_s})
    cfg = SynthConfig(episodes_per_host=args.episodes_per_host, seed=args.seed,
                      defects=not args.no_defects, benign_frac=args.benign_frac, hosts=args.hosts,
                      weeks=args.weeks, **lengths)
    # every host gets episodes_per_host episodes: the total without planning the store twice
    with progress_bar("synth", cfg.episodes_per_host * cfg.hosts, quiet=args.quiet) as prog:
        rep = synthesize(args.out, cfg, jobs=args.jobs, progress=prog)
    defects = ("no defects" if not cfg.defects else
               f"defects: torn index line {rep.torn_index_line}, truncated {len(rep.truncated)}, "
               f"no meta {len(rep.no_meta)}, counter reset {len(rep.counter_reset)}")
    lengths = (f"{cfg.min_duration_s} s" if cfg.min_duration_s == cfg.max_duration_s else
               f"{cfg.min_duration_s}-{cfg.max_duration_s} s")
    print(f"synth: {rep.n_episodes} episodes ({cfg.episodes_per_host} per host x {cfg.hosts} hosts, "
          f"{lengths}, {rep.n_benign} benign-only, over {rep.span_weeks:.1f} weeks); "
          f"netflow missing on {len(rep.degraded)}; {defects} -> {args.out}")
    return 0


def cmd_validate(args) -> int:
    from .parallel import progress_bar
    from .validate import read_index, validate_store, write_validation

    _check_jobs(args)
    n = len(read_index(args.store)[0]) if os.path.isfile(os.path.join(args.store, "index.jsonl")) else 0
    with progress_bar("validate", n, quiet=args.quiet) as prog:
        result = validate_store(args.store, jobs=args.jobs, progress=prog)
    write_validation(result, args.out)
    for w in result.warnings:
        _warn(args, w)
    c = result.counts()
    resets = sum(1 for r in result.rows if r["counter_resets"])
    print(f"validate: episodes ok {c['ok']} / degraded {c['degraded']} / invalid {c['invalid']}; "
          f"{len(result.warnings)} store warning(s); {resets} with counter resets -> {args.out}")
    return 0


def _system_allocator() -> None:
    """Builders use Arrow's system allocator, in this process and (through the
    environment) in its spawned workers: with the default mimalloc, peak RSS
    grew 9-12 MiB from 500 to 2000 episodes, with glibc's 1-3 MiB
    (docs/DATA_PIPELINE.md §9). An ``ARROW_DEFAULT_MEMORY_POOL`` the user set wins."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    if os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "system":
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())


def _build(args, verb: str, func) -> int:
    from .features import EpisodeIndex
    from .parallel import progress_bar

    _check_jobs(args)
    _system_allocator()
    spec = _spec(args)
    with progress_bar(verb, len(EpisodeIndex(args.validation)), quiet=args.quiet) as prog:
        summary = func(args.validation, args.store, args.out_dir, jobs=args.jobs, window=spec, progress=prog)
    print(summary.line(verb) + f" -> {args.out_dir}")
    return 0


def cmd_features(args) -> int:
    from .features import build_features

    return _build(args, "features", build_features)


def cmd_tensors(args) -> int:
    from .tensors import build_tensors

    return _build(args, "tensors", build_tensors)


# SynthConfig's defaults, repeated so that building the parser imports nothing heavy
# (tests/data/test_data_cli.py checks they agree)
SYNTH_DEFAULTS = {"episodes_per_host": 40, "min_duration_s": 90, "max_duration_s": 600,
                  "benign_frac": 0.6, "hosts": 4, "weeks": 8}


def register(sub) -> None:
    d = SYNTH_DEFAULTS
    f = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("synth", help="write a synthetic episode store", formatter_class=f,
                       description="Write a synthetic episode store (docs/DATA_PIPELINE.md) with its defects.\n\n"
                       f"example: cis490 synth --out {EXAMPLE_STORE} --episodes-per-host 40 --seed 0")
    p.add_argument("--out", required=True, metavar="STORE")
    p.add_argument("--episodes-per-host", type=int, default=d["episodes_per_host"], metavar="N")
    p.add_argument("--min-duration-s", type=int, default=d["min_duration_s"], metavar="S",
                   help=f"shortest episode (default {d['min_duration_s']})")
    p.add_argument("--max-duration-s", type=int, default=d["max_duration_s"], metavar="S",
                   help=f"longest episode (default {d['max_duration_s']})")
    p.add_argument("--duration-s", type=int, default=None, metavar="S",
                   help="every episode exactly S seconds (overrides --min/--max-duration-s)")
    p.add_argument("--benign-frac", type=float, default=d["benign_frac"], metavar="F",
                   help=f"share of each host's episodes that are benign-only (default {d['benign_frac']})")
    p.add_argument("--hosts", type=int, default=d["hosts"], metavar="N",
                   help=f"the first N hosts of the world, 2..{d['hosts']} (default {d['hosts']})")
    p.add_argument("--weeks", type=int, default=d["weeks"], metavar="W",
                   help=f"weeks of started_at the episodes spread over (default {d['weeks']})")
    p.add_argument("--seed", type=int, default=0, metavar="N")
    p.add_argument("--no-defects", action="store_true", help="a clean store (no injected defects)")
    _jobs(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("validate", help="full sweep of a store -> validation_v1.parquet", formatter_class=f,
                       description="Validate every indexed episode.\n\nexample: cis490 validate "
                       f"--store {EXAMPLE_STORE} --out demo-data/validation_v1.parquet --jobs 2")
    p.add_argument("--store", required=True, metavar="STORE")
    p.add_argument("--out", required=True, metavar="VALIDATION.parquet")
    _jobs(p)
    p.set_defaults(func=cmd_validate)

    for verb, func, what in (("features", cmd_features, "summary features parquet + schema"),
                             ("tensors", cmd_tensors, "memory-mappable tensor shards per host")):
        p = sub.add_parser(verb, help=f"build {what}", formatter_class=f,
                           description=f"Build {what} from the usable episodes.\n\nexample: cis490 {verb} "
                           f"--validation demo-data/validation_v1.parquet --store {EXAMPLE_STORE} "
                           f"--out-dir demo-data/{verb} --jobs 2")
        p.add_argument("--validation", required=True, metavar="VALIDATION.parquet")
        p.add_argument("--store", required=True, metavar="STORE")
        p.add_argument("--out-dir", required=True, metavar="DIR")
        _window(p)
        _jobs(p)
        p.set_defaults(func=func)
