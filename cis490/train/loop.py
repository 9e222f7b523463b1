"""The shared torch training loop (the seed's ``trainer/_loop.py``).

One loop for the five nets; the rules it applies live in
:mod:`cis490.train.rules` (numpy only, tested numerically):

- class-weighted cross-entropy, weights from the train slice only;
- AdamW; the learning rate is set before every step from ``rules.lr_at``
  (warmup over ``warmup_frac`` of all ``epochs * steps_per_epoch`` steps,
  then cosine to 0); gradients clipped to norm 1;
- after every epoch: val macro F1 over the classes present in ``y_val``
  (``rules.present_labels``, fixed once per fit: the report's definition);
  early stop after ``patience`` epochs without a strict improvement; the
  best-on-val weights are restored.

Determinism: inside :func:`deterministic` torch runs with a fixed intra-op
thread count and ``use_deterministic_algorithms(True)``; the weights are
initialised after ``torch.manual_seed(seed)`` and the batches drawn from
``numpy.random.default_rng(seed)``, so a run depends on nothing but
``(config, seed, data)``.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from cis490.models.base import EpochRecord, FitReport, ProgressFn
from cis490.models.configs import TorchConfig
from cis490.train import rules

__all__ = ["deterministic", "fit_torch", "predict_logits"]

PREDICT_BATCH = 1024
GRAD_CLIP = 1.0

Prepare = Callable[[np.ndarray], torch.Tensor]


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Fixed thread count and deterministic kernels; restores the old settings."""
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


def predict_logits(net: nn.Module, prepare: Prepare, X: np.ndarray) -> torch.Tensor:
    """Logits ``(n, n_classes)`` in fixed-size batches (eval mode, no grad)."""
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, X.shape[0], PREDICT_BATCH):
            out.append(net(prepare(X[start:start + PREDICT_BATCH])))
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
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = build()
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(class_weights, dtype=torch.float32))
        n = int(y_train.shape[0])
        batch = min(cfg.batch_size, n)
        total = cfg.epochs * math.ceil(n / batch)
        warmup = rules.warmup_steps(total, cfg.warmup_frac)
        y_t = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
        labels = rules.present_labels(y_val)  # one label set for every epoch
        stopper = rules.EarlyStopping(cfg.patience)
        best_state: dict[str, torch.Tensor] = {}
        history: list[EpochRecord] = []
        step = 0
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            order = rng.permutation(n)
            loss_sum = 0.0
            batches = math.ceil(n / batch)
            for b, start in enumerate(range(0, n, batch), 1):
                idx = np.sort(order[start:start + batch])  # sorted: cheap memmap reads
                for group in opt.param_groups:
                    group["lr"] = rules.lr_at(step, total, warmup, cfg.lr)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(prepare(X_train[idx])), y_t[idx])  # (B, K) vs (B,)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
                opt.step()
                step += 1
                loss_sum += float(loss.item()) * len(idx)
                if on_step is not None:
                    on_step(epoch, cfg.epochs, b, batches)
            pred = predict_logits(net, prepare, X_val).argmax(dim=1).numpy()
            record = EpochRecord(epoch, cfg.epochs, loss_sum / n,
                                 rules.macro_f1(y_val, pred, n_classes, labels=labels))
            history.append(record)
            if stopper.update(epoch, record.val_macro_f1):
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            if on_epoch is not None:
                on_epoch(record)
            if stopper.should_stop(epoch):
                break
        net.load_state_dict(best_state)
        net.eval()
    report = FitReport(
        epochs_run=len(history), best_epoch=stopper.best_epoch,
        best_val_macro_f1=stopper.best_score, history=tuple(history),
    )
    return net, report
