"""Retention: a project's old events go to a signed archive file and leave the database only
through a recorded step (a signed prune record) that keeps the rest of the chain checkable.

The archive is JSON lines: a header, one line per event with its link, and a last line
with the signature. The prune record in the database carries the same signature, so
verify resumes the chain at the record's head hash and `audit verify-archive` checks the
file on its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import connection, transaction
from django.utils import timezone

from callvault.audit import appendonly, chain, signing
from callvault.audit.models import AuditRetention, ChainLink, PruneRecord
from callvault.audit.recorder import record_event

FORMAT = "callvault-audit-archive/1"
PREFIX_SQL = (
    f"SELECT l.seq, l.event_id, l.content_hash, l.chain_hash, {chain.EVENT_COLUMNS} "  # noqa: S608
    "FROM audit_chainlink l LEFT JOIN audit_auditevent e ON e.id = l.event_id "
    "WHERE l.chain_key = %s AND l.seq > %s ORDER BY l.seq LIMIT %s"
)


def prune_text(
    chain_key: int, first: int, last: int, prev: str, head: str, count: int, sha256: str
) -> str:
    """What the signature of an archive and its prune record covers."""
    return (
        f"{FORMAT}\nchain {chain_key}\nseqs {first}-{last}\nprev {prev}\nhead {head}\n"
        f"events {count}\nsha256 {sha256}\n"
    )


def record_text(record: PruneRecord) -> str:
    """The signed text of a stored prune record."""
    return prune_text(
        record.chain_key,
        record.first_seq,
        record.last_seq,
        record.prev_hash,
        record.head_hash,
        record.event_count,
        record.archive_sha256,
    )


def do_set_audit_retention(project_id: int, days: int) -> AuditRetention:
    """Keep a project's audit events for `days` (0: forever); recorded as an event."""
    if days < 0:
        raise ValueError("retention cannot be negative")
    with transaction.atomic():
        setting, _ = AuditRetention.objects.select_for_update().get_or_create(project_id=project_id)
        before = setting.keep_days
        setting.keep_days = days
        setting.save(update_fields=["keep_days"])
        record_event(
            "audit.retention_changed",
            project_id=project_id,
            object_type="project",
            object_id=project_id,
            changes={"audit_keep_days": [before, days]} if before != days else {},
        )
    return setting


def chain_starts(
    keys: dict[str, Ed25519PublicKey], fail: Callable[[Any], None], report: Any
) -> dict[int, tuple[int, str]]:
    """Where each pruned chain resumes: (last pruned seq, its hash), from the signed records."""
    from callvault.audit.verify import Problem

    starts: dict[int, tuple[int, str]] = {}
    for record in PruneRecord.objects.order_by("chain_key", "first_seq", "id"):
        report.prune_records += 1
        seq, hash_ = starts.get(record.chain_key, (0, chain.GENESIS))
        key = keys.get(record.key_fingerprint)
        if key is None or not signing.check(key, record_text(record), record.signature):
            message = "the prune record is not signed by a trusted key"
        elif record.first_seq != seq + 1 or record.prev_hash != hash_:
            message = f"the prune record does not follow seq {seq} (records missing or edited)"
        else:
            starts[record.chain_key] = (record.last_seq, record.head_hash)
            continue
        fail(Problem(record.chain_key, record.first_seq, None, message))
        starts[record.chain_key] = (record.last_seq, record.head_hash)
    return starts


def cutoff_for(project_id: int, now: datetime | None = None) -> datetime | None:
    """Events of the project older than this may be archived; None: kept forever."""
    days = (
        AuditRetention.objects.filter(project_id=project_id)
        .values_list("keep_days", flat=True)
        .first()
    )
    if not days:
        return None
    return (now or timezone.now()) - timedelta(days=days)


@dataclass(frozen=True)
class Archived:
    """The result of archiving a chain's prefix."""

    record: PruneRecord
    path: Path


def archive_chain(key: int, cutoff: datetime, out_dir: Path) -> Archived | None:
    """Archive and prune the prefix of a chain whose events are older than cutoff; None if none.

    One transaction, holding the sealer's lock: the file is written, the prefix is checked
    against its links as it is written (an archive must not launder a tampered chain), the
    signed prune record is added, then events and links go through the guarded delete.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [chain.PG_SEALER_LOCK])
        last = PruneRecord.objects.filter(chain_key=key).order_by("-last_seq").first()
        first_seq = last.last_seq + 1 if last else 1
        prev = last.head_hash if last else chain.GENESIS
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"audit-chain{key}-{first_seq}-{timezone.now():%Y%m%dT%H%M%S}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            written = _write_prefix(fh, key, first_seq, prev, cutoff)
        if written is None:
            path.unlink()
            return None
        last_seq, head, count, digest = written
        text = prune_text(key, first_seq, last_seq, prev, head, count, digest)
        fingerprint, signature = signing.sign(text)
        public = signing.public_key_text(signing.load_private_key().public_key())
        trailer = {
            "signature": signature,
            "key_fingerprint": fingerprint,
            "public_key": public,
            "last_seq": last_seq,
            "head_hash": head,
            "events": count,
            "sha256": digest,
        }
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(trailer, sort_keys=True) + "\n")
        record = PruneRecord.objects.create(
            chain_key=key,
            first_seq=first_seq,
            last_seq=last_seq,
            prev_hash=prev,
            head_hash=head,
            event_count=count,
            archive_name=path.name,
            archive_sha256=digest,
            created_at=timezone.now(),
            key_fingerprint=fingerprint,
            signature=signature,
        )
        _prune(key, first_seq, last_seq)
        record_event(
            "audit.archived",
            project_id=None if key == chain.SYSTEM_CHAIN else key,
            object_type="audit_chain",
            object_id=key,
            extra={
                "first_seq": first_seq,
                "last_seq": last_seq,
                "events": count,
                "archive": path.name,
                "sha256": digest,
            },
        )
    return Archived(record, path)


class ChainBrokenError(Exception):
    """The prefix to archive does not match its links: verify first, archive nothing."""


def _prefix_rows(key: int, first_seq: int, batch_size: int = 5000) -> Iterator[tuple[Any, ...]]:
    seq = first_seq - 1
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                PREFIX_SQL,
                [key, seq, batch_size],
            )
            rows = cursor.fetchall()
        yield from rows
        if len(rows) < batch_size:
            return
        seq = rows[-1][0]


def _write_prefix(
    fh: IO[str], key: int, first_seq: int, prev: str, cutoff: datetime
) -> tuple[int, str, int, str] | None:
    """Write the header and the events older than cutoff; (last seq, head, count, sha256)."""
    digest = hashlib.sha256()

    def write(obj: dict[str, Any]) -> None:
        line = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        digest.update(line.encode("utf-8"))
        fh.write(line)

    write({"format": FORMAT, "chain_key": key, "first_seq": first_seq, "prev_hash": prev})
    seq, head, count = first_seq - 1, prev, 0
    for row in _prefix_rows(key, first_seq):
        link_seq, _event_id, content, hash_ = row[:4]
        if row[4] is None or chain.created_datetime(row[5]) >= cutoff:
            break
        event = chain.canonical_event(row[4:])
        if (
            link_seq != seq + 1
            or chain.content_hash(event) != content
            or chain.link_hash(head, link_seq, content) != hash_
        ):
            raise ChainBrokenError(f"chain {key} does not verify at seq {link_seq}")
        write({"seq": link_seq, "event": event, "content_hash": content, "chain_hash": hash_})
        seq, head, count = link_seq, hash_, count + 1
    if not count:
        return None
    return seq, head, count, digest.hexdigest()


def _prune(key: int, first_seq: int, last_seq: int) -> None:
    """Delete the archived events and links, through the triggers' guarded path."""
    with appendonly.pruning(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM audit_auditevent WHERE id IN (SELECT event_id FROM audit_chainlink "
            "WHERE chain_key = %s AND seq BETWEEN %s AND %s)",
            [key, first_seq, last_seq],
        )
        ChainLink.objects.filter(chain_key=key, seq__gte=first_seq, seq__lte=last_seq).delete()


def archive_expired(out_dir: Path, project_ids: list[int] | None = None) -> list[Archived]:
    """Archive every project whose retention has passed (or the given ones)."""
    settings_ = AuditRetention.objects.filter(keep_days__gt=0)
    if project_ids is not None:
        settings_ = settings_.filter(project_id__in=project_ids)
    done = []
    for project_id in settings_.order_by("project_id").values_list("project_id", flat=True):
        cutoff = cutoff_for(project_id)
        if cutoff is not None:
            result = archive_chain(chain.chain_key(project_id), cutoff, out_dir)
            if result is not None:
                done.append(result)
    return done


@dataclass
class ArchiveCheck:
    """What verify-archive found."""

    chain_key: int | None = None
    first_seq: int = 0
    last_seq: int = 0
    events: int = 0
    signed_by: str = ""
    problem: str = ""


def verify_archive(path: Path, keys: dict[str, Ed25519PublicKey]) -> ArchiveCheck:
    """Check an archive file on its own: its chain, its hash and its signature."""
    result = ArchiveCheck()
    digest = hashlib.sha256()
    lines = path.read_bytes().splitlines(keepends=True)
    if len(lines) < 3:
        result.problem = "not an archive (too short)"
        return result
    header, trailer = json.loads(lines[0]), json.loads(lines[-1])
    if header.get("format") != FORMAT:
        result.problem = "not a callvault audit archive"
        return result
    result.chain_key, result.first_seq = header["chain_key"], header["first_seq"]
    digest.update(lines[0])
    seq, head = result.first_seq - 1, header["prev_hash"]
    for raw in lines[1:-1]:
        digest.update(raw)
        item = json.loads(raw)
        content = chain.content_hash(item["event"])
        if item["seq"] != seq + 1 or content != item["content_hash"]:
            result.problem = f"seq {item['seq']} (event {item['event'].get('id')}) was changed"
            return result
        head = chain.link_hash(head, item["seq"], content)
        if head != item["chain_hash"]:
            result.problem = f"seq {item['seq']}: the chain hash is wrong"
            return result
        seq, result.events = item["seq"], result.events + 1
    result.last_seq = seq
    text = prune_text(
        header["chain_key"],
        header["first_seq"],
        seq,
        header["prev_hash"],
        head,
        result.events,
        digest.hexdigest(),
    )
    key = keys.get(trailer.get("key_fingerprint", ""))
    if key is None:
        result.problem = "signed by a key that is not trusted (give --public-key)"
    elif not signing.check(key, text, trailer.get("signature", "")):
        result.problem = "the signature does not match the contents (edited, cut or forged)"
    else:
        result.signed_by = trailer["key_fingerprint"]
    return result
