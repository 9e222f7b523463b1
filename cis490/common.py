"""Low-level helpers every layer shares (it imports nothing of cis490): the
project's one atomic-write helper, and sha256 of bytes and files.

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
import errno
import hashlib
import os
import secrets
from pathlib import Path
from typing import IO, Iterator

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
# Names inside a training job's curves (``python -m cis490.train.run --curves DIR``,
# written by cis490.train.curves; stored beside an artifact's bundle and read back
# by cis490.fleet.store).

METRICS = "metrics.jsonl"        # one JSON object per epoch, in the curves
TENSORBOARD = "tensorboard"      # the event directory, in the curves

__all__ += ["METRICS", "TENSORBOARD"]
