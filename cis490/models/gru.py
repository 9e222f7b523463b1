"""``gru``: a GRU over the window's time steps (see ``cis490.models._rnn``)."""

from __future__ import annotations

from torch import nn

from cis490.models._rnn import RecurrentModel


class GRUModel(RecurrentModel):
    name = "gru"
    cell = nn.GRU


MODEL_CLASS = GRUModel
