"""Hyper-parameter schemas of the six models, importable without torch/xgboost.

Each config dataclass *is* its model's hyper schema: the manifest reload
validates every ``hyper`` key and value type against these fields (so a typo
fails at reload, not hours later at training time) with
:func:`validate_hyper`, and the training driver does the same with the
``--hyper key=JSON`` arguments it is given. The models themselves
(``cis490.models.<name>``) import the heavy libraries; this module must not
(stdlib only).

Type rules of a hyper value (JSON types, as they come from TOML or the
command line): an ``int`` field takes an integer (not a bool); a ``float``
field takes an integer or a float; a ``bool`` field takes only a bool; a
``tuple[int, ...]`` field takes a list of integers. Every error is a
:class:`HyperError` (a ``ValueError``) whose message names the key.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass
from typing import Any, Mapping

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


class HyperError(ValueError):
    """A hyper key or value that the model's config does not accept."""


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
    """Fields of the five nets. Defaults sized for the demo store on 2 CPU cores
    (docs/MODELS.md has the numbers); the seed's full-scale runs used
    ``epochs = 60``, which a manifest sets as ``hyper = { epochs = 60 }``."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-2
    dropout: float = 0.1
    warmup_frac: float = 0.05


@dataclass(frozen=True)
class MLPConfig(TorchConfig):
    epochs: int = 30
    hidden: tuple[int, ...] = (256, 128)


@dataclass(frozen=True)
class CNNConfig(TorchConfig):
    hidden: int = 64
    kernel_size: int = 5
    n_layers: int = 3


@dataclass(frozen=True)
class GRUConfig(TorchConfig):
    hidden: int = 64
    n_layers: int = 1
    bidirectional: bool = False


@dataclass(frozen=True)
class LSTMConfig(TorchConfig):
    hidden: int = 64
    n_layers: int = 1
    bidirectional: bool = False


@dataclass(frozen=True)
class TransformerConfig(TorchConfig):
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_dim: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model % self.n_heads:
            raise HyperError(
                f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}"
            )


CONFIGS: dict[str, type[TrainConfig]] = {
    "gbt": GBTConfig,
    "mlp": MLPConfig,
    "cnn": CNNConfig,
    "gru": GRUConfig,
    "lstm": LSTMConfig,
    "transformer": TransformerConfig,
}

SUMMARY_MODELS = ("gbt", "mlp")
SEQUENCE_MODELS = ("cnn", "gru", "lstm", "transformer")
MODES = ("realistic", "oracle")

# Range rules: field -> (lowest allowed, highest allowed); None = unbounded.
_RANGES: dict[str, tuple[float | None, float | None]] = {
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
    "batch_size": (1, None),
    "lr": (0.0, None),
    "weight_decay": (0.0, None),
    "dropout": (0.0, 0.99),
    "warmup_frac": (0.0, 1.0),
    "hidden": (1, None),
    "kernel_size": (1, None),
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


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check one JSON value against a field's type hint; return it typed."""
    if hint is str:
        if isinstance(value, str) and len(value) <= 256 and "\x00" not in value:
            return value
        raise HyperError(f"hyper {key!r}: expected a string of at most 256 characters, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise HyperError(f"hyper {key!r}: expected a bool, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise HyperError(f"hyper {key!r}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise HyperError(f"hyper {key!r}: expected a number, got {value!r}")
    if typing.get_origin(hint) is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) > 64:
            raise HyperError(f"hyper {key!r}: expected a list (at most 64 items), got {value!r}")
        return tuple(_coerce(key, item, v) for v in value)
    raise HyperError(f"hyper {key!r}: unsupported field type {hint!r}")  # pragma: no cover


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


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # costly: string annotations are compiled each call


def validate_config(cls: type, model: str, hyper: Mapping[str, Any]):
    """``cls`` (any config dataclass) with ``hyper`` applied over its defaults.

    The one hyper validator: the driver, ``models.create`` and the manifest
    reload (``cis490.fleet.spec``, for every job kind) all go through it.
    """
    if not isinstance(hyper, Mapping):
        raise HyperError(f"hyper of {model} must be a table of key = value")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key in sorted(hyper):
        if key not in names:
            raise HyperError(
                f"hyper {key!r} is not a field of {model}'s config "
                f"(known: {', '.join(names)})"
            )
        kwargs[key] = _coerce(key, hints[key], hyper[key])
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - a field without a default
        raise HyperError(f"{model}: {exc}") from None


def parse_hyper_args(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``key=JSON`` strings (the driver's ``--hyper``) into a dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HyperError(f"hyper {item!r}: expected key=JSON")
        if key in out:
            raise HyperError(f"hyper {key!r} given twice")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HyperError(f"hyper {key!r}: value {raw!r} is not JSON ({exc.msg})") from None
    return out


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain JSON types (tuples become lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(cfg, f.name), tuple) else v
        for f in dataclasses.fields(cfg)
    }


def config_from_dict(model: str, data: Mapping[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict` (validated like any hyper)."""
    return validate_hyper(model, data)
