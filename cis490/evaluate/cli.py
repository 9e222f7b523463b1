"""``cis490 eval``: score every trained (model, mode) on the test split and write the report.

Thin: parse, call ``cis490.evaluate.run``, print. Library errors
(ValueError/OSError, including ``SchemaRefused``) propagate to
``cis490.cli``, which prints one line on stderr and exits 1. ``cis490.cli``
also hands ``register`` the opener of a spool's artifact store
(``open_spool``): evaluation does not import the fleet.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from cis490.common import InputError

if TYPE_CHECKING:
    from .run import ArtifactSource

EXAMPLE = ("cis490 eval --validation demo-data/validation_v1.parquet "
           "--summary demo-data/features/features_window_v1.parquet "
           "--tensors demo-data/tensors --schema demo-data/features/feature_schema_v1.json "
           "--spool spool --train-hosts elliott-thinkpad,j-workstation,r-minipc --reports-dir reports/eval")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v for v in (s.strip() for s in text.split(",")) if v)


def cmd_eval(args, *, open_spool: Callable[[Path], ArtifactSource]) -> int:
    from rich.console import Console

    from .report import render_table, write_report
    from .run import LEAVE_ONE_HOST_OUT, EvalSettings, run_eval

    loho = args.split_recipe == LEAVE_ONE_HOST_OUT
    if loho and args.train_hosts:
        raise InputError(f"--train-hosts cannot be combined with --split-recipe "
                         f"{LEAVE_ONE_HOST_OUT}: the folds are fixed by the data's hosts (each "
                         "trains on every host but the held-out one)")
    if args.n_resamples < 1000:
        print(f"cis490 eval: warning: --n-resamples {args.n_resamples} < 1000; percentile "
              "endpoints will be noisy (2000 is the default)", file=sys.stderr)
    settings = EvalSettings(
        validation=Path(args.validation), summary=Path(args.summary),
        tensors=Path(args.tensors), schema=Path(args.schema), recipe=args.split_recipe,
        train_hosts=_csv(args.train_hosts) if args.train_hosts else None, seed=args.seed,
        n_resamples=args.n_resamples, confidence=args.confidence,
        bootstrap_seed=args.bootstrap_seed, importance=args.importance,
        importance_repeats=args.importance_repeats,
        importance_max_episodes=args.importance_episodes,
        models=_csv(args.models) if args.models else None,
        modes=_csv(args.modes) if args.modes else None,
        consecutive=args.consecutive, false_alarm_budget=args.false_alarm_budget,
        temperature_scaling=not args.no_temperature_scaling,
        baselines=_csv(args.baselines) if args.baselines != "none" else (),
        reports_dir=Path(args.reports_dir))
    artifacts = Path(args.artifacts) if args.artifacts else None
    spool = None if artifacts else open_spool(Path(args.spool or os.environ.get("CIS490_SPOOL")
                                                   or "spool"))

    def note(msg: str) -> None:
        if not args.quiet:
            print(f"cis490 eval: {msg}", file=sys.stderr)

    if loho:
        return _cmd_loho(args, settings, spool=spool, artifacts=artifacts, note=note)
    comp = run_eval(settings, spool=spool, artifacts=artifacts, note=note,
                    progress=_progress(args.quiet))
    written = write_report(comp, args.reports_dir, plots=not args.no_plots)
    Console(width=max(120, Console().width)).print(render_table(comp))
    best = comp.best.get(("realistic", "roc_auc")) or comp.best.get(("oracle", "roc_auc"))
    flagged = [m.name for m in comp.models if m.clock_flag]
    print(f"eval: {len(comp.models)} models + {len(comp.baselines)} baselines; best realistic "
          f"detector by ROC AUC: {best}; wrote {len(written)} files -> {args.reports_dir}")
    if flagged:
        print(f"eval: not better than clock-only (may be learning episode time): "
              f"{', '.join(flagged)}")
    if comp.provenance.get("synthetic"):
        print("eval: synthetic data (cis490 synth): the numbers describe the generator, "
              "not real malware")
    return 0


def _progress(quiet: bool):
    """Per model, seed and split: a rich bar on a terminal, a plain line every
    ``$CIS490_PROGRESS_S`` (30) s otherwise (``cis490.progress``); nothing with ``--quiet``."""
    from .run import default_progress, no_progress

    return no_progress if quiet else default_progress


def _cmd_loho(args, settings, *, spool, artifacts, note) -> int:
    from rich.console import Console

    from .report import render_loho_table, write_loho_report
    from .run import run_loho

    result = run_loho(settings, spool=spool, artifacts=artifacts, note=note,
                      progress=_progress(args.quiet))
    written = write_loho_report(result, args.reports_dir, plots=not args.no_plots)
    Console(width=max(120, Console().width)).print(render_loho_table(result))
    names = {m.name: m.is_baseline for f in result.evaluated for m in f.comparison.everything}
    n_base = sum(names.values())
    missing = [f.held_out for f in result.missing]
    print(f"eval: leave-one-host-out over {len(result.folds)} hosts: {len(result.evaluated)} "
          f"fold(s) evaluated ({', '.join(f.held_out for f in result.evaluated)})"
          + (f", {len(missing)} not trained ({', '.join(missing)})" if missing else "")
          + f"; {len(names) - n_base} models + {n_base} baselines; wrote {len(written)} files "
          f"-> {args.reports_dir}")
    if result.provenance.get("synthetic"):
        print("eval: synthetic data (cis490 synth): the numbers describe the generator, "
              "not real malware")
    return 0


def register(sub, *, open_spool: Callable[[Path], ArtifactSource]) -> None:
    """Add ``eval``; ``open_spool(path)`` gives the spool's store (``cis490.cli.spool_artifacts``)."""
    p = sub.add_parser(
        "eval", help="score every checkpoint on the test split -> reports/eval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pick one checkpoint per (model, mode, training seed) from the artifact "
        "store (best validation macro F1 among those trained on the split), predict every "
        "validation and test window (reports/eval/predictions/*.parquet), fit the baselines "
        "(majority, clock-only, rule-zscore, logreg), fix each detector's threshold on "
        "validation for a false-alarm budget, and write comparison.md (detection first: false "
        "alarms per host-day, episode detection rate, time to detect, ROC/PR AUC, precision at "
        "base rates, calibration; then phase attribution), <name>_eval.json and PNG plots, with "
        "episode-bootstrap CIs, paired tests within each family (Holm) and a check against the "
        f"clock-only shortcut.\n\nexample: {EXAMPLE}")
    p.add_argument("--validation", required=True, metavar="VALIDATION.parquet")
    p.add_argument("--summary", required=True, metavar="FEATURES.parquet")
    p.add_argument("--tensors", required=True, metavar="DIR")
    p.add_argument("--schema", required=True, metavar="SCHEMA.json",
                   help="feature_schema_v1.json; its sha256 must match every checkpoint's")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--spool", metavar="DIR",
                     help="spool whose models/ store holds the bundles (default $CIS490_SPOOL, "
                     "else ./spool)")
    src.add_argument("--artifacts", metavar="DIR",
                     help="instead of a spool: a directory of *.ckpt.json checkpoints")
    p.add_argument("--reports-dir", default="reports/eval", metavar="DIR")
    p.add_argument("--split-recipe", default="host",
                   choices=("host", "sample", "time", "leave-one-host-out"),
                   help="the split the checkpoints were trained on (default host); "
                   "leave-one-host-out evaluates one host split per host with usable episodes "
                   "(trained on every other host, tested on that one: the host-recipe jobs a "
                   "leave-one-host-out manifest entry expands into) into "
                   "REPORTS_DIR/leave-one-host-out/<host>/ and writes a per-host summary in "
                   "REPORTS_DIR/comparison.md; folds without checkpoints are listed as not trained")
    p.add_argument("--train-hosts", default=None, metavar="H[,H...]",
                   help="the split's train hosts (default: the one set the checkpoints record; "
                   "not with leave-one-host-out, whose folds are fixed by the data's hosts)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="the split's seed")
    p.add_argument("--n-resamples", type=int, default=2000, metavar="B")
    p.add_argument("--confidence", type=float, default=0.95, metavar="C")
    p.add_argument("--bootstrap-seed", type=int, default=0, metavar="N",
                   help="seed of the episode resamples and importance permutations (recorded)")
    p.add_argument("--importance", choices=("source", "channel", "none"), default="source",
                   help="permutation importance per source (host/netflow/proc), per channel, "
                   "or none (default source)")
    p.add_argument("--importance-repeats", type=int, default=1, metavar="R")
    p.add_argument("--importance-episodes", type=int, default=200, metavar="N",
                   help="permutation importance on at most N test episodes, the first in "
                   "sha256(bootstrap-seed:episode) order, the same for every model; only their "
                   "windows are loaded (default 200; 0 = every test episode); the report "
                   "states the sample")
    p.add_argument("--models", default=None, metavar="M[,M...]", help="only these models")
    p.add_argument("--modes", default=None, metavar="MODE[,MODE...]", help="only these modes")
    p.add_argument("--consecutive", type=int, default=1, metavar="K",
                   help="an alarm needs K consecutive windows with score >= tau (default 1)")
    p.add_argument("--false-alarm-budget", type=float, default=1.0, metavar="F",
                   help="false alarms per benign host-day allowed on validation when tau is "
                   "chosen (default 1)")
    p.add_argument("--no-temperature-scaling", action="store_true",
                   help="do not fit a temperature on validation (reported beside the raw ECE)")
    p.add_argument("--baselines", default="majority,clock-only,rule-zscore,logreg",
                   metavar="B[,B...]|none", help="baselines to fit (default all four)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--quiet", action="store_true",
                   help="no progress notes or progress lines on stderr")
    p.set_defaults(func=functools.partial(cmd_eval, open_spool=open_spool))
