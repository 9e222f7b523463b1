"""``cnn``: a 1D convolutional net over the ``[channels, time]`` windows.

``n_layers`` blocks of ``Conv1d(kernel_size, same padding) -> GELU ->
Dropout`` (``hidden`` filters), then mean- and max-pooling over time,
concatenated, and a linear head. Input channels: values + missingness mask.
"""

from __future__ import annotations

import torch
from torch import nn

from cis490.models._torchbase import TorchModel


class CNNNet(nn.Module):
    def __init__(self, in_channels: int, n_classes: int, hidden: int, kernel_size: int,
                 n_layers: int, dropout: float):
        super().__init__()
        blocks: list[nn.Module] = []
        d = in_channels
        for _ in range(n_layers):
            blocks += [nn.Conv1d(d, hidden, kernel_size, padding=kernel_size // 2),
                       nn.GELU(), nn.Dropout(dropout)]
            d = hidden
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(2 * hidden, n_classes)

    def forward(self, x):  # (B, 2C, T)
        h = self.blocks(x)  # (B, H, T')
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)  # (B, 2H)
        return self.head(pooled)  # (B, K)


class CNNModel(TorchModel):
    name = "cnn"
    kind = "sequence"

    def _build(self) -> nn.Module:
        c = self.config
        return CNNNet(self.in_channels, self.n_classes, c.hidden, c.kernel_size,
                      c.n_layers, c.dropout)


MODEL_CLASS = CNNModel
