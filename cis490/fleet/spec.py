"""Job specs: the immutable JSON a job's file holds, its stable id, and job kinds.

A spec is created by ``reload`` from the manifest and never edited in place;
``claimed/``, ``done/`` … hold the same bytes. ``parse_spec`` is the only way
bytes from the spool become a ``JobSpec``: it validates every field and
re-derives the id and the name, so a file whose content does not match its
name is refused (and quarantined by the caller).

Job kinds (``cis490.fleet.kinds``): the registered kinds, each with its hyper
schema, the modes it accepts and how to turn a validated spec into the argv
of its driver; argv is built only from validated values and never passes
through a shell.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cis490.fleet.layout import (
    HOST_RE,
    MAX_JSON_BYTES,
    MODE_RE,
    SpoolError,
    check_part,
    job_name,
)
from cis490.common import HyperError, validate_config
from cis490.fleet import kinds

SPEC_FORMAT = 2  # the newest format this code reads and writes
# Format 2 = format 1 + `split_seed`. A spec without a split seed is still written
# as format 1, byte for byte as before; one with it is format 2, so a worker that
# predates split seeds leaves it alone (SpecTooNew) instead of re-deriving an id
# without it and quarantining the job as forged.
SPLIT_SEED_FORMAT = 2
SPLIT_RECIPES = ("host", "sample", "time")


class SpecError(SpoolError):
    """A job spec (from the manifest or a spool file) is invalid."""


class SpecTooNew(SpecError):
    """Written by a newer cis490: this worker leaves it alone (never quarantines it)."""


# --- hyper schemas --------------------------------------------------------------


def _kind(name: str) -> kinds.JobKind:
    k = kinds.get(name)
    if k is None:
        raise SpecError(f"unknown model {name!r}; known: {', '.join(kinds.names())}")
    return k


def validate_hyper(kind: str, hyper: Any) -> dict[str, Any]:
    """Check hyper keys, types and ranges against the kind's declared schema.

    Returns the keys as written, with typed values (ints in float fields become
    floats); defaults are the driver's business, so they stay out of the job id.
    """
    k = _kind(kind)
    try:
        cfg = validate_config(k.config, kind, hyper)
    except HyperError as exc:
        raise SpecError(str(exc)) from None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(cfg, k)) for k in sorted(hyper))}


# --- the spec -------------------------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def job_id(model: str, mode: str, hyper: dict, split_recipe: str,
           train_hosts: list[str], seed: int, split_seed: int | None = None) -> str:
    """sha256 of the canonical JSON of the job's identity (as in the seed).

    ``split_seed`` enters the identity only when it is not None (= differs
    from ``seed``), so every job that existed before it keeps its id.
    """
    ident = {"model": model, "mode": mode, "hyper": hyper, "split_recipe": split_recipe,
             "train_hosts": sorted(train_hosts), "seed": seed}
    if split_seed is not None:
        ident["split_seed"] = split_seed
    return hashlib.sha256(canonical_json(ident)).hexdigest()


@dataclass(frozen=True)
class Constraints:
    require_cuda: bool = False
    prefer_cuda: bool = False
    min_vram_gib: float = 0.0
    min_ram_gib: float = 0.0
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobSpec:
    model: str
    mode: str
    hyper: dict
    split_recipe: str = "host"
    train_hosts: tuple[str, ...] = ()
    seed: int = 0
    priority: int = 0
    constraints: Constraints = field(default_factory=Constraints)
    data: dict = field(default_factory=dict)   # expected digests: schema_sha256, validation_sha256
    enqueued_ns: int = 0                       # operator clock at reload; orders equal priorities
    signature: dict | None = field(default=None, compare=False)  # see signing.py; not part of the content
    # seed of the train/val/test carve-out (make_split); None = the same as `seed`.
    # Training seeds of one manifest list share one split seed (docs/SPOOL.md).
    split_seed: int | None = None
    # how long the job is expected to train, in minutes (the manifest's `expected_minutes`):
    # a worker with a deadline claims only jobs that fit (docs/SLURM.md); not part of the id
    expected_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.split_seed is not None and self.split_seed == self.seed:
            object.__setattr__(self, "split_seed", None)  # one spelling per job: the id depends on it

    # cached: a scan of 100 000 specs would otherwise hash each one several times
    # (cached_property writes the instance dict directly, so a frozen dataclass allows it)
    @functools.cached_property
    def id(self) -> str:
        return job_id(self.model, self.mode, self.hyper, self.split_recipe,
                      list(self.train_hosts), self.seed, self.split_seed)

    @functools.cached_property
    def name(self) -> str:
        return job_name(self.model, self.mode, self.id)

    def to_dict(self) -> dict:
        d = {
            "format": 1 if self.split_seed is None else SPLIT_SEED_FORMAT,
            "id": self.id,
            "name": self.name,
            "model": self.model,
            "mode": self.mode,
            "hyper": self.hyper,
            "split_recipe": self.split_recipe,
            "train_hosts": sorted(self.train_hosts),
            "seed": self.seed,
            "priority": self.priority,
            "constraints": {
                **dataclasses.asdict(self.constraints),
                "allowed_hosts": list(self.constraints.allowed_hosts),
            },
            "data": self.data,
            "enqueued_ns": self.enqueued_ns,
        }
        if self.split_seed is not None:  # absent otherwise: older specs keep their bytes
            d["split_seed"] = self.split_seed
        if self.expected_minutes is not None:  # likewise (older workers ignore the field)
            d["expected_minutes"] = self.expected_minutes
        return d

    def to_bytes(self) -> bytes:
        d = self.to_dict()
        if self.signature is not None:
            d["signature"] = self.signature
        return canonical_json(d) + b"\n"

    def signed_message(self) -> bytes:
        return canonical_json(self.to_dict())

    def same_job_content(self, other: "JobSpec") -> bool:
        """Equal apart from the enqueue time (used by reload to detect updates)."""
        return dataclasses.replace(self, enqueued_ns=0) == dataclasses.replace(other, enqueued_ns=0)


def _get(raw: dict, key: str, types: tuple, default: Any = None, required: bool = False) -> Any:
    if key not in raw:
        if required:
            raise SpecError(f"missing field {key!r}")
        return default
    value = raw[key]
    if isinstance(value, bool) and bool not in types:
        raise SpecError(f"field {key!r} has the wrong type ({type(value).__name__})")
    if not isinstance(value, types):
        raise SpecError(f"field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _host_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > 256:
        raise SpecError(f"{what} must be a list of host ids")
    for h in value:
        if not isinstance(h, str) or not HOST_RE.match(h):
            raise SpecError(f"{what}: invalid host id {h!r}")
    return tuple(sorted(set(value)))


def _part(value: Any, what: str, regex=None) -> str:
    try:
        return check_part(value, what, regex) if regex else check_part(value, what)
    except SpecError:
        raise
    except SpoolError as exc:
        raise SpecError(str(exc)) from None


def build_spec(raw: dict, *, check_kind: bool = True) -> JobSpec:
    """Validate a dict (manifest entry or parsed file) into a JobSpec."""
    model = _part(_get(raw, "model", (str,), required=True), "model")
    mode = _part(_get(raw, "mode", (str,), required=True), "mode", MODE_RE)
    if check_kind:
        k = _kind(model)
        if k.modes is not None and mode not in k.modes:
            raise SpecError(f"unknown mode {mode!r}; known: {', '.join(k.modes)}")
        hyper = validate_hyper(model, _get(raw, "hyper", (dict,), {}))
    else:
        hyper = _get(raw, "hyper", (dict,), {})
    recipe = _get(raw, "split_recipe", (str,), "host")
    if recipe not in SPLIT_RECIPES:
        raise SpecError(f"split_recipe must be one of {', '.join(SPLIT_RECIPES)}, not {recipe!r}")
    train_hosts = _host_list(_get(raw, "train_hosts", (list, tuple), []), "train_hosts")
    seed = _get(raw, "seed", (int,), 0)
    priority = _get(raw, "priority", (int,), 0)
    if not (0 <= seed < 2**32) or not (-1000 <= priority <= 1000):
        raise SpecError("seed must be in [0, 2^32) and priority in [-1000, 1000]")
    split_seed = _get(raw, "split_seed", (int,), None)
    if split_seed is not None and not 0 <= split_seed < 2**32:
        raise SpecError(f"split_seed must be in [0, 2^32), not {split_seed}")
    c = _get(raw, "constraints", (dict,), {})
    unknown = set(c) - {f.name for f in dataclasses.fields(Constraints)}
    if unknown:
        raise SpecError(f"unknown constraint(s) {', '.join(sorted(unknown))}")
    constraints = Constraints(
        require_cuda=_get(c, "require_cuda", (bool,), False),
        prefer_cuda=_get(c, "prefer_cuda", (bool,), False),
        min_vram_gib=float(_get(c, "min_vram_gib", (int, float), 0.0)),
        min_ram_gib=float(_get(c, "min_ram_gib", (int, float), 0.0)),
        allowed_hosts=_host_list(_get(c, "allowed_hosts", (list, tuple), []), "allowed_hosts"),
    )
    data = _get(raw, "data", (dict,), {})
    for key, value in data.items():
        if key not in ("schema_sha256", "validation_sha256") or not (
            isinstance(value, str) and len(value) == 64 and all(ch in "0123456789abcdef" for ch in value)
        ):
            raise SpecError(f"data.{key} must be one of schema_sha256/validation_sha256 = 64 hex digits")
    expected = _get(raw, "expected_minutes", (int, float), None)
    if expected is not None:
        if not 0 < expected <= 525600:  # also refuses NaN and inf
            raise SpecError(f"expected_minutes must be in (0, 525600], not {expected!r}")
        expected = float(expected)
    enq = _get(raw, "enqueued_ns", (int,), 0)
    signature = raw.get("signature")
    if signature is not None and not isinstance(signature, dict):
        raise SpecError("field 'signature' must be an object")
    return JobSpec(model, mode, hyper, recipe, train_hosts, seed, priority, constraints,
                   dict(sorted(data.items())), enq, signature, split_seed, expected)


def parse_spec(data: bytes, expected_name: str | None = None) -> JobSpec:
    """Parse a spec file's bytes; raise SpecError for anything malformed.

    The kind itself is not required to be known here: a worker running older
    code skips a job of an unknown kind rather than quarantining it.
    """
    if len(data) > MAX_JSON_BYTES:
        raise SpecError(f"spec is larger than {MAX_JSON_BYTES} bytes")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SpecError(f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError("spec must be a JSON object")
    fmt = raw.get("format")
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > SPEC_FORMAT:
        raise SpecTooNew(f"spec format {fmt} is newer than this worker's ({SPEC_FORMAT}): upgrade cis490")
    if isinstance(fmt, bool) or fmt not in (1, SPEC_FORMAT):
        raise SpecError(f"unsupported spec format {fmt!r}")
    if fmt < SPLIT_SEED_FORMAT and "split_seed" in raw:
        raise SpecError(f"field 'split_seed' needs spec format {SPLIT_SEED_FORMAT}, not {fmt}")
    known = isinstance(raw.get("model"), str) and kinds.get(raw["model"]) is not None
    spec = build_spec(raw, check_kind=known)
    if raw.get("id") != spec.id or raw.get("name") != spec.name:
        raise SpecError("id/name do not match the spec's content (edited or forged)")
    if expected_name is not None and spec.name != expected_name:
        raise SpecError(f"file name says {expected_name} but content is {spec.name}")
    return spec


# --- argv of a job ----------------------------------------------------------------


def driver_argv(spec: JobSpec, out_dir: str, data_paths: dict[str, str],
                curves_dir: str | None = None) -> list[str]:
    """The driver module and its arguments (after ``python -m``), from validated values,
    as the job's kind builds them. ``curves_dir``: where a training driver writes its
    curves (``--curves``; the smoke job has none)."""
    kind = _kind(spec.model)
    missing = [k for k in kind.data_keys if not data_paths.get(k)]
    if missing:
        raise SpecError(
            f"no data path(s) {', '.join(missing)} for this host: set [data] (or "
            f"[hosts.NAME.data]) in the manifest"
        )
    return [kind.driver, *kind.build_args(spec, out_dir, data_paths, curves_dir)]
