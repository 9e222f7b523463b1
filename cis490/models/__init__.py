"""Seven models behind one interface, usable on any array data.

    >>> from cis490 import models
    >>> m = models.create("gru", n_channels=40, n_steps=60, n_classes=4, hidden=32)
    >>> report = m.fit(X_train, y_train, X_val, y_val, seed=0)   # doctest: +SKIP
    >>> proba = m.predict_proba(X_test)                          # doctest: +SKIP
    >>> path = m.save("out/")            # out/gru_custom.ckpt.json + .safetensors
    >>> same = models.load(path, expect_schema_sha256=m.schema_sha256)

Summary models (``gbt``, ``mlp``) take ``n_features``; sequence models
(``cnn``, ``gru``, ``lstm``, ``transformer``, ``minirocket``) take
``n_channels`` and ``n_steps``. Array conventions are in :mod:`cis490.models.base`, hyper
schemas in :mod:`cis490.models.configs`, the checkpoint format in
:mod:`cis490.models.checkpoint`.

This ``__init__`` stays importable without numpy/torch/xgboost/aeon (the
coordinator imports ``cis490.models.configs``): the per-model modules are
imported by :func:`create` and :func:`load` only. ``minirocket`` needs the
optional extra ``cis490[minirocket]`` (aeon); without it, creating or loading
one raises ``ImportError`` naming the extra.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

from cis490.models import configs
from cis490.models.base import EpochRecord, FitReport, Model
from cis490.models.configs import CONFIGS, MODES, SEQUENCE_MODELS, SUMMARY_MODELS
from cis490.common import InputError

__all__ = [
    "CONFIGS",
    "MODES",
    "SEQUENCE_MODELS",
    "SUMMARY_MODELS",
    "EpochRecord",
    "FitReport",
    "Model",
    "create",
    "load",
    "model_class",
]


def model_class(name: str) -> type:
    """The implementation class of model ``name`` (imports its library)."""
    if name not in CONFIGS:
        raise InputError(f"unknown model {name!r}; expected one of {', '.join(CONFIGS)}")
    return importlib.import_module(f"cis490.models.{name}").MODEL_CLASS


def create(
    name: str,
    *,
    n_classes: int,
    n_features: int | None = None,
    n_channels: int | None = None,
    n_steps: int | None = None,
    mode: str = "custom",
    classes: Sequence[str] | None = None,
    schema_sha256: str | None = None,
    **hyper: Any,
) -> Model:
    """A new, unfitted model. ``hyper`` is validated against its config.

    ``mode`` and ``classes`` only name things in the checkpoint;
    ``schema_sha256`` is the feature schema the data was built with (the
    driver passes the schema file's hash; by default a hash of the input shape
    and class names).
    """
    config = configs.validate_hyper(name, hyper)
    if name in SUMMARY_MODELS:
        if n_features is None or n_channels is not None or n_steps is not None:
            raise InputError(f"{name} is a summary model: give n_features (only)")
        shape = {"n_features": int(n_features)}
    else:
        if n_channels is None or n_steps is None or n_features is not None:
            raise InputError(f"{name} is a sequence model: give n_channels and n_steps (only)")
        shape = {"n_channels": int(n_channels), "n_steps": int(n_steps)}
    if any(v < 1 for v in shape.values()):
        raise InputError(f"input shape must be positive, got {shape}")
    return model_class(name)(config=config, n_classes=n_classes, input_shape=shape, mode=mode,
                             classes=classes, schema_sha256=schema_sha256)


def load(path: str | Path, *, expect_schema_sha256: str | None = None) -> Model:
    """Load a checkpoint (its ``.ckpt.json`` or the directory holding one).

    With ``expect_schema_sha256`` (the sha256 of the data's feature schema) a
    checkpoint trained on another schema raises ``ValueError`` naming both.
    """
    from cis490.models import checkpoint

    meta, sidecar = checkpoint.read_checkpoint(path, expect_schema_sha256)
    return model_class(meta["model"]).from_checkpoint(meta, sidecar)
