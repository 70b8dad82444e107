"""The sealer links committed events into one chain per project, in commit order, and the
tables of the record refuse UPDATE, DELETE and TRUNCATE."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from callvault.audit import chain
from callvault.audit.models import AuditEvent, ChainHead, ChainLink
from callvault.audit.recorder import record_event
from callvault.audit.testing import (  # noqa: F401 (the fixture is used by being imported)
    audit_triggers_allow_flush,
    ensure_triggers,
    make_event,
    sql,
)
from callvault.audit.verify import trusted_keys, verify


def links(key: int = chain.SYSTEM_CHAIN) -> list[int]:
    """The event ids of a chain in seq order."""
    rows = ChainLink.objects.filter(chain_key=key).order_by("seq")
    return list(rows.values_list("event_id", flat=True))


def verified() -> Any:
    return verify(keys=trusted_keys([]))


@pytest.mark.django_db
def test_it_links_events_into_one_chain_per_project() -> None:
    a = record_event("a", project_id=None)
    b = record_event("b", project_id=7)
    c = record_event("c", project_id=None)
    assert chain.seal_pending() == 3
    assert links(chain.SYSTEM_CHAIN) == [a.pk, c.pk]
    assert links(7) == [b.pk]
    head = ChainHead.objects.get(chain_key=chain.SYSTEM_CHAIN)
    assert (head.seq, head.last_event_id) == (2, c.pk)
    assert chain.seal_pending() == 0


@pytest.mark.django_db
def test_each_link_covers_its_predecessor_its_seq_and_its_content() -> None:
    first, second = record_event("a", project_id=None), record_event("b", project_id=None)
    chain.seal_pending()
    one, two = ChainLink.objects.order_by("seq")
    assert one.chain_hash == chain.link_hash(chain.GENESIS, 1, one.content_hash)
    assert two.chain_hash == chain.link_hash(one.chain_hash, 2, two.content_hash)
    assert (one.event_id, two.event_id) == (first.pk, second.pk)
    assert one.content_hash != two.content_hash


@pytest.mark.django_db
def test_the_content_hash_is_the_same_for_what_either_database_returns() -> None:
    event = make_event(
        changes={"b": [1, 2.5], "a": "ё"}, extra={"z": None}, ip="2001:db8::1", project_id=3
    )
    chain.seal_pending()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {chain.EVENT_COLUMNS} FROM audit_auditevent e WHERE e.id = %s",  # noqa: S608
            [event.pk],
        )
        canonical = chain.canonical_event(cursor.fetchone())
    assert canonical["created_at"].endswith("Z") and "." in canonical["created_at"]
    assert chain.canonical_text(canonical).startswith('{"action":"test.event","actor_id":""')
    assert '"changes":{"a":"ё","b":[1,2.5]}' in chain.canonical_text(canonical)
    assert ChainLink.objects.get(event_id=event.pk).content_hash == chain.content_hash(canonical)


@pytest.mark.django_db
def test_it_waits_at_a_young_id_gap_and_links_the_late_event_when_it_arrives() -> None:
    first = make_event()
    make_event(id=first.pk + 2)  # first.pk + 1 is taken by a transaction not yet committed
    assert chain.seal_pending() == 1
    make_event(id=first.pk + 1)
    assert chain.seal_pending() == 2
    assert links() == [first.pk, first.pk + 1, first.pk + 2]


@pytest.mark.django_db
def test_an_old_gap_is_a_rollback_and_a_late_commit_below_it_gets_the_next_seq() -> None:
    first = make_event()
    make_event(id=first.pk + 2, created_at=timezone.now() - timedelta(minutes=2))
    assert chain.seal_pending() == 2  # the gap is older than the grace period
    late = make_event(id=first.pk + 1)  # committed after all, below the watermark
    make_event(id=first.pk + 3)
    assert chain.seal_pending() == 2
    assert links() == [first.pk, first.pk + 2, late.pk, first.pk + 3]
    assert verified().ok


@pytest.mark.django_db
def test_a_late_event_beyond_the_look_back_stays_out_and_verify_says_so() -> None:
    first = make_event()
    make_event(id=first.pk + 2, created_at=timezone.now() - timedelta(minutes=2))
    chain.seal_pending()
    make_event(id=first.pk + 1, created_at=timezone.now() - timedelta(hours=1))
    assert chain.seal_pending() == 0
    report = verified()
    assert [(p.event_id, p.seq) for p in report.problems] == [(first.pk + 1, None)]


@pytest.mark.django_db
def test_verify_counts_events_not_sealed_yet_without_calling_them_broken() -> None:
    record_event("a", project_id=None)
    chain.seal_pending()
    record_event("b", project_id=None)
    report = verified()
    assert report.ok and report.unsealed == 1


@pytest.mark.django_db
@pytest.mark.parametrize("table", ["audit_auditevent", "audit_chainlink"])
def test_the_record_refuses_update_and_delete(table: str) -> None:
    ensure_triggers()
    record_event("a", project_id=None)
    chain.seal_pending()
    column = "action" if table == "audit_auditevent" else "content_hash"
    statements = (f"UPDATE {table} SET {column} = 'x'", f"DELETE FROM {table}")  # noqa: S608
    for statement in statements:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            sql(statement)
    assert AuditEvent.objects.count() == 1 and ChainLink.objects.count() == 1


@pytest.mark.django_db
def test_the_record_refuses_truncate_on_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    ensure_triggers()
    record_event("a", project_id=None)
    for table in ("audit_auditevent", "audit_chainlink", "audit_checkpoint"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            sql(f"TRUNCATE {table} CASCADE")
    assert AuditEvent.objects.count() == 1


@pytest.mark.django_db
def test_pruning_is_refused_outside_the_guarded_path() -> None:
    ensure_triggers()
    record_event("a", project_id=None)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql("DELETE FROM audit_auditevent")
    from callvault.audit import appendonly

    with transaction.atomic(), appendonly.pruning():
        sql("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.count() == 0
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        make_event()
        sql("DELETE FROM audit_auditevent")  # the guard ended with its block


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_an_event_committed_after_a_newer_one_is_sealed_in_commit_order() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids commit in order")
    inserted, release = threading.Event(), threading.Event()
    slow_id: list[int] = []

    def slow_transaction() -> None:
        try:
            with transaction.atomic():
                slow_id.append(record_event("slow", project_id=None).pk)
                inserted.set()
                release.wait(10)
        finally:
            connection.close()

    before = record_event("before", project_id=None)
    worker = threading.Thread(target=slow_transaction)
    worker.start()
    assert inserted.wait(10)
    after = record_event("after", project_id=None)  # a higher id, committed first
    assert chain.seal_pending() == 1  # only `before`: the gap is young
    later = timezone.now() + timedelta(minutes=1)
    assert chain.seal_pending(now=later) == 1  # the gap grew old: `after` goes in
    release.set()
    worker.join(10)
    assert chain.seal_pending(now=later) == 1  # the look-back finds the late commit
    assert links() == [before.pk, after.pk, slow_id[0]]
    assert verify(keys=trusted_keys([]), now=later).ok


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_two_sealers_never_link_the_same_events_twice() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("on SQLite the write lock already serialises sealers")
    for n in range(300):
        record_event(f"e{n}", project_id=n % 3 or None)
    counts: list[int] = []

    def seal() -> None:
        try:
            counts.append(chain.seal_pending(batch_size=50))
        finally:
            connection.close()

    threads = [threading.Thread(target=seal) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    counts.append(chain.seal_pending())
    assert sum(counts) == 300 == ChainLink.objects.count()
    assert verify(keys=trusted_keys([])).ok
