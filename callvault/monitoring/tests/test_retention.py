"""Retention: screenshots and activity spans older than the policy's days go (files and
rows), one event of each per project and run; newer ones and other projects' stay."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone

from callvault.audit.models import AuditEvent
from callvault.monitoring.heartbeats import Heartbeat, do_ingest_heartbeats
from callvault.monitoring.models import ActivitySpan, Device, Screenshot
from callvault.monitoring.policy import do_update_policy, policy_for
from callvault.monitoring.screenshots import do_receive_screenshot
from callvault.monitoring.tasks import purge_old_screenshots
from callvault.monitoring.tests.support import enrol, image_bytes


def shots(member, *days_ago: float) -> list[Screenshot]:
    device, _ = enrol(member, hostname=f"pc-{member.pk}")
    device = Device.objects.select_related("project__monitoring_policy").get(pk=device.pk)
    now = timezone.now()
    return [
        do_receive_screenshot(
            device,
            client_id=uuid.uuid4(),
            taken_at=now - timedelta(days=days),
            content=image_bytes(),
        ).screenshot
        for days in days_ago
    ]


def test_old_screenshots_are_deleted_with_their_files(operator, outsider, project):
    do_update_policy(policy_for(project), retention_days=7)
    old_one, old_two, fresh = shots(operator, 8, 30, 6.9)
    theirs = shots(outsider, 8)[0]  # the other project keeps 30 days
    assert purge_old_screenshots.enqueue().return_value == 2
    assert set(Screenshot.objects.values_list("pk", flat=True)) == {fresh.pk, theirs.pk}
    for gone in (old_one, old_two):
        assert not default_storage.exists(gone.storage_name)
        assert not default_storage.exists(gone.thumb_storage_name)
    assert default_storage.exists(fresh.storage_name)
    (event,) = AuditEvent.objects.filter(action="screenshot.purge")
    assert event.project_id == project.pk
    assert event.extra["deleted"] == 2 and event.extra["retention_days"] == 7
    assert event.actor_name == "system: task purge_old_screenshots"


def test_a_run_with_nothing_to_delete_records_nothing(operator):
    shots(operator, 1)
    assert purge_old_screenshots.enqueue().return_value == 0
    assert not AuditEvent.objects.filter(action="screenshot.purge").exists()


def test_a_file_already_gone_does_not_stop_the_purge(operator, project):
    (old,) = shots(operator, 40)
    default_storage.delete(old.storage_name)
    assert purge_old_screenshots.enqueue().return_value == 1
    assert not Screenshot.objects.exists()


def test_old_activity_spans_go_too_with_one_event(operator, outsider, project):
    """Spans carry window titles: the review found them kept for ever."""
    do_update_policy(policy_for(project), retention_days=7)
    device, _ = enrol(operator, hostname="desk-spans")
    device = Device.objects.select_related("project__monitoring_policy").get(pk=device.pk)
    now = timezone.now()
    old = [Heartbeat(1, now - timedelta(days=9), "active", "crm", "Order 1042")]
    do_ingest_heartbeats(device, old)
    theirs, _ = enrol(outsider, hostname="their-desk")
    theirs = Device.objects.select_related("project__monitoring_policy").get(pk=theirs.pk)
    do_ingest_heartbeats(theirs, [Heartbeat(1, now - timedelta(days=9), "active", "x", "y")])
    device.refresh_from_db()
    assert device.open_span_id is not None  # the old span is still the device's newest
    assert purge_old_screenshots.enqueue().return_value == 1
    assert not ActivitySpan.objects.filter(project=project).exists()
    assert ActivitySpan.objects.filter(device=theirs).count() == 1  # 30 days there
    device.refresh_from_db()
    assert device.open_span_id is None
    (event,) = AuditEvent.objects.filter(action="activity_span.purge")
    assert event.project_id == project.pk and event.extra["deleted"] == 1
    assert event.extra["retention_days"] == 7
    # The device's next heartbeat starts afresh.
    do_ingest_heartbeats(device, [Heartbeat(2, now - timedelta(seconds=5), "idle", None, None)])
    assert ActivitySpan.objects.filter(project=project).count() == 1


def test_a_span_that_ended_within_the_retention_stays(operator, project):
    do_update_policy(policy_for(project), retention_days=7)
    device, _ = enrol(operator, hostname="desk-recent")
    device = Device.objects.select_related("project__monitoring_policy").get(pk=device.pk)
    do_ingest_heartbeats(
        device, [Heartbeat(1, timezone.now() - timedelta(days=6), "active", "crm", "Orders")]
    )
    assert purge_old_screenshots.enqueue().return_value == 0
    assert ActivitySpan.objects.count() == 1
    assert not AuditEvent.objects.filter(action="activity_span.purge").exists()
