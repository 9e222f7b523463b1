"""Hyper-parameter schemas of the seven models, importable without torch/xgboost.

Each config dataclass *is* its model's hyper schema: the manifest reload
validates every ``hyper`` key and value type against these fields (so a typo
fails at reload, not hours later at training time) through the job kinds
that ``cis490.kinds`` registers with the coordinator, and the training
driver does the same with the ``--hyper key=JSON`` arguments it is given
(:func:`validate_hyper`; the validator itself is ``cis490.common.validate_config``).
The models themselves (``cis490.models.<name>``) import the heavy libraries;
this module must not (stdlib and ``cis490.common`` only).

Type rules of a hyper value (JSON types, as they come from TOML or the
command line): an ``int`` field takes an integer (not a bool); a ``float``
field takes an integer or a float; a ``bool`` field takes only a bool; a
``tuple[int, ...]`` field takes a list of integers. Every error is a
:class:`HyperError` (a ``ValueError``) whose message names the key.

The nets' training budget (``epochs``, ``batch_size``, ``min_steps``,
``min_check_steps``, ``patience``) is turned into batches, epochs and
validation checks by ``cis490.models.rules.plan_budget`` (docs/MODELS.md,
"The training budget"). The architectures name their source in their
config's docstring.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from cis490.common import HyperError, parse_hyper_args, validate_config

__all__ = [
    "CONFIGS",
    "MODES",
    "SEQUENCE_MODELS",
    "SUMMARY_MODELS",
    "HyperError",
    "config_from_dict",
    "config_to_dict",
    "parse_hyper_args",
    "validate_hyper",
]




@dataclass(frozen=True)
class TrainConfig:
    """Fields shared by every model's training loop."""

    epochs: int = 60
    patience: int = 8
    class_weight_clip: float = 10.0
    window_s: int = 0  # 0: use the data's window spec as built
    # Intra-op threads (torch) / nthread (xgboost). Fixed, because the
    # float summation order - hence the checkpoint bytes - depends on it.
    threads: int = 1

    def __post_init__(self) -> None:
        _check_ranges(self)


@dataclass(frozen=True)
class GBTConfig(TrainConfig):
    """XGBoost ``hist`` on summary features; ``epochs`` = max boosting rounds.

    ``patience`` counts boosting rounds here: a round moves the model far less
    than an epoch of SGD, so the default waits longer than the nets' 8.
    """

    epochs: int = 300
    patience: int = 20
    max_depth: int = 6
    learning_rate: float = 0.1
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0


@dataclass(frozen=True)
class TorchConfig(TrainConfig):
    """Fields of the five nets: the training budget and the optimiser.

    The budget counts optimizer steps (``cis490.models.rules.plan_budget``):

    - ``batch_size``: 0 (default) = automatic, ``min(256, max(8, n_train // 64))``
      (capped at ``n_train``), so a train set of up to 512 windows gets batches
      of 8, one of 16 384 or more full batches of 256, and one in between 64
      batches an epoch; a positive value is used as given (at most ``n_train``).
    - ``epochs``: the least number of passes over train; ``min_steps``: the
      least number of optimizer steps. The run has
      ``max(epochs, ceil(min_steps / steps_per_epoch))`` epochs (rounded up to
      whole checks), so 40 train windows get ``min_steps`` steps while ~2 M
      windows get ``epochs`` passes of full batches. ``min_steps = 0`` gives
      exactly ``epochs`` (the seed's rule; its full-scale runs used 60).
    - ``min_check_steps``: a validation check (early stopping, best-weights
      selection, one history record) ends every epoch, or, when an epoch has
      fewer steps than this, every ``ceil(min_check_steps / steps_per_epoch)``
      epochs. ``patience`` counts checks; 0 checks every epoch.
    """

    epochs: int = 10
    batch_size: int = 0
    min_steps: int = 600
    min_check_steps: int = 25
    lr: float = 3e-3
    weight_decay: float = 1e-2
    dropout: float = 0.1
    warmup_frac: float = 0.05


@dataclass(frozen=True)
class MLPConfig(TorchConfig):
    epochs: int = 30
    hidden: tuple[int, ...] = (256, 128)


CNN_ARCHS = ("fcn", "resnet")


@dataclass(frozen=True)
class CNNConfig(TorchConfig):
    """``arch = "fcn"``: the Fully Convolutional Network of Wang, Yan & Oates (2017),
    "Time series classification from scratch with deep neural networks: a strong
    baseline" (IJCNN 2017, arXiv:1611.06455): one ``Conv1d(same) -> BatchNorm ->
    ReLU`` block per entry of ``filters`` / ``kernels`` (128/256/128 filters,
    kernels 8/5/3), global average pooling over time, a linear head. No
    dropout in the paper (``dropout`` > 0 adds one before the head).

    ``arch = "resnet"``: the same paper's ResNet: one residual block per entry
    of ``filters`` (Wang et al.: 64/128/128; set ``filters = [64, 128, 128]``),
    each ``len(kernels)`` conv-BN-ReLU layers (kernels 8/5/3, the last ReLU
    after the shortcut sum), the shortcut a 1x1 conv + BN where the width
    changes (else BN); global average pooling, linear head.
    """

    arch: str = "fcn"
    filters: tuple[int, ...] = (128, 256, 128)
    kernels: tuple[int, ...] = (8, 5, 3)
    dropout: float = 0.0
    lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch not in CNN_ARCHS:
            raise HyperError(f"hyper 'arch': {self.arch!r} is not one of {', '.join(CNN_ARCHS)}")
        if self.arch == "fcn" and len(self.filters) != len(self.kernels):
            raise HyperError(f"hyper 'kernels': fcn needs one kernel per entry of filters "
                             f"({len(self.filters)}), got {len(self.kernels)}")


@dataclass(frozen=True)
class GRUConfig(TorchConfig):
    """A bidirectional GRU (Cho et al. 2014, "Learning phrase representations using RNN
    encoder-decoder for statistical machine translation") over the time steps; the head
    sees the mean of the top layer's outputs over time beside its last states (forward
    after the last step, backward after the first). Reasons (docs/MODELS.md, "The
    architectures"): both directions, so that the state the head reads has seen every
    step from either end; mean + last states, because a last state alone carries little
    of the early steps of a 150-step series and the mean keeps evidence from any step;
    one layer, because a second one doubled the cost (demo jobs 9 -> 17 s) without
    helping on the public datasets."""

    hidden: int = 64
    n_layers: int = 1
    bidirectional: bool = True


@dataclass(frozen=True)
class LSTMConfig(TorchConfig):
    """A bidirectional LSTM (Hochreiter & Schmidhuber 1997, "Long short-term memory"),
    the same reading, head and reasons as :class:`GRUConfig` (docs/MODELS.md)."""

    hidden: int = 64
    n_layers: int = 1
    bidirectional: bool = True


TRANSFORMER_NORMS = ("batch", "layer")
TRANSFORMER_POOLS = ("flatten", "mean")


@dataclass(frozen=True)
class TransformerConfig(TorchConfig):
    """TST: Zerveas, Jayaraman, Patel, Bhamidipaty & Eickhoff (2021), "A Transformer-based
    Framework for Multivariate Time Series Representation Learning" (KDD 2021), trained
    from scratch (no pre-training): each step's inputs projected to ``d_model`` (scaled by
    sqrt(d_model)), a learnable positional encoding, ``n_layers`` post-norm encoder layers
    (``n_heads`` heads, ``ff_dim`` wide, GELU, dropout) with BatchNorm over the features
    in place of LayerNorm (``norm = "batch"``, TST's choice for time series; ``"layer"``
    is the original), GELU on the output, then all steps' outputs concatenated
    (``pool = "flatten"``, TST's classification head) or averaged (``"mean"``) into a
    linear head. Defaults: TST's classification settings (d_model 64, 8 heads, 3 layers,
    FF 256, dropout 0.1); reasons in docs/MODELS.md."""

    d_model: int = 64
    n_heads: int = 8
    n_layers: int = 3
    ff_dim: int = 256
    norm: str = "batch"
    pool: str = "flatten"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model % self.n_heads:
            raise HyperError(
                f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}"
            )
        if self.norm not in TRANSFORMER_NORMS:
            raise HyperError(f"hyper 'norm': {self.norm!r} is not one of "
                             f"{', '.join(TRANSFORMER_NORMS)}")
        if self.pool not in TRANSFORMER_POOLS:
            raise HyperError(f"hyper 'pool': {self.pool!r} is not one of "
                             f"{', '.join(TRANSFORMER_POOLS)}")


@dataclass(frozen=True)
class MiniRocketConfig(TrainConfig):
    """MiniRocket: Dempster, Schmidt & Webb (2021), "MiniRocket: A Very Fast (Almost)
    Deterministic Transform for Time Series Classification" (KDD 2021, arXiv:2012.08791);
    the transform is aeon's ``MiniRocket`` (an optional extra, ``pip install
    'cis490[minirocket]'``), the classifier a class-weighted ridge on its standardised
    features, as the paper's ``RidgeClassifierCV`` with alphas ``logspace(-3, 3, 10)``.

    - ``n_kernels``, ``max_dilations_per_kernel``: aeon's and the paper's defaults (10 000
      features, 9 996 in fact: a multiple of 84 kernels; at most 32 dilations a kernel).
    - ``epochs``: the number of ridge alphas tried, log-spaced from ``10**alpha_log10_max``
      down to ``10**alpha_log10_min`` (one alone: their geometric middle); each is one
      history record and the best on val macro F1 is kept (a tie keeps the larger alpha);
      ``patience`` ends the list after that many alphas without a strict improvement.
    - ``max_train_windows``: the transform's biases and the ridge are fitted on at most
      this many train windows, drawn without replacement from the seed: memory is 40 kB
      of features a window plus two float64 ``n x n`` Gram matrices (docs/MODELS.md).
    - ``mask_channels``: append the 0/1 missingness mask of every channel that has a
      missing value among those windows as an input channel.
    """

    epochs: int = 10
    patience: int = 10
    n_kernels: int = 10_000
    max_dilations_per_kernel: int = 32
    alpha_log10_min: float = -3.0
    alpha_log10_max: float = 3.0
    max_train_windows: int = 4096
    mask_channels: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha_log10_min > self.alpha_log10_max:
            raise HyperError(f"hyper 'alpha_log10_min': {self.alpha_log10_min!r} is above "
                             f"alpha_log10_max={self.alpha_log10_max!r}")


CONFIGS: dict[str, type[TrainConfig]] = {
    "gbt": GBTConfig,
    "mlp": MLPConfig,
    "cnn": CNNConfig,
    "gru": GRUConfig,
    "lstm": LSTMConfig,
    "transformer": TransformerConfig,
    "minirocket": MiniRocketConfig,
}

SUMMARY_MODELS = ("gbt", "mlp")
SEQUENCE_MODELS = ("cnn", "gru", "lstm", "transformer", "minirocket")
MODES = ("realistic", "oracle")

# Range rules: field -> (lowest allowed, highest allowed); None = unbounded.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    # minirocket
    "n_kernels": (84, 100_000),
    "max_dilations_per_kernel": (1, 1024),
    "alpha_log10_min": (-12.0, 12.0),
    "alpha_log10_max": (-12.0, 12.0),
    "max_train_windows": (16, None),
    "epochs": (1, None),
    "patience": (1, None),
    "class_weight_clip": (1.0, None),
    "window_s": (0, None),
    "threads": (1, 256),
    "max_depth": (1, 64),
    "learning_rate": (0.0, None),
    "subsample": (0.0, 1.0),
    "colsample_bytree": (0.0, 1.0),
    "min_child_weight": (0.0, None),
    "reg_lambda": (0.0, None),
    "batch_size": (0, None),  # 0: automatic (rules.plan_budget)
    "min_steps": (0, None),
    "min_check_steps": (0, None),
    "filters": (1, None),
    "kernels": (1, None),
    "lr": (0.0, None),
    "weight_decay": (0.0, None),
    "dropout": (0.0, 0.99),
    "warmup_frac": (0.0, 1.0),
    "hidden": (1, None),
    "n_layers": (1, None),
    "d_model": (1, None),
    "n_heads": (1, None),
    "ff_dim": (1, None),
}


def _check_ranges(cfg: TrainConfig) -> None:
    for f in dataclasses.fields(cfg):
        lo, hi = _RANGES.get(f.name, (None, None))
        value = getattr(cfg, f.name)
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and not value:
            raise HyperError(f"hyper {f.name!r}: must not be empty")
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise HyperError(f"hyper {f.name!r}: {v!r} is not finite")
            if lo is not None and v < lo:
                raise HyperError(f"hyper {f.name!r}: {v!r} is below {lo}")
            if hi is not None and v > hi:
                raise HyperError(f"hyper {f.name!r}: {v!r} is above {hi}")


def validate_hyper(model: str, hyper: Mapping[str, Any]) -> TrainConfig:
    """Return ``model``'s config with ``hyper`` applied over the defaults.

    Raises :class:`HyperError` naming the model or the offending key: unknown
    model, unknown key, a value of the wrong type, or out of range.
    """
    try:
        cls = CONFIGS[model]
    except KeyError:
        raise HyperError(
            f"unknown model {model!r}; expected one of {', '.join(CONFIGS)}"
        ) from None
    return validate_config(cls, model, hyper)


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain JSON types (tuples become lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(cfg, f.name), tuple) else v
        for f in dataclasses.fields(cfg)
    }


def config_from_dict(model: str, data: Mapping[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict` (validated like any hyper)."""
    return validate_hyper(model, data)
