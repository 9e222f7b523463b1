"""Job kinds: what the coordinator needs to know about a kind of job, and their registry.

The coordinator runs jobs without knowing what they do. A job's ``model``
field names its *kind*, and the kind says:

- ``config``: its hyper schema, a frozen dataclass with defaults, checked by
  ``cis490.common.validate_config`` at manifest reload, so a typo fails there
  and not hours later;
- ``modes``: the modes it accepts (``None``: any well-formed mode);
- ``driver`` and ``build_args``: the module run as ``python -m DRIVER`` and its
  arguments, built from the validated spec only (never through a shell);
- ``data_keys``: the ``[data]`` paths of the manifest it needs;
- ``requires``: the distributions it needs, each with the pip extra that
  brings it (judged from package metadata, nothing imported: a host without
  one does not list the kind and never claims such a job);
- ``estimates_memory``: the driver answers ``--estimate-memory`` (the
  worker's memory admission asks it before claiming);
- ``pythonpath``: directories the driver needs on ``PYTHONPATH`` (a
  checkout run without installation);
- ``resumable``: the driver takes ``--resume-dir DIR``: it keeps a resume
  state ``DIR/resume.ckpt`` there (every epoch, and when SIGTERM/SIGUSR1 stops
  it, then exiting ``EXIT_RESUMABLE``) and continues from one it finds there;
  the worker carries that state through the spool (docs/SPOOL.md, "Resume
  state");
- ``uses_cuda``: the driver trains on a GPU when it has one (a pilot with
  ``--cuda-only`` claims only such jobs, or jobs whose constraints ask for CUDA).

The coordinator registers one kind itself, ``smoke`` (``cis490.fleet.smoke``:
the whole worker path without training). The ML pipeline registers one kind
per model in ``cis490.kinds``, which every entry point imports
(``bin/cis490-spool``, the ``cis490-spool`` console script, the demo). A
process that did not register a kind leaves its jobs alone, as a worker of
an older version does: it neither claims nor quarantines them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from cis490.common import HyperError

__all__ = ["JobKind", "SmokeConfig", "all_kinds", "data_keys", "get", "hyper_args", "names",
           "register"]

# (spec, out_dir, data_paths, curves_dir) -> the driver's arguments after its module; spec
# is a validated cis490.fleet.spec.JobSpec (not imported here: spec imports this module)
ArgsBuilder = Callable[[Any, str, Mapping[str, str], "str | None"], list[str]]


@dataclass(frozen=True)
class JobKind:
    """One kind of job (see the module doc)."""

    name: str
    config: type
    driver: str
    build_args: ArgsBuilder
    modes: tuple[str, ...] | None = None
    data_keys: tuple[str, ...] = ()
    requires: tuple[tuple[str, str], ...] = ()  # (distribution, pip extra)
    estimates_memory: bool = False
    pythonpath: tuple[str, ...] = ()
    resumable: bool = False
    uses_cuda: bool = False
    # a job of a resumable kind that does not resume after all (spec -> bool), e.g. by its hyper
    resumable_when: Callable[[Any], bool] | None = None

    def resumes(self, spec: Any) -> bool:
        """Whether a job of this kind keeps a resume state (``resumable``, and ``resumable_when``)."""
        return self.resumable and (self.resumable_when is None or bool(self.resumable_when(spec)))

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with the kind's ``pythonpath`` put in front of ``PYTHONPATH``."""
        env = dict(base)
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [*self.pythonpath,
                                                             env.get("PYTHONPATH")]))
        return env


_LOCK = threading.Lock()
_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add ``kind``. Registering an equal kind again is a no-op; a different kind under a
    name already taken is a programming error (``ValueError``)."""
    with _LOCK:
        old = _KINDS.get(kind.name)
        if old is not None and old != kind:
            raise ValueError(f"job kind {kind.name!r} is already registered differently")
        _KINDS[kind.name] = kind
    return kind


def get(name: str) -> JobKind | None:
    """The registered kind called ``name``, or None."""
    return _KINDS.get(name)


def names() -> tuple[str, ...]:
    """Every registered kind's name, sorted."""
    return tuple(sorted(_KINDS))


def all_kinds() -> tuple[JobKind, ...]:
    return tuple(_KINDS[n] for n in names())


def data_keys() -> tuple[str, ...]:
    """The ``[data]`` keys some registered kind needs, in first-registered order."""
    out: list[str] = []
    for kind in _KINDS.values():
        out += [k for k in kind.data_keys if k not in out]
    return tuple(out)


def hyper_args(hyper: Mapping[str, Any]) -> list[str]:
    """``--hyper key=JSON`` arguments for a driver, in key order."""
    import json

    return [a for k in sorted(hyper) for a in ("--hyper", f"{k}={json.dumps(hyper[k])}")]


# --- the coordinator's own kind -------------------------------------------------


@dataclass(frozen=True)
class SmokeConfig:
    """The built-in ``smoke`` kind: exercises the whole worker path without training."""

    seconds: float = 0.2   # total run time, split over `epochs` progress lines
    fail: bool = False     # exit non-zero after running (tests the fail path)
    payload: str = ""      # copied into the artifact (distinct payload → distinct digest)
    epochs: int = 2
    resume: bool = True    # keep a resume state (--resume-dir); false: a kind that restarts

    def __post_init__(self) -> None:
        if not 0 <= self.seconds <= 86400:  # also refuses NaN and inf
            raise HyperError(f"hyper 'seconds': {self.seconds!r} is not in [0, 86400]")
        if not 1 <= self.epochs <= 10000:
            raise HyperError(f"hyper 'epochs': {self.epochs!r} is not in [1, 10000]")


def _smoke_args(spec: Any, out_dir: str, data_paths: Mapping[str, str],
                curves_dir: str | None) -> list[str]:
    return ["--out", out_dir, *hyper_args(spec.hyper)]


# the directory holding the cis490 package, so the driver imports from a bare checkout too
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])

SMOKE = register(JobKind(name="smoke", config=SmokeConfig, driver="cis490.fleet.smoke",
                         build_args=_smoke_args, pythonpath=(_PACKAGE_PARENT,), resumable=True,
                         resumable_when=lambda spec: spec.hyper.get("resume", True)))
