"""Property-based tests of the episode decoder: any bytes either decode to an
Episode or raise EpisodeError with a message — never another exception, never a hang."""

from __future__ import annotations

import io
import json
import tarfile

import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cis490.data.episode import Episode, EpisodeError, Limits, decode_bytes
from cis490.data.synth import pack_episode

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = Limits(max_member_bytes=1 << 16, max_total_bytes=1 << 18, max_members=8)

names = st.sampled_from(["meta.json", "host.jsonl", "netflow.jsonl", "proc.jsonl", "../x", "/abs", "a/b.jsonl",
                         "extra.bin", "meta.json/..", "", "x" * 120])
kinds = st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE,
                         tarfile.FIFOTYPE])
payloads = st.one_of(
    st.binary(max_size=300),
    st.lists(st.dictionaries(st.sampled_from(["t_wall_ns", "t_mono_ns", "load1", "bytes"]),
                             st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=True), st.text(max_size=5)),
                             max_size=4),
             max_size=5).map(lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()),
)


def _check(blob: bytes) -> None:
    try:
        ep = decode_bytes(blob, "fuzz", SMALL)
    except EpisodeError as exc:
        assert str(exc)
    else:
        assert isinstance(ep, Episode)


@FAST
@given(st.binary(max_size=4000))
def test_decoder_on_arbitrary_bytes(blob):
    _check(blob)


@FAST
@given(st.binary(max_size=4000))
def test_decoder_on_arbitrary_zstd_frames(raw):
    _check(zstandard.ZstdCompressor(level=1).compress(raw))


@FAST
@given(st.lists(st.tuples(names, kinds, payloads), max_size=6))
def test_decoder_on_hostile_tar_members(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, kind, data in members:
            info = tarfile.TarInfo(name or "empty")
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                info.linkname = "/etc/passwd"
                tf.addfile(info)
    _check(zstandard.ZstdCompressor(level=1).compress(buf.getvalue()))


@FAST
@given(st.integers(0, 2000), st.binary(min_size=1, max_size=8))
def test_decoder_on_corrupted_valid_episodes(offset, garbage):
    meta = {"episode_id": "e1", "host_id": "h", "profile": "beacon", "sample_name": "s", "t0_wall_ns": 10**18,
            "duration_s": 3, "phases": [], "channels": ["host"]}
    blob = bytearray(pack_episode({"meta.json": json.dumps(meta).encode(),
                                   "host.jsonl": b'{"t_wall_ns": 1, "t_mono_ns": 0, "load1": 0.5}\n'}))
    i = offset % len(blob)
    blob[i:i + len(garbage)] = garbage
    _check(bytes(blob))
    _check(bytes(blob[: offset % len(blob)]))  # and truncated anywhere
