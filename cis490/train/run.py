"""The training driver a worker spawns: one (model, mode) job -> one checkpoint.

    python -m cis490.train.run --model gru --mode realistic \\
        --validation V.parquet --summary features_window_v1.parquet \\
        --tensors tensors/ --schema feature_schema_v1.json \\
        --train-hosts elliott-thinkpad --split-recipe host --seed 0 \\
        --hyper epochs=20 --hyper hidden=32 --out OUT/ --progress-fd 3

Contract (docs/CONTRACTS.md): ``--seed`` seeds training (weights, batches,
XGBoost); ``--split-seed`` (default: ``--seed``) seeds the train/val/test
carve-out, so several training seeds can share one split. The checkpoint
records both: ``data.split.seed`` (the split's seed) and ``data.train_seed``.
``--hyper key=JSON`` validated against
``cis490.models.configs.CONFIGS[model]`` (exit 2 naming the key); with
``--expect-schema-sha256`` / ``--expect-validation-sha256`` the driver
refuses to run (exit 1, one line on stderr) when the files' sha256 differ;
only train and validation episodes are loaded; one JSON line per epoch on
``--progress-fd``; ``--out`` receives exactly the checkpoint
(``<model>_<mode>.ckpt.json`` + sidecar), byte-identical for the same spec
and data; ``--curves DIR`` (outside ``--out``) receives the training curves,
``metrics.jsonl`` and ``tensorboard/`` (``cis490.train.curves``: wall times,
never byte-identical), nothing without it; logs go to stderr. Exit 0 on
success, 1 on an operational error, 2 on a usage error.

Resuming (docs/MODELS.md, "Resuming"): with ``--resume-dir DIR`` (outside
``--out``) the driver continues from ``DIR/resume.ckpt`` when that file is this
very job's (its fingerprint: model, mode, resolved config, ``--seed``, split seed
and recipe, train hosts, the validation and schema sha256, the train/val episode
digests and window counts, input shape, library versions, device, file format);
a foreign, truncated or corrupt file is ignored with one line on stderr
(``ignoring resume state DIR/resume.ckpt: <why>``) and training starts from
scratch. While it trains it rewrites that file atomically after every epoch (gbt:
every boosting round, at most every 2 s, and always the last). SIGTERM or SIGUSR1
then finish the current batch (round), save the state, log ``interrupted by
SIGTERM: resume state saved (epoch E, batch B)`` and exit 75
(``cis490.common.EXIT_RESUMABLE``); a signal before training starts (while the
data loads) exits 75 at once with nothing new saved. The resumed run's ``--out``
is byte-identical to an uninterrupted run's; it first replays the earlier epochs
to ``--progress-fd`` and ``--curves``. minirocket keeps no resume state (it
restarts from scratch). Without ``--resume-dir`` no signal handler is installed
and no state is written. The driver deletes nothing in ``DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cis490.models import configs
from cis490.models.resume import ResumeState, TrainingInterrupted
from cis490.common import EXIT_RESUMABLE, UserError, atomic_write, os_error_line

__all__ = ["main"]

PROG = "cis490.train.run"
RESUME_FILE = "resume.ckpt"  # in --resume-dir
STOP_SIGNALS = ("SIGTERM", "SIGUSR1")  # with --resume-dir: save the state, exit EXIT_RESUMABLE


class DriverError(UserError):
    """An operational refusal: one line for stderr, exit 1."""


def _seed(text: str) -> int:
    """A seed as the spool writes one: an integer in [0, 2^32) (else a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"seed {value} is not in [0, 2^32)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n" + __doc__.split("\n\n")[1],
    )
    p.add_argument("--model", required=True, choices=sorted(configs.CONFIGS))
    p.add_argument("--mode", required=True, choices=configs.MODES)
    p.add_argument("--validation", required=True, help="validation_v1.parquet")
    p.add_argument("--summary", required=True, help="features_window_v1.parquet")
    p.add_argument("--tensors", required=True, help="tensor shard directory")
    p.add_argument("--schema", required=True, help="feature_schema_v1.json")
    p.add_argument("--train-hosts", default=None,
                   help="comma-separated train hosts (default: the split recipe's)")
    p.add_argument("--split-recipe", default="host", choices=("host", "sample", "time"))
    p.add_argument("--seed", type=_seed, default=0, help="training seed (weights, batches)")
    p.add_argument("--split-seed", type=_seed, default=None, metavar="N",
                   help="seed of the train/val/test split (default: --seed)")
    p.add_argument("--epochs", type=int, default=None, help="same as --hyper epochs=N")
    p.add_argument("--hyper", action="append", default=[], metavar="KEY=JSON")
    p.add_argument("--out", required=True, help="directory that receives the checkpoint")
    p.add_argument("--curves", default=None, metavar="DIR",
                   help="directory that receives metrics.jsonl and tensorboard/ (outside --out)")
    p.add_argument("--progress-fd", type=int, default=None, metavar="FD")
    p.add_argument("--estimate-memory", action="store_true",
                   help="print the job's estimated peak memory as JSON on stdout and exit "
                        "without training (what a worker asks before it claims the job)")
    p.add_argument("--expect-schema-sha256", default=None, metavar="HEX")
    p.add_argument("--expect-validation-sha256", default=None, metavar="HEX")
    p.add_argument("--resume-dir", default=None, metavar="DIR",
                   help=f"keep a resume state DIR/{RESUME_FILE} (every epoch; on SIGTERM/SIGUSR1 "
                        f"save it and exit {EXIT_RESUMABLE}) and continue from this job's state "
                        "found there; outside --out")
    return p


def resolve_config(model: str, hyper_args: list[str], epochs: int | None) -> configs.TrainConfig:
    """The job's config from ``--hyper`` and ``--epochs`` (HyperError names the key)."""
    hyper = configs.parse_hyper_args(hyper_args)
    if epochs is not None:
        if "epochs" in hyper and hyper["epochs"] != epochs:
            raise configs.HyperError(
                f"hyper 'epochs': --epochs {epochs} contradicts --hyper epochs={hyper['epochs']}"
            )
        hyper["epochs"] = epochs
    return configs.validate_hyper(model, hyper)


def check_digests(args: argparse.Namespace) -> dict[str, str]:
    """sha256 of the validation and schema files; refuse on a mismatch."""
    from cis490.models.checkpoint import sha256_file

    digests = {}
    for name in ("validation", "schema"):
        path = getattr(args, name)
        try:
            digests[name] = sha256_file(path)
        except OSError as exc:
            raise DriverError(f"cannot read --{name} {path}: {exc.strerror or exc}") from None
        expect = getattr(args, f"expect_{name}_sha256")
        if expect is not None and expect.lower() != digests[name]:
            raise DriverError(
                f"--{name} {Path(path).name} has sha256 {digests[name]} but the job expects "
                f"{expect}; the data changed since the job was queued (rebuild or reload)"
            )
    return digests


def check_window(cfg: configs.TrainConfig, schema_path: str) -> None:
    """``window_s != 0`` pins the window length the data must have been built with."""
    if cfg.window_s == 0:
        return
    schema = json.loads(Path(schema_path).read_bytes())
    length = (schema.get("window") or {}).get("length_s")
    if length != cfg.window_s:
        raise DriverError(
            f"hyper window_s={cfg.window_s} but the data was built with window length_s={length}"
        )


def _progress_writer(fd: int | None):
    if fd is None:
        return None

    def emit(rec) -> None:
        line = json.dumps({"epoch": rec.epoch, "epochs": rec.epochs, "loss": rec.loss,
                           "val_macro_f1": rec.val_macro_f1}, sort_keys=True)
        os.write(fd, (line + "\n").encode())

    return emit


def _step_writer(fd: int | None):
    """Within an epoch: ``{"epoch", "epochs", "epoch_fraction"}`` on the progress fd, at most
    every 5 s (or the progress-line interval, if shorter), so ``status`` can say
    "epoch 3/20, 41 %" while an epoch runs."""
    if fd is None:
        return None
    from cis490.progress import interval_s

    every = min(5.0, interval_s())
    last = [time.monotonic()]

    def emit(epoch: int, epochs: int, batch: int, batches: int) -> None:
        now = time.monotonic()
        if batch >= batches or now - last[0] < every:
            return
        last[0] = now
        line = json.dumps({"epoch": epoch, "epochs": epochs,
                           "epoch_fraction": round(batch / batches, 4)}, sort_keys=True)
        os.write(fd, (line + "\n").encode())

    return emit


class _TrainProgress:
    """Plain progress lines on stderr while a model trains (``cis490.progress``): batches
    for the nets (the total is epochs x batches, an upper bound when early stopping ends
    the run sooner), boosting rounds for gbt. A worker's log is not a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.line = None
        self.where = ""
        self.batches = False
        self.done_before = 0  # batches (rounds) of a resumed fit done by earlier attempts

    def _start(self, total: int, unit: str) -> None:
        from cis490.progress import LineProgress

        self.line = LineProgress(self.label, max(0, total - self.done_before), unit=unit,
                                 detail=lambda: self.where)

    def resumed(self, units_done: int) -> None:
        """The fit continues after ``units_done`` batches (rounds): count what is left."""
        self.done_before = int(units_done)

    def step(self, epoch: int, epochs: int, batch: int, batches: int) -> None:
        if self.line is None:
            self.batches = True
            self._start(epochs * batches, "batches")
        self.where = f"epoch {epoch}/{epochs}, batch {batch}/{batches}"
        self.line.advance()

    def epoch(self, rec) -> None:
        if self.batches:
            return  # the batches tell it
        if self.line is None:
            self._start(rec.epochs, "rounds")
        self.where = f"val macro F1 {rec.val_macro_f1:.3f}"
        self.line.advance()

    def close(self) -> None:
        if self.line is not None:
            self.line.close()


def _log(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


class _Stopped(BaseException):
    """A stop signal before training began (nothing to save): exit EXIT_RESUMABLE at once.
    A BaseException, like KeyboardInterrupt, so no ``except Exception`` on the way swallows it."""

    def __init__(self, signame: str, where: str):
        super().__init__(signame)
        self.signame, self.where = signame, where


class _StopSignals:
    """SIGTERM / SIGUSR1 while the driver runs with ``--resume-dir``.

    Before training begins (loading, normalising, a model that keeps no state) a signal
    raises :class:`_Stopped` at once; once the loop begins (``begin``, called by it) it only
    sets ``signame``, which the loop asks after every batch (round) to save its state and
    stop (``TrainingInterrupted``); after the fit it is ignored (the checkpoint is written,
    exit 0). Installed in the main thread (``cis490.fleet.child`` runs the driver there);
    ``uninstall`` puts the previous handlers back."""

    def __init__(self) -> None:
        self.signame: str | None = None
        self.training = False
        self.deferred = False  # a signal came inside a library callback: stop at ``begin``
        self.where = "before training"
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            _log("not in the main thread: SIGTERM/SIGUSR1 keep their handlers (no resume on a signal)")
            return
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._old[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        self.training = True  # never raise from here on
        for sig, old in self._old.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        self._old.clear()

    def _handle(self, signum: int, frame) -> None:
        self.signame = signal.Signals(signum).name
        if not self.training:
            if _in_library_callback(frame):
                # Python code called back from C (XGBoost's DataIter builds its matrices so,
                # through ctypes): an exception raised here would be swallowed by ctypes,
                # which XGBoost reads as "no more batches" (a silently truncated matrix).
                # Stop at the next safe point instead: ``begin``.
                self.deferred = True
                return
            raise _Stopped(self.signame, self.where)

    def begin(self) -> None:
        if self.deferred and not self.training:
            raise _Stopped(self.signame or "SIGTERM", self.where)
        self.training = True

    def stop(self) -> str | None:
        return self.signame


# libraries that call Python back from C (ctypes), where an exception must not be raised
_CALLBACK_LIBRARIES = ("xgboost",)


def _in_library_callback(frame) -> bool:
    """Whether ``frame`` runs inside a callback of one of ``_CALLBACK_LIBRARIES``."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if any(name == lib or name.startswith(lib + ".") for lib in _CALLBACK_LIBRARIES):
            return True
        frame = frame.f_back
    return False


def _difference(have: Any, want: Any, path: str = "") -> str | None:
    """Where two JSON values first differ (``key.sub: theirs, this job: ours``), or None."""
    if isinstance(have, dict) and isinstance(want, dict):
        for key in sorted(set(have) | set(want)):
            if key not in have or key not in want:
                return f"{path}{key}: {'missing' if key not in have else 'unexpected'}"
            diff = _difference(have[key], want[key], f"{path}{key}.")
            if diff:
                return diff
        return None
    if have == want and type(have) is type(want):
        return None

    def short(v: Any) -> str:
        text = json.dumps(v, sort_keys=True)
        return text if len(text) <= 40 else text[:37] + "..."

    return f"{path.rstrip('.') or 'fingerprint'}: {short(have)}, this job: {short(want)}"


class _ResumeFile:
    """``--resume-dir DIR``: ``DIR/resume.ckpt``, read once if it is this job's, rewritten
    atomically (``cis490.common.atomic_write``: a reader copying it sees a whole file)."""

    def __init__(self, directory: str, fingerprint: dict[str, Any]) -> None:
        self.dir = Path(directory)
        self.path = self.dir / RESUME_FILE
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back (lists, not tuples)
        self.write_failed = False

    def ignore(self, why: str) -> None:
        _log(f"ignoring resume state {self.path}: {why}")

    def load(self) -> ResumeState | None:
        from cis490.models import resume

        try:
            fingerprint, state = resume.decode(resume.read_file(self.path))
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.ignore(os_error_line(exc))
            return None
        except resume.ResumeFileError as exc:
            self.ignore(str(exc))
            return None
        diff = _difference(fingerprint, self.fingerprint)
        if diff is not None:
            self.ignore(f"it belongs to another job ({diff})")
            return None
        return state

    def save(self, state: ResumeState) -> bool:
        from cis490.models import resume

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, resume.encode(self.fingerprint, state))
        except OSError as exc:  # training goes on; said once
            if not self.write_failed:
                _log(f"cannot write resume state {self.path}: {os_error_line(exc)}")
                self.write_failed = True
            return False
        return True


def _split_args(args: argparse.Namespace) -> tuple[list[str] | None, int]:
    """``(train hosts or None, split seed)`` as training and the estimate both use them."""
    hosts = [h for h in args.train_hosts.split(",") if h] if args.train_hosts else None
    return hosts, (args.seed if args.split_seed is None else args.split_seed)


def estimate_memory(args: argparse.Namespace, cfg: configs.TrainConfig) -> dict:
    """``{"peak_bytes", "parts", "n_train", "n_val"}`` from the split and the data's shape;
    reads the tensors' window tables and the schema, never a feature value."""
    from cis490.data.channels import PHASES
    from cis490.data.load import load_tensors
    from cis490.data.splits import make_split
    from cis490.train.memory import estimate

    hosts, split_seed = _split_args(args)
    split = make_split(args.validation, args.split_recipe, hosts, split_seed)
    td = load_tensors(args.tensors, args.mode, sorted(set(split.train) | set(split.val)))
    n_val = int(td.meta["episode_id"].isin(frozenset(split.val)).sum())
    n_train = len(td.y) - n_val
    if args.model in configs.SUMMARY_MODELS:
        schema = json.loads(Path(args.schema).read_bytes())
        shape = {"n_features": len(schema["summary"]["modes"][args.mode])}
    else:
        shape = {"n_channels": td.X.shape[1], "n_steps": td.X.shape[2]}
    est = estimate(args.model, cfg, shape, n_train, n_val, len(PHASES))
    return {**est.as_dict(), "n_train": n_train, "n_val": n_val}


def _device_record(model: str) -> dict[str, str]:
    """``{"device": "cuda"}`` for a net trained on a GPU; nothing on the CPU, whose bytes
    are the reference (a GPU run gives other bytes, and says why)."""
    if model in ("gbt", "minirocket"):  # CPU libraries only (xgboost as configured, aeon)
        return {}
    from cis490.models import loop

    dev = loop.device()
    return {} if dev.type == "cpu" else {"device": dev.type}


@contextlib.contextmanager
def _scratch(args: argparse.Namespace):
    """A private scratch directory beside ``--out`` (local disk in a worker's job dir) for
    the summary spill and XGBoost's page cache; removed when the driver ends."""
    parent = Path(args.out).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    args.scratch = tempfile.mkdtemp(prefix=".cis490-scratch-", dir=parent)
    try:
        yield
    finally:
        shutil.rmtree(args.scratch, ignore_errors=True)
        args.scratch = None


def _fingerprint(args: argparse.Namespace, cfg: configs.TrainConfig, d, digests: dict[str, str],
                 split_seed: int, shape: dict[str, Any], libraries: tuple[str, ...]) -> dict[str, Any]:
    """What makes a resume state this job's (``--resume-dir``): anything that would change
    the checkpoint's bytes."""
    from cis490.models import resume
    from cis490.models.checkpoint import library_versions
    from cis490.train import data as train_data

    from cis490 import __version__

    device = _device_record(args.model).get("device", "cpu")
    if device == "cuda":  # another GPU model or CUDA build gives other bytes: its own state
        import torch

        device = f"cuda:{torch.cuda.get_device_name()}:cuda {torch.version.cuda}:cudnn {torch.backends.cudnn.version()}"
    return {
        "format": resume.FORMAT, "cis490": __version__, "model": args.model, "mode": args.mode,
        "config": configs.config_to_dict(cfg), "seed": args.seed, "split_seed": split_seed,
        "split_recipe": args.split_recipe, "train_hosts": list(d.train_hosts),
        "validation_sha256": digests["validation"], "schema_sha256": digests["schema"],
        "train_episodes_sha256": train_data.episodes_digest(d.train_episodes),
        "val_episodes_sha256": train_data.episodes_digest(d.val_episodes),
        "n_train": len(d.y_train), "n_val": len(d.y_val), "input": shape,
        "libraries": library_versions(*libraries), "device": device,
    }


def train(args: argparse.Namespace, cfg: configs.TrainConfig, signals: _StopSignals | None = None) -> Path:
    """Check, load train+val, fit, save; return the checkpoint path."""
    from cis490 import models
    from cis490.data.channels import PHASES
    from cis490.train import data as train_data

    digests = check_digests(args)
    check_window(cfg, args.schema)
    hosts, split_seed = _split_args(args)
    try:
        d = train_data.load_train_val(
            model=args.model, mode=args.mode, validation=args.validation, summary=args.summary,
            tensors=args.tensors, schema=args.schema, schema_sha256=digests["schema"],
            recipe=args.split_recipe, train_hosts=hosts, seed=split_seed,
            spill_dir=getattr(args, "scratch", None),
        )
    except train_data.SchemaMismatch as exc:
        raise DriverError(str(exc)) from None
    _log(f"{args.model}/{args.mode}: {len(d.y_train)} train windows "
         f"({len(d.train_episodes)} episodes), {len(d.y_val)} val windows "
         f"({len(d.val_episodes)} episodes)")
    if args.model in configs.SUMMARY_MODELS:
        shape: dict[str, Any] = {"n_features": d.X_train.shape[1]}
    else:
        shape = {"n_channels": d.X_train.shape[1], "n_steps": d.X_train.shape[2]}
    model = models.create(
        args.model, n_classes=len(PHASES), classes=PHASES, mode=args.mode,
        schema_sha256=digests["schema"], **shape, **configs.config_to_dict(cfg),
    )
    model.scratch_dir = getattr(args, "scratch", None)
    curves = None
    if args.curves is not None:
        from cis490.train.curves import CurveWriter

        curves = CurveWriter(args.curves)
    lines = _TrainProgress(f"{PROG}: {args.model}/{args.mode}")
    fd_writer = _progress_writer(args.progress_fd)

    def on_epoch(rec) -> None:
        if curves is not None:
            curves.epoch(rec)
        if fd_writer is not None:
            fd_writer(rec)
        lines.epoch(rec)

    fd_step = _step_writer(args.progress_fd)

    def on_step(epoch: int, epochs: int, batch: int, batches: int) -> None:
        lines.step(epoch, epochs, batch, batches)
        if fd_step is not None:
            fd_step(epoch, epochs, batch, batches)

    if args.resume_dir is not None:
        from cis490.models.resume import ResumeHook

        rfile = _ResumeFile(args.resume_dir, _fingerprint(args, cfg, d, digests, split_seed, shape,
                                                          model.libraries))

        def on_restored(epoch: int, batch: int, units_done: int, history) -> None:
            _log(f"{args.model}/{args.mode}: resuming from epoch {epoch}, batch {batch} ({rfile.path})")
            lines.resumed(units_done)
            for rec in history:  # the epochs before: the curves and the worker's progress are whole
                if curves is not None:
                    curves.epoch(rec, replayed=True)
                if fd_writer is not None:
                    fd_writer(rec)

        if model.resumable:
            model.resume = ResumeHook(
                state=rfile.load(), save=rfile.save, restored=on_restored, rejected=rfile.ignore,
                stop=signals.stop if signals is not None else (lambda: None),
                begin=signals.begin if signals is not None else (lambda: None))
        else:
            if os.path.lexists(rfile.path):
                rfile.ignore(f"{args.model} keeps no resume state (it restarts from scratch)")
            if signals is not None:
                signals.where = f"during the fit ({args.model} keeps no resume state)"

    started, cpu_started = time.perf_counter(), time.process_time()  # logged, never stored
    if curves is not None:
        curves.start()
    try:
        report = model.fit(d.X_train, d.y_train, d.X_val, d.y_val, seed=args.seed,
                           on_epoch=on_epoch, on_step=on_step)
        if signals is not None:
            signals.begin()  # trained: a signal from here on is ignored, the checkpoint is written
    finally:
        if curves is not None:
            curves.close()
    lines.close()
    secs, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    _log(f"best epoch {report.best_epoch}/{report.epochs_run}: "
         f"val macro F1 {report.best_val_macro_f1:.4f}; fit {secs:.2f} s wall, {cpu:.2f} s CPU, "
         f"{len(d.y_train) * report.epochs_run / max(secs, 1e-9):.0f} train windows/s")
    provenance = {
        "validation_sha256": digests["validation"],
        "schema_sha256": digests["schema"],
        "split": {
            "recipe": args.split_recipe, "train_hosts": list(d.train_hosts), "seed": split_seed,
            "excluded_profiles": sorted(d.excluded_profiles),
            "untested_profiles": sorted(d.untested_profiles),
        },
        "train_seed": args.seed,
        "train_episodes": len(d.train_episodes),
        "train_episodes_sha256": train_data.episodes_digest(d.train_episodes),
        "val_episodes": len(d.val_episodes),
        "val_episodes_sha256": train_data.episodes_digest(d.val_episodes),
        **_device_record(args.model),
    }
    return model.save(args.out, data=provenance)


def main(argv: list[str] | None = None) -> int:
    from cis490.heap import fix_mmap_threshold

    fix_mmap_threshold()  # batch temporaries go back to the system (cis490/heap.py)
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit 2 here
    if args.curves is not None:
        out, curves = Path(args.out).resolve(), Path(args.curves).resolve()
        if out == curves or out in curves.parents or curves in out.parents:
            parser.error("--curves must lie outside --out (the curves never enter the checkpoint)")
    if args.resume_dir is not None:
        out, rdir = Path(args.out).resolve(), Path(args.resume_dir).resolve()
        if out == rdir or out in rdir.parents:
            parser.error("--resume-dir must lie outside --out (--out receives exactly the checkpoint)")
    try:
        cfg = resolve_config(args.model, args.hyper, args.epochs)
    except configs.HyperError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.estimate_memory:
        try:
            print(json.dumps(estimate_memory(args, cfg), sort_keys=True), flush=True)
        except (OSError, ValueError, KeyError) as exc:
            print(f"{PROG}: error: cannot estimate memory: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return 1
        return 0
    signals = None
    if args.resume_dir is not None:
        signals = _StopSignals()
        signals.install()
    try:
        with _scratch(args):
            path = train(args, cfg, signals)
    except _Stopped as exc:  # before training: nothing of this attempt to keep
        _log(f"interrupted by {exc.signame} {exc.where}: no resume state saved")
        return EXIT_RESUMABLE
    except TrainingInterrupted as exc:
        saved = "resume state saved" if exc.saved else "resume state NOT saved (see above)"
        _log(f"interrupted by {exc.signame}: {saved} (epoch {exc.epoch}, batch {exc.batch})")
        return EXIT_RESUMABLE
    except UserError as exc:  # DriverError, bad data, a refused schema: one line
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # an optional extra missing here (minirocket: aeon): one line
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the environment's answer (no such file, disk full): one line
        print(f"{PROG}: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    finally:
        if signals is not None:
            signals.uninstall()
    # anything else is a bug: Python prints its traceback and exits 1
    _log(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
