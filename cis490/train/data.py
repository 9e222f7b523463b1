"""Train/val arrays for one (model, mode) from the data stages' files.

The only place ``cis490.train`` touches the data loaders (``cis490.data.load``)
(``cis490.data.splits.make_split``, ``cis490.data.load.load_summary`` /
``load_tensors``). Invariants:

- **the test split's episode ids are never passed to a loader**:
  :func:`load_train_val` asks for train + val ids only
  (``tests/train/test_train_driver.py`` spies on the loaders to prove it);
- the data must carry the schema the job was given: the loader's
  ``schema_sha256`` (the features file's / tensor manifest's recorded hash,
  checked by the loader against its schema file) must equal the sha256 of
  ``--schema``, else :class:`SchemaMismatch`;
- rows are in the loaders' canonical order (``episode_id``, ``t_end_ns``),
  so training sees the same row order on every host.

Masks: the tensor loader writes NaN wherever ``mask == 0``; the models derive
their mask from NaN (``cis490.models.base``), so the explicit mask array is
not needed here.

Nothing is materialised: tensor windows stay lazy ``WindowArray`` views
(``take`` picks the train and val rows without reading them) and, given a
``spill_dir``, the summary features go to a private ``.npy`` there and come
back as a lazy ``RowArray``. The models read them batch by batch, so a job's
memory does not grow with the store (``bench/bench_memory.py``).
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from cis490.models.configs import SUMMARY_MODELS
from cis490.common import InputError

__all__ = ["SchemaMismatch", "TrainValData", "episodes_digest", "load_arrays", "load_train_val"]


class SchemaMismatch(InputError):
    """The data on disk was built with another feature schema than the job's."""


@dataclass(frozen=True)
class TrainValData:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    train_episodes: tuple[str, ...]
    val_episodes: tuple[str, ...]
    train_hosts: tuple[str, ...]
    excluded_profiles: tuple[str, ...]
    untested_profiles: tuple[str, ...]


def episodes_digest(ids: Iterable[str]) -> str:
    """sha256 of the sorted episode ids, one per line (provenance of a split)."""
    return hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()


def _rows(X, mask: np.ndarray):
    """The rows of ``X`` where ``mask``: a lazy view for lazy arrays, else a copy."""
    return X.take(np.flatnonzero(mask)) if hasattr(X, "take") else X[mask]


def load_arrays(model: str, mode: str, *, summary: str, tensors: str, schema: str,
                episode_ids: Iterable[str], schema_sha256: str | None = None,
                spill_dir: str | None = None):
    """``(X, y, meta)`` of the given episodes for ``model``, in canonical row order.

    ``X`` is ``(n, features)`` float32 for summary models (an array, or a
    lazy ``RowArray`` over ``spill_dir``) and a lazy ``(n, channels, steps)``
    ``WindowArray`` of float32 for sequence models, NaN where missing; ``meta`` is the
    loader's per-window DataFrame. With ``schema_sha256`` the data must have
    been built with that schema (:class:`SchemaMismatch`). Also meant for
    ``cis490.evaluate`` (the same conversion on the test ids).
    """
    data_load = importlib.import_module("cis490.data.load")
    ids = sorted(set(episode_ids))
    if model in SUMMARY_MODELS:
        res = data_load.load_summary(summary, mode, ids, schema=schema, spill_dir=spill_dir)
    else:
        res = data_load.load_tensors(tensors, mode, ids)  # lazy (n, C, L), NaN = missing
    X = res.X
    if schema_sha256 is not None and res.schema_sha256 != schema_sha256:
        raise SchemaMismatch(
            f"{'summary' if model in SUMMARY_MODELS else 'tensor'} data was built with schema "
            f"{res.schema_sha256} but the job's schema is {schema_sha256}; rebuild the data"
        )
    return X, np.asarray(res.y, dtype=np.int64), res.meta


def load_train_val(*, model: str, mode: str, validation: str, summary: str, tensors: str,
                   schema: str, schema_sha256: str, recipe: str,
                   train_hosts: list[str] | None, seed: int,
                   spill_dir: str | None = None) -> TrainValData:
    """Make the split and load the train and val windows (never the test ones)."""
    splits = importlib.import_module("cis490.data.splits")
    split = splits.make_split(validation, recipe, train_hosts, seed)
    train_ids, val_ids = tuple(sorted(split.train)), tuple(sorted(split.val))
    if not train_ids or not val_ids:
        raise InputError(
            f"split {recipe!r} has {len(train_ids)} train and {len(val_ids)} val episodes")
    X, y, meta = load_arrays(model, mode, summary=summary, tensors=tensors, schema=schema,
                             episode_ids=train_ids + val_ids, schema_sha256=schema_sha256,
                             spill_dir=spill_dir)
    is_val = meta["episode_id"].isin(frozenset(val_ids)).to_numpy(bool)
    if not is_val.any() or is_val.all():
        raise InputError(f"no {'val' if not is_val.any() else 'train'} windows in the data "
                         f"for split {recipe!r} (episodes shorter than one window?)")
    excluded = split.excluded_profiles
    return TrainValData(
        X_train=_rows(X, ~is_val), y_train=y[~is_val], X_val=_rows(X, is_val), y_val=y[is_val],
        train_episodes=train_ids, val_episodes=val_ids,
        train_hosts=tuple(split.train_hosts),
        excluded_profiles=tuple(sorted(excluded)),
        untested_profiles=tuple(split.untested_profiles),
    )
