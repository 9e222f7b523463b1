"""Low-level helpers every layer shares (it imports nothing of cis490): the
project's one atomic-write helper, sha256 of bytes and files, the one hyper
validator (config dataclasses from JSON values), safe small-file reads
(:func:`read_small`), the curve file names, and
the base class of every error a user can cause (:class:`UserError`) and its
:class:`InputError`.

Atomic writes. Invariant: a reader never sees a half-written file. Every file another process
may read (spool state, attempt records, artifacts, parquet, reports) is written
to a temporary file on the *same filesystem*, flushed, fsynced, renamed into
place, and the containing directory is fsynced so the rename itself survives
a crash.

Two entry points share one implementation:

- ``atomic_write(path, data)`` for bytes or text already in memory;
- ``atomic_writer(path)`` a context manager yielding a binary file object for
  large outputs (parquet, tensor shards, bundles) written in a stream.

``tmp_dir`` lets the spool stage in its own ``tmp/`` (ignored by Syncthing);
by default the temporary file is a hidden sibling of the destination.
``no_clobber=True`` publishes with ``link()`` instead of ``rename()`` so an
existing destination is never replaced (``FileExistsError`` is raised).
``durable=False`` keeps the atomicity but skips both fsyncs: for files that
are rewritten often and whose loss in a power cut costs nothing (progress,
log tails, the "running" attempt record).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import os
import secrets
import stat
import typing
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

__all__ = ["atomic_write", "atomic_writer", "fsync_dir", "sha256_bytes", "sha256_file"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it is durable (no-op on Windows)."""
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some network filesystems refuse fsync on a dir
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


TMP_CREATE_TRIES = 3  # creates of a fresh temp name (see atomic_writer)


def _tmp_path(dest: Path, tmp_dir: str | os.PathLike | None) -> Path:
    base = Path(tmp_dir) if tmp_dir is not None else dest.parent
    return base / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike,
    *,
    tmp_dir: str | os.PathLike | None = None,
    mode: int = 0o644,
    no_clobber: bool = False,
    durable: bool = True,
) -> Iterator[IO[bytes]]:
    """Yield a binary file; on clean exit publish it atomically at ``path``.

    On an exception inside the block the temporary file is removed and
    nothing is published.
    """
    dest = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for tries_left in range(TMP_CREATE_TRIES - 1, -1, -1):
        tmp = _tmp_path(dest, tmp_dir)
        try:
            fd = os.open(tmp, flags, mode)
            break
        except (PermissionError, FileExistsError):
            # a fresh random name cannot exist: sshfs replays an O_EXCL create after a
            # reconnect and reports the file its first try made as EPERM (SSH_FX_FAILURE);
            # a new name goes through (the stray temp file is a sweep's to remove)
            if not tries_left or not os.path.lexists(tmp):
                raise
    published = False
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        if no_clobber:
            try:
                os.link(tmp, dest)  # FileExistsError if dest exists: never replaced
            except PermissionError:
                # sshfs reports a lost link() race as EPERM, not EEXIST
                if os.path.lexists(dest):
                    raise FileExistsError(errno.EEXIST, "exists", str(dest)) from None
                raise
        else:
            os.replace(tmp, dest)
        published = True
        if durable:
            fsync_dir(dest.parent)
    finally:
        if no_clobber or not published:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def atomic_write(
    path: str | os.PathLike,
    data: bytes | str,
    *,
    tmp_dir: str | os.PathLike | None = None,
    mode: int = 0o644,
    no_clobber: bool = False,
    durable: bool = True,
) -> None:
    """Write ``data`` to ``path`` atomically and (by default) durably; see module doc."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_writer(path, tmp_dir=tmp_dir, mode=mode, no_clobber=no_clobber, durable=durable) as fh:
        fh.write(data)


# --------------------------------------------------------------------------
# Errors. Every error a user can cause and fix (a bad manifest, a hostile path, a
# corrupt file, a refused evaluation, an unreachable spool entry) is a UserError:
# each CLI prints it as one line on stderr and exits 1. Usage errors (argparse)
# exit 2. An OSError is the environment's answer (no such file, permission, a full
# disk) and is printed the same way. Anything else is a bug and shows its traceback.


class UserError(Exception):
    """An error the user can cause and fix: one line on stderr, exit status 1."""


class InputError(UserError, ValueError):
    """Bad input: a value, an argument or a file's content that cannot be used.

    Also a ``ValueError``, so code that validates values keeps one except clause."""


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: its strerror and the file it names."""
    names = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    return f"{exc.strerror or exc}: {names}" if names else str(exc.strerror or exc)


__all__ += ["InputError", "UserError", "os_error_line"]


# --------------------------------------------------------------------------
# Safe small-file reads. Metadata another process wrote (job specs, records,
# manifests, schemas, checkpoint metadata) is read with ``read_small``: a symlink
# is never followed, a FIFO or device is never read (opened non-blocking, judged
# with fstat before any read, so it cannot hang the reader), and a file over the
# limit is refused after reading at most limit + 1 bytes.

MAX_METADATA_BYTES = 16 << 20  # schemas, feature/tensor manifests, checkpoint metadata


def mode_problem(mode: int) -> str | None:
    """Why a file of this (lstat) mode cannot be read as a small file, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symlink (never followed)"
    if stat.S_ISFIFO(mode):
        return "a FIFO (never opened)"
    kind = ("a directory" if stat.S_ISDIR(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "of an unknown type")
    return f"not a regular file ({kind})"


class SmallFileError(InputError):
    """A file that cannot be read as a small regular file. ``reason``: the kind first
    (``oversized (larger than N bytes)``, ``a FIFO (never opened)``, ...)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def read_small(path: str | os.PathLike, limit: int = MAX_METADATA_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; else SmallFileError.

    A symlink is never followed (``O_NOFOLLOW``: the OSError ELOOP); OSErrors of the
    host (no such file, permission) propagate as they are."""
    path = Path(path)
    flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
             | getattr(os, "O_BINARY", 0))
    fd = os.open(path, flags)
    try:
        problem = mode_problem(os.fstat(fd).st_mode)
        if problem:
            raise SmallFileError(f"{path.name} is {problem}", problem)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise SmallFileError(f"{path.name} is larger than {limit} bytes",
                             f"oversized (larger than {limit} bytes)")
    return data


__all__ += ["MAX_METADATA_BYTES", "SmallFileError", "mode_problem", "read_small"]


# --------------------------------------------------------------------------
# Names inside a training job's curves (``python -m cis490.train.run --curves DIR``,
# written by cis490.train.curves; stored beside an artifact's bundle and read back
# by cis490.fleet.store).

METRICS = "metrics.jsonl"        # one JSON object per epoch, in the curves
TENSORBOARD = "tensorboard"      # the event directory, in the curves

__all__ += ["METRICS", "TENSORBOARD"]


# --------------------------------------------------------------------------
# The one hyper validator. A job kind's hyper schema is a frozen dataclass whose
# fields have defaults (a model's config, the smoke job's SmokeConfig). Values come
# from TOML or the command line, so they are JSON types: an ``int`` field takes an
# integer (not a bool); a ``float`` field an integer or a float; a ``bool`` field only
# a bool; a ``str`` field a string of at most 256 characters; a ``tuple[int, ...]``
# field a list of at most 64 items. Every error is a HyperError naming the key.


class HyperError(InputError):
    """A hyper key or value that the kind's config does not accept."""


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check one JSON value against a field's type hint; return it typed."""
    if hint is str:
        if isinstance(value, str) and len(value) <= 256 and "\x00" not in value:
            return value
        raise HyperError(f"hyper {key!r}: expected a string of at most 256 characters, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise HyperError(f"hyper {key!r}: expected a bool, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise HyperError(f"hyper {key!r}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise HyperError(f"hyper {key!r}: expected a number, got {value!r}")
    if typing.get_origin(hint) is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) > 64:
            raise HyperError(f"hyper {key!r}: expected a list (at most 64 items), got {value!r}")
        return tuple(_coerce(key, item, v) for v in value)
    raise HyperError(f"hyper {key!r}: unsupported field type {hint!r}")  # pragma: no cover


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # costly: string annotations are compiled each call


def validate_config(cls: type, kind: str, hyper: Mapping[str, Any]):
    """``cls`` (a config dataclass) with ``hyper`` applied over its defaults.

    The one hyper validator: the training driver, ``models.create`` and the manifest
    reload (``cis490.fleet.spec``, for every job kind) all go through it.
    """
    if not isinstance(hyper, Mapping):
        raise HyperError(f"hyper of {kind} must be a table of key = value")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key in sorted(hyper):
        if key not in names:
            raise HyperError(
                f"hyper {key!r} is not a field of {kind}'s config "
                f"(known: {', '.join(names)})"
            )
        kwargs[key] = _coerce(key, hints[key], hyper[key])
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - a field without a default
        raise HyperError(f"{kind}: {exc}") from None


def parse_hyper_args(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``key=JSON`` strings (a driver's ``--hyper``) into a dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HyperError(f"hyper {item!r}: expected key=JSON")
        if key in out:
            raise HyperError(f"hyper {key!r} given twice")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HyperError(f"hyper {key!r}: value {raw!r} is not JSON ({exc.msg})") from None
    return out


__all__ += ["HyperError", "parse_hyper_args", "validate_config"]


# A job process stopped by SIGTERM/SIGUSR1 that saved its resume state exits with this
# status (EX_TEMPFAIL of sysexits.h): the worker releases the job, not counted, and the
# next attempt continues from that state (docs/SPOOL.md, "Resume state").
EXIT_RESUMABLE = 75
__all__ += ["EXIT_RESUMABLE"]
