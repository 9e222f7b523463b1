"""Spool layout, the name grammar, and ``spool.toml`` settings.

State is the directory, ownership is the name, liveness is the mtime:

    pending/NAME.json           claimed/NAME@WORKER.json      done|failed|cancelled/NAME.json
    attempts/NAME/N@WORKER.json logs/NAME/N@WORKER.log        workers/WORKER.json
    models/MODEL_MODE/DIGEST/   tmp/                          quarantine/

Every name that reaches the filesystem passes through one of the validators
here, so a hostile manifest or spool file cannot name a path outside the
spool (no ``/``, ``\\``, ``..``, NUL, Windows-reserved names, and names are
lower-case so they stay unique where case is ignored).
"""

from __future__ import annotations

import enum
import errno
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from cis490.common import SmallFileError, UserError, mode_problem, read_small

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMAT = 1
SETTINGS_FILE = "spool.toml"
MANIFEST_COPY = "manifest.toml"
MAX_TOML_BYTES = 1 << 20  # manifests and settings are small; a bigger one is refused
MAX_JSON_BYTES = 1 << 16  # job specs, attempt and worker records


class SpoolError(UserError):
    """An operational error about a spool: the message says what to do."""


class BadEntry(SpoolError):
    """A file that can never be read as what its name says (oversized, or not a
    regular file). ``reason`` is the one-line quarantine reason, kind first."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


# Errors that mean the spool itself is unavailable (a dropped mount, a full or
# read-only filesystem), never that the file at hand is bad: an entry that meets
# one is left where it is, never quarantined. The one list; see is_spool_unavailable.
SPOOL_UNAVAILABLE_ERRNOS = frozenset(
    getattr(errno, n) for n in ("EIO", "ENOTCONN", "ESTALE", "ETIMEDOUT", "EHOSTDOWN",
                                "ENETUNREACH", "ENOSPC", "EDQUOT", "EROFS")
    if hasattr(errno, n)
)


def is_spool_unavailable(exc: BaseException) -> bool:
    """True for an OSError that says the spool's filesystem, not the file, is at fault."""
    return isinstance(exc, OSError) and exc.errno in SPOOL_UNAVAILABLE_ERRNOS


# How long an EPERM from the spool is taken for an outage before it is believed.
# sshfs maps the server's generic SSH_FX_FAILURE to EPERM, and answers it for
# creates, opens and utimes of files that are there while it reconnects a dropped
# connection (about a second); a real permission problem persists. So EPERM (not
# EACCES, which is a plain "permission denied") is waited out like an outage for up
# to this long per site, then raised as what it says.
EPERM_GRACE_S = 30.0
# and at least 3 tries, each within this (or two backoff steps) of the one before; an
# EPERM later than that starts a new run
EPERM_RUN_GAP_S = 10.0


def is_ambiguous_eperm(exc: BaseException) -> bool:
    """An EPERM: an outage on a reconnecting sshfs mount, or a real permission error."""
    return isinstance(exc, PermissionError) and exc.errno == errno.EPERM


class JobState(str, enum.Enum):
    """A job's state; the value *is* the directory name."""

    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Consistency(str, enum.Enum):
    """A spool's ``consistency`` setting (docs/SPOOL.md, "Consistency modes")."""

    ATOMIC = "atomic"      # one filesystem with atomic rename: local disk, NFS, SMB, sshfs
    EVENTUAL = "eventual"  # replicated copies (Syncthing): claims settle, rivals tie-break


STATES = tuple(JobState)
# eventual mode: a name seen in several states keeps the first of these
PRECEDENCE = (JobState.DONE, JobState.CANCELLED, JobState.FAILED, JobState.CLAIMED, JobState.PENDING)
TERMINAL = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
DIRS = tuple(s.value for s in STATES) + (
    "attempts", "logs", "workers", "models", "tmp", "quarantine", "events",
)
# made by `init` but not required by `open`: spools initialised before it existed have none
# (a replay makes it on first use)
LATER_DIRS = ("events",)

# --- the name grammar ---------------------------------------------------------

_PART = r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?"
KIND_RE = re.compile(rf"^{_PART}$")                       # model / job kind, e.g. gbt
MODE_RE = re.compile(rf"^{_PART}$")                       # e.g. realistic
NAME_RE = re.compile(rf"^({_PART})_({_PART})\.([0-9a-f]{{12}})$")
WORKER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
ATTEMPT_RE = re.compile(r"^([1-9][0-9]{0,5})@([a-z0-9-]+)\.json$")
REQUEUE_RE = re.compile(r"^([0-9]{1,6})\.requeue\.json$")

# Windows reserves these base names in every directory, whatever the extension.
WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(10)]
    + [f"lpt{i}" for i in range(10)]
)


def check_part(value: object, what: str, regex: re.Pattern = KIND_RE) -> str:
    """Validate one name component (model, mode, host label) or raise SpoolError."""
    if not isinstance(value, str) or not regex.match(value):
        raise SpoolError(
            f"invalid {what} {value!r}: use 1-32 lower-case letters, digits and '-'"
        )
    if value.split(".")[0] in WINDOWS_RESERVED:
        raise SpoolError(f"invalid {what} {value!r}: a reserved name on Windows")
    return value


def job_name(model: str, mode: str, job_id: str) -> str:
    check_part(model, "model")
    check_part(mode, "mode", MODE_RE)
    if not re.fullmatch(r"[0-9a-f]{64}", job_id):
        raise SpoolError(f"invalid job id {job_id!r}: expected 64 hex digits")
    return f"{model}_{mode}.{job_id[:12]}"


def parse_name(name: str) -> tuple[str, str, str] | None:
    """``gbt_realistic.3f9a1c2b7d4e`` → (model, mode, id prefix), or None."""
    m = NAME_RE.match(name)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def split_claimed(filename: str) -> tuple[str, str] | None:
    """``NAME@WORKER.json`` → (NAME, WORKER), or None when malformed."""
    if not filename.endswith(".json") or filename.count("@") != 1:
        return None
    name, worker = filename[: -len(".json")].split("@")
    if parse_name(name) is None or not WORKER_RE.match(worker):
        return None
    return name, worker


def job_of(filename: str) -> str:
    """The job name a state file stands for: ``NAME.json`` and ``NAME@WORKER.json`` →
    ``NAME`` (nothing validated: ``split_claimed`` / ``parse_name`` judge the name)."""
    stem = filename[: -len(".json")] if filename.endswith(".json") else filename
    return stem.split("@", 1)[0]


class Layout:
    """Every path of one spool, and the name of every file in it (the one place that
    spells them)::

        spool.toml  manifest.toml  .stignore
        STATE/NAME.json                        pending/ done/ failed/ cancelled/
        claimed/NAME@WORKER.json
        attempts/NAME/N@WORKER.json            + N@WORKER.progress.json, N.requeue.json
        logs/NAME/N@WORKER.log
        workers/WORKER.json
        models/MODEL_MODE/DIGEST/              the content-addressed store
        events/                                replays' published event streams
        tmp/                                   every writer's staging (never synced)
        quarantine/STATE--FILE--NONCE          + .reason.json
    """

    def __init__(self, root: Path):
        self.root = root
        self.tmp = root / "tmp"
        self.workers_dir = root / "workers"
        self.models_dir = root / "models"
        self.quarantine_dir = root / "quarantine"
        self.events_dir = root / "events"

    @staticmethod
    def _checked(name: str) -> str:
        if parse_name(name) is None:
            raise SpoolError(f"invalid job name {name!r}")
        return name

    def state_dir(self, state: JobState) -> Path:
        return self.root / state.value

    def path_of(self, state: JobState, name: str, worker: str | None = None) -> Path:
        self._checked(name)
        fn = f"{name}@{worker}.json" if state is JobState.CLAIMED else f"{name}.json"
        return self.state_dir(state) / fn

    def attempts_dir(self, name: str) -> Path:
        return self.root / "attempts" / self._checked(name)

    def logs_dir(self, name: str) -> Path:
        return self.root / "logs" / self._checked(name)

    def attempt_record(self, name: str, number: int, worker: str) -> Path:
        return self.attempts_dir(name) / f"{number}@{worker}.json"

    def resume_dir(self, name: str) -> Path:
        """Where a job's resume state lives between attempts (one writer: the claim's owner)."""
        return self.attempts_dir(name) / "resume"

    def progress_record(self, name: str, number: int, worker: str) -> Path:
        return self.attempts_dir(name) / f"{number}@{worker}.progress.json"

    def attempt_log(self, name: str, number: int, worker: str) -> Path:
        return self.logs_dir(name) / f"{number}@{worker}.log"

    def worker_record(self, worker: str) -> Path:
        return self.workers_dir / f"{worker}.json"

    def quarantine_path(self, state: str, filename: str, nonce: str) -> Path:
        return self.quarantine_dir / f"{state}--{filename}--{nonce}"


def is_ignored(filename: str) -> bool:
    """Files that belong to no one's protocol: dotfiles (incl. our own temp
    files and Syncthing's ``.syncthing.*.tmp``) and ``~syncthing~*``."""
    return filename.startswith(".") or filename.startswith("~syncthing~")


def is_sync_conflict(filename: str) -> bool:
    return ".sync-conflict-" in filename


def entry_problem(entry: os.DirEntry, state: JobState) -> str | None:
    """Why an entry of a state directory can never be a job file, or None.

    Judged from its name and type alone (nothing is opened, so a FIFO cannot
    hang the caller); the one wording that ``Spool.sweep`` and ``Claimer.scan``
    quarantine with. Contents (size, JSON, signature) are judged by
    ``Spool.read_spec``. An entry that vanished meanwhile is no problem (a
    lost race): None.
    """
    name = entry.name
    ok = (split_claimed(name) if state is JobState.CLAIMED
          else name.endswith(".json") and parse_name(name[:-5]))
    if not ok:
        return ("a Syncthing conflict copy" if is_sync_conflict(name)
                else "file name does not follow the spool's name grammar")
    if entry.is_file(follow_symlinks=False):  # the directory entry's type: usually no syscall
        return None
    try:
        return mode_problem(entry.stat(follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return None


# --- settings -------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """``spool.toml``: written once by ``init``; every worker reads it."""

    format: int = FORMAT
    consistency: str = Consistency.ATOMIC.value   # a Consistency value
    heartbeat_s: float = 30.0
    stale_after_s: float = 600.0
    max_attempts: int = 3
    prefer_cuda_grace_s: float = 1800.0
    settle_s: float = 0.0            # eventual mode: wait before training starts
    operator_token_hash: str = ""    # "salt$sha256hex"; empty: no token required
    operator_group: str = ""         # init --operator-group: owns cancelled/, manifest.toml, spool.toml
    require_signatures: bool = False # workers run only specs signed by operator_public_keys
    operator_public_keys: tuple[str, ...] = ()  # Ed25519, base64 of the raw 32 bytes

    def validate(self) -> "Settings":
        if self.format != FORMAT:
            raise SpoolError(f"spool format {self.format} is not supported (this is {FORMAT})")
        if self.consistency not in tuple(c.value for c in Consistency):
            raise SpoolError(f"consistency must be 'atomic' or 'eventual', not {self.consistency!r}")
        if not self.heartbeat_s > 0:
            raise SpoolError("heartbeat_s must be > 0")
        if self.stale_after_s < 10 * self.heartbeat_s:
            raise SpoolError(
                f"stale_after_s ({self.stale_after_s:g}) must be >= 10 x heartbeat_s "
                f"({self.heartbeat_s:g}), or a slow heartbeat looks like a dead worker"
            )
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            raise SpoolError("max_attempts must be an integer >= 1")
        if self.require_signatures and not self.operator_public_keys:
            raise SpoolError("require_signatures needs at least one operator public key")
        if self.prefer_cuda_grace_s < 0 or self.settle_s < 0:
            raise SpoolError("prefer_cuda_grace_s and settle_s must be >= 0")
        if self.consistency == Consistency.EVENTUAL and not 0 < self.settle_s <= self.stale_after_s / 2:
            raise SpoolError(
                "eventual mode needs 0 < settle_s <= stale_after_s/2 (a claim must settle, "
                "then heartbeat, well before it could look stale)"
            )
        return self

    def to_toml(self) -> str:
        lines = ["# cis490 spool settings, written by `cis490-spool init`. Do not edit while workers run."]
        for key, value in asdict(self).items():
            if isinstance(value, bool):
                rendered = "true" if value else "false"
            elif isinstance(value, tuple):
                rendered = "[" + ", ".join('"' + str(v).replace('"', "") + '"' for v in value) + "]"
            elif isinstance(value, (int, float)):
                rendered = repr(value)
            else:
                rendered = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{key} = {rendered}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text: str) -> "Settings":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpoolError(f"{SETTINGS_FILE} is not valid TOML: {exc}") from None
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise SpoolError(f"{SETTINGS_FILE}: unknown setting(s) {', '.join(unknown)}")
        kwargs = {}
        for key, value in raw.items():
            default = getattr(cls, key)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if isinstance(default, tuple) and isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = tuple(value)
            if type(value) is not type(default):
                raise SpoolError(
                    f"{SETTINGS_FILE}: {key} must be {type(default).__name__}, not {type(value).__name__}"
                )
            kwargs[key] = value
        return cls(**kwargs).validate()


def read_bounded(path: Path, limit: int) -> bytes:
    """Read a small spool file with ``cis490.common.read_small`` (no symlink followed,
    a FIFO or device never read, nothing over ``limit``), refusing a bad one with
    ``BadEntry`` (its reason is the quarantine reason).

    sshfs answers EPERM (SSH_FX_FAILURE) for an open while it reconnects: a file
    that is there is tried again, briefly; a real permission error still raises
    after the last try.
    """
    for tries_left in range(2, -1, -1):
        try:
            return read_small(path, limit)
        except SmallFileError as exc:
            raise BadEntry(str(exc), exc.reason) from None
        except PermissionError:
            if not tries_left or not os.path.lexists(path):
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
