"""Signed checkpoints: each chain's head signed with the audit key, kept in the database and
exported as a file or to a URL, so that a cut tail or a rewritten chain shows in verify."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from callvault.audit import signing
from callvault.audit.models import ChainHead, Checkpoint

FORMAT = "callvault-audit-checkpoint/1"


def checkpoint_text(chain_key: int, seq: int, hash_: str, created_at: datetime) -> str:
    """What a checkpoint's signature covers."""
    when = created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{FORMAT}\nchain {chain_key}\nseq {seq}\nhash {hash_}\ntime {when}\n"


def write_checkpoints() -> list[Checkpoint]:
    """Sign every chain head that moved since its last checkpoint; the new checkpoints."""
    now = timezone.now()
    signed = dict(Checkpoint.objects.values_list("chain_key").annotate(seq=Max("seq")).order_by())
    created = []
    with transaction.atomic():
        for head in ChainHead.objects.order_by("chain_key"):
            if head.seq == 0 or signed.get(head.chain_key, 0) >= head.seq:
                continue
            text = checkpoint_text(head.chain_key, head.seq, head.hash, now)
            fingerprint, signature = signing.sign(text)
            created.append(
                Checkpoint(
                    chain_key=head.chain_key,
                    seq=head.seq,
                    hash=head.hash,
                    created_at=now,
                    key_fingerprint=fingerprint,
                    signature=signature,
                )
            )
        Checkpoint.objects.bulk_create(created)
    return created


def latest_checkpoints() -> list[Checkpoint]:
    """The newest checkpoint of every chain."""
    newest: dict[int, Checkpoint] = {}
    for cp in Checkpoint.objects.order_by("chain_key", "seq", "id"):
        newest[cp.chain_key] = cp
    return list(newest.values())


def export_document() -> dict[str, Any]:
    """A checkpoint file: the newest signed head of every chain, with the public key."""
    public = signing.load_private_key().public_key()
    return {
        "format": FORMAT,
        "created_at": timezone.now().isoformat(),
        "public_key": signing.public_key_text(public),
        "key_fingerprint": signing.fingerprint(public),
        "checkpoints": [
            {
                "chain_key": cp.chain_key,
                "seq": cp.seq,
                "hash": cp.hash,
                "created_at": cp.created_at.isoformat(),
                "key_fingerprint": cp.key_fingerprint,
                "signature": cp.signature,
            }
            for cp in latest_checkpoints()
        ],
    }


def save_document(document: dict[str, Any], path: Path) -> None:
    """Write a checkpoint file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def post_document(document: dict[str, Any], url: str, timeout: float = 20) -> int:
    """POST a checkpoint file as JSON to url (a witness outside this server); the status."""
    if not url.startswith(("https://", "http://")):
        raise ValueError("the checkpoint URL must be http:// or https://")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url,
        data=json.dumps(document, sort_keys=True).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (configured URL)
        return int(response.status)


@dataclass(frozen=True)
class SignedHead:
    """A checkpoint from the database or a file, with whether its signature holds."""

    chain_key: int
    seq: int
    hash: str
    created_at: str
    valid: bool
    source: str


def check_checkpoint(cp: Checkpoint, keys: dict[str, Ed25519PublicKey]) -> SignedHead:
    """A stored checkpoint, its signature checked against the trusted keys."""
    key = keys.get(cp.key_fingerprint)
    text = checkpoint_text(cp.chain_key, cp.seq, cp.hash, cp.created_at)
    valid = key is not None and signing.check(key, text, cp.signature)
    return SignedHead(cp.chain_key, cp.seq, cp.hash, cp.created_at.isoformat(), valid, "database")


def read_document(path: Path, keys: dict[str, Ed25519PublicKey]) -> list[SignedHead]:
    """The checkpoints of a file, each checked against the trusted keys (not the file's own)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("format") != FORMAT:
        raise ValueError(f"{path} is not a callvault checkpoint file")
    heads = []
    for item in document["checkpoints"]:
        created = datetime.fromisoformat(item["created_at"])
        text = checkpoint_text(int(item["chain_key"]), int(item["seq"]), item["hash"], created)
        key = keys.get(item.get("key_fingerprint", ""))
        valid = key is not None and signing.check(key, text, item["signature"])
        heads.append(
            SignedHead(
                int(item["chain_key"]),
                int(item["seq"]),
                item["hash"],
                item["created_at"],
                valid,
                str(path),
            )
        )
    return heads
