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
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from cis490.common import InputError
from cis490.models import rules
from cis490.models.base import EpochRecord, FitReport, ProgressFn
from cis490.models.configs import TorchConfig

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


def _iter_batches(source: BatchSource, dev: torch.device) -> Iterator:
    """The batches of ``source`` in order, on ``dev``."""
    workers = loader_workers(dev)
    if workers == 0:
        items: Iterator = (source[b] for b in range(len(source)))
    else:
        # its own generator: a DataLoader draws its workers' base seed from the global RNG
        # otherwise, which would move dropout's draws and change the weights
        items = iter(torch.utils.data.DataLoader(
            source, batch_size=None, shuffle=False, num_workers=workers,
            pin_memory=dev.type == "cuda", prefetch_factor=2, persistent_workers=False,
            generator=torch.Generator().manual_seed(0)))
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


def predict_logits(net: nn.Module, prepare: Prepare, X, dev: torch.device | None = None
                   ) -> torch.Tensor:
    """Logits ``(n, n_classes)`` on the CPU, in fixed-size batches (eval mode, no grad)."""
    dev = dev or next(net.parameters()).device
    net.eval()
    n = X.shape[0]
    source = BatchSource(X, None, prepare, [np.arange(s, min(n, s + PREDICT_BATCH))
                                            for s in range(0, n, PREDICT_BATCH)])
    out = []
    with torch.inference_mode():
        for xb in _iter_batches(source, dev):
            out.append(net(xb).cpu())
    return torch.cat(out)


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
) -> tuple[nn.Module, FitReport]:
    """Train ``build()`` and return it holding its best-on-val weights."""
    with deterministic(cfg.threads):
        dev = device()
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = build().to(dev)  # initialised on the CPU: the same start on every device
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(class_weights, dtype=torch.float32,
                                                             device=dev))
        n = int(y_train.shape[0])
        plan = rules.plan_budget(n, cfg)
        total, warmup, epochs = plan.total_steps, plan.warmup_steps, plan.epochs
        y_t = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
        y_val_t = torch.from_numpy(np.asarray(y_val, dtype=np.int64))
        labels = rules.present_labels(y_val)  # one label set for every epoch
        stopper = rules.EarlyStopping(cfg.patience, ties_improve=True)  # counts checks
        best_state: dict[str, torch.Tensor] = {}
        best_epoch = 0
        history: list[EpochRecord] = []
        step = checks = 0
        loss_sum, loss_rows = 0.0, 0  # since the last check
        for epoch in range(1, epochs + 1):
            net.train()
            order = rng.permutation(n)
            # sorted within a batch: ascending rows, short reads from the shards
            parts = rules.epoch_batches(order, plan.steps_per_epoch)
            batches = len(parts)
            for b, (xb, yb) in enumerate(_iter_batches(BatchSource(X_train, y_t, prepare, parts), dev), 1):
                for group in opt.param_groups:
                    group["lr"] = rules.lr_at(step, total, warmup, cfg.lr)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(xb), yb)  # (B, K) vs (B,)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
                opt.step()
                step += 1
                loss_sum += float(loss.item()) * len(yb)
                loss_rows += len(yb)
                if on_step is not None:
                    on_step(epoch, epochs, b, batches)
            if not plan.is_check(epoch):
                continue
            checks += 1
            logits = predict_logits(net, prepare, X_val, dev)
            with torch.inference_mode():
                val_loss = float(loss_fn(logits.to(dev), y_val_t.to(dev)).item())
            pred = logits.argmax(dim=1).numpy()
            record = EpochRecord(epoch, epochs, loss_sum / loss_rows,
                                 rules.macro_f1(y_val, pred, n_classes, labels=labels),
                                 val_loss=val_loss, lr=float(opt.param_groups[0]["lr"]))
            loss_sum, loss_rows = 0.0, 0
            history.append(record)
            if stopper.update(checks, record.val_macro_f1):
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                best_epoch = epoch
            if on_epoch is not None:
                on_epoch(record)
            if stopper.should_stop(checks):
                break
        net.load_state_dict(best_state)
        net.cpu().eval()  # the model object lives on the CPU; predict moves it where it runs
    report = FitReport(
        epochs_run=history[-1].epoch, best_epoch=best_epoch,
        best_val_macro_f1=stopper.best_score, history=tuple(history), budget=plan.to_dict(),
    )
    return net, report
