"""``lstm``: an LSTM over the window's time steps (see ``cis490.models._rnn``)."""

from __future__ import annotations

from torch import nn

from cis490.models._rnn import RecurrentModel


class LSTMModel(RecurrentModel):
    name = "lstm"
    cell = nn.LSTM


MODEL_CLASS = LSTMModel
