"""``transformer``: TST, a Transformer encoder over the time steps (Zerveas et al. 2021).

Zerveas, G., Jayaraman, S., Patel, D., Bhamidipaty, A., Eickhoff, C. (2021),
"A Transformer-based Framework for Multivariate Time Series Representation
Learning", KDD 2021 (arXiv:2010.02803); its classifier trained from scratch
(no unsupervised pre-training), as in the authors' ``mvts_transformer``:

- each step's ``2C`` inputs (values + mask) are projected to ``d_model`` and
  scaled by ``sqrt(d_model)``; a learnable positional encoding (one vector per
  step, initialised uniform in +-0.02; the window length is fixed) is added,
  then dropout;
- ``n_layers`` post-norm encoder layers: ``x + Dropout(SelfAttention(x))``,
  norm, ``x + Dropout(FF(x))`` (``ff_dim`` wide, GELU, dropout inside), norm.
  ``norm = "batch"``: BatchNorm1d over the ``d_model`` features (statistics
  over batch and steps), TST's choice; ``"layer"``: LayerNorm;
- GELU and dropout on the encoder's output, then ``pool = "flatten"``: all
  steps' vectors concatenated into the linear head (TST), or ``"mean"``:
  averaged over time.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from cis490.models._torchbase import TorchModel


class _FeatureNorm(nn.Module):
    """BatchNorm1d over the last axis of ``(B, T, D)`` (statistics over B and T)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(d_model)

    def forward(self, x):
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class EncoderLayer(nn.Module):
    """A post-norm Transformer encoder layer with BatchNorm or LayerNorm (TST)."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float, norm: str):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.ff1 = nn.Linear(d_model, ff_dim)
        self.ff2 = nn.Linear(ff_dim, d_model)
        self.drop, self.drop1, self.drop2 = (nn.Dropout(dropout) for _ in range(3))
        make = _FeatureNorm if norm == "batch" else nn.LayerNorm
        self.norm1, self.norm2 = make(d_model), make(d_model)

    def forward(self, x):  # (B, T, D)
        a, _ = self.attn(x, x, x, need_weights=False)
        x = self.norm1(x + self.drop1(a))
        f = self.ff2(self.drop(F.gelu(self.ff1(x))))
        return self.norm2(x + self.drop2(f))


class TransformerNet(nn.Module):
    def __init__(self, in_channels: int, n_steps: int, n_classes: int, d_model: int,
                 n_heads: int, n_layers: int, ff_dim: int, dropout: float, norm: str, pool: str):
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.proj = nn.Linear(in_channels, d_model)
        self.pos = nn.Parameter(torch.empty(1, n_steps, d_model).uniform_(-0.02, 0.02))
        self.pos_drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, ff_dim, dropout, norm)
                                    for _ in range(n_layers))
        self.out_drop = nn.Dropout(dropout)
        self.pool = pool
        self.head = nn.Linear(d_model * (n_steps if pool == "flatten" else 1), n_classes)

    def forward(self, x):  # (B, 2C, T)
        h = self.pos_drop(self.proj(x.transpose(1, 2)) * self.scale + self.pos)  # (B, T, D)
        for layer in self.layers:
            h = layer(h)
        h = self.out_drop(F.gelu(h))
        h = h.flatten(1) if self.pool == "flatten" else h.mean(dim=1)
        return self.head(h)  # (B, K)


class TransformerModel(TorchModel):
    name = "transformer"
    kind = "sequence"

    def _build(self) -> nn.Module:
        c = self.config
        return TransformerNet(self.in_channels, self.input_shape["n_steps"], self.n_classes,
                              c.d_model, c.n_heads, c.n_layers, c.ff_dim, c.dropout, c.norm,
                              c.pool)


MODEL_CLASS = TransformerModel
