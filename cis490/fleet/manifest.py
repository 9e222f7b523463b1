"""The training manifest: one TOML file declaring hosts' policy and the jobs.

    [defaults]                      # optional defaults for every [[jobs]] entry
    train_hosts = ["elliott-thinkpad"]
    [data]                          # where workers find the data (relative to the spool dir)
    validation = "../demo-data/validation_v1.parquet"
    [hosts.elliott-thinkpad]        # per-host policy, keyed by host id
    allow_jobs = ["gbt", "mlp"]     # fnmatch patterns on "model" or "model_mode"
    slots = 1
    [[jobs]]
    model = "gbt"
    mode = "realistic"
    hyper = { epochs = 200 }
    priority = 10
    seed = [0, 1, 2]                # three training seeds: one job each, one shared split

``seed`` is an int or a list of unique ints; a list expands to one job per
seed, in list order, all carving the train/val/test split with one
``split_seed`` (default: the int seed itself, or the *first* listed seed), so
their test sets are identical and an evaluation can combine them. A job
whose split seed equals its seed has exactly the id it had before split
seeds existed.

``split_recipe = "leave-one-host-out"`` (in an entry or ``[defaults]``) is the
manifest's own recipe, unknown to a single job spec. It takes ``train_hosts`` as
the host pool (required; >= 2 hosts, no repeats; named in the entry itself
unless ``[defaults]`` also asks for leave-one-host-out — the defaults' train
hosts of a ``host`` recipe are not a pool) and expands the entry into one
ordinary ``split_recipe = "host"`` job per held-out host of the pool, in pool
order, training on the pool minus that host (so its test is that host and
every host outside the pool)::

    [[jobs]]
    model = "gbt"
    mode = "realistic"
    split_recipe = "leave-one-host-out"
    train_hosts = ["elliott-thinkpad", "j-workstation", "k-gamingcom", "r-minipc"]  # 4 folds
    seed = [0, 1]                   # x two seeds = eight jobs, one split seed (0)

With a seed list the jobs are ordered seed by seed, each seed's folds in pool
order; the whole entry shares one split seed as above. Each fold's job is
exactly (same id) the hand-written ``host`` job with those fields, so spec files
need no new format, and an entry that repeats a fold another entry already
lists is refused as a duplicate, like any other repeated job.

``load_manifest`` validates *everything* before anything is written (reload
is all-or-nothing); every error names the job index and the field.
"""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cis490.common import sha256_file
from cis490.fleet import kinds
from cis490.fleet.layout import HOST_RE, MAX_TOML_BYTES, SpoolError
from cis490.fleet.spec import SPLIT_RECIPES, JobSpec, SpecError, build_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ManifestError(SpoolError):
    """The manifest is invalid; nothing was changed."""


JOB_KEYS = {"model", "mode", "hyper", "split_recipe", "train_hosts", "seed", "split_seed",
            "priority", "expected_minutes", "require_cuda", "prefer_cuda", "min_vram_gib", "min_ram_gib",
            "allowed_hosts"}
CONSTRAINT_KEYS = ("require_cuda", "prefer_cuda", "min_vram_gib", "min_ram_gib", "allowed_hosts")
HOST_KEYS = {"allow_jobs", "deny_jobs", "slots", "data"}
MAX_SEEDS = 64
MAX_JOBS_PER_ENTRY = 1024  # seeds x leave-one-host-out folds
# expanded here into `host` jobs; the same name as cis490.data.splits.LEAVE_ONE_HOST_OUT
# (not imported: the coordinator never imports the ML side)
LEAVE_ONE_HOST_OUT = "leave-one-host-out"
MANIFEST_RECIPES = (*SPLIT_RECIPES, LEAVE_ONE_HOST_OUT)


@dataclass(frozen=True)
class HostPolicy:
    allow_jobs: tuple[str, ...] = ("*",)
    deny_jobs: tuple[str, ...] = ()
    slots: int = 1
    data: dict = field(default_factory=dict)

    def permits(self, model: str, mode: str) -> bool:
        keys = (model, f"{model}_{mode}")
        def match(patterns: tuple[str, ...]) -> bool:
            return any(fnmatch.fnmatchcase(k, p) for p in patterns for k in keys)
        return match(self.allow_jobs) and not match(self.deny_jobs)


@dataclass(frozen=True)
class Manifest:
    jobs: tuple[JobSpec, ...]
    hosts: dict[str, HostPolicy]
    data: dict[str, str]
    raw: bytes

    def host(self, host_id: str) -> HostPolicy:
        """Policy of a host; a host the manifest does not name gets the defaults."""
        return self.hosts.get(host_id, HostPolicy())

    def data_paths(self, host_id: str) -> dict[str, str]:
        return {**self.data, **self.host(host_id).data}


def _str_list(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value):
        raise ManifestError(f"{where} must be a list of strings")
    return tuple(value)


def _data_table(value, where: str, strict: bool = True) -> dict[str, str]:
    """A ``[data]`` table: key -> non-empty path string. ``strict`` (a reload): every key
    must be one a registered job kind needs. Otherwise (a worker reading the spool's
    manifest for its host policy) a key no kind of this process knows is kept as it is:
    the manifest serves every host, and a kind this process lacks is not its business."""
    if not isinstance(value, dict):
        raise ManifestError(f"{where} must be a table")
    known = kinds.data_keys()  # what the registered job kinds need
    unknown = sorted(set(value) - set(known))
    if unknown and strict:
        raise ManifestError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    out = {}
    for key in [*known, *unknown]:
        if key in value:
            if not isinstance(value[key], str) or not value[key] or "\x00" in value[key]:
                raise ManifestError(f"{where}.{key} must be a non-empty path string")
            out[key] = value[key]
    return out


def _host(name: str, raw, strict: bool = True) -> HostPolicy:
    where = f"hosts.{name}"
    if not HOST_RE.match(name):
        raise ManifestError(f"{where}: invalid host id (letters, digits, '.', '_', '-')")
    if not isinstance(raw, dict):
        raise ManifestError(f"{where} must be a table")
    unknown = sorted(set(raw) - HOST_KEYS)
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(HOST_KEYS))}")
    slots = raw.get("slots", 1)
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= 64:
        raise ManifestError(f"{where}.slots must be an integer in 1..64")
    return HostPolicy(
        allow_jobs=_str_list(raw.get("allow_jobs", ["*"]), f"{where}.allow_jobs"),
        deny_jobs=_str_list(raw.get("deny_jobs", []), f"{where}.deny_jobs"),
        slots=slots,
        data=_data_table(raw.get("data", {}), f"{where}.data", strict),
    )


def _seed_list(value) -> list[int] | None:
    """The seeds of a list-valued ``seed``; None when it is not a list (build_spec checks it)."""
    if not isinstance(value, list):
        return None
    if not 1 <= len(value) <= MAX_SEEDS:
        raise SpecError(f"seed: a list of seeds must hold 1..{MAX_SEEDS} seeds, got {len(value)}")
    for i, s in enumerate(value):
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32:
            raise SpecError(f"seed[{i}]: {s!r} is not an integer in [0, 2^32)")
    dup = sorted({s for s in value if value.count(s) > 1})
    if dup:
        raise SpecError(f"seed: the list repeats {', '.join(map(str, dup))}")
    return value


def _folds(raw: dict, pool_inherited: bool = False) -> list[dict]:
    """The raw job(s) of a split recipe: leave-one-host-out → one ``host`` job per pool host.

    ``pool_inherited``: the entry's ``train_hosts`` come from ``[defaults]``, which
    does not itself ask for leave-one-host-out — there they are a host recipe's train
    hosts, not a pool, so the entry must name its pool."""
    recipe = raw.get("split_recipe", "host")
    if not isinstance(recipe, str) or recipe != LEAVE_ONE_HOST_OUT:
        if isinstance(recipe, str) and recipe not in MANIFEST_RECIPES:
            raise SpecError(f"split_recipe must be one of {', '.join(MANIFEST_RECIPES)}, not {recipe!r}")
        return [raw]  # build_spec checks the rest
    if pool_inherited:
        raise SpecError(f"train_hosts: a {LEAVE_ONE_HOST_OUT} entry names its own host pool (every "
                        "host of the data, for `cis490 eval --split-recipe leave-one-host-out`); "
                        "the [defaults] train_hosts are the host recipe's train hosts")
    pool = raw.get("train_hosts")
    if pool is None:
        raise SpecError(f"train_hosts: split_recipe {LEAVE_ONE_HOST_OUT!r} needs the host pool "
                        f"(train_hosts = [h1, h2, ...], >= 2 hosts)")
    if not isinstance(pool, list) or not all(isinstance(h, str) for h in pool):
        raise SpecError(f"train_hosts: the {LEAVE_ONE_HOST_OUT} pool must be a list of host ids")
    if len(pool) < 2:
        raise SpecError(f"train_hosts: the {LEAVE_ONE_HOST_OUT} pool needs >= 2 hosts, "
                        f"got {len(pool)} ({', '.join(pool) or 'none'})")
    dup = sorted({h for h in pool if pool.count(h) > 1})
    if dup:
        raise SpecError(f"train_hosts: the {LEAVE_ONE_HOST_OUT} pool repeats {', '.join(dup)}")
    return [{**raw, "split_recipe": "host", "train_hosts": [h for h in pool if h != held]}
            for held in pool]


def _jobs(index: int, entry, defaults: dict) -> list[JobSpec]:
    """The job(s) of one ``[[jobs]]`` entry: one per seed of a seed list (× fold of a
    leave-one-host-out pool, seed by seed)."""
    where = f"jobs[{index}]"
    if not isinstance(entry, dict):
        raise ManifestError(f"{where} must be a table")
    merged = {**defaults, **entry}
    unknown = sorted(set(merged) - JOB_KEYS)
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(JOB_KEYS))}")
    raw = {k: v for k, v in merged.items() if k not in CONSTRAINT_KEYS}
    raw["constraints"] = {k: merged[k] for k in CONSTRAINT_KEYS if k in merged}
    try:
        seeds = _seed_list(raw.get("seed"))
        inherited = ("train_hosts" not in entry and "train_hosts" in defaults
                     and defaults.get("split_recipe") != LEAVE_ONE_HOST_OUT)
        folds = _folds(raw, inherited)
        if seeds is None:
            return [build_spec(f) for f in folds]
        if len(seeds) * len(folds) > MAX_JOBS_PER_ENTRY:
            raise SpecError(f"{len(seeds)} seeds x {len(folds)} folds = {len(seeds) * len(folds)} jobs, "
                            f"more than {MAX_JOBS_PER_ENTRY} for one entry")
        split_seed = raw.get("split_seed", seeds[0])  # one split for every seed of the list
        return [build_spec({**f, "seed": s, "split_seed": split_seed}) for s in seeds for f in folds]
    except SpecError as exc:
        field_hint = f" ({entry.get('model', '?')}/{entry.get('mode', '?')})"
        raise ManifestError(f"{where}{field_hint}: {exc}") from None


def parse_manifest(data: bytes, *, jobs: bool = True) -> Manifest:
    """Validate a manifest. ``jobs=False`` (workers reading the spool's copy, which
    reload already validated) checks hosts and data only and skips the job list."""
    if len(data) > MAX_TOML_BYTES:
        raise ManifestError(f"manifest is larger than {MAX_TOML_BYTES} bytes")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ManifestError("manifest is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"TOML syntax: {exc}") from None
    except RecursionError:
        raise ManifestError("TOML nested too deeply") from None
    unknown = sorted(set(doc) - {"defaults", "data", "hosts", "jobs"})
    if unknown:
        raise ManifestError(f"unknown top-level key(s) {', '.join(unknown)}; known: data, defaults, hosts, jobs")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ManifestError("defaults must be a table")
    bad = sorted(set(defaults) - JOB_KEYS)
    if bad:
        raise ManifestError(f"defaults: unknown key(s) {', '.join(bad)}")
    hosts_raw = doc.get("hosts", {})
    if not isinstance(hosts_raw, dict):
        raise ManifestError("hosts must be a table of [hosts.NAME]")
    hosts = {name: _host(name, raw, jobs) for name, raw in hosts_raw.items()}
    lowered = [h.lower() for h in hosts]
    if len(set(lowered)) != len(lowered):
        raise ManifestError("hosts: two host ids differ only by case")
    jobs_raw = doc.get("jobs", []) if jobs else []
    if not isinstance(jobs_raw, list):
        raise ManifestError("jobs must be an array of [[jobs]] tables")
    specs: list[JobSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(jobs_raw):
        for spec in _jobs(i, entry, defaults):  # seeds and folds never repeat a job within one entry
            if spec.name in seen:
                split = "" if spec.split_seed is None else f", split_seed {spec.split_seed}"
                raise ManifestError(
                    f"jobs[{i}] duplicates jobs[{seen[spec.name]}] (same model, mode, hyper, "
                    f"split_recipe, train_hosts, seed and split seed: seed {spec.seed}{split})"
                )
            seen[spec.name] = i
            specs.append(spec)
    return Manifest(tuple(specs), hosts, _data_table(doc.get("data", {}), "data", jobs), data)


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TOML_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    return parse_manifest(data)


def pin_data_digests(manifest: Manifest, spool_root: Path) -> dict[str, str]:
    """sha256 of the schema and validation files as the operator sees them.

    Recorded into each spec so the driver refuses to train on different data.
    Files that do not exist from here are not pinned (a worker host may have
    them elsewhere); the driver then checks the schema hash only at load.
    """
    out = {}
    for key, field_name in (("schema", "schema_sha256"), ("validation", "validation_sha256")):
        rel = manifest.data.get(key)
        if not rel:
            continue
        p = Path(rel) if Path(rel).is_absolute() else spool_root / rel
        if p.is_file():
            out[field_name] = sha256_file(p)
    return out
