"""Synthetic episode store: the structure, channels and defects of the real one.

Invariant: ``synthesize(out, cfg)`` writes a store that is **byte-identical for
the same config**, whatever ``jobs`` is: episodes are planned up front in the
parent (ids, hosts, profiles, samples, start times, which ones carry a
defect), each is rendered from its own seeded generator, tarballs are
canonical (sorted members, fixed mtime, uid/gid 0, empty owner names, mode
0644, ustar) and compressed at a fixed zstd level, and ``index.jsonl`` is
written last, in start-time order.

Defects are injected on purpose (docs/DATA_PIPELINE.md) and returned in ``SynthReport`` so
tests can check the validator finds exactly them:

- one torn ``index.jsonl`` line: two records concatenated without a newline;
- one truncated tarball (cut to 60 %; the index keeps the full sha256/size);
- one episode without ``meta.json``;
- one host counter reset mid-episode (``net_tx_bytes_total`` restarts at 0);
- on every episode, netflow ``t_mono_ns`` is system uptime (plus clock drift),
  not episode-relative: only ``t_wall_ns`` aligns.

Every file, defective ones included, is published with ``atomic_write``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import zstandard

from ..common import InputError, atomic_write
from .channels import HOST_COUNTERS, HOST_GAUGES, PHASES, PROC_COUNTERS, PROC_GAUGES
from .world import (BENIGN_PROFILES, HOSTS, PROFILE_WEIGHTS, WORKLOADS, HostSpec, Signals, apply_sample,
                    apply_workload, benign_weights, clean_timeline, draw_timeline, is_benign, samples_of)

__all__ = ["SynthConfig", "SynthReport", "EpisodePlan", "plan_store", "render_episode", "episode_phases",
           "pack_episode", "synthesize", "COLLECTOR_VERSION"]

COLLECTOR_VERSION = "cis490-synth/2"
ZSTD_LEVEL = 3
_EPOCH = datetime(2026, 3, 2, 8, 0, 0, tzinfo=timezone.utc)
MIN_EPISODES_WITH_DEFECTS = 4
WEEK_S = 7 * 86400
MIN_GAP_S = 60  # between two episodes of one host
WORKLOAD_WITH_INFECTION = 0.35  # share of infected episodes that also run a benign workload
# short per-channel gaps inside episodes: fields a collector plugin failed to report
GAP_GROUPS = {
    "cpu": ("cpu_user_pct", "cpu_sys_pct", "cpu_iowait_pct", "load1"),
    "disk": ("disk_read_bytes_total", "disk_write_bytes_total", "disk_read_ops_total",
             "disk_write_ops_total"),
    "net": ("net_rx_bytes_total", "net_tx_bytes_total", "net_rx_packets_total", "net_tx_packets_total"),
    "proc": PROC_GAUGES + PROC_COUNTERS,
}
GAP_EPISODE_FRAC = 0.3


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. ``duration_s`` fixes every episode's length (it sets
    ``min_duration_s = max_duration_s``); otherwise lengths are uniform in
    ``[min_duration_s, max_duration_s]`` for benign and infected episodes alike."""

    episodes_per_host: int = 40
    duration_s: int | None = None
    seed: int = 0
    defects: bool = True
    min_duration_s: int = 90
    max_duration_s: int = 600
    benign_frac: float = 0.6  # share of each host's episodes that are benign-only
    hosts: int = len(HOSTS)  # the first N hosts of the world
    weeks: int = 8  # span of started_at (longer when the episodes fill > 2/3 of it)

    def __post_init__(self) -> None:
        if self.duration_s is not None:
            object.__setattr__(self, "min_duration_s", self.duration_s)
            object.__setattr__(self, "max_duration_s", self.duration_s)
        if self.episodes_per_host < 1:
            raise InputError("episodes_per_host must be >= 1")
        if self.defects and self.episodes_per_host < MIN_EPISODES_WITH_DEFECTS:
            raise InputError(
                f"episodes_per_host must be >= {MIN_EPISODES_WITH_DEFECTS} when defects are injected"
            )
        for name in ("min_duration_s", "max_duration_s"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 60 <= v <= 86400:
                label = "duration_s" if self.duration_s is not None else name
                raise InputError(f"{label} must be an integer within 60..86400, got {v!r}")
        if self.min_duration_s > self.max_duration_s:
            raise InputError(f"min_duration_s ({self.min_duration_s}) > max_duration_s ({self.max_duration_s})")
        if not 0.0 <= self.benign_frac < 1.0:
            raise InputError(f"benign_frac must be in [0, 1), got {self.benign_frac}")
        if not 2 <= self.hosts <= len(HOSTS):
            raise InputError(f"hosts must be within 2..{len(HOSTS)}, got {self.hosts}")
        if not 1 <= self.weeks <= 520:
            raise InputError(f"weeks must be within 1..520, got {self.weeks}")

    @property
    def host_ids(self) -> tuple[str, ...]:
        return tuple(h.host_id for h in HOSTS[: self.hosts])


@dataclass(frozen=True)
class EpisodePlan:
    episode_id: str
    host_index: int
    index: int  # episode number on its host
    host_id: str
    profile: str
    sample_name: str  # the malware sample, or the benign workload's program
    started_at_ns: int
    duration_s: int
    netflow: bool
    defect: str = ""  # "", "truncated", "no_meta", "counter_reset"
    workload: str = ""  # a benign workload running beside an infection ("" none)
    age_weeks: float = 0.0  # weeks since the world's first episode

    @property
    def path(self) -> str:
        return f"{self.host_id}/{self.episode_id}.tar.zst"

    @property
    def started_at(self) -> str:
        dt = datetime.fromtimestamp(self.started_at_ns // 10**9, tz=timezone.utc)
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def benign(self) -> bool:
        return is_benign(self.profile)


@dataclass
class SynthReport:
    n_episodes: int = 0
    torn_index_line: int | None = None  # 1-based line number in index.jsonl
    torn_episode_ids: tuple[str, ...] = ()
    truncated: tuple[str, ...] = ()
    no_meta: tuple[str, ...] = ()
    counter_reset: tuple[str, ...] = ()
    degraded: tuple[str, ...] = ()
    plans: list[EpisodePlan] = field(default_factory=list)

    @property
    def n_benign(self) -> int:
        return sum(p.benign for p in self.plans)

    @property
    def span_weeks(self) -> float:
        if not self.plans:
            return 0.0
        t = [p.started_at_ns for p in self.plans]
        return (max(t) - min(t)) / 1e9 / WEEK_S


def _assign(rng: np.random.Generator, options: list[str], weights: list[float], n: int) -> list[str]:
    """Every option once (shuffled) when n allows, then weighted draws."""
    first = list(rng.permutation(options))[:n]
    w = np.asarray(weights, float) / np.sum(weights)
    rest = [options[i] for i in rng.choice(len(options), size=max(0, n - len(first)), p=w)]
    return first + rest


def _start_times(rng: np.random.Generator, durations: np.ndarray, span_s: int) -> tuple[np.ndarray, int]:
    """Episode starts (s from the host's first) in order over ``span_s``, never overlapping,
    and the span actually used.

    The free time (span minus the episodes) is cut at sorted uniform points.
    When the episodes fill more than 2/3 of the span (e.g. 24 k episodes of up
    to 10 min in 8 weeks), the span grows to 1.5x their busy time, so the
    gaps stay random and the drift schedule runs over the real span.
    """
    n = len(durations)
    busy = int(durations.sum()) + MIN_GAP_S * n
    span = span_s if busy * 1.5 <= span_s else int(busy * 1.5)
    cuts = np.sort(rng.uniform(0, span - busy, n))
    starts = cuts + np.concatenate([[0], np.cumsum(durations[:-1] + MIN_GAP_S)])
    return np.floor(starts).astype(np.int64), span


def _pick(options, j: int, hi: int):
    return options[(j + hi) % len(options)]


def plan_store(cfg: SynthConfig) -> list[EpisodePlan]:
    """Decide every episode's coordinates (cheap, deterministic, in the parent).

    Per host: ``round(benign_frac * n)`` benign-only episodes at random
    positions; infected ones get profiles with every profile once, then
    weighted draws. Start times spread over ``weeks``; a sample is drawn only
    from the samples already seen at that time (``first_frac``), in rotation;
    the benign profile follows the mix of its time (``benign_weights``).
    """
    plans: list[EpisodePlan] = []
    epoch = int(_EPOCH.timestamp())
    span_s = cfg.weeks * WEEK_S
    for hi, host in enumerate(HOSTS[: cfg.hosts]):
        rng = np.random.default_rng([cfg.seed, hi, 0x5EED])
        n = cfg.episodes_per_host
        n_benign = min(n - 1, round(cfg.benign_frac * n)) if n > 1 else 0
        benign = np.zeros(n, bool)
        benign[rng.permutation(n)[:n_benign]] = True
        durations = rng.integers(cfg.min_duration_s, cfg.max_duration_s + 1, n)
        offsets, span = _start_times(rng, durations, span_s)
        starts = epoch + hi * 7 * 60 + int(rng.integers(0, 300)) + offsets
        frac = offsets / span  # where in the host's (real) span: drift and first-seen samples
        profiles = iter(_assign(rng, list(host.profiles), [PROFILE_WEIGHTS[p] for p in host.profiles],
                                n - n_benign))
        seen: dict[str, int] = {}
        for i in range(n):
            if benign[i]:
                w = benign_weights(frac[i])
                prof = str(rng.choice(BENIGN_PROFILES, p=np.array([w[p] for p in BENIGN_PROFILES]) / sum(w.values())))
            else:
                prof = next(profiles)
            options = [s for s in samples_of(prof) if s.first_frac <= frac[i]] or [samples_of(prof)[0]]
            j = seen.get(prof, 0)
            seen[prof] = j + 1
            sample = _pick(options, j, hi)
            workload = ""
            if not benign[i] and rng.random() < WORKLOAD_WITH_INFECTION:
                workload = WORKLOADS[int(rng.integers(0, len(WORKLOADS)))].name
            eid = hashlib.sha256(f"{cfg.seed}:{host.host_id}:{i}".encode()).hexdigest()[:16]
            netflow = rng.random() >= host.netflow_missing_frac
            plans.append(EpisodePlan(
                episode_id=eid, host_index=hi, index=i, host_id=host.host_id, profile=prof,
                sample_name=sample.name, started_at_ns=int(starts[i]) * 10**9,
                duration_s=int(durations[i]), netflow=bool(netflow), workload=workload,
                age_weeks=float(starts[i] - epoch) / WEEK_S,
            ))
    plans.sort(key=lambda p: (p.started_at_ns, p.episode_id))
    if cfg.defects:
        plans = _mark_defects(plans, cfg.seed)
    return plans


def _mark_defects(plans: list[EpisodePlan], seed: int) -> list[EpisodePlan]:
    rng = np.random.default_rng([seed, 0xDEFEC7])
    order = [int(i) for i in rng.permutation(len(plans))]
    # the counter reset goes to an episode with netflow, so it stays "ok" + a warning
    reset = next(i for i in order if plans[i].netflow)
    rest = [i for i in order if i != reset]
    marks = {rest[0]: "truncated", rest[1]: "no_meta", reset: "counter_reset"}
    out = list(plans)
    for i, d in marks.items():
        p = out[i]
        out[i] = EpisodePlan(**{**p.__dict__, "defect": d})
    return out


# -- rendering ----------------------------------------------------------------

def _dumps(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()


def _workload(name: str):
    return next(w for w in WORKLOADS if w.name == name)


def _gap(rng: np.random.Generator, n: int, defect: str) -> tuple[tuple[str, ...], int, int]:
    """Fields one collector plugin failed to report, over seconds [start, stop); () for none."""
    if rng.random() >= GAP_EPISODE_FRAC:
        return (), 0, 0
    groups = [g for g in GAP_GROUPS if not (g == "net" and defect == "counter_reset")]
    group = groups[int(rng.integers(0, len(groups)))]
    length = int(rng.integers(5, 41))
    start = int(rng.integers(2, max(3, n - length)))
    return GAP_GROUPS[group], start, min(n, start + length)


def _timeline(plan: EpisodePlan, seed: int):
    """The episode's generator and its timeline: the first thing drawn from it."""
    rng = np.random.default_rng([seed, plan.host_index, plan.index])
    return rng, (clean_timeline(plan.duration_s) if plan.benign else draw_timeline(rng, plan.duration_s))


def episode_phases(plan: EpisodePlan, seed: int) -> list[dict]:
    """The labelled phases ``meta.json`` of this episode carries (cheap: no signals rendered)."""
    return _phases(plan, _timeline(plan, seed)[1])


def render_episode(plan: EpisodePlan, seed: int) -> dict[str, bytes]:
    """The members of one episode tarball (name -> bytes), defects applied."""
    host: HostSpec = HOSTS[plan.host_index]
    sample = next(s for s in samples_of(plan.profile) if s.name == plan.sample_name)
    rng, tl = _timeline(plan, seed)
    n, t0 = plan.duration_s, plan.started_at_ns
    sig = Signals(rng, host, n, plan.age_weeks)
    if plan.benign:
        apply_workload(sig, sample)
    else:
        if plan.workload:
            apply_workload(sig, _workload(plan.workload))
        apply_sample(sig, tl, sample)

    gauges, counters = sig.host_rows()
    if plan.defect == "counter_reset":  # agent restart: one counter restarts from zero
        c = HOST_COUNTERS.index("net_tx_bytes_total")
        r = n // 2
        counters[r:, c] -= counters[r - 1, c] - rng.integers(1000, 5000)
    jitter = rng.integers(0, 15_000_000, n)
    keep = rng.random(n) >= 0.004
    keep[:2] = True
    gap_fields, g0, g1 = _gap(rng, n, plan.defect)
    host_rows = []
    gl, cl = gauges.tolist(), counters.astype(np.int64).tolist()
    for sec in range(n):
        if not keep[sec]:
            continue  # the collector missed a sample (shows up as a NaN second)
        row = {"t_wall_ns": t0 + sec * 10**9 + int(jitter[sec]),
               "t_mono_ns": sec * 10**9 + int(jitter[sec]) + 3_000_000}
        for name, v in zip(HOST_GAUGES, gl[sec]):
            row[name] = v if name in ("cpu_user_pct", "cpu_sys_pct", "cpu_iowait_pct", "load1") else int(v)
        row.update(zip(HOST_COUNTERS, cl[sec]))
        if g0 <= sec < g1:
            for name in gap_fields:
                row.pop(name, None)
        host_rows.append(row)

    pg, pc = sig.proc_rows()
    pgl, pcl = pg.tolist(), pc.astype(np.int64).tolist()
    proc_rows = []
    for sec in range(n):
        row = {"t_wall_ns": t0 + sec * 10**9 + 500_000_000 + int(jitter[sec])}
        for name, v in zip(PROC_GAUGES, pgl[sec]):
            row[name] = v if name == "cpu_pct" else int(v)
        row.update(zip(PROC_COUNTERS, pcl[sec]))
        if g0 <= sec < g1:
            for name in gap_fields:
                row.pop(name, None)
        proc_rows.append(row)

    members = {"host.jsonl": _dumps(host_rows), "proc.jsonl": _dumps(proc_rows)}
    if plan.netflow:
        members["netflow.jsonl"] = _netflow(sig, host, plan, rng)
    if plan.defect != "no_meta":
        members["meta.json"] = _meta(plan, tl, sorted(m[: -len(".jsonl")] for m in members))
    return members


def _netflow(sig: Signals, host: HostSpec, plan: EpisodePlan, rng: np.random.Generator) -> bytes:
    t0 = plan.started_at_ns
    uptime0 = int(rng.integers(2, 40)) * 86400 * 10**9 + int(rng.integers(0, 86400)) * 10**9
    drift = 1.0 + rng.uniform(-2e-3, 2e-3)  # the capture box's clock runs at its own rate
    rows = []
    for t, ip, port, proto, nbytes, pkts, dur, direction in sorted(sig.flows, key=lambda f: f[0]):
        off = int(t * 1e9)
        src_port = int(rng.integers(32768, 60999))
        out = direction == "out"
        rows.append({
            "t_wall_ns": t0 + off,
            "t_mono_ns": uptime0 + int(off * drift),
            "src_ip": host.ip if out else ip, "dst_ip": ip if out else host.ip,
            "src_port": src_port if out else port, "dst_port": port if out else src_port,
            "proto": proto, "bytes": nbytes, "packets": pkts, "duration_ms": dur, "direction": direction,
        })
    return _dumps(rows)


def _phases(plan: EpisodePlan, tl) -> list[dict]:
    """The labelled phases inside the episode: a run of the chain (a benign-only episode:
    clean throughout; one recorded mid-chain starts with the phase in force at t0)."""
    t0, n = plan.started_at_ns, plan.duration_s
    edges = [0, *tl.labelled, n]
    out = []
    for i, ph in enumerate(PHASES[: len(edges) - 1]):
        start, end = max(0, edges[i]), min(n, edges[i + 1])
        if end > start:
            out.append({"phase": ph, "start_wall_ns": t0 + start * 10**9, "end_wall_ns": t0 + end * 10**9})
    return out


def _meta(plan: EpisodePlan, tl, sources: list[str]) -> bytes:
    t0, n = plan.started_at_ns, plan.duration_s
    phases = _phases(plan, tl)
    meta = {
        "episode_id": plan.episode_id, "host_id": plan.host_id, "profile": plan.profile,
        "sample_name": plan.sample_name, "t0_wall_ns": t0, "duration_s": n, "phases": phases,
        "channels": sources, "collector_version": COLLECTOR_VERSION,
    }
    return (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode()


def pack_episode(members: dict[str, bytes], *, mtime: int = 0) -> bytes:
    """A canonical tar of ``members`` compressed with zstd at a fixed level."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(data))
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, threads=0)
    return cctx.compress(buf.getvalue())


def write_episode(store: str | Path, plan: EpisodePlan, seed: int) -> dict:
    """Render, pack and publish one episode; return its index record."""
    blob = pack_episode(render_episode(plan, seed), mtime=plan.started_at_ns // 10**9)
    record = {
        "episode_id": plan.episode_id, "host_id": plan.host_id, "profile": plan.profile,
        "sample_name": plan.sample_name, "started_at": plan.started_at, "duration_s": plan.duration_s,
        "path": plan.path, "sha256": hashlib.sha256(blob).hexdigest(), "size_bytes": len(blob),
    }
    if plan.defect == "truncated":  # cut in transit: the index still describes the full file
        blob = blob[: int(len(blob) * 0.6)]
    dest = Path(store) / plan.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, blob)
    return record


def _write_one(args: tuple[str, EpisodePlan, int]) -> dict:
    return write_episode(*args)


def synthesize(out: str | Path, cfg: SynthConfig, *, jobs: int = 1, progress=None) -> SynthReport:
    """Write the whole store under ``out`` (created if needed)."""
    from .parallel import pmap

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "index.jsonl").exists():
        raise InputError(f"{out}: already holds a store (index.jsonl exists); choose an empty --out")
    plans = plan_store(cfg)
    records = list(pmap(_write_one, [(str(out), p, cfg.seed) for p in plans], jobs=jobs, progress=progress))

    report = SynthReport(n_episodes=len(plans), plans=plans)
    report.truncated = tuple(p.episode_id for p in plans if p.defect == "truncated")
    report.no_meta = tuple(p.episode_id for p in plans if p.defect == "no_meta")
    report.counter_reset = tuple(p.episode_id for p in plans if p.defect == "counter_reset")
    lines = [json.dumps(r, separators=(",", ":")) for r in records]
    if cfg.defects and len(lines) >= 2:
        lines, report.torn_index_line, report.torn_episode_ids = _tear(lines, plans, cfg.seed)
    report.degraded = tuple(
        p.episode_id for p in plans
        if not p.netflow and not p.defect and p.episode_id not in report.torn_episode_ids
    )
    atomic_write(out / "index.jsonl", "".join(ln + "\n" for ln in lines))
    return report


def _tear(lines: list[str], plans: list[EpisodePlan], seed: int):
    """Concatenate two clean records on one line (the seed's torn write)."""
    rng = np.random.default_rng([seed, 0x7EA2])
    candidates = [i for i in range(len(plans) - 1) if not plans[i].defect and not plans[i + 1].defect]
    i = candidates[int(rng.integers(0, len(candidates)))] if candidates else 0
    torn = lines[:i] + [lines[i] + lines[i + 1]] + lines[i + 2:]
    return torn, i + 1, (plans[i].episode_id, plans[i + 1].episode_id)
