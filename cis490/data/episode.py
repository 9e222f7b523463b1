"""Episode tarball decoder: ``.tar.zst`` -> meta + parsed JSON-lines streams.

Invariant: an episode is read in one forward pass, in memory, **never
extracted to disk**, and nothing it contains can make the reader use more than
the configured bounds:

- zstd is decompressed in small input slices through a counter, so a
  decompression bomb stops with ``EpisodeError`` once the decompressed total
  passes ``Limits.max_total_bytes`` (one slice can expand to at most ~11 MiB);
- tar is read in stream mode (``r|``): members with an absolute path, a ``..``
  component, links (symbolic or hard), devices/FIFOs, a duplicate name, or a
  declared size above ``Limits.max_member_bytes`` are refused before a byte of
  them is read;
- JSON lines are parsed with a bound on line length and must be objects.

A truncated file is detected even when the cut falls on a tar block boundary:
the zstd frame must be complete. The sha256 and size of the compressed bytes
are computed on the same pass (the validator compares them with the index).

Every failure raises ``EpisodeError`` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO

import zstandard

from .channels import SOURCES
from cis490.common import InputError

__all__ = ["EpisodeError", "Limits", "Episode", "read_episode", "decode_bytes", "parse_jsonl"]

MEMBER_NAMES = ("meta.json",) + tuple(f"{s}.jsonl" for s in SOURCES)

_RAW_CHUNK = 1 << 16
_FEED = 512  # compressed bytes per decompress call: bounds one call's output


class EpisodeError(InputError):
    """An episode tarball that cannot be read safely or is malformed."""


@dataclass(frozen=True)
class Limits:
    """Size bounds for one episode (decompressed bytes unless stated)."""

    max_member_bytes: int = 64 << 20
    max_total_bytes: int = 256 << 20
    max_members: int = 32
    max_line_bytes: int = 64 << 10
    max_meta_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("max_member_bytes", "max_total_bytes", "max_members", "max_line_bytes", "max_meta_bytes"):
            if int(getattr(self, name)) <= 0:
                raise InputError(f"Limits.{name} must be positive")


DEFAULT_LIMITS = Limits()


@dataclass
class Episode:
    """A decoded episode. ``meta`` is None when ``meta.json`` is absent."""

    meta: dict | None
    streams: dict[str, list[dict]] = field(default_factory=dict)  # source -> rows
    members: tuple[str, ...] = ()
    unknown_members: tuple[str, ...] = ()
    sha256: str = ""
    size_bytes: int = 0


class _ZstdBoundedReader:
    """File-like ``read(n)`` over decompressed zstd with a hard output bound."""

    def __init__(self, raw: IO[bytes], limit: int, label: str) -> None:
        self._raw = raw
        self._limit = limit
        self._label = label
        self._dctx = zstandard.ZstdDecompressor()
        self._dobj = self._dctx.decompressobj()
        self._pending = b""  # compressed bytes not yet fed
        self._buf = bytearray()
        self._raw_eof = False
        self._started = False  # a frame has begun (for empty-file detection)
        self.out_count = 0
        self.hasher = hashlib.sha256()
        self.raw_count = 0

    def _fill(self) -> bool:
        """Decompress one slice into the buffer; False at clean end of stream."""
        if not self._pending:
            if self._raw_eof:
                return False
            chunk = self._raw.read(_RAW_CHUNK)
            if not chunk:
                self._raw_eof = True
                if self._started and not self._dobj.eof:
                    raise EpisodeError(f"{self._label}: truncated zstd stream (frame incomplete)")
                if not self._started:
                    raise EpisodeError(f"{self._label}: empty file")
                return False
            self.hasher.update(chunk)
            self.raw_count += len(chunk)
            self._pending = chunk
        if self._dobj.eof:  # a previous frame ended: further bytes start a new frame
            self._dobj = self._dctx.decompressobj()
        piece, self._pending = self._pending[:_FEED], self._pending[_FEED:]
        self._started = True
        try:
            out = self._dobj.decompress(piece)
        except zstandard.ZstdError as exc:
            raise EpisodeError(f"{self._label}: corrupt zstd data ({exc})") from None
        if self._dobj.eof:
            self._pending = self._dobj.unused_data + self._pending
        self.out_count += len(out)
        if self.out_count > self._limit:
            raise EpisodeError(
                f"{self._label}: decompressed size exceeds the bound of {self._limit} bytes"
            )
        self._buf += out
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            while self._fill():
                pass
            n = len(self._buf)
        while len(self._buf) < n and self._fill():
            pass
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def drain(self) -> None:
        """Consume the rest (tar padding), so the hash covers the whole file."""
        while self._fill():
            self._buf.clear()


def _check_member(m: tarfile.TarInfo, label: str, limits: Limits, seen: set[str]) -> str | None:
    """Return the normalised member name, None for a skippable directory; raise otherwise."""
    name = m.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise EpisodeError(f"{label}: refusing member with absolute path {name!r}")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise EpisodeError(f"{label}: refusing member escaping the archive {name!r}")
    if m.issym() or m.islnk():
        raise EpisodeError(f"{label}: refusing link member {name!r} -> {m.linkname!r}")
    if m.isdir():
        return None
    if not m.isreg():
        raise EpisodeError(f"{label}: refusing special member {name!r} (device/fifo)")
    if m.size > limits.max_member_bytes:
        raise EpisodeError(
            f"{label}: member {name!r} declares {m.size} bytes, above the bound of "
            f"{limits.max_member_bytes}"
        )
    norm = "/".join(p for p in parts if p != ".")
    if norm in seen:
        raise EpisodeError(f"{label}: duplicate member {norm!r}")
    seen.add(norm)
    if len(seen) > limits.max_members:
        raise EpisodeError(f"{label}: more than {limits.max_members} members")
    return norm


def _json_object(data: bytes, what: str) -> dict:
    """``data`` parsed as one JSON object, or EpisodeError naming ``what``."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EpisodeError(f"{what} is not valid JSON ({exc})") from None
    if type(obj) is not dict:
        raise EpisodeError(f"{what} is not a JSON object")
    return obj


def parse_jsonl(data: bytes, label: str, max_line_bytes: int = DEFAULT_LIMITS.max_line_bytes) -> list[dict]:
    """Parse JSON lines into dicts; blank lines are ignored.

    Fast path: one ``json.loads`` over the whole member; on failure, line by
    line to name the offending line.
    """
    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    if lines and max(map(len, lines)) > max_line_bytes:
        for i, ln in enumerate(lines, 1):
            if len(ln) > max_line_bytes:
                raise EpisodeError(f"{label}: line {i} longer than {max_line_bytes} bytes")
    try:
        rows = json.loads(b"[" + b",".join(lines) + b"]")
    except (ValueError, UnicodeDecodeError):
        rows = None
    if rows is None or not set(map(type, rows)) <= {dict}:
        for i, ln in enumerate(lines, 1):
            _json_object(ln, f"{label}: line {i}")  # raises, naming the first bad line
        raise EpisodeError(f"{label}: malformed JSON lines")  # pragma: no cover
    return rows


def _decode_stream(raw: IO[bytes], label: str, limits: Limits) -> Episode:
    reader = _ZstdBoundedReader(raw, limits.max_total_bytes, label)
    payload: dict[str, bytes] = {}
    unknown: list[str] = []
    seen: set[str] = set()
    declared = 0
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tf:  # type: ignore[arg-type]
            for m in tf:
                name = _check_member(m, label, limits, seen)
                if name is None:
                    continue
                declared += m.size
                if declared > limits.max_total_bytes:
                    raise EpisodeError(
                        f"{label}: members total more than the bound of {limits.max_total_bytes} bytes"
                    )
                if name not in MEMBER_NAMES:
                    unknown.append(name)
                    continue  # never read: tarfile skips it through the bounded reader
                fh = tf.extractfile(m)
                data = fh.read() if fh is not None else b""
                if len(data) != m.size:
                    raise EpisodeError(f"{label}: member {name!r} truncated")
                payload[name] = data
        reader.drain()
    except tarfile.TarError as exc:
        raise EpisodeError(f"{label}: corrupt tar ({exc})") from None
    except EOFError as exc:
        raise EpisodeError(f"{label}: truncated tar ({exc})") from None

    meta = None
    if "meta.json" in payload:
        raw_meta = payload.pop("meta.json")
        if len(raw_meta) > limits.max_meta_bytes:
            raise EpisodeError(f"{label}: meta.json larger than {limits.max_meta_bytes} bytes")
        meta = _json_object(raw_meta, f"{label}: meta.json")
    streams = {
        name[: -len(".jsonl")]: parse_jsonl(data, f"{label}:{name}", limits.max_line_bytes)
        for name, data in sorted(payload.items())
    }
    return Episode(
        meta=meta,
        streams=streams,
        members=tuple(sorted(seen)),
        unknown_members=tuple(unknown),
        sha256=reader.hasher.hexdigest(),
        size_bytes=reader.raw_count,
    )


def read_episode(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS) -> Episode:
    """Decode one ``.tar.zst`` episode (streaming; see the module invariant)."""
    label = os.fspath(path)
    with open(path, "rb") as raw:
        return _decode_stream(raw, label, limits)


def decode_bytes(blob: bytes, label: str = "<bytes>", limits: Limits = DEFAULT_LIMITS) -> Episode:
    """Decode an episode held in memory (tests, tools)."""
    import io

    return _decode_stream(io.BytesIO(blob), label, limits)
