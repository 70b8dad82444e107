"""Retention: old events go to a signed archive and leave only through a signed prune record,
and the chain stays checkable across the cut."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from callvault.audit import chain, retention
from callvault.audit.models import AuditEvent, AuditRetention, ChainLink, PruneRecord
from callvault.audit.recorder import record_event
from callvault.audit.testing import drop_triggers, ensure_triggers, make_event, sql
from callvault.audit.verify import Report, trusted_keys, verify

pytestmark = pytest.mark.django_db
PROJECT = 7


def verified() -> Report:
    return verify(keys=trusted_keys([]))


@pytest.fixture
def aged() -> list[AuditEvent]:
    """Project 7's chain: four events 40 days old, then two recent ones (and one elsewhere)."""
    ensure_triggers()
    now = timezone.now()
    events = [
        make_event(project_id=PROJECT, created_at=now - timedelta(days=40), extra={"n": n})
        for n in range(4)
    ]
    events += [make_event(project_id=PROJECT, extra={"n": n}) for n in (4, 5)]
    make_event(project_id=None, created_at=now - timedelta(days=40))
    chain.seal_pending()
    retention.do_set_audit_retention(PROJECT, 30)
    return events


def archive(tmp_path: Path) -> list[retention.Archived]:
    return retention.archive_expired(tmp_path)


def test_setting_retention_is_recorded() -> None:
    retention.do_set_audit_retention(PROJECT, 90)
    retention.do_set_audit_retention(PROJECT, 30)
    assert AuditRetention.objects.get(project_id=PROJECT).keep_days == 30
    event = AuditEvent.objects.filter(action="audit.retention_changed").latest("id")
    assert event.changes == {"audit_keep_days": [90, 30]}
    with pytest.raises(ValueError):
        retention.do_set_audit_retention(PROJECT, -1)


def test_it_archives_the_old_prefix_and_verify_stays_green(
    aged: list[AuditEvent], tmp_path: Path
) -> None:
    [done] = archive(tmp_path)
    record = done.record
    assert (record.chain_key, record.first_seq, record.last_seq) == (PROJECT, 1, 4)
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in aged[:4]]).exists()
    assert list(ChainLink.objects.filter(chain_key=PROJECT).values_list("seq", flat=True)) == [
        5,
        6,
    ]
    assert AuditEvent.objects.filter(project_id=None).count() >= 1  # other chains untouched
    chain.seal_pending()  # the archiving event itself
    assert verified().ok
    check = retention.verify_archive(done.path, trusted_keys([]))
    assert (check.problem, check.first_seq, check.last_seq, check.events) == ("", 1, 4, 4)
    assert archive(tmp_path) == []  # nothing more is old enough


def test_it_does_not_archive_without_a_retention_setting(tmp_path: Path) -> None:
    make_event(project_id=PROJECT, created_at=timezone.now() - timedelta(days=4000))
    chain.seal_pending()
    assert archive(tmp_path) == []


def test_a_second_archive_resumes_where_the_first_ended(
    aged: list[AuditEvent], tmp_path: Path
) -> None:
    archive(tmp_path)
    chain.seal_pending()
    retention.archive_chain(PROJECT, timezone.now() + timedelta(seconds=1), tmp_path / "2")
    first, second = PruneRecord.objects.filter(chain_key=PROJECT).order_by("first_seq")
    assert second.first_seq == first.last_seq + 1 and second.prev_hash == first.head_hash
    chain.seal_pending()
    assert verified().ok


def test_it_stops_at_the_first_event_that_is_not_old_enough(tmp_path: Path) -> None:
    now = timezone.now()
    make_event(project_id=PROJECT, created_at=now - timedelta(days=40))
    make_event(project_id=PROJECT, created_at=now - timedelta(days=1))
    make_event(project_id=PROJECT, created_at=now - timedelta(days=40))  # a late commit
    chain.seal_pending()
    done = retention.archive_chain(PROJECT, now - timedelta(days=30), tmp_path)
    assert done is not None and done.record.last_seq == 1


def test_it_refuses_to_archive_a_tampered_prefix(aged: list[AuditEvent], tmp_path: Path) -> None:
    drop_triggers()
    sql("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [aged[1].pk])
    ensure_triggers()
    with pytest.raises(retention.ChainBrokenError):
        archive(tmp_path)
    assert not PruneRecord.objects.exists()
    assert AuditEvent.objects.filter(pk=aged[0].pk).exists()


def test_a_prune_without_a_signed_record_is_detected(aged: list[AuditEvent]) -> None:
    drop_triggers()
    ids = [e.pk for e in aged[:2]]
    sql("DELETE FROM audit_chainlink WHERE event_id IN (%s, %s)", ids)
    sql("DELETE FROM audit_auditevent WHERE id IN (%s, %s)", ids)
    [problem] = verified().problems
    assert (problem.chain_key, problem.seq) == (PROJECT, 3)
    assert "seqs 1..2 are missing" in problem.message


def test_an_edited_prune_record_is_detected(aged: list[AuditEvent], tmp_path: Path) -> None:
    archive(tmp_path)
    chain.seal_pending()
    drop_triggers()
    sql("UPDATE audit_prunerecord SET last_seq = 5")
    problems = verified().problems
    assert problems and "prune record is not signed" in problems[0].message


def test_an_edited_archive_file_is_detected(aged: list[AuditEvent], tmp_path: Path) -> None:
    [done] = archive(tmp_path)
    lines = done.path.read_text(encoding="utf-8").splitlines(keepends=True)
    item = json.loads(lines[2])
    item["event"]["actor_name"] = "someone else"
    lines[2] = json.dumps(item) + "\n"
    done.path.write_text("".join(lines), encoding="utf-8")
    check = retention.verify_archive(done.path, trusted_keys([]))
    assert "seq 2" in check.problem and "changed" in check.problem


def test_an_archive_cut_short_is_detected(aged: list[AuditEvent], tmp_path: Path) -> None:
    [done] = archive(tmp_path)
    lines = done.path.read_text(encoding="utf-8").splitlines(keepends=True)
    done.path.write_text("".join(lines[:-2] + lines[-1:]), encoding="utf-8")
    check = retention.verify_archive(done.path, trusted_keys([]))
    assert "signature does not match" in check.problem


def test_an_archive_is_checked_only_against_trusted_keys(
    aged: list[AuditEvent], tmp_path: Path
) -> None:
    [done] = archive(tmp_path)
    assert "not trusted" in retention.verify_archive(done.path, {}).problem


def test_a_record_event_inside_the_archive_run_lands_in_the_chain(
    aged: list[AuditEvent], tmp_path: Path
) -> None:
    archive(tmp_path)
    event = AuditEvent.objects.get(action="audit.archived")
    assert event.project_id == PROJECT and event.extra["last_seq"] == 4
    record_event("after", project_id=PROJECT)
    chain.seal_pending()
    assert verified().ok
