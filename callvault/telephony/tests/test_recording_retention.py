"""Retention: recordings older than their project's setting are deleted, file and row, each
recorded as `recording.purge` by the system, one run under one request id."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from callvault.audit.models import AuditEvent
from callvault.telephony.models import Recording
from callvault.telephony.recordings import purge_old_recordings
from callvault.telephony.setup_actions import do_update_telephony_settings
from callvault.telephony.tests.recording_support import (
    make_call,
    own_media,
    store,
    wav_bytes,
)
from conftest import make_member


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    return own_media(settings, tmp_path)


def recording_aged(project, order, member, days):
    recording = store(make_call(project, order, member), wav_bytes(0.2))
    Recording.objects.filter(pk=recording.pk).update(
        created_at=timezone.now() - timedelta(days=days)
    )
    return recording


@pytest.fixture
def purge(django_capture_on_commit_callbacks):
    """Run the task as the worker does (files go once the deletions have committed)."""

    def run():
        with django_capture_on_commit_callbacks(execute=True):
            return purge_old_recordings.call()

    return run


def test_old_recordings_go_and_new_ones_stay(media, project, order, operator, purge):
    do_update_telephony_settings(project, {"recording_retention_days": 30})
    old = recording_aged(project, order, operator, 31)
    new = recording_aged(project, order, operator, 29)
    assert purge() == 1
    assert list(Recording.objects.values_list("pk", flat=True)) == [new.pk]
    assert not default_storage.exists(old.storage_name)
    assert default_storage.exists(new.storage_name)


def test_each_project_keeps_its_own_retention(
    media, project, other_project, order, operator, purge
):
    do_update_telephony_settings(project, {"recording_retention_days": 30})
    theirs = make_member(other_project, "olaf", "operator")
    ours = recording_aged(project, order, operator, 40)
    # The other project has no telephony settings: the default (180 days) applies.
    kept = recording_aged(other_project, None, theirs, 100)
    gone = recording_aged(other_project, None, theirs, 200)
    assert purge() == 2
    assert set(Recording.objects.values_list("pk", flat=True)) == {kept.pk}
    assert not default_storage.exists(ours.storage_name)
    assert not default_storage.exists(gone.storage_name)


def test_each_purge_is_recorded_by_the_system_under_one_run(media, project, order, operator, purge):
    do_update_telephony_settings(project, {"recording_retention_days": 10})
    first = recording_aged(project, order, operator, 11)
    second = recording_aged(project, order, operator, 12)
    purge()
    events = list(AuditEvent.objects.filter(action="recording.purge").order_by("id"))
    assert len(events) == 2
    assert {(e.actor_kind, e.actor_name) for e in events} == {
        ("system", "system: task purge_old_recordings")
    }
    assert len({e.request_id for e in events}) == 1 and events[0].request_id
    by_call = {e.object_id: e for e in events}
    for recording in (first, second):
        event = by_call[str(recording.call_id)]
        assert event.object_type == "call"
        assert event.changes == {
            f"recording {recording.pk}": [f"audio/wav, {recording.size} bytes", None]
        }
    # The next run finds nothing more to do.
    assert purge() == 0


def test_a_purged_recording_is_no_longer_played(media, project, order, operator, supervisor, purge):
    from conftest import login

    do_update_telephony_settings(project, {"recording_retention_days": 1})
    old = recording_aged(project, order, operator, 2)
    purge()
    response = login(supervisor).get(f"/p/{project.slug}/calls/{old.call_id}/recording/")
    assert response.status_code == 404
