"""The recurrent net shared by ``gru`` and ``lstm``.

The window is read as a sequence of ``n_steps`` vectors (values + mask of
every channel, ``2C`` wide) by ``n_layers`` stacked layers (dropout between
them), in both directions when ``bidirectional``. The head sees the mean of
the top layer's outputs over time concatenated with its last states: the
forward direction's after the last step and, when bidirectional, the
backward direction's after the first step (its own last). Defaults and the
reasons for them: ``cis490.models.configs.GRUConfig``, docs/MODELS.md.
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
        self.hidden, self.bidirectional = hidden, bidirectional
        width = hidden * (2 if bidirectional else 1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x):  # (B, 2C, T)
        out, _ = self.rnn(x.transpose(1, 2))  # (B, T, W)
        if self.bidirectional:  # each direction's state after its last step
            last = torch.cat([out[:, -1, :self.hidden], out[:, 0, self.hidden:]], dim=1)
        else:
            last = out[:, -1]
        feat = torch.cat([out.mean(dim=1), last], dim=1)  # (B, 2W)
        return self.head(self.drop(feat))  # (B, K)


class RecurrentModel(TorchModel):
    kind = "sequence"
    cell: type[nn.RNNBase] = nn.GRU

    def _build(self) -> nn.Module:
        c = self.config
        return RecurrentNet(self.cell, self.in_channels, self.n_classes, c.hidden,
                            c.n_layers, c.bidirectional, c.dropout)
