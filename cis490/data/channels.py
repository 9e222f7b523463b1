"""The channel registry: the single place channels, modes and their order live.

Invariant: every stage that turns an episode into numbers (windowing, summary
features, tensors, loaders, checkpoints) takes its channel list from here, in
this order. Changing anything here changes the feature schema
(``feature_schema_v1.json``) and so its sha256, which checkpoints record and
refuse to load against.

Order matters and is chosen so that **``realistic`` channels are a prefix of
``oracle`` channels** (host, then netflow-derived, then proc): selecting a mode
is a slice ``[:n_channels(mode)]``, which keeps memory-mapped tensors views.

This module is imported by the coordinator side too, so it must stay free of
numpy/pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from cis490.common import InputError

__all__ = [
    "PHASES",
    "MODES",
    "SOURCES",
    "Channel",
    "Registry",
    "WindowSpec",
    "REGISTRY",
    "DEFAULT_WINDOW",
    "channels_for",
    "channel_names",
]

# Labels, in class-index order (0..3). CONTRACTS.md: "Labels and modes".
PHASES: tuple[str, ...] = ("clean", "armed", "infecting", "infected_running")
# A profile named benign-* is a benign-only episode: clean throughout (docs/DATA_PIPELINE.md).
BENIGN_PREFIX = "benign-"

# Threat-model modes and the episode streams each may use.
MODES: dict[str, tuple[str, ...]] = {
    "realistic": ("host", "netflow"),
    "oracle": ("host", "netflow", "proc"),
}

# Member streams of an episode tarball (``<source>.jsonl``).
SOURCES: tuple[str, ...] = ("host", "netflow", "proc")

# Channel kinds:
#   gauge       value sampled at 1 Hz, placed in the second its t_wall_ns falls in
#   counter     monotonic counter -> per-second rate, reset-safe (see windows.py)
#   flow_count  netflow: number of flows starting in the second
#   flow_sum    netflow: sum of a flow field over flows starting in the second,
#               optionally restricted to one direction
#   flow_distinct netflow: number of distinct values of a field in the second
KINDS = ("gauge", "counter", "flow_count", "flow_sum", "flow_distinct")


@dataclass(frozen=True)
class Channel:
    name: str  # unique, "<source>.<what>"
    source: str  # one of SOURCES
    kind: str  # one of KINDS
    field: str = ""  # field of the source rows it reads ("" for flow_count)
    direction: str = ""  # flow_sum only: "in", "out" or "" (both)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "field": self.field,
            "direction": self.direction,
        }


def _host(kind: str, *names: str) -> list[Channel]:
    return [Channel(f"host.{n}", "host", kind, n) for n in names]


def _proc(kind: str, *names: str) -> list[Channel]:
    return [Channel(f"proc.{n}", "proc", kind, n) for n in names]


HOST_GAUGES = (
    "cpu_user_pct", "cpu_sys_pct", "cpu_iowait_pct", "load1", "mem_used_bytes",
    "swap_used_bytes", "procs", "threads", "tcp_established", "open_fds",
)
HOST_COUNTERS = (
    "ctx_switches_total", "interrupts_total", "forks_total",
    "disk_read_bytes_total", "disk_write_bytes_total",
    "disk_read_ops_total", "disk_write_ops_total",
    "net_rx_bytes_total", "net_tx_bytes_total",
    "net_rx_packets_total", "net_tx_packets_total",
)
NETFLOW_FIELDS = (
    "t_wall_ns", "t_mono_ns", "src_ip", "dst_ip", "src_port", "dst_port",
    "proto", "bytes", "packets", "duration_ms", "direction",
)
PROC_GAUGES = ("cpu_pct", "rss_bytes", "n_procs", "n_threads")
PROC_COUNTERS = (
    "files_opened_total", "bytes_written_total", "connects_total", "dns_queries_total",
)

_CHANNELS: tuple[Channel, ...] = tuple(
    _host("gauge", *HOST_GAUGES)
    + _host("counter", *HOST_COUNTERS)
    + [
        Channel("netflow.flows", "netflow", "flow_count"),
        Channel("netflow.bytes_out", "netflow", "flow_sum", "bytes", "out"),
        Channel("netflow.bytes_in", "netflow", "flow_sum", "bytes", "in"),
        Channel("netflow.packets", "netflow", "flow_sum", "packets"),
        Channel("netflow.dst_ports", "netflow", "flow_distinct", "dst_port"),
        Channel("netflow.dst_ips", "netflow", "flow_distinct", "dst_ip"),
    ]
    + _proc("gauge", *PROC_GAUGES)
    + _proc("counter", *PROC_COUNTERS)
)


@dataclass(frozen=True)
class Registry:
    """Channels in canonical order plus the modes that select them.

    ``version`` is bumped by hand whenever the meaning of a channel changes
    without its name changing (e.g. a different aggregation).
    """

    version: int
    channels: tuple[Channel, ...]
    modes: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(MODES))
    phases: tuple[str, ...] = PHASES

    def __post_init__(self) -> None:
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise InputError("channel registry: duplicate channel names")
        for c in self.channels:
            if c.source not in SOURCES:
                raise InputError(f"channel {c.name}: unknown source {c.source!r}")
            if c.kind not in KINDS:
                raise InputError(f"channel {c.name}: unknown kind {c.kind!r}")
        for mode in self.modes:
            self.channels_for(mode)  # checks the prefix property

    def channels_for(self, mode: str) -> tuple[Channel, ...]:
        """Channels of ``mode`` in canonical order (always a prefix of all channels)."""
        try:
            sources = self.modes[mode]
        except KeyError:
            raise InputError(
                f"mode: unknown mode {mode!r} (expected one of {sorted(self.modes)})"
            ) from None
        chosen = tuple(c for c in self.channels if c.source in sources)
        if self.channels[: len(chosen)] != chosen:
            raise InputError(f"channel registry: mode {mode!r} is not a prefix of the channel order")
        return chosen

    def known_fields(self, source: str) -> frozenset[str]:
        """Field names a ``<source>.jsonl`` row may carry (anything else is unknown)."""
        if source == "netflow":
            return frozenset(NETFLOW_FIELDS)
        base = {"t_wall_ns", "t_mono_ns"}
        return frozenset(base | {c.field for c in self.channels if c.source == source})

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "channels": [c.as_dict() for c in self.channels],
            "modes": {m: [c.name for c in self.channels_for(m)] for m in sorted(self.modes)},
            "phases": list(self.phases),
        }


REGISTRY = Registry(version=1, channels=_CHANNELS)


@dataclass(frozen=True)
class WindowSpec:
    """Fixed window length and stride in seconds on the 1 Hz wall-clock grid.

    A window ending at grid second ``e`` (exclusive) covers seconds
    ``[e - length_s, e)``; its ``t_end_ns = t0_wall_ns + e * 1e9``; its label is
    the phase in force at ``t_end_ns - 1`` (the phase at window end). Window
    ends are ``length_s, length_s + stride_s, ...`` up to the episode duration.
    """

    length_s: int = 20
    stride_s: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.length_s, int) or self.length_s < 2:
            raise InputError(f"window length_s must be an integer >= 2, got {self.length_s!r}")
        if not isinstance(self.stride_s, int) or self.stride_s < 1:
            raise InputError(f"window stride_s must be an integer >= 1, got {self.stride_s!r}")

    def n_windows(self, duration_s: int) -> int:
        if duration_s < self.length_s:
            return 0
        return (duration_s - self.length_s) // self.stride_s + 1

    def as_dict(self) -> dict:
        return {
            "length_s": self.length_s,
            "stride_s": self.stride_s,
            "grid_hz": 1,
            "align": "t_wall_ns",
            "label": "phase_at_window_end",
        }


DEFAULT_WINDOW = WindowSpec()


def channels_for(mode: str, registry: Registry = REGISTRY) -> tuple[Channel, ...]:
    return registry.channels_for(mode)


def channel_names(mode: str, registry: Registry = REGISTRY) -> list[str]:
    return [c.name for c in registry.channels_for(mode)]
