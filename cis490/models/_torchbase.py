"""The torch half of the five nets: input preparation, fit, predict, weights.

Input to a net (built by the subclass's ``_build``):

- summary (``mlp``): ``(B, n_features)`` standardised, NaN -> 0;
- sequence (``cnn``/``gru``/``lstm``/``transformer``): ``(B, 2 * n_channels,
  n_steps)``: the standardised values (NaN -> 0) followed by the 0/1
  missingness mask of each channel, so a net can tell "missing" from "at
  the train mean" and learn to discount absent channels (netflow on degraded
  episodes, proc outside oracle mode).

The sidecar is safetensors of the ``state_dict`` with sorted keys and no
metadata; normalisation statistics live in the checkpoint JSON, not in it.
"""

from __future__ import annotations

import numpy as np
import safetensors.torch
import torch
from torch import nn

from cis490.models import loop
from cis490.models._array import ArrayModel, fit_normalisation, standardise

__all__ = ["TorchModel"]


class TorchModel(ArrayModel):
    sidecar_ext = ".safetensors"
    libraries = ("numpy", "torch", "safetensors")
    resumable = True

    net: nn.Module | None = None

    # -- subclass hook ---------------------------------------------------------

    def _build(self) -> nn.Module:
        """A freshly initialised net for this model's input shape and config."""
        raise NotImplementedError

    @property
    def in_channels(self) -> int:
        """Channels the sequence nets see: values + mask."""
        return 2 * self.input_shape["n_channels"]

    # -- ArrayModel hooks ------------------------------------------------------

    def _prepare(self, X: np.ndarray) -> torch.Tensor:
        z, mask = standardise(X, self.norm_mean, self.norm_std)
        if self.kind == "sequence":
            z = np.concatenate([z, mask.astype(np.float32)], axis=1)  # (B, 2C, T)
        return torch.from_numpy(np.ascontiguousarray(z))

    def _fit(self, X_train, y_train, X_val, y_val, seed, on_epoch, on_step=None):
        self.norm_mean, self.norm_std = fit_normalisation(X_train)  # train only
        self.net, report = loop.fit_torch(
            self._build, self._prepare, X_train, y_train, X_val, y_val,
            cfg=self.config, class_weights=self.class_weights,
            n_classes=self.n_classes, seed=seed, on_epoch=on_epoch, on_step=on_step,
            resume=self.resume,
        )
        return report

    def _predict(self, X: np.ndarray) -> np.ndarray:
        with loop.deterministic(self.config.threads):
            dev = loop.device()
            self.net.to(dev)
            try:
                logits = loop.predict_logits(self.net, self._prepare, X, dev)
            finally:
                self.net.cpu()
            return torch.softmax(logits, dim=1).numpy().astype(np.float32)

    def _sidecar_bytes(self) -> bytes:
        state = self.net.state_dict()
        tensors = {k: state[k].detach().cpu().contiguous().clone() for k in sorted(state)}
        return safetensors.torch.save(tensors)

    def _load_sidecar(self, data: bytes) -> None:
        with torch.random.fork_rng(devices=[]):  # building must not move the global RNG
            self.net = self._build()
        self.net.load_state_dict(safetensors.torch.load(data), strict=True)
        self.net.eval()
