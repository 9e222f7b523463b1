"""``mlp``: a multilayer perceptron on the summary features (NN parity with gbt).

``Linear -> GELU -> Dropout`` per entry of ``hidden``, then a linear head.
Missing features: standardised, then NaN -> 0 (the train mean); no mask
indicators for summary models (the seed's v2 enhancement).
"""

from __future__ import annotations

from torch import nn

from cis490.models._torchbase import TorchModel


class MLPNet(nn.Module):
    def __init__(self, n_features: int, n_classes: int, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        d = n_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.GELU(), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):  # (B, F) -> (B, K)
        return self.layers(x)


class MLPModel(TorchModel):
    name = "mlp"
    kind = "summary"

    def _build(self) -> nn.Module:
        c = self.config
        return MLPNet(self.input_shape["n_features"], self.n_classes, c.hidden, c.dropout)


MODEL_CLASS = MLPModel
