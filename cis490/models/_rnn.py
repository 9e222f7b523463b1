"""The recurrent net shared by ``gru`` and ``lstm``.

The window is read as a sequence of ``n_steps`` vectors (values + mask of
every channel, ``2C`` wide). The head sees the mean of the outputs over time
concatenated with the output at the last step (both directions when
``bidirectional``).
"""

from __future__ import annotations

import torch
from torch import nn

from cis490.models._torchbase import TorchModel


class RecurrentNet(nn.Module):
    def __init__(self, cell: type[nn.RNNBase], in_channels: int, n_classes: int, hidden: int,
                 n_layers: int, bidirectional: bool, dropout: float):
        super().__init__()
        self.rnn = cell(in_channels, hidden, num_layers=n_layers, batch_first=True,
                        bidirectional=bidirectional, dropout=dropout if n_layers > 1 else 0.0)
        width = hidden * (2 if bidirectional else 1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x):  # (B, 2C, T)
        out, _ = self.rnn(x.transpose(1, 2))  # (B, T, W)
        feat = torch.cat([out.mean(dim=1), out[:, -1]], dim=1)  # (B, 2W)
        return self.head(self.drop(feat))  # (B, K)


class RecurrentModel(TorchModel):
    kind = "sequence"
    cell: type[nn.RNNBase] = nn.GRU

    def _build(self) -> nn.Module:
        c = self.config
        return RecurrentNet(self.cell, self.in_channels, self.n_classes, c.hidden,
                            c.n_layers, c.bidirectional, c.dropout)
