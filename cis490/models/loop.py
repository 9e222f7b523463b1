"""The shared torch training loop (the seed's ``trainer/_loop.py``).

One loop for the five nets; the rules it applies live in
:mod:`cis490.models.rules` (numpy only, tested numerically):

- class-weighted cross-entropy, weights from the train slice only;
- the budget from ``rules.plan_budget(n_train, cfg)``: batch size, epochs,
  total optimizer steps and the validation-check schedule (a check every
  epoch, or every few epochs when an epoch is short);
- AdamW; the learning rate is set before every step from ``rules.lr_at``
  (warmup over ``warmup_frac`` of all ``total_steps``, then cosine to 0);
  gradients clipped to norm 1;
- at every check: val macro F1 over the classes present in ``y_val``
  (``rules.present_labels``, fixed once per fit: the report's definition)
  (and the class-weighted val loss, for the curves); early stop after
  ``patience`` checks without an improvement of the F1 (higher, or equal:
  of equal checks the later one is kept, ``rules.EarlyStopping``); the
  best-on-val weights (BatchNorm statistics included) are restored.

Determinism: inside :func:`deterministic` torch runs with a fixed intra-op
thread count and ``use_deterministic_algorithms(True)``; the weights are
initialised after ``torch.manual_seed(seed)`` and the batches drawn from
``numpy.random.default_rng(seed)``, so a run depends on nothing but
``(config, seed, data)``.

Streaming: ``X_train`` / ``X_val`` may be lazy on-disk views (the loaders'
``WindowArray`` / ``RowArray``). Every epoch's batches are fixed up front
from the seed (index lists, sorted within a batch for short reads); a
:class:`BatchSource` reads and prepares batch ``b`` when asked, so the same
bytes come out whether the batches are read in this process or by
DataLoader workers, on a CPU or a GPU.

Device: :func:`device` is CUDA when torch sees one (``CIS490_DEVICE=cpu``
forces the CPU), else the CPU. On CUDA the batches come from a
``torch.utils.data.DataLoader`` with worker processes and pinned memory and
are copied with ``non_blocking=True``; kernels run in float32 (no AMP: the
same-seed-same-bytes rule is kept per device). A GPU run gives other bytes
than a CPU run; the checkpoint then records the device. The worker path is
exercised on the CPU by ``CIS490_LOADER_WORKERS`` (tests: same bytes).

Resume (``resume=ResumeHook``, docs/MODELS.md "Resuming"): after every epoch, and
after the batch during which a signal asked it to stop, the loop hands the driver
its whole state (:class:`_TorchRun`: weights, AdamW state, step counter and the
last learning rate, numpy's bit-generator state from before the epoch's
permutation, torch's RNG state, the loss sums since the last check, early
stopping, the best weights, the history) and, given one, continues from it: the
epoch's permutation is drawn again from the saved generator state and its first
``batch`` batches are skipped, so the rest of the run draws and computes exactly
what an uninterrupted run would (tested: byte-identical checkpoints).
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any, Callable, Iterator

import numpy as np
import safetensors.torch
import torch
from torch import nn

from cis490.common import InputError
from cis490.models import rules
from cis490.models.base import EpochRecord, FitReport, ProgressFn
from cis490.models.configs import TorchConfig
from cis490.models.resume import ResumeHook, ResumeState, TrainingInterrupted

__all__ = ["BatchSource", "device", "deterministic", "fit_torch", "loader_workers", "predict_logits"]

PREDICT_BATCH = 256
GRAD_CLIP = 1.0

Prepare = Callable[[np.ndarray], torch.Tensor]


def device() -> torch.device:
    """Where the nets train and predict: ``CIS490_DEVICE`` (cpu/cuda), else CUDA if present."""
    want = os.environ.get("CIS490_DEVICE", "").strip().lower()
    if want not in ("", "auto", "cpu", "cuda"):
        raise InputError(f"CIS490_DEVICE={want!r}: use cpu, cuda or auto")
    if want == "cuda" and not torch.cuda.is_available():
        raise InputError("CIS490_DEVICE=cuda but torch sees no CUDA device")
    if want in ("", "auto"):
        want = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(want)


def loader_workers(dev: torch.device) -> int:
    """DataLoader worker processes: ``CIS490_LOADER_WORKERS``, else 4 (capped by the CPUs)
    on CUDA and 0 (read in this process) on the CPU, where workers would only compete
    with the training threads."""
    raw = os.environ.get("CIS490_LOADER_WORKERS", "").strip()
    if raw:
        if not raw.isdigit():
            raise InputError(f"CIS490_LOADER_WORKERS={raw!r}: use a whole number >= 0")
        return int(raw)
    return min(4, max(0, (os.cpu_count() or 1) - 1)) if dev.type == "cuda" else 0


class BatchSource(torch.utils.data.Dataset):
    """Batch ``b`` of a fixed list of index arrays, read and prepared on demand."""

    def __init__(self, X, y: torch.Tensor | None, prepare: "Prepare", batches: list[np.ndarray]):
        self.X, self.y, self.prepare, self.batches = X, y, prepare, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int):
        idx = self.batches[b]
        xb = self.prepare(self.X[idx])
        return xb if self.y is None else (xb, self.y[idx])


_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGUSR1") if hasattr(signal, n))


def _ignore_stop_signals(_worker_id: int) -> None:
    """``worker_init_fn`` of a resumable fit's DataLoader workers: they ignore SIGTERM and
    SIGUSR1. Those reach the whole process group (the fleet's worker signals the group),
    and it is the driver that finishes its batch and saves its state; a reader killed by
    them would end the fit with an error instead. The workers are started with the two
    blocked (:func:`_stop_signals_blocked`), so one that arrives while a worker starts up
    waits, and is discarded here."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


@contextlib.contextmanager
def _stop_signals_blocked(shield: bool) -> Iterator[None]:
    """SIGTERM / SIGUSR1 blocked in this thread while it starts DataLoader workers, which
    inherit the mask (a signal meanwhile is delivered to the driver when it ends)."""
    if not shield or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _iter_batches(source: BatchSource, dev: torch.device, shield: bool = False) -> Iterator:
    """The batches of ``source`` in order, on ``dev`` (``shield``: the DataLoader workers
    ignore the stop signals, see :func:`_ignore_stop_signals`)."""
    workers = loader_workers(dev)
    if workers == 0:
        items: Iterator = (source[b] for b in range(len(source)))
    else:
        # its own generator: a DataLoader draws its workers' base seed from the global RNG
        # otherwise, which would move dropout's draws and change the weights
        loader = torch.utils.data.DataLoader(
            source, batch_size=None, shuffle=False, num_workers=workers,
            pin_memory=dev.type == "cuda", prefetch_factor=2, persistent_workers=False,
            generator=torch.Generator().manual_seed(0),
            worker_init_fn=_ignore_stop_signals if shield else None)
        with _stop_signals_blocked(shield):
            items = iter(loader)  # starts the workers
    for item in items:
        if isinstance(item, (tuple, list)):
            yield tuple(t.to(dev, non_blocking=True) for t in item)
        else:
            yield item.to(dev, non_blocking=True)


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Fixed thread count and deterministic kernels; restores the old settings."""
    # cuBLAS needs a fixed workspace for deterministic matmuls (read when CUDA starts)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def predict_logits(net: nn.Module, prepare: Prepare, X, dev: torch.device | None = None,
                   shield: bool = False) -> torch.Tensor:
    """Logits ``(n, n_classes)`` on the CPU, in fixed-size batches (eval mode, no grad)."""
    dev = dev or next(net.parameters()).device
    net.eval()
    n = X.shape[0]
    source = BatchSource(X, None, prepare, [np.arange(s, min(n, s + PREDICT_BATCH))
                                            for s in range(0, n, PREDICT_BATCH)])
    out = []
    with torch.inference_mode():
        for xb in _iter_batches(source, dev, shield):
            out.append(net(xb).cpu())
    return torch.cat(out)


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True).contiguous()


def _record_dict(r: EpochRecord) -> dict[str, Any]:
    return {"epoch": r.epoch, "epochs": r.epochs, "loss": r.loss, "val_macro_f1": r.val_macro_f1,
            "val_loss": r.val_loss, "lr": r.lr}


def _record(d: dict[str, Any]) -> EpochRecord:
    for key in ("epoch", "epochs"):
        if not isinstance(d[key], int):
            raise TypeError(f"history {key} {d[key]!r} is not an integer")
    for key in ("loss", "val_macro_f1", "val_loss", "lr"):
        if not (d[key] is None and key in ("val_loss", "lr")) and not isinstance(d[key], float):
            raise TypeError(f"history {key} {d[key]!r} is not a number")
    return EpochRecord(d["epoch"], d["epochs"], d["loss"], d["val_macro_f1"], val_loss=d["val_loss"],
                       lr=d["lr"])


class _TorchRun:
    """The mutable state of one fit, exactly what a resume state holds.

    Position: ``epoch`` is the epoch in progress (from 1), ``batch`` its batches done;
    ``done`` once the last epoch or early stopping ended the training. Built fresh it is
    the start of a fit: ``torch.manual_seed(seed)``, the generator, the net (initialised
    on the CPU, then moved), AdamW, in that order (the order of the draws)."""

    def __init__(self, build: Callable[[], nn.Module], seed: int, dev: torch.device, cfg: TorchConfig):
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.net = build().to(dev)  # initialised on the CPU: the same start on every device
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.dev = dev
        self.stopper = rules.EarlyStopping(cfg.patience, ties_improve=True)  # counts checks
        self.best_state: dict[str, torch.Tensor] = {}
        self.best_epoch = 0
        self.history: list[EpochRecord] = []
        self.step = self.checks = 0
        self.loss_sum, self.loss_rows = 0.0, 0  # since the last check
        self.epoch, self.batch, self.done = 1, 0, False

    def state(self, plan: rules.Budget, epoch: int, batch: int, rng_state: dict, done: bool) -> ResumeState:
        """The resume state at ``(epoch, batch)``; ``rng_state``: the generator's state before
        ``epoch``'s permutation (drawn again on resume)."""
        tensors = {f"net.{k}": _cpu_copy(v) for k, v in self.net.state_dict().items()}
        tensors.update({f"best.{k}": _cpu_copy(v) for k, v in self.best_state.items()})
        opt_scalars: dict[str, Any] = {}
        for i, per_param in self.opt.state_dict()["state"].items():
            for key, value in per_param.items():
                if torch.is_tensor(value):
                    tensors[f"opt.{i}.{key}"] = _cpu_copy(value)
                else:
                    opt_scalars[f"{i}.{key}"] = value
        tensors["rng.torch"] = torch.get_rng_state()
        if self.dev.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.dev)
        meta = {
            "loop": "torch", "plan": plan.to_dict(), "epoch": epoch, "batch": batch, "done": done,
            "step": self.step, "checks": self.checks, "loss_sum": self.loss_sum,
            "loss_rows": self.loss_rows, "lr": float(self.opt.param_groups[0]["lr"]),
            "numpy_rng": rng_state, "opt_scalars": opt_scalars,
            "stopper": {"best_epoch": self.stopper.best_epoch, "best_score": self.stopper.best_score},
            "best_epoch": self.best_epoch, "history": [_record_dict(r) for r in self.history],
        }
        return ResumeState(meta, {"tensors": safetensors.torch.save(tensors)})

    def restore(self, state: ResumeState, plan: rules.Budget) -> None:
        """Continue from ``state`` (raises on anything that does not fit this fit)."""
        m = state.meta
        if m.get("loop") != "torch":
            raise ValueError(f"a {m.get('loop')!r} state, not the torch loop's")
        if m["plan"] != plan.to_dict():
            raise ValueError(f"planned for another budget ({m['plan']})")
        ints = ("epoch", "batch", "step", "checks", "loss_rows", "best_epoch")
        if not all(isinstance(m[k], int) and not isinstance(m[k], bool) and m[k] >= 0 for k in ints):
            raise TypeError("a counter is not a non-negative integer")
        if not isinstance(m["done"], bool) or not isinstance(m["loss_sum"], float):
            raise TypeError("done / loss_sum of the wrong type")
        if not m["done"] and not (1 <= m["epoch"] <= plan.epochs and m["batch"] <= plan.steps_per_epoch):
            raise ValueError(f"position epoch {m['epoch']}, batch {m['batch']} is outside the plan")
        if m["step"] != (m["epoch"] - 1) * plan.steps_per_epoch + m["batch"]:
            raise ValueError(f"step {m['step']} does not match epoch {m['epoch']}, batch {m['batch']}")
        tensors = safetensors.torch.load(state.blobs["tensors"])
        net = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.net.load_state_dict(net, strict=True)
        if best:
            missing = set(self.net.state_dict()) ^ set(best)
            if missing:
                raise ValueError(f"best weights do not match the net ({sorted(missing)[:3]})")
        n_params = sum(len(g["params"]) for g in self.opt.param_groups)
        per_param: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                i, key = k[4:].split(".", 1)
                per_param.setdefault(int(i), {})[key] = v
        for k, v in m["opt_scalars"].items():
            i, key = k.split(".", 1)
            per_param.setdefault(int(i), {})[key] = v
        if any(not 0 <= i < n_params for i in per_param):
            raise ValueError("optimizer state of a parameter the net does not have")
        sd = self.opt.state_dict()
        sd["state"] = per_param
        self.opt.load_state_dict(sd)
        for group in self.opt.param_groups:
            group["lr"] = float(m["lr"])
        torch.set_rng_state(tensors["rng.torch"])
        if self.dev.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.dev)
        self.rng.bit_generator.state = m["numpy_rng"]
        best_score = m["stopper"]["best_score"]
        if not isinstance(best_score, float) or not isinstance(m["stopper"]["best_epoch"], int):
            raise TypeError("early-stopping state of the wrong type")
        self.stopper.best_epoch, self.stopper.best_score = m["stopper"]["best_epoch"], best_score
        self.best_state = {k: v.to(self.dev) for k, v in best.items()}
        self.history = [_record(d) for d in m["history"]]
        self.best_epoch, self.step, self.checks = m["best_epoch"], m["step"], m["checks"]
        self.loss_sum, self.loss_rows = m["loss_sum"], m["loss_rows"]
        self.epoch, self.batch, self.done = m["epoch"], m["batch"], m["done"]


def fit_torch(
    build: Callable[[], nn.Module],
    prepare: Prepare,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    cfg: TorchConfig,
    class_weights: np.ndarray,
    n_classes: int,
    seed: int,
    on_epoch: ProgressFn | None = None,
    on_step: Callable[[int, int, int, int], None] | None = None,
    resume: ResumeHook | None = None,
) -> tuple[nn.Module, FitReport]:
    """Train ``build()`` and return it holding its best-on-val weights.

    With ``resume``: continue from ``resume.state`` when it applies, hand every epoch's
    state to ``resume.save``, and stop with :class:`TrainingInterrupted` after the batch
    during which ``resume.stop()`` says so (its state saved first)."""
    with deterministic(cfg.threads):
        dev = device()
        n = int(y_train.shape[0])
        plan = rules.plan_budget(n, cfg)
        run = _TorchRun(build, seed, dev, cfg)
        if resume is not None and resume.state is not None:
            try:
                run.restore(resume.state, plan)
            except Exception as exc:  # a state this fit cannot continue: from scratch, said once
                resume.rejected(f"cannot continue from it ({type(exc).__name__}: {exc})")
                run = _TorchRun(build, seed, dev, cfg)
            else:
                resume.restored(run.epoch, run.batch, run.step, tuple(run.history))
        net, opt, rng, stopper = run.net, run.opt, run.rng, run.stopper
        loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(class_weights, dtype=torch.float32,
                                                             device=dev))
        total, warmup, epochs = plan.total_steps, plan.warmup_steps, plan.epochs
        y_t = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
        y_val_t = torch.from_numpy(np.asarray(y_val, dtype=np.int64))
        labels = rules.present_labels(y_val)  # one label set for every epoch
        shield = resume is not None
        if resume is not None:
            resume.begin()
        epoch, skip = run.epoch, run.batch
        while not run.done:
            net.train()
            rng_before = rng.bit_generator.state if resume is not None else None
            order = rng.permutation(n)
            # sorted within a batch: ascending rows, short reads from the shards
            parts = rules.epoch_batches(order, plan.steps_per_epoch)
            batches = len(parts)
            source = BatchSource(X_train, y_t, prepare, parts[skip:])
            for b, (xb, yb) in enumerate(_iter_batches(source, dev, shield), skip + 1):
                for group in opt.param_groups:
                    group["lr"] = rules.lr_at(run.step, total, warmup, cfg.lr)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(xb), yb)  # (B, K) vs (B,)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
                opt.step()
                run.step += 1
                run.loss_sum += float(loss.item()) * len(yb)
                run.loss_rows += len(yb)
                if on_step is not None:
                    on_step(epoch, epochs, b, batches)
                if resume is not None and (signame := resume.stop()) is not None:
                    saved = resume.save(run.state(plan, epoch, b, rng_before, False))
                    raise TrainingInterrupted(signame, epoch, b, saved)
            skip = 0
            stop = False
            if plan.is_check(epoch):
                run.checks += 1
                # (the plain call without --resume-dir: predict_logits(net, prepare, X, dev))
                logits = (predict_logits(net, prepare, X_val, dev, shield=True) if shield
                          else predict_logits(net, prepare, X_val, dev))
                with torch.inference_mode():
                    val_loss = float(loss_fn(logits.to(dev), y_val_t.to(dev)).item())
                pred = logits.argmax(dim=1).numpy()
                record = EpochRecord(epoch, epochs, run.loss_sum / run.loss_rows,
                                     rules.macro_f1(y_val, pred, n_classes, labels=labels),
                                     val_loss=val_loss, lr=float(opt.param_groups[0]["lr"]))
                run.loss_sum, run.loss_rows = 0.0, 0
                run.history.append(record)
                if stopper.update(run.checks, record.val_macro_f1):
                    run.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                    run.best_epoch = epoch
                if on_epoch is not None:
                    on_epoch(record)
                stop = stopper.should_stop(run.checks)
            run.done = stop or epoch == epochs
            if resume is not None:
                saved = resume.save(run.state(plan, epoch + 1, 0, rng.bit_generator.state, run.done))
                if not run.done and (signame := resume.stop()) is not None:
                    raise TrainingInterrupted(signame, epoch + 1, 0, saved)
            epoch += 1
        net.load_state_dict(run.best_state)
        net.cpu().eval()  # the model object lives on the CPU; predict moves it where it runs
    history = run.history
    report = FitReport(
        epochs_run=history[-1].epoch, best_epoch=run.best_epoch,
        best_val_macro_f1=stopper.best_score, history=tuple(history), budget=plan.to_dict(),
    )
    return net, report
