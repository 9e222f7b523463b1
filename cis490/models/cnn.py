"""``cnn``: FCN or ResNet over the ``[channels, time]`` windows (Wang, Yan & Oates 2017).

Wang, Z., Yan, W., Oates, T. (2017), "Time series classification from scratch
with deep neural networks: A strong baseline", IJCNN 2017 (arXiv:1611.06455).

- ``arch = "fcn"`` (default): per entry of ``filters`` / ``kernels`` one
  ``Conv1d(same padding) -> BatchNorm1d -> ReLU`` block (128/256/128
  filters, kernels 8/5/3), global average pooling over time, a linear head.
- ``arch = "resnet"``: per entry of ``filters`` one residual block of
  ``len(kernels)`` conv-BN(-ReLU) layers (kernels 8/5/3), shortcut = 1x1 conv
  + BN where the width changes, else BN; ReLU after the sum; then global
  average pooling and a linear head. Wang et al.'s widths are 64/128/128.

"Same" padding as Keras, the paper's framework: ``k - 1`` zeros, the extra
one on the right for an even kernel. The convolutions have no bias (the
BatchNorm after each holds it). ``dropout`` > 0 adds a dropout before the
head (the paper has none). BatchNorm's running statistics are buffers of the
``state_dict``, so they are saved in the safetensors sidecar, restored with
the best weights, and used in eval mode for every prediction. Input channels:
values + missingness mask (``2C``).
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from cis490.models._torchbase import TorchModel
from cis490.common import InputError


class ConvBN(nn.Module):
    """``Conv1d(k, same) -> BatchNorm1d`` (and ReLU if ``relu``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, relu: bool = True):
        super().__init__()
        self.pad = ((kernel - 1) // 2, kernel // 2)
        self.conv = nn.Conv1d(c_in, c_out, kernel, bias=False)
        self.bn = nn.BatchNorm1d(c_out)
        self.relu = relu

    def forward(self, x):  # (B, c_in, T) -> (B, c_out, T)
        h = self.bn(self.conv(F.pad(x, self.pad)))
        return F.relu(h) if self.relu else h


class ResBlock(nn.Module):
    """Wang et al.'s residual block: conv-BN-ReLU layers, the last without ReLU, a
    shortcut (1x1 conv + BN when the width changes, else BN), ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...]):
        super().__init__()
        layers, d = [], c_in
        for i, k in enumerate(kernels):
            layers.append(ConvBN(d, c_out, k, relu=i < len(kernels) - 1))
            d = c_out
        self.layers = nn.Sequential(*layers)
        self.shortcut = ConvBN(c_in, c_out, 1, relu=False) if c_in != c_out else nn.BatchNorm1d(c_out)

    def forward(self, x):
        return F.relu(self.layers(x) + self.shortcut(x))


class CNNNet(nn.Module):
    def __init__(self, in_channels: int, n_classes: int, arch: str, filters: tuple[int, ...],
                 kernels: tuple[int, ...], dropout: float):
        super().__init__()
        blocks: list[nn.Module] = []
        d = in_channels
        if arch == "fcn":
            for f, k in zip(filters, kernels, strict=True):
                blocks.append(ConvBN(d, f, k))
                d = f
        elif arch == "resnet":
            for f in filters:
                blocks.append(ResBlock(d, f, kernels))
                d = f
        else:  # pragma: no cover - the config refuses it
            raise InputError(f"unknown cnn arch {arch!r}")
        self.blocks = nn.Sequential(*blocks)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(d, n_classes)

    def forward(self, x):  # (B, 2C, T)
        h = self.blocks(x)  # (B, F, T)
        return self.head(self.drop(h.mean(dim=2)))  # global average pooling -> (B, K)


class CNNModel(TorchModel):
    name = "cnn"
    kind = "sequence"

    def _build(self) -> nn.Module:
        c = self.config
        return CNNNet(self.in_channels, self.n_classes, c.arch, c.filters, c.kernels, c.dropout)


MODEL_CLASS = CNNModel
