"""The synthetic world (docs/DATA_PIPELINE.md): hosts, profiles, samples, workloads, signals.

Invariant: everything random is drawn from a generator seeded by
``(seed, host index, episode index)``, so one episode's content depends on
nothing but its own coordinates (episodes can be rendered in any order, by
any number of processes, and come out byte-identical).

The signal model works in physical units (cores busy, bytes/s, forks/s...)
and maps them onto each host's hardware at the end, so the same sample looks
different on a 4-core laptop and a 16-core gaming PC: cross-host transfer
costs accuracy, as on the real store. Phase changes are soft (sigmoid ramps
of a few seconds) and the labelled boundaries are jittered around the
behavioural ones, so windows near a boundary carry label noise.

No shortcut by construction: an infected episode's onset and each phase's
length are drawn in seconds, independently of the episode's (random)
length, so the time since the episode started says next to nothing about
its label; benign-only episodes (profiles ``benign-*``, every window
``clean``) run workloads that resemble malicious signatures on purpose
(backup ~ io-walk, compile ~ cpu-saturate, update ~ exfiltration); and the
world ages: hosts' background levels drift week by week, the benign mix
shifts, and some samples are first seen late (``Sample.first_frac``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .channels import BENIGN_PREFIX, HOST_COUNTERS, HOST_GAUGES, PROC_COUNTERS, PROC_GAUGES
from cis490.common import InputError

PROFILES = ("scan-and-dial", "cpu-saturate", "low-and-slow", "io-walk", "beacon", "fork-storm")
BENIGN_PROFILES = ("benign-idle", "benign-compile", "benign-browsing", "benign-backup",
                   "benign-update", "benign-videocall")
# the benign mix at the start and at the end of the world's span (linear in between):
# remote work grows (video calls), builds move to CI (fewer local compiles)
BENIGN_WEIGHTS_START = {"benign-idle": 0.24, "benign-compile": 0.24, "benign-browsing": 0.2,
                        "benign-backup": 0.12, "benign-update": 0.12, "benign-videocall": 0.08}
BENIGN_WEIGHTS_END = {"benign-idle": 0.2, "benign-compile": 0.08, "benign-browsing": 0.2,
                      "benign-backup": 0.12, "benign-update": 0.12, "benign-videocall": 0.28}


def is_benign(profile: str) -> bool:
    return profile.startswith(BENIGN_PREFIX)


def benign_weights(frac: float) -> dict[str, float]:
    """The benign workload mix at ``frac`` (0 = start, 1 = end) of the world's span."""
    f = min(max(float(frac), 0.0), 1.0)
    return {p: (1 - f) * BENIGN_WEIGHTS_START[p] + f * BENIGN_WEIGHTS_END[p] for p in BENIGN_PROFILES}
PROFILE_WEIGHTS = {
    "scan-and-dial": 0.15, "cpu-saturate": 0.13, "low-and-slow": 0.13,
    "io-walk": 0.27, "beacon": 0.16, "fork-storm": 0.16,
}


@dataclass(frozen=True)
class Sample:
    name: str
    profile: str
    intensity: float  # scales the running-phase signature
    period_s: float = 0.0  # beacon / exfil / pool period
    extra: float = 0.0  # profile-specific knob
    first_frac: float = 0.0  # share of the world's span before the sample is first seen


SAMPLES: tuple[Sample, ...] = (
    Sample("mirai_v1", "scan-and-dial", 1.0, period_s=3.0, extra=18.0),
    Sample("gafgyt_b", "scan-and-dial", 0.7, period_s=5.0, extra=10.0, first_frac=0.45),
    Sample("xmrig_fork", "cpu-saturate", 1.0, period_s=10.0, extra=0.9),
    Sample("slowdrip", "low-and-slow", 1.0, period_s=17.0, extra=4000.0),
    Sample("lockwalk_a", "io-walk", 1.0, extra=1.0),
    Sample("lockwalk_b", "io-walk", 0.75, extra=0.6),
    Sample("cryptwalk", "io-walk", 1.3, extra=1.4, first_frac=0.5),
    Sample("filecrawl", "io-walk", 0.5, extra=0.2),
    Sample("cobalt_sim", "beacon", 1.0, period_s=6.0, extra=600.0),
    Sample("sliver_sim", "beacon", 0.8, period_s=11.0, extra=1500.0, first_frac=0.55),
    Sample("forkbomb_c", "fork-storm", 1.0, extra=1.0),
    Sample("spawnstorm", "fork-storm", 0.6, extra=0.5, first_frac=0.6),
)

# Benign workloads: ``sample_name`` of a benign-only episode names the program that ran.
WORKLOADS: tuple[Sample, ...] = (
    Sample("desktop-idle", "benign-idle", 0.6),
    Sample("screen-locked", "benign-idle", 0.35),
    Sample("make-j", "benign-compile", 1.0, extra=0.95),
    Sample("cargo-build", "benign-compile", 0.75, extra=0.6),
    Sample("firefox", "benign-browsing", 1.0, extra=5.0),
    Sample("chromium", "benign-browsing", 1.3, extra=8.0),
    Sample("restic", "benign-backup", 1.0, extra=1.0),
    Sample("rsync-nas", "benign-backup", 0.8, extra=0.4),
    Sample("apt-upgrade", "benign-update", 1.0, period_s=45.0),
    Sample("flatpak-update", "benign-update", 0.7, period_s=70.0),
    Sample("zoom", "benign-videocall", 1.0, extra=2.6e5),
    Sample("jitsi", "benign-videocall", 0.8, extra=1.6e5),
)


@dataclass(frozen=True)
class HostSpec:
    host_id: str
    cores: int
    mem_gib: int
    cuda: bool
    ip: str
    netflow_missing_frac: float
    profiles: tuple[str, ...]
    disk_speed: float  # multiplies io throughput of a file walk
    base: dict = field(default_factory=dict)  # background per-second levels


HOSTS: tuple[HostSpec, ...] = (
    HostSpec(
        "elliott-thinkpad", 4, 16, False, "192.168.7.21", 0.15, PROFILES, 1.0,
        base=dict(user=0.35, sys=0.12, iowait=0.8, procs=230, threads=950, tcp=22,
                  fds=3100, mem=6.2e9, swap=2.1e8, ctx=3800, intr=2400, forks=1.5,
                  dr=1.8e5, dw=3.5e5, dro=18, dwo=35, rx=4.0e4, tx=9.0e3, flows=1.0),
    ),
    HostSpec(
        "k-gamingcom", 16, 64, True, "10.20.0.54", 0.85,
        tuple(p for p in PROFILES if p != "scan-and-dial"), 2.6,
        base=dict(user=0.4, sys=0.15, iowait=0.4, procs=270, threads=1250, tcp=28,
                  fds=3700, mem=8.0e9, swap=0.0, ctx=4800, intr=3200, forks=2.0,
                  dr=3.0e5, dw=5.5e5, dro=30, dwo=52, rx=7.0e4, tx=1.4e4, flows=1.4),
    ),
    HostSpec(  # a 32-core build workstation with fast NVMe: busy background, big numbers
        "j-workstation", 32, 128, False, "10.3.1.17", 0.25, PROFILES, 3.5,
        base=dict(user=0.9, sys=0.3, iowait=0.3, procs=480, threads=2600, tcp=40,
                  fds=6200, mem=2.4e10, swap=0.0, ctx=9000, intr=6500, forks=4.0,
                  dr=6.0e5, dw=9.0e5, dro=55, dwo=80, rx=1.2e5, tx=3.0e4, flows=2.0),
    ),
    HostSpec(  # a 2-core mini PC with a slow SATA disk: quiet, swaps, waits on IO
        "r-minipc", 2, 8, False, "192.168.50.9", 0.10, PROFILES, 0.45,
        base=dict(user=0.15, sys=0.06, iowait=1.6, procs=140, threads=520, tcp=12,
                  fds=1600, mem=2.9e9, swap=4.0e8, ctx=1900, intr=1300, forks=0.7,
                  dr=7.0e4, dw=1.4e5, dro=9, dwo=16, rx=2.0e4, tx=5.0e3, flows=0.6),
    ),
)
# Background levels drift as the hosts age (updates, more tabs, more services): per week
BASE_DRIFT_PER_WEEK = {"user": 0.02, "procs": 0.01, "threads": 0.015, "mem": 0.02, "fds": 0.01,
                       "rx": 0.04, "tx": 0.04, "flows": 0.03, "ctx": 0.01}
HOST_BY_ID = {h.host_id: h for h in HOSTS}


def samples_of(profile: str) -> tuple[Sample, ...]:
    """The malware samples of a malicious profile, or the workloads of a benign one."""
    return tuple(s for s in (WORKLOADS if is_benign(profile) else SAMPLES) if s.profile == profile)


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def _ar1(rng: np.random.Generator, n: int, sigma: float, rho: float = 0.85) -> np.ndarray:
    e = rng.normal(0.0, sigma * np.sqrt(1 - rho * rho), n)
    out = np.empty(n)
    acc = rng.normal(0.0, sigma)
    for i in range(n):
        acc = rho * acc + e[i]
        out[i] = acc
    return out


@dataclass
class Timeline:
    behaviour: tuple[float, ...]  # true phase change times (s); () for a benign-only episode
    labelled: tuple[int, ...]  # boundaries written to meta.json (s); <= 0: before the episode
    armed: np.ndarray
    infecting: np.ndarray
    running: np.ndarray

    @property
    def infected(self) -> bool:
        return bool(self.behaviour)


def clean_timeline(duration_s: int) -> Timeline:
    """A benign-only episode: ``clean`` throughout, no process tree of a sample."""
    z = np.zeros(duration_s)
    return Timeline((), (), z, z.copy(), z.copy())


ONSET_DELAY_MEAN_S = 30.0  # the sample runs this long (mean, exponential) after >= 10 s of clean
PRE_INFECTED_FRAC = 0.3  # infected episodes whose recording starts mid-chain (already armed, ...)


def draw_timeline(rng: np.random.Generator, duration_s: int) -> Timeline:
    """Random onset and phase lengths, in seconds, independent of the episode's length.

    ``armed`` lasts 3-12 s and ``infecting`` 6-30 s (capped for short
    episodes). In 30 % of infected episodes the recording starts mid-chain
    (the host was already armed, infecting or running: the onset lies up to
    a minute before the episode); otherwise the onset follows >= 10 s of
    ``clean`` by an exponential delay (mean 30 s), capped to leave >= 20 s
    (or a fifth of the episode) of ``infected_running``. The infection then
    runs to the end of the episode, so the share of malicious windows is
    nearly the same at every time since episode start: a clock carries next
    to no label (tests/data/test_synth_world.py measures it).
    """
    d = float(duration_s)
    armed = min(rng.uniform(3.0, 12.0), max(2.0, 0.08 * d))
    infecting = min(rng.uniform(6.0, 30.0), max(3.0, 0.15 * d))
    lo = min(10.0, 0.15 * d)
    hi = max(lo, d - armed - infecting - max(20.0, 0.2 * d))
    if rng.random() < PRE_INFECTED_FRAC:
        b1 = rng.uniform(-(armed + infecting + 60.0), -1.0)
    else:
        b1 = min(lo + rng.exponential(ONSET_DELAY_MEAN_S), hi)
    b2, b3 = b1 + armed, b1 + armed + infecting
    lab = np.rint(np.array([b1, b2, b3]) + rng.normal(0.0, 0.8, 3)).astype(int)
    lab[1] = max(lab[0] + 1, lab[1])
    lab[2] = min(max(lab[1] + 1, lab[2]), duration_s - 1)
    if b1 > 0:
        lab[0] = max(1, lab[0])
    s = np.arange(duration_s) + 0.5
    tau = rng.uniform(0.7, 1.6)
    up1, up2, up3 = _sig((s - b1) / tau), _sig((s - b2) / tau), _sig((s - b3) / (2.0 * tau))
    return Timeline((b1, b2, b3), tuple(int(x) for x in lab), up1 - up2, up2 - up3, up3)


class Signals:
    """Per-second physical quantities of one episode, plus its flows."""

    def __init__(self, rng: np.random.Generator, host: HostSpec, duration_s: int,
                 age_weeks: float = 0.0) -> None:
        self.rng, self.host, self.n = rng, host, duration_s
        n = duration_s
        b = {k: v * (1.0 + BASE_DRIFT_PER_WEEK.get(k, 0.0) * max(0.0, age_weeks))
             for k, v in host.base.items()}
        self.base = b
        s = np.arange(n)
        ep = rng.lognormal(0.0, 0.25)  # this episode's overall background level

        def bg(level: float, noise: float = 0.12, drift: float = 0.12) -> np.ndarray:
            # each channel also wanders per episode, so absolute levels alone
            # do not identify a host or a phase
            period = rng.uniform(60.0, 400.0)
            d = 1.0 + drift * np.sin(2 * np.pi * s / period + rng.uniform(0, 2 * np.pi))
            own = rng.lognormal(0.0, 0.25)
            return np.maximum(level * ep * own * d * (1.0 + _ar1(rng, n, noise)), 0.0)

        self.h = {
            "user": bg(b["user"], 0.25), "sys": bg(b["sys"], 0.2), "iowait": bg(b["iowait"], 0.3),
            "procs": bg(b["procs"], 0.01, 0.02), "threads": bg(b["threads"], 0.01, 0.03),
            "tcp": bg(b["tcp"], 0.05), "fds": bg(b["fds"], 0.01, 0.03),
            "mem": bg(b["mem"], 0.005, 0.04), "swap": bg(b["swap"], 0.002, 0.01),
            "ctx": bg(b["ctx"], 0.15), "intr": bg(b["intr"], 0.1), "forks": bg(b["forks"], 0.5),
            "dr": bg(b["dr"], 0.6), "dw": bg(b["dw"], 0.5), "dro": bg(b["dro"], 0.4),
            "dwo": bg(b["dwo"], 0.4), "rx": bg(b["rx"], 0.5), "tx": bg(b["tx"], 0.4),
        }
        self.p = {k: np.zeros(n) for k in ("cpu", "rss", "procs", "threads", "files", "bw", "conn", "dns")}
        self.flows: list[tuple] = []  # (t_s, dst_ip, dst_port, proto, bytes, packets, dur_ms, direction)
        self._benign_bursts()
        self._background_flows()

    # -- flows ---------------------------------------------------------------
    def flow(self, t: float, ip: str, port: int, proto: str, nbytes: float, pkts: int,
             dur_ms: float, direction: str) -> None:
        if 0.0 <= t < self.n:
            self.flows.append((t, ip, int(port), proto, max(int(nbytes), 40), max(int(pkts), 1),
                               max(int(dur_ms), 0), direction))

    def _background_flows(self) -> None:
        rng, lam = self.rng, self.base["flows"]
        counts = rng.poisson(lam, self.n)
        for sec in np.nonzero(counts)[0]:
            for _ in range(counts[sec]):
                t = sec + rng.random()
                if rng.random() < 0.4:
                    self.flow(t, "9.9.9.9", 53, "udp", rng.uniform(60, 220), 2, rng.uniform(1, 40), "out")
                else:
                    ip = f"151.101.{rng.integers(0, 8)}.{rng.integers(1, 255)}"
                    self.flow(t, ip, 443, "tcp", rng.lognormal(9.0, 1.2), rng.integers(4, 60),
                              rng.uniform(50, 4000), "in" if rng.random() < 0.75 else "out")

    def _benign_bursts(self) -> None:
        """User activity (builds, browser tabs, updates) that resembles malware."""
        rng, h, n = self.rng, self.h, self.n
        for _ in range(rng.poisson(n / 70.0)):
            start, length = int(rng.integers(0, n)), int(rng.integers(3, 12))
            sl = slice(start, min(n, start + length))
            kind = rng.integers(0, 4)
            if kind == 0:  # compile job: cpu + forks
                h["user"][sl] += rng.uniform(0.8, 2.5)
                h["forks"][sl] += rng.uniform(3, 15)
            elif kind == 1:  # file copy
                h["dr"][sl] += rng.uniform(2e6, 2e7)
                h["dw"][sl] += rng.uniform(2e6, 2e7)
                h["dro"][sl] += rng.uniform(50, 300)
                h["dwo"][sl] += rng.uniform(50, 300)
            elif kind == 2:  # browsing
                for sec in range(sl.start, sl.stop):
                    for _ in range(rng.integers(2, 8)):
                        self.flow(sec + rng.random(), f"142.250.{rng.integers(0, 255)}.{rng.integers(1, 255)}",
                                  443, "tcp", rng.lognormal(10, 1), rng.integers(5, 80), rng.uniform(100, 3000), "in")
            else:  # update check
                h["user"][sl] += rng.uniform(0.2, 0.8)
                h["tcp"][sl] += rng.uniform(2, 10)

    # -- host/proc arrays --------------------------------------------------
    def host_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Gauge matrix [n, len(HOST_GAUGES)] and counter matrix [n, len(HOST_COUNTERS)]."""
        h, host, n, rng = self.h, self.host, self.n, self.rng
        # Flow bytes also show up in the interface counters.
        rx_f, tx_f, rxp, txp = (np.zeros(n) for _ in range(4))
        for t, _ip, _port, _proto, nbytes, pkts, _d, direction in self.flows:
            sec = int(t)
            if direction == "in":
                rx_f[sec] += nbytes
                rxp[sec] += pkts
            else:
                tx_f[sec] += nbytes
                txp[sec] += pkts
        cores = float(host.cores)
        user = np.clip(100.0 * h["user"] / cores, 0, 99.0)
        sys_ = np.clip(100.0 * h["sys"] / cores, 0, 100.0 - user)
        iowait = np.clip(h["iowait"], 0, 60)
        runnable = h["user"] + h["sys"] + 0.02 * iowait * cores + 0.002 * (h["forks"])
        load = np.empty(n)
        acc = self.base["user"] + self.base["sys"]
        k = np.exp(-1.0 / 60.0)
        for i in range(n):
            acc = acc * k + runnable[i] * (1 - k)
            load[i] = acc
        gauges = np.column_stack([
            np.round(user, 2), np.round(sys_, 2), np.round(iowait, 2), np.round(load, 2),
            np.rint(np.minimum(h["mem"], host.mem_gib * 2**30 * 0.97)),
            np.rint(h["swap"]), np.rint(h["procs"]), np.rint(h["threads"]),
            np.rint(h["tcp"]), np.rint(h["fds"]),
        ])
        rates = np.column_stack([
            h["ctx"] + 900 * h["forks"], h["intr"] + 0.002 * (h["rx"] + rx_f), h["forks"],
            h["dr"], h["dw"], h["dro"], h["dwo"],
            h["rx"] + rx_f * 1.04, h["tx"] + tx_f * 1.04,
            h["rx"] / 900 + rxp, h["tx"] / 700 + txp,
        ])
        start = rng.uniform(1e6, 1e10, rates.shape[1])  # counters since boot
        counters = np.floor(start + np.cumsum(np.maximum(rates, 0.0), axis=0))
        assert gauges.shape[1] == len(HOST_GAUGES) and counters.shape[1] == len(HOST_COUNTERS)
        return gauges, counters

    def proc_rows(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.p
        cpu = np.clip(100.0 * p["cpu"], 0, 100.0 * self.host.cores)
        gauges = np.column_stack([np.round(cpu, 2), np.rint(p["rss"]), np.rint(p["procs"]), np.rint(p["threads"])])
        counters = np.floor(np.cumsum(np.maximum(
            np.column_stack([p["files"], p["bw"], p["conn"], p["dns"]]), 0.0), axis=0))
        assert gauges.shape[1] == len(PROC_GAUGES) and counters.shape[1] == len(PROC_COUNTERS)
        return gauges, counters


def apply_sample(sig: Signals, tl: Timeline, sample: Sample) -> None:
    """Add the common infection chain and the sample's own signature."""
    rng, h, p, n = sig.rng, sig.h, sig.p, sig.n
    armed, infecting, running = tl.armed, tl.infecting, tl.running
    present = np.clip(armed + infecting + running, 0, 1)  # the process tree exists
    k = sample.intensity * rng.uniform(0.8, 1.2)
    c2 = f"45.{rng.integers(10, 200)}.{rng.integers(0, 255)}.{rng.integers(1, 255)}"

    # armed: dropper lands on disk, one small download, a DNS lookup
    h["dw"] += armed * rng.uniform(2e5, 1.5e6)
    h["dwo"] += armed * rng.uniform(5, 30)
    h["forks"] += armed * rng.uniform(0.5, 2.0)
    p["procs"] += present * 1.0
    p["threads"] += present * 2.0
    p["rss"] += present * rng.uniform(3e6, 9e6)
    p["cpu"] += armed * rng.uniform(0.02, 0.1)
    p["dns"] += armed * 0.3
    p["bw"] += armed * rng.uniform(1e5, 5e5)
    t_dl = tl.behaviour[0] + rng.uniform(0.2, 1.5)
    sig.flow(t_dl, c2, 443, "tcp", rng.uniform(1e5, 8e5), rng.integers(80, 600), rng.uniform(300, 1500), "in")

    # infecting: persistence, stage-2, spawning helpers
    h["forks"] += infecting * rng.uniform(2, 8)
    h["user"] += infecting * rng.uniform(0.3, 1.0)
    h["dw"] += infecting * rng.uniform(1e6, 5e6)
    h["dwo"] += infecting * rng.uniform(20, 120)
    h["procs"] += np.cumsum(infecting) * 0.3
    p["procs"] += np.cumsum(infecting) * 0.25
    p["cpu"] += infecting * rng.uniform(0.3, 0.9)
    p["files"] += infecting * rng.uniform(3, 25)
    p["bw"] += infecting * rng.uniform(5e5, 4e6)
    p["conn"] += infecting * rng.uniform(0.2, 1.0)
    p["dns"] += infecting * 0.5
    for sec in np.nonzero(infecting > 0.5)[0]:
        if rng.random() < 0.4:
            sig.flow(sec + rng.random(), c2, 443, "tcp", rng.uniform(2e4, 3e5), rng.integers(20, 200), 400, "in")

    # the profile's signature leaks a little into infecting (profile overlap)
    act = running + 0.3 * infecting
    try:
        signature = _SIGNATURES[sample.profile]
    except KeyError:  # pragma: no cover - PROFILES is closed
        raise InputError(f"unknown profile {sample.profile!r}") from None
    signature(sig, tl, sample, k, c2, act)
    p["rss"] += present * np.linspace(0, rng.uniform(1e6, 2e7), n)


def _scan_and_dial(sig: Signals, tl: Timeline, sample: Sample, k: float, c2: str, act: np.ndarray) -> None:
    rng, h, p, n = sig.rng, sig.h, sig.p, sig.n
    s = np.arange(n)
    scan = act * _sig((tl.behaviour[2] + 0.6 * (n - tl.behaviour[2]) - s) / 2.0)
    dial = act - scan
    rate = sample.extra * k
    for sec in range(n):
        for _ in range(rng.poisson(rate * scan[sec])):
            ip = f"{rng.integers(1, 223)}.{rng.integers(0, 255)}.{rng.integers(0, 255)}.{rng.integers(1, 255)}"
            port = int(rng.choice([22, 23, 80, 2323, 8080, 5555, 7547, 37215])) if rng.random() < 0.7 \
                else int(rng.integers(1, 65535))
            sig.flow(sec + rng.random(), ip, port, "tcp", rng.uniform(54, 130), rng.integers(1, 3), rng.uniform(0, 5),
                     "out")
        if dial[sec] > 0.5 and sec % int(sample.period_s) == 0:
            sig.flow(sec + rng.random(), c2, 6667, "tcp", rng.uniform(200, 900), rng.integers(3, 9), rng.uniform(50,
                     300), "out")
    h["tcp"] += scan * rate * 0.4 + dial * 1
    h["ctx"] += scan * rate * 40
    h["user"] += act * 0.15 * k
    p["conn"] += scan * rate + dial * 0.3
    p["cpu"] += act * 0.12 * k
    p["threads"] += act * 8


def _cpu_saturate(sig: Signals, tl: Timeline, sample: Sample, k: float, c2: str, act: np.ndarray) -> None:
    rng, h, p, n = sig.rng, sig.h, sig.p, sig.n
    infecting, running = tl.infecting, tl.running
    busy = min(host_cores_used(sig.host, sample.extra * k), sig.host.cores * 0.98)
    h["user"] += running * busy + infecting * busy * 0.25
    h["ctx"] += act * 2500 * k
    h["mem"] += act * 2.5e9 * k
    p["cpu"] += act * busy
    p["threads"] += act * busy
    p["rss"] += act * 2.2e9 * k
    for sec in range(n):
        if act[sec] > 0.5 and sec % int(sample.period_s) == 0:
            sig.flow(sec + rng.random(), c2, 3333, "tcp", rng.uniform(300, 700), rng.integers(2, 6), rng.uniform(10,
                     80), "out")
            sig.flow(sec + rng.random(), c2, 3333, "tcp", rng.uniform(200, 500), rng.integers(2, 5), rng.uniform(10,
                     80), "in")


def _low_and_slow(sig: Signals, tl: Timeline, sample: Sample, k: float, c2: str, act: np.ndarray) -> None:
    rng, p, n = sig.rng, sig.p, sig.n
    running = tl.running
    period = sample.period_s * rng.uniform(0.85, 1.15)
    phase0 = rng.uniform(0, period)
    t = tl.behaviour[2] + phase0
    while t < n:
        if running[int(t)] > 0.5:
            sig.flow(t - 0.2, "9.9.9.9", 53, "udp", rng.uniform(70, 140), 2, rng.uniform(2, 30), "out")
            sig.flow(t, c2, 443, "tcp", sample.extra * k * rng.uniform(0.6, 1.4), rng.integers(4, 12), rng.uniform(80,
                     600), "out")
            p["conn"][int(t)] += 1
            p["dns"][int(t)] += 1
        t += period * rng.uniform(0.9, 1.1)
    p["files"] += act * 0.3
    p["cpu"] += act * 0.01


def _io_walk(sig: Signals, tl: Timeline, sample: Sample, k: float, c2: str, act: np.ndarray) -> None:
    rng, h, p, n = sig.rng, sig.h, sig.p, sig.n
    speed = sig.host.disk_speed * (0.6 + 0.8 * sample.extra) * k
    h["dr"] += act * 1.2e7 * speed
    h["dw"] += act * 1.3e7 * speed
    h["dro"] += act * 300 * speed
    h["dwo"] += act * 320 * speed
    h["iowait"] += act * 6.0 * k / sig.host.disk_speed
    h["sys"] += act * 0.6 * k
    h["fds"] += act * 120 * k
    p["files"] += act * 140 * speed
    p["bw"] += act * 1.2e7 * speed
    p["cpu"] += act * 0.7 * k
    for sec in range(n):
        if act[sec] > 0.5 and rng.random() < 0.05:
            sig.flow(sec + rng.random(), c2, 443, "tcp", rng.uniform(500, 3000), rng.integers(4, 20), 200, "out")


def _beacon(sig: Signals, tl: Timeline, sample: Sample, k: float, c2: str, act: np.ndarray) -> None:
    rng, h, p, n = sig.rng, sig.h, sig.p, sig.n
    running = tl.running
    period = sample.period_s * rng.uniform(0.9, 1.1)
    t = tl.behaviour[2] + rng.uniform(0, period)
    while t < n:
        if running[int(t)] > 0.5:
            sig.flow(t, c2, 443, "tcp", sample.extra * rng.uniform(0.7, 1.3), rng.integers(3, 10), rng.uniform(40,
                     400), "out")
            sig.flow(t + 0.05, c2, 443, "tcp", sample.extra * rng.uniform(0.5, 3.0), rng.integers(3, 12),
                     rng.uniform(40, 400), "in")
            p["conn"][int(t)] += 1
            if rng.random() < 0.3:
                p["dns"][int(t)] += 1
                sig.flow(t - 0.1, "9.9.9.9", 53, "udp", rng.uniform(70, 140), 2, 10, "out")
        t += period * rng.uniform(0.8, 1.2)
    h["tcp"] += act * 1.0
    p["cpu"] += act * 0.03
    p["threads"] += act * 3


def _fork_storm(sig: Signals, tl: Timeline, sample: Sample, k: float, c2: str, act: np.ndarray) -> None:
    rng, h, p, n = sig.rng, sig.h, sig.p, sig.n
    bursts = (rng.random(n) < 0.35 * k) * act
    width = np.convolve(bursts, np.ones(3), mode="same")
    h["forks"] += width * rng.uniform(40, 160) * sample.extra
    h["procs"] += np.cumsum(bursts) * 6 * sample.extra * (act > 0.2)
    h["threads"] += np.cumsum(bursts) * 20 * sample.extra * (act > 0.2)
    h["sys"] += width * 0.8 * k
    h["user"] += width * 0.4 * k
    h["ctx"] += width * 20000 * k
    p["procs"] += np.cumsum(bursts) * 6 * sample.extra * (act > 0.2)
    p["threads"] += np.cumsum(bursts) * 12 * sample.extra * (act > 0.2)
    p["cpu"] += width * 0.5 * k
    p["rss"] += np.cumsum(bursts) * 4e6


# -- benign workloads ------------------------------------------------------------

def _envelope(rng: np.random.Generator, n: int, cover: tuple[float, float],
              length: tuple[float, float]) -> np.ndarray:
    """Activity in [0, 1] per second: soft-edged stretches covering ~``cover`` of the episode."""
    s = np.arange(n) + 0.5
    env = np.zeros(n)
    target, covered = rng.uniform(*cover) * n, 0.0
    for _ in range(64):
        if covered >= target:
            break
        span = rng.uniform(*length)
        start = rng.uniform(-0.5 * span, n)
        env = np.maximum(env, _sig((s - start) / 2.0) - _sig((s - start - span) / 2.0))
        covered += span
    return env


def apply_workload(sig: "Signals", work: Sample) -> None:
    """Add a benign workload (``work.profile`` is ``benign-*``): no sample process tree."""
    try:
        fn = _WORKLOADS[work.profile]
    except KeyError:
        raise InputError(f"unknown benign profile {work.profile!r}") from None
    fn(sig, work, work.intensity * sig.rng.uniform(0.75, 1.25))


def _idle(sig: "Signals", work: Sample, k: float) -> None:
    quiet = 0.35 + 0.5 * work.intensity * sig.rng.uniform(0.8, 1.2)  # a quieter host than usual
    for key in ("user", "sys", "ctx", "dr", "dw", "dro", "dwo", "rx", "tx", "forks"):
        sig.h[key] *= quiet


def _compile(sig: "Signals", work: Sample, k: float) -> None:
    """Parallel builds use every core (unlike a miner), fork compilers and write objects."""
    rng, h, n, cores = sig.rng, sig.h, sig.n, float(sig.host.cores)
    env = _envelope(rng, n, (0.4, 0.9), (30.0, 150.0))
    h["user"] += env * cores * work.extra * rng.uniform(0.6, 0.95)
    h["sys"] += env * cores * 0.06 * k
    h["forks"] += env * rng.uniform(15, 80) * k
    h["ctx"] += env * 4000 * k
    h["dw"] += env * rng.uniform(5e5, 5e6) * k
    h["dwo"] += env * rng.uniform(20, 120) * k
    h["dr"] += env * rng.uniform(2e5, 2e6) * k
    h["mem"] += env * rng.uniform(0.5e9, 3e9) * k
    h["procs"] += env * rng.uniform(5, 40) * k
    h["threads"] += env * rng.uniform(20, 200) * k


def _browsing(sig: "Signals", work: Sample, k: float) -> None:
    """Bursts of HTTPS to many distinct servers (many IPs, few ports: not a scan)."""
    rng, h, n = sig.rng, sig.h, sig.n
    env = _envelope(rng, n, (0.3, 0.8), (10.0, 60.0))
    h["user"] += env * rng.uniform(0.3, 1.0) * k
    h["mem"] += env * rng.uniform(3e8, 1.5e9) * k
    h["tcp"] += env * rng.uniform(5, 25) * k
    counts = rng.poisson(work.extra * k * env)
    for sec in np.nonzero(counts)[0]:
        for _ in range(counts[sec]):
            ip = f"{rng.integers(13, 210)}.{rng.integers(0, 255)}.{rng.integers(0, 255)}.{rng.integers(1, 255)}"
            sig.flow(sec + rng.random(), ip, 443 if rng.random() < 0.9 else 80, "tcp",
                     rng.lognormal(10.5, 1.3), rng.integers(5, 120), rng.uniform(50, 4000), "in")


def _backup(sig: "Signals", work: Sample, k: float) -> None:
    """A file walk that reads everything and uploads it: io-walk's disk and opens, no rewrite."""
    rng, h, n = sig.rng, sig.h, sig.n
    env = _envelope(rng, n, (0.5, 1.0), (60.0, 300.0))
    speed = sig.host.disk_speed * k
    h["dr"] += env * 1.5e7 * speed
    h["dro"] += env * 350 * speed
    h["dw"] += env * rng.uniform(1e6, 4e6) * k  # index and cache
    h["dwo"] += env * rng.uniform(20, 90) * k
    h["iowait"] += env * 5.0 * k / sig.host.disk_speed
    h["sys"] += env * 0.5 * k
    h["fds"] += env * 90 * k
    dest = "192.168.1.40" if work.extra < 0.5 else f"185.{rng.integers(0, 255)}.{rng.integers(0, 255)}.7"
    for sec in range(n):
        if env[sec] > 0.5:
            sig.flow(sec + rng.random(), dest, 443, "tcp", work.extra * rng.uniform(1e5, 6e5),
                     rng.integers(60, 400), rng.uniform(500, 1000), "out")


def _update(sig: "Signals", work: Sample, k: float) -> None:
    """Periodic check-ins (like a beacon), then bursty downloads, writes and unpacking."""
    rng, h, n = sig.rng, sig.h, sig.n
    server = f"91.189.{rng.integers(88, 92)}.{rng.integers(1, 255)}"
    t = rng.uniform(0, work.period_s)
    while t < n:
        sig.flow(t, server, 443, "tcp", rng.uniform(300, 1200), rng.integers(3, 9), rng.uniform(50, 300), "out")
        sig.flow(t + 0.1, server, 443, "tcp", rng.uniform(800, 4000), rng.integers(3, 9), rng.uniform(50, 300), "in")
        t += work.period_s * rng.uniform(0.85, 1.15)
    for _ in range(1 + rng.poisson(n / 240.0)):
        start, length = int(rng.integers(0, n)), int(rng.integers(5, 30))
        dl = slice(start, min(n, start + length))
        unpack = slice(dl.stop, min(n, dl.stop + int(rng.integers(10, 40))))
        for sec in range(dl.start, dl.stop):
            sig.flow(sec + rng.random(), server, 443, "tcp", rng.uniform(1e6, 2e7) * k,
                     rng.integers(700, 9000), rng.uniform(500, 1000), "in")
        h["dw"][dl] += rng.uniform(5e6, 3e7) * k
        h["dwo"][dl] += rng.uniform(50, 300) * k
        h["user"][unpack] += rng.uniform(0.6, 1.2) * k
        h["forks"][unpack] += rng.uniform(5, 20) * k
        h["dw"][unpack] += rng.uniform(2e6, 1e7) * k


def _videocall(sig: "Signals", work: Sample, k: float) -> None:
    """Steady UDP media both ways to one relay, and a steady CPU load for the codec."""
    rng, h, n = sig.rng, sig.h, sig.n
    env = _envelope(rng, n, (0.6, 1.0), (120.0, 600.0))
    relay = f"170.114.{rng.integers(0, 255)}.{rng.integers(1, 255)}"
    h["user"] += env * rng.uniform(0.6, 1.5) * k
    h["ctx"] += env * 3000 * k
    h["intr"] += env * 1500 * k
    for sec in np.nonzero(env > 0.5)[0]:
        for direction in ("out", "in"):
            sig.flow(sec + rng.random(), relay, 8801, "udp", work.extra * rng.uniform(0.7, 1.3),
                     rng.integers(80, 300), 1000, direction)


_WORKLOADS = {
    "benign-idle": _idle, "benign-compile": _compile, "benign-browsing": _browsing,
    "benign-backup": _backup, "benign-update": _update, "benign-videocall": _videocall,
}


_SIGNATURES = {
    "scan-and-dial": _scan_and_dial,
    "cpu-saturate": _cpu_saturate,
    "low-and-slow": _low_and_slow,
    "io-walk": _io_walk,
    "beacon": _beacon,
    "fork-storm": _fork_storm,
}




def host_cores_used(host: HostSpec, fraction: float) -> float:
    """A miner grabs most cores of a small host but only some of a big one."""
    return host.cores * fraction if host.cores <= 4 else min(host.cores * fraction, 6.0 + host.cores * 0.15)
