"""The hash chain over audit events, and the sealer that extends it after events commit.

Nothing on the request path touches the chain: events are inserted as before, and
`seal_pending` (run by `callvault worker` every few seconds, or `callvault audit seal`)
links committed events to their chain afterwards. One chain per project (events of no
project form chain 0), so retention can archive a prefix of one project's chain.

    content hash = SHA-256(canonical JSON of the event's stored fields)
    chain hash   = SHA-256("<previous chain hash>:<seq>:<content hash>")

Chain order is seq, not id: on PostgreSQL an event can commit after events with higher
ids, and is then linked with the next seq of its chain (see docs/audit.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from callvault.audit.models import RECORDED_COLUMNS, ChainHead, ChainLink
from callvault.audit.parked import sweep_pending_changes

GENESIS = "0" * 64
SYSTEM_CHAIN = 0
# The event columns the content hash covers, in the order the queries below select them.
EVENT_FIELDS = ("id", *RECORDED_COLUMNS)
EVENT_COLUMNS = ", ".join(f"e.{name}" for name in EVENT_FIELDS)
# The sealer's look-back for late commits is bounded in ids as well as in time, so that a
# run costs the same at any load.
LOOKBACK_IDS = 20_000
# Any number, as long as only the sealer uses it: pg_advisory locks are per database.
PG_SEALER_LOCK = 0x63_76_61_75  # "cvau"


def chain_key(project_id: int | None) -> int:
    """The chain an event belongs to."""
    return SYSTEM_CHAIN if project_id is None else project_id


def _utc_text(value: Any) -> str:
    """created_at as UTC ISO text with microseconds, from either backend's raw value."""
    if isinstance(value, datetime):
        # isoformat is several times faster than strftime, and verify does this a million times.
        if value.tzinfo is not None and value.utcoffset():
            value = value.astimezone(UTC)
        return str(value.replace(tzinfo=None).isoformat(timespec="microseconds")) + "Z"
    # SQLite keeps naive UTC text, without the fraction when it is zero.
    text = str(value).replace(" ", "T")
    return text + ("Z" if "." in text else ".000000Z")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def canonical_event(row: Sequence[Any]) -> dict[str, Any]:
    """The event as the hash sees it, from a raw row of EVENT_FIELDS (the same on both backends)."""
    event = dict(zip(EVENT_FIELDS, row, strict=True))
    event["created_at"] = _utc_text(event["created_at"])
    event["changes"] = _json(event["changes"])
    event["extra"] = _json(event["extra"])
    event["ip"] = str(event["ip"]) if event["ip"] is not None else None
    return event


# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_text(event: dict[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 as is: one text for one content."""
    return _ENCODER.encode(event)


def content_hash(event: dict[str, Any]) -> str:
    """SHA-256 of the canonical text, hex."""
    return hashlib.sha256(canonical_text(event).encode("utf-8")).hexdigest()


def link_hash(previous: str, seq: int, content: str) -> str:
    """The chain hash of a link: it covers the predecessor, the position and the content."""
    return hashlib.sha256(f"{previous}:{seq}:{content}".encode("ascii")).hexdigest()


def sweep_before_sealing() -> None:
    """Runs before every sealer run: work that must land in the chain first.

    On SQLite, writes that bypassed the application wait as pending changes until swept
    into "unattributed" events; sweeping here puts them in the chain in the same run.
    """
    sweep_pending_changes()


def seal_pending(*, batch_size: int = 5000, now: datetime | None = None) -> int:
    """Link committed events to their chains, in batches; the number linked."""
    sweep_before_sealing()
    total = 0
    lookback = True
    while True:
        linked, more = _seal_batch(batch_size, now or timezone.now(), lookback=lookback)
        total += linked
        lookback = False
        if not more:
            return total


def _lock_sealer() -> bool:
    """One sealer at a time; on SQLite the IMMEDIATE transaction already holds the write lock."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [PG_SEALER_LOCK])
        return bool(cursor.fetchone()[0])


def _select_events(where: str, params: list[Any], limit: int) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            # Column names and conditions are constants of this module; values are parameters.
            f"SELECT {EVENT_COLUMNS} FROM audit_auditevent e WHERE {where} "  # noqa: S608
            "ORDER BY e.id LIMIT %s",
            [*params, limit],
        )
        return list(cursor.fetchall())


def late_events(watermark: int, now: datetime, limit: int) -> list[tuple[Any, ...]]:
    """Unlinked events below the watermark that committed after it passed them."""
    since = now - timedelta(seconds=settings.AUDIT_SEAL_LOOKBACK)
    return _select_events(
        "e.id < %s AND e.id > %s AND e.created_at >= %s AND NOT EXISTS "
        "(SELECT 1 FROM audit_chainlink l WHERE l.event_id = e.id)",
        [watermark, watermark - LOOKBACK_IDS, connection.ops.adapt_datetimefield_value(since)],
        limit,
    )


def sealable_prefix(
    rows: Sequence[tuple[Any, ...]], watermark: int, now: datetime
) -> list[tuple[Any, ...]]:
    """Events above the watermark up to the first id gap that may be a transaction still open.

    A missing id was taken by an insert that has not committed yet or never will. If the
    event after the gap is younger than the grace period, wait; an older gap is a rollback
    (and should it commit after all, the look-back links it later).
    """
    young = now - timedelta(seconds=settings.AUDIT_SEAL_GRACE)
    out: list[tuple[Any, ...]] = []
    previous = watermark
    for row in rows:
        # Before the first seal there is nothing to order against (a fresh database, or
        # ids already spent on PostgreSQL); the look-back still catches a late commit.
        gap = previous and row[0] != previous + 1
        if gap and created_datetime(row[1]) > young:
            break
        out.append(row)
        previous = row[0]
    return out


def created_datetime(value: Any) -> datetime:
    """created_at from either backend's raw value, aware UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _seal_batch(batch_size: int, now: datetime, *, lookback: bool) -> tuple[int, bool]:
    """One transaction: link a batch; (linked, whether more may be waiting)."""
    with transaction.atomic():
        if not _lock_sealer():
            return 0, False
        heads = {head.chain_key: head for head in ChainHead.objects.all()}
        watermark = max((head.last_event_id for head in heads.values()), default=0)
        late = late_events(watermark, now, batch_size) if lookback and watermark else []
        ahead = _select_events("e.id > %s", [watermark], batch_size)
        fresh = sealable_prefix(ahead, watermark, now)
        _link(heads, [*late, *fresh], now)
        return len(late) + len(fresh), len(fresh) == batch_size


def _link(heads: dict[int, ChainHead], rows: Iterable[tuple[Any, ...]], now: datetime) -> None:
    links: list[ChainLink] = []
    touched: set[int] = set()
    for row in rows:
        event = canonical_event(row)
        key = chain_key(event["project_id"])
        head = heads.get(key)
        if head is None:
            head = heads[key] = ChainHead(chain_key=key, seq=0, hash=GENESIS, last_event_id=0)
        content = content_hash(event)
        head.seq += 1
        head.hash = link_hash(head.hash, head.seq, content)
        head.last_event_id = max(head.last_event_id, event["id"])
        head.updated_at = now
        touched.add(key)
        links.append(
            ChainLink(
                chain_key=key,
                seq=head.seq,
                event_id=event["id"],
                content_hash=content,
                chain_hash=head.hash,
            )
        )
    if not links:
        return
    ChainLink.objects.bulk_create(links, batch_size=1000)
    changed = [heads[key] for key in touched]
    ChainHead.objects.bulk_create([h for h in changed if h.pk is None])
    ChainHead.objects.bulk_update(
        [h for h in changed if h.pk is not None], ["seq", "hash", "last_event_id", "updated_at"]
    )
