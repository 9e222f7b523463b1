"""Full-sweep validator: ``index.jsonl`` + every tarball -> ``validation_v1.parquet``.

Invariant: one row per indexed episode, sorted by ``episode_id``, with a
``status``:

- ``invalid`` (not usable; ``reasons`` says why): missing/truncated/corrupt
  tarball, sha256 or size different from the index, missing ``meta.json``,
  meta disagreeing with the index, an unknown channel (stream or field), a
  non-monotonic clock, malformed phases, missing ``host.jsonl``;
- ``degraded`` (usable, some channels absent -> NaN / mask 0): netflow or
  proc stream missing;
- ``ok``.

Usable-but-suspicious facts go to ``warnings`` without changing the status:
a counter reset (negative delta) — the windowing's rate conversion is
reset-safe, so the episode stays usable, but the fact is surfaced.

Two columns describe the episode for the evaluation, taken from ``meta.json``
(null when the episode is invalid): ``onset_ns``, the labelled start of the
first phase after ``clean`` (the infection onset that time to detect counts
from; null for an episode that never leaves ``clean``), and
``collector_version`` (``cis490-synth/…`` marks a store written by the
generator, which the report says in a banner). Tables written before these
columns existed are still read; the columns then come back null.

Store-level problems do not stop the sweep: a torn or malformed index line is
skipped with a warning naming its line number; tarballs on disk that the
index does not list are reported (not validated). Store-level warnings are
returned and stored in the parquet's key-value metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from .channels import BENIGN_PREFIX, REGISTRY, SOURCES
from .episode import Episode, EpisodeError, Limits, read_episode
from cis490.common import InputError

__all__ = ["STATUSES", "ValidationResult", "read_index", "validate_episode", "validate_store",
           "write_validation", "read_validation"]

STATUSES = ("ok", "degraded", "invalid")
INDEX_FIELDS = ("episode_id", "host_id", "profile", "sample_name", "started_at", "duration_s",
                "path", "sha256", "size_bytes")
MAX_INDEX_LINE = 1 << 20
COLUMNS = (
    ("episode_id", "string"), ("host_id", "string"), ("profile", "string"), ("sample_name", "string"),
    ("started_at", "string"), ("started_at_ns", "int64"), ("duration_s", "int64"),
    ("status", "string"), ("reasons", "string"), ("warnings", "string"),
    ("channels_present", "string"), ("has_netflow", "bool"), ("has_proc", "bool"),
    ("n_host_rows", "int64"), ("n_netflow_rows", "int64"), ("n_proc_rows", "int64"),
    ("counter_resets", "int64"), ("index_line", "int64"), ("path", "string"),
    ("sha256", "string"), ("size_bytes", "int64"),
    ("onset_ns", "int64"), ("collector_version", "string"),
)
# Added after the first release of the table: readers accept files without them.
OPTIONAL_COLUMNS = ("onset_ns", "collector_version")


@dataclass
class ValidationResult:
    rows: list[dict]
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for r in self.rows:
            out[r["status"]] += 1
        return out


def _parse_started_at(value: str) -> int:
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 10**9 + dt.microsecond * 1000


def _index_record_problem(rec: object) -> str | None:
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = [f for f in INDEX_FIELDS if f not in rec]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    p = PurePosixPath(str(rec["path"]))
    if p.is_absolute() or ".." in p.parts or "\\" in str(rec["path"]):
        return f"unsafe path {rec['path']!r}"
    try:
        _parse_started_at(rec["started_at"])
        int(rec["duration_s"]), int(rec["size_bytes"])
    except (ValueError, TypeError) as exc:
        return f"bad value ({exc})"
    return None


def read_index(store: str | Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """Parse ``index.jsonl``: (line number, record) pairs and warnings."""
    path = Path(store) / "index.jsonl"
    records: list[tuple[int, dict]] = []
    warnings: list[str] = []
    seen: set[str] = set()
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if len(line) > MAX_INDEX_LINE:
                warnings.append(f"index.jsonl line {lineno}: longer than {MAX_INDEX_LINE} bytes; skipped")
                continue
            try:
                rec = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                warnings.append(f"index.jsonl line {lineno}: torn or malformed record ({exc}); skipped")
                continue
            problem = _index_record_problem(rec)
            if problem:
                warnings.append(f"index.jsonl line {lineno}: {problem}; skipped")
                continue
            if rec["episode_id"] in seen:
                warnings.append(f"index.jsonl line {lineno}: duplicate episode {rec['episode_id']}; skipped")
                continue
            seen.add(rec["episode_id"])
            records.append((lineno, rec))
    indexed = {str(PurePosixPath(r["path"])) for _, r in records}
    orphans = sorted(
        p.relative_to(store).as_posix() for p in Path(store).glob("*/*.tar.zst")
        if p.relative_to(store).as_posix() not in indexed
    )
    if orphans:
        warnings.append(
            f"{len(orphans)} tarball(s) in the store are not in index.jsonl and were not validated "
            f"(e.g. {', '.join(orphans[:3])})"
        )
    return records, warnings


def _monotonic_problem(rows: list[dict], key: str, strict: bool) -> int | None:
    prev = None
    for i, r in enumerate(rows, 1):
        v = r.get(key)
        if not isinstance(v, int):
            return i
        if prev is not None and (v <= prev if strict else v < prev):
            return i
        prev = v
    return None


def _check_content(ep: Episode, rec: dict, reasons: list[str], warns: list[str]) -> None:
    meta = ep.meta
    assert meta is not None
    for k in ("episode_id", "host_id", "profile", "sample_name"):
        if meta.get(k) != rec[k]:
            reasons.append(f"meta.json {k}={meta.get(k)!r} disagrees with the index ({rec[k]!r})")
    t0, dur = meta.get("t0_wall_ns"), meta.get("duration_s")
    if not isinstance(t0, int) or not isinstance(dur, int) or dur <= 0:
        reasons.append("meta.json: t0_wall_ns/duration_s missing or not positive integers")
        return
    channels = meta.get("channels")
    if not isinstance(channels, list):
        reasons.append("meta.json: channels missing")
        channels = []
    for ch in channels:
        if ch not in SOURCES:
            reasons.append(f"unknown channel {ch!r} in meta.json")
    for src in SOURCES:
        if src in channels and src not in ep.streams:
            reasons.append(f"meta.json lists {src} but {src}.jsonl is missing")
        if src in ep.streams and src not in channels:
            reasons.append(f"{src}.jsonl present but not listed in meta.json channels")
    for name in ep.unknown_members:
        reasons.append(f"unknown member {name!r}")
    _check_phases(meta, rec, t0, dur, reasons, warns)
    if "host" not in ep.streams:
        reasons.append("host.jsonl missing")
    for src, rows in sorted(ep.streams.items()):
        known = REGISTRY.known_fields(src)
        unknown = sorted({k for r in rows for k in r} - known)
        if unknown:
            reasons.append(f"unknown channel(s) in {src}.jsonl: {', '.join(unknown)}")
        strict = src != "netflow"  # several flows may start in the same nanosecond
        bad = _monotonic_problem(rows, "t_wall_ns", strict)
        if bad is not None:
            reasons.append(f"non-monotonic clock: {src}.jsonl t_wall_ns at row {bad}")
        if src == "host":
            bad = _monotonic_problem(rows, "t_mono_ns", True)
            if bad is not None:
                reasons.append(f"non-monotonic clock: host.jsonl t_mono_ns at row {bad}")
        for ch in REGISTRY.channels:
            if ch.source != src or ch.kind != "counter":
                continue
            prev = None
            for i, r in enumerate(rows, 1):
                v = r.get(ch.field)
                if isinstance(v, (int, float)):
                    if prev is not None and v < prev:
                        warns.append(f"counter reset: {ch.name} at row {i}")
                    prev = v


def _check_phases(meta: dict, rec: dict, t0: int, dur: int, reasons: list[str], warns: list[str]) -> None:
    """Phases: a non-empty run of consecutive phases of the chain, in order, each
    non-empty, contiguous over [t0, t0 + duration). A ``benign-*`` profile has
    exactly ``clean``; a malicious profile that never leaves ``clean`` is
    usable (the sample never ran) and gets a warning."""
    chain = list(REGISTRY.phases)
    phases = meta.get("phases")
    ok_shape = isinstance(phases, list) and bool(phases) and all(isinstance(p, dict) for p in phases)
    names = [p.get("phase") for p in phases] if ok_shape else None
    first = chain.index(names[0]) if names and names[0] in chain else -1
    if names is None or first < 0 or names != chain[first:first + len(names)]:
        reasons.append(f"meta.json phases {names!r} are not a run of consecutive phases of {chain!r}")
        return
    edges = [t0] + [p.get("end_wall_ns") for p in phases]
    starts = [p.get("start_wall_ns") for p in phases]
    if starts != edges[:-1] or edges[-1] != t0 + dur * 10**9 or any(
        not isinstance(a, int) or not isinstance(b, int) or b <= a for a, b in zip(edges, edges[1:])
    ):
        reasons.append("meta.json phases are not contiguous over [t0, t0 + duration)")
        return
    benign = str(rec["profile"]).startswith(BENIGN_PREFIX)
    if benign and names != chain[:1]:
        reasons.append(f"profile {rec['profile']!r} is benign but meta.json labels phases {names!r}")
    elif not benign and names == chain[:1]:
        warns.append(f"profile {rec['profile']!r} never leaves {chain[0]!r} (the sample did not run)")


def _episode_facts(meta: dict | None, status: str) -> dict:
    """``onset_ns`` and ``collector_version`` of a usable episode (None otherwise)."""
    if meta is None or status == "invalid":
        return {"onset_ns": None, "collector_version": None}
    onset = next((p["start_wall_ns"] for p in meta["phases"] if p.get("phase") != REGISTRY.phases[0]),
                 None)
    version = meta.get("collector_version")
    return {"onset_ns": onset, "collector_version": version if isinstance(version, str) else ""}


def validate_episode(args: tuple[str, int, dict, Limits]) -> dict:
    """Validate one indexed episode; never raises for a bad episode."""
    store, lineno, rec, limits = args
    reasons: list[str] = []
    warns: list[str] = []
    row = {k: rec[k] for k in ("episode_id", "host_id", "profile", "sample_name", "path", "sha256")}
    row.update(started_at=str(rec["started_at"]), started_at_ns=_parse_started_at(rec["started_at"]),
               duration_s=int(rec["duration_s"]), size_bytes=int(rec["size_bytes"]), index_line=lineno)
    ep = None
    try:
        ep = read_episode(os.path.join(store, rec["path"]), limits)
    except FileNotFoundError:
        reasons.append("tarball missing")
    except EpisodeError as exc:
        reasons.append(f"unreadable tarball: {str(exc).split(': ', 1)[-1]}")
    if ep is not None:
        if ep.sha256 != rec["sha256"] or ep.size_bytes != int(rec["size_bytes"]):
            reasons.append("sha256/size differ from the index")
        if ep.meta is None:
            reasons.append("missing meta.json")
        else:
            _check_content(ep, rec, reasons, warns)
    streams = ep.streams if ep is not None else {}
    degraded = [f"{s}.jsonl missing" for s in ("netflow", "proc") if ep is not None and s not in streams]
    status = "invalid" if reasons else ("degraded" if degraded else "ok")
    row.update(
        status=status, reasons="; ".join(reasons or degraded), warnings="; ".join(warns),
        channels_present=",".join(s for s in SOURCES if s in streams),
        has_netflow="netflow" in streams, has_proc="proc" in streams,
        n_host_rows=len(streams.get("host", ())), n_netflow_rows=len(streams.get("netflow", ())),
        n_proc_rows=len(streams.get("proc", ())),
        counter_resets=sum(w.startswith("counter reset") for w in warns),
        **_episode_facts(ep.meta if ep is not None else None, status),
    )
    return row


def validate_store(store: str | Path, *, jobs: int = 1, limits: Limits | None = None,
                   progress=None) -> ValidationResult:
    from .parallel import pmap

    store = os.fspath(store)
    if not os.path.isfile(os.path.join(store, "index.jsonl")):
        raise InputError(f"{store}: no index.jsonl (is --store an episode store?)")
    records, warnings = read_index(store)
    limits = limits or Limits()
    args = [(store, ln, rec, limits) for ln, rec in sorted(records, key=lambda x: x[1]["episode_id"])]
    rows = list(pmap(validate_episode, args, jobs=jobs, progress=progress, chunksize=4))
    return ValidationResult(rows=rows, warnings=warnings)


def write_validation(result: ValidationResult, out: str | Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..common import atomic_writer

    types = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_()}
    schema = pa.schema([(n, types[t]) for n, t in COLUMNS],
                       metadata={"cis490.warnings": json.dumps(result.warnings)})
    table = pa.table({n: [r[n] for r in result.rows] for n, _ in COLUMNS}, schema=schema)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(out) as fh:
        # row groups of INDEX_BATCH rows: the builders stream the table one group at a time
        pq.write_table(table, fh, row_group_size=4096)


def read_validation(path: str | Path):
    """The validation table as a pandas DataFrame (``.attrs['warnings']`` set)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [n for n, _ in COLUMNS if n not in table.column_names and n not in OPTIONAL_COLUMNS]
    if missing:
        raise InputError(f"{path}: not a validation_v1 table (missing {', '.join(missing)})")
    df = table.to_pandas()
    for n in OPTIONAL_COLUMNS:
        if n not in df.columns:
            df[n] = None
    meta = table.schema.metadata or {}
    df.attrs["warnings"] = json.loads(meta.get(b"cis490.warnings", b"[]"))
    return df
