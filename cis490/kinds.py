"""The ML pipeline's job kinds, registered with the coordinator: one per model.

``cis490.fleet`` knows no model; it runs kinds from its registry
(``cis490.fleet.kinds``). This module registers one kind per model of
``cis490.models.configs.CONFIGS`` (imported without torch or xgboost):

- hyper schema: the model's config dataclass; modes: ``realistic``, ``oracle``;
- driver: ``python -m cis490.train.run`` with the spec's model, mode, split,
  seeds and hyper, the four data paths (``validation``, ``summary``,
  ``tensors``, ``schema`` from the manifest's ``[data]``), the expected data
  digests and the curves directory;
- requires: the training stack (``torch`` for the nets, ``xgboost`` for gbt; the
  extra ``train``) and, for minirocket, ``aeon`` (the extra ``minirocket``);
- the driver answers ``--estimate-memory``;
- resumable (``--resume-dir``): every model but minirocket; uses CUDA: the five nets;
- ``PYTHONPATH``: the directory holding this package, so a bare checkout works.

Every entry point that runs or enqueues model jobs imports this module:
``cis490.spool_cli`` (``bin/cis490-spool`` and the ``cis490-spool`` console
script) and the demo. Importing it registers the kinds (idempotent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from cis490.fleet import kinds
from cis490.models import configs

__all__ = ["DATA_KEYS", "DRIVER", "model_kind", "register_all"]

DRIVER = "cis490.train.run"
DATA_KEYS = ("validation", "summary", "tensors", "schema")
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])

# the distributions each model's driver imports beyond the coordinator's: (dist, extra)
_REQUIRES: dict[str, tuple[tuple[str, str], ...]] = {
    "gbt": (("xgboost", "train"),),
    "minirocket": (("aeon", "minirocket"),),
}
_NETS_REQUIRE = (("torch", "train"),)
# the models whose driver keeps a resume state (--resume-dir; minirocket restarts from scratch)
RESUMABLE = frozenset({"gbt", "mlp", "cnn", "gru", "lstm", "transformer"})
_CPU_ONLY = frozenset({"gbt", "minirocket"})  # xgboost as configured, aeon: never on a GPU


def _train_args(spec, out_dir: str, data_paths: Mapping[str, str],
                curves_dir: str | None) -> list[str]:
    argv = [
        "--model", spec.model, "--mode", spec.mode,
        "--validation", data_paths["validation"], "--summary", data_paths["summary"],
        "--tensors", data_paths["tensors"], "--schema", data_paths["schema"],
        "--split-recipe", spec.split_recipe, "--seed", str(spec.seed),
        *kinds.hyper_args(spec.hyper), "--out", out_dir,
    ]
    if spec.split_seed is not None:
        argv += ["--split-seed", str(spec.split_seed)]
    if spec.train_hosts:
        argv += ["--train-hosts", ",".join(spec.train_hosts)]
    if "schema_sha256" in spec.data:
        argv += ["--expect-schema-sha256", spec.data["schema_sha256"]]
    if "validation_sha256" in spec.data:
        argv += ["--expect-validation-sha256", spec.data["validation_sha256"]]
    if curves_dir is not None:
        argv += ["--curves", curves_dir]
    return argv


def model_kind(name: str) -> kinds.JobKind:
    """The job kind of model ``name``."""
    return kinds.JobKind(
        name=name, config=configs.CONFIGS[name], driver=DRIVER, build_args=_train_args,
        modes=configs.MODES, data_keys=DATA_KEYS,
        requires=_REQUIRES.get(name, _NETS_REQUIRE), estimates_memory=True,
        pythonpath=(_PACKAGE_PARENT,), resumable=name in RESUMABLE,
        uses_cuda=name not in _CPU_ONLY)


def register_all() -> None:
    """Register every model's kind (again: a no-op)."""
    for name in configs.CONFIGS:
        kinds.register(model_kind(name))


register_all()

