"""``transformer``: a small pre-norm Transformer encoder over the time steps.

Each step's ``2C`` inputs (values + mask) are projected to ``d_model``, a
learned position embedding (one per step, the window length is fixed) is
added, ``n_layers`` encoder layers (``n_heads`` heads, ``ff_dim`` wide, GELU)
follow, then a final LayerNorm, mean-pooling over time and a linear head.
"""

from __future__ import annotations

import torch
from torch import nn

from cis490.models._torchbase import TorchModel


class TransformerNet(nn.Module):
    def __init__(self, in_channels: int, n_steps: int, n_classes: int, d_model: int,
                 n_heads: int, n_layers: int, ff_dim: int, dropout: float):
        super().__init__()
        self.proj = nn.Linear(in_channels, d_model)
        self.pos = nn.Parameter(torch.randn(1, n_steps, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, ff_dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, x):  # (B, 2C, T)
        h = self.proj(x.transpose(1, 2)) + self.pos  # (B, T, D)
        h = self.norm(self.encoder(h))  # (B, T, D)
        return self.head(h.mean(dim=1))  # (B, K)


class TransformerModel(TorchModel):
    name = "transformer"
    kind = "sequence"

    def _build(self) -> nn.Module:
        c = self.config
        return TransformerNet(self.in_channels, self.input_shape["n_steps"], self.n_classes,
                              c.d_model, c.n_heads, c.n_layers, c.ff_dim, c.dropout)


MODEL_CLASS = TransformerModel
