"""Ed25519 signatures over job specs and the manifest copy (``cryptography``).

With ``require_signatures = true`` in ``spool.toml``, a worker runs only
specs signed by one of ``operator_public_keys``; an unsigned or forged spec
is quarantined with the reason. The operator's private key lives outside the
spool (default ``~/.config/cis490/operator.key``, mode 0600); ``reload``
signs every spec it enqueues and writes ``manifest.toml.sig`` beside the
manifest copy, so a tampered host policy or data path is refused too.

What is signed: the canonical JSON of the spec without its ``signature``
field (``JobSpec.to_dict()``), and the manifest copy's raw bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cis490.common import atomic_write
from cis490.fleet.layout import SpoolError

DEFAULT_KEY = Path("~/.config/cis490/operator.key").expanduser()
KEY_ENV = "CIS490_OPERATOR_KEY"


class SignatureError(SpoolError):
    pass


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    except ImportError:  # pragma: no cover - installed by requirements.txt
        raise SignatureError("signatures need the `cryptography` package: pip install cryptography") from None
    return InvalidSignature, serialization, Ed25519PrivateKey, Ed25519PublicKey


def key_id(public_b64: str) -> str:
    return hashlib.sha256(public_b64.encode()).hexdigest()[:16]


def keygen(path: Path, spool_root: Path | None = None) -> str:
    """Write a new private key (0600) and return its public key (base64)."""
    _, serialization, Ed25519PrivateKey, _ = _crypto()
    path = path.expanduser().absolute()
    if spool_root is not None and (path == spool_root or spool_root in path.parents):
        raise SignatureError(f"{path} is inside the spool: keep the operator key outside it")
    if path.exists():
        raise SignatureError(f"{path} exists already: refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, pem, mode=0o600, no_clobber=True)
    return public_of(key)


def public_of(key) -> str:
    _, serialization, _, _ = _crypto()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_private(path: str | os.PathLike | None = None):
    _, serialization, Ed25519PrivateKey, _ = _crypto()
    p = Path(path or os.environ.get(KEY_ENV) or DEFAULT_KEY).expanduser()
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except FileNotFoundError:
        raise SignatureError(f"no operator key at {p}: create one with `cis490-spool keygen`, "
                             f"or pass --key / set ${KEY_ENV}") from None
    except ValueError as exc:
        raise SignatureError(f"{p} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{p} is not an Ed25519 key")
    return key


def sign(key, message: bytes) -> dict:
    return {"alg": "ed25519", "key": key_id(public_of(key)),
            "sig": base64.b64encode(key.sign(message)).decode()}


def verify(message: bytes, signature: object, public_keys: tuple[str, ...]) -> None:
    """Raise SignatureError unless ``signature`` verifies under one of the keys."""
    InvalidSignature, _, _, Ed25519PublicKey = _crypto()
    if not isinstance(signature, dict):
        raise SignatureError("unsigned (this spool requires signed specs)")
    if signature.get("alg") != "ed25519" or not isinstance(signature.get("sig"), str):
        raise SignatureError("signature is malformed")
    wanted = [k for k in public_keys if key_id(k) == signature.get("key")]
    if not wanted:
        raise SignatureError("signed by a key that is not among the spool's operator_public_keys")
    try:
        sig = base64.b64decode(signature["sig"], validate=True)
        Ed25519PublicKey.from_public_bytes(base64.b64decode(wanted[0], validate=True)).verify(sig, message)
    except (InvalidSignature, ValueError):
        raise SignatureError("signature does not verify (forged, or the spec was edited)") from None
