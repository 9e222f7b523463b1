"""The tarball decoder: round trip, and refusal of hostile members."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import zstandard

from cis490.data.episode import EpisodeError, Limits, decode_bytes, parse_jsonl, read_episode
from cis490.data.synth import pack_episode


def _members() -> dict[str, bytes]:
    meta = {"episode_id": "e1", "host_id": "h", "profile": "beacon", "sample_name": "s",
            "t0_wall_ns": 10**18, "duration_s": 60, "phases": [], "channels": ["host"]}
    host = [{"t_wall_ns": 10**18 + i * 10**9, "t_mono_ns": i * 10**9, "load1": 0.5 + i} for i in range(3)]
    return {"meta.json": json.dumps(meta).encode(),
            "host.jsonl": "".join(json.dumps(r) + "\n" for r in host).encode()}


def _tar(build) -> bytes:
    """A .tar.zst whose members ``build(tf)`` adds by hand."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        build(tf)
    return zstandard.ZstdCompressor(level=1).compress(buf.getvalue())


def _add(tf, name, data=b"x", **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if info.isreg() else None)


def test_decoder_round_trip(tmp_path):
    members = _members()
    blob = pack_episode(members)
    path = tmp_path / "e1.tar.zst"
    path.write_bytes(blob)
    ep = read_episode(path)
    assert ep.meta == json.loads(members["meta.json"])
    assert ep.streams["host"] == [json.loads(ln) for ln in members["host.jsonl"].splitlines()]
    assert ep.members == ("host.jsonl", "meta.json")
    import hashlib

    assert ep.sha256 == hashlib.sha256(blob).hexdigest() and ep.size_bytes == len(blob)


def test_decoder_reports_missing_meta_as_none():
    members = _members()
    del members["meta.json"]
    assert decode_bytes(pack_episode(members)).meta is None


@pytest.mark.parametrize("name", ["../evil.jsonl", "a/../../evil", "/etc/passwd", "C:/x.jsonl"])
def test_decoder_refuses_escaping_or_absolute_member(name):
    blob = _tar(lambda tf: _add(tf, name))
    with pytest.raises(EpisodeError, match="absolute|escaping"):
        decode_bytes(blob)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_decoder_refuses_link_members(kind):
    blob = _tar(lambda tf: _add(tf, "host.jsonl", b"", type=kind, linkname="/etc/shadow"))
    with pytest.raises(EpisodeError, match="link member"):
        decode_bytes(blob)


def test_decoder_refuses_device_member():
    blob = _tar(lambda tf: _add(tf, "host.jsonl", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3))
    with pytest.raises(EpisodeError, match="special member"):
        decode_bytes(blob)


def test_decoder_refuses_oversized_member_before_reading_it():
    blob = _tar(lambda tf: _add(tf, "host.jsonl", b"{}\n" * 2000))
    with pytest.raises(EpisodeError, match="above the bound"):
        decode_bytes(blob, limits=Limits(max_member_bytes=1000))
    assert decode_bytes(blob, limits=Limits(max_member_bytes=10_000)).streams["host"][0] == {}


def test_zstd_bomb_stops_at_the_bound():
    # 16 MiB of zeros compresses to a few KiB; each member is under the member
    # bound, so only the running decompressed total can stop it.
    def build(tf):
        for i in range(8):
            _add(tf, f"junk{i}.bin", bytes(2 << 20))
    blob = _tar(build)
    assert len(blob) < 16 << 10
    with pytest.raises(EpisodeError, match="exceeds the bound"):
        decode_bytes(blob, limits=Limits(max_member_bytes=4 << 20, max_total_bytes=1 << 20))


def test_zstd_bomb_in_one_frame_without_tar_structure_stops():
    blob = zstandard.ZstdCompressor(level=1).compress(b"\x00" * 512 + b"A" * (8 << 20))
    with pytest.raises(EpisodeError, match="exceeds the bound|corrupt tar"):
        decode_bytes(blob, limits=Limits(max_total_bytes=1 << 20))


def test_truncation_is_detected_even_on_a_tar_block_boundary():
    blob = pack_episode(_members())
    for cut in (len(blob) // 3, len(blob) - 5):
        with pytest.raises(EpisodeError, match="truncated|corrupt"):
            decode_bytes(blob[:cut])


def test_garbage_and_empty_files_are_refused():
    with pytest.raises(EpisodeError, match="corrupt zstd"):
        decode_bytes(b"not zstd at all" * 10)
    with pytest.raises(EpisodeError, match="empty"):
        decode_bytes(b"")


def test_jsonl_line_bound_and_line_number():
    with pytest.raises(EpisodeError, match="line 2 longer"):
        parse_jsonl(b'{"a":1}\n{"b":"' + b"x" * 100 + b'"}\n', "t", max_line_bytes=50)
    with pytest.raises(EpisodeError, match="line 3 is not valid JSON"):
        parse_jsonl(b'{"a":1}\n{"a":2}\n{"a":3}{"a":4}\n', "t")
    with pytest.raises(EpisodeError, match="line 1 is not a JSON object"):
        parse_jsonl(b"[1,2]\n", "t")
    assert parse_jsonl(b'{"a":1}\n\n{"a":2}\n', "t") == [{"a": 1}, {"a": 2}]
