"""The audit signing key (Ed25519): signs checkpoints and prune records; lives outside the database.

Someone with rights on the database but not on this file cannot forge a checkpoint, so
cutting the chain's tail or rewriting it shows against the last signed head.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)


def key_path() -> Path:
    """Where the signing key lives (CALLVAULT_AUDIT_SIGNING_KEY_FILE)."""
    return Path(settings.AUDIT_SIGNING_KEY_FILE)


def create_key_file(path: Path) -> Ed25519PrivateKey:
    """Generate a key at path (mode 0600, refusing to overwrite) and say it needs a backup."""
    if path.exists():
        raise FileExistsError(f"an audit signing key already exists at {path}")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    log.warning(
        "A NEW AUDIT SIGNING KEY WAS CREATED at %s (fingerprint %s). Keep a copy of its public "
        "key (`callvault audit keygen --show`) where the database's administrators cannot "
        "change it: audit verify checks signatures against it.",
        path,
        fingerprint(key.public_key()),
    )
    return key


def ensure_key_file() -> bool:
    """Create the key if it is missing; True if it was created."""
    path = key_path()
    if path.exists():
        return False
    create_key_file(path)
    return True


def load_private_key() -> Ed25519PrivateKey:
    """The signing key; debug and tests create one on first use, production must run keygen."""
    path = key_path()
    if not path.exists():
        if not settings.AUDIT_SIGNING_KEY_AUTOCREATE:
            raise ImproperlyConfigured(
                f"no audit signing key at {path}: run `callvault audit keygen` "
                "or set CALLVAULT_AUDIT_SIGNING_KEY_FILE"
            )
        return create_key_file(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"{path} is not an Ed25519 private key")
    return key


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw public key in base64: what checkpoint files carry and people compare."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_pem(key: Ed25519PublicKey) -> str:
    """The public key as PEM, for `--public-key FILE`."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 bytes of SHA-256 of its raw form, hex."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key from PEM (public or private) or the base64 raw form."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN PRIVATE KEY"):
            private = serialization.load_pem_private_key(text.encode(), password=None)
            if isinstance(private, Ed25519PrivateKey):
                return private.public_key()
        elif text.startswith("-----BEGIN"):
            public = serialization.load_pem_public_key(text.encode())
            if isinstance(public, Ed25519PublicKey):
                return public
        else:
            return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError as exc:
        raise ValueError(f"not an Ed25519 key: {exc}") from None
    raise ValueError("not an Ed25519 key")


def sign(text: str) -> tuple[str, str]:
    """(fingerprint, base64 signature) of text with the signing key."""
    key = load_private_key()
    signature = key.sign(text.encode("utf-8"))
    return fingerprint(key.public_key()), base64.b64encode(signature).decode("ascii")


def check(key: Ed25519PublicKey, text: str, signature: str) -> bool:
    """Whether signature is key's signature of text."""
    try:
        key.verify(base64.b64decode(signature, validate=True), text.encode("utf-8"))
    except (InvalidSignature, ValueError):
        return False
    return True
