"""The audit retention setting: the owner's alone, recorded, and what the archiver reads."""

from __future__ import annotations

from django.test import Client

from callvault.audit.models import AuditEvent, AuditRetention
from callvault.audit.retention import cutoff_for
from conftest import login

URL = "/p/alpha/setup/audit/"


def test_only_the_owner_sees_the_retention_setting(owner, supervisor, operator, outsider):
    assert Client().get(URL).status_code == 302
    for member in (supervisor, operator):
        assert login(member).get(URL).status_code == 404
    assert login(outsider).get(URL).status_code == 404
    assert login(owner).get(URL).status_code == 200


def test_the_owner_sets_how_long_events_are_kept(owner, project):
    client = login(owner)
    assert cutoff_for(project.pk) is None  # forever by default
    response = client.post(URL, {"keep_days": "365"})
    assert response.status_code == 302
    assert AuditRetention.objects.get(project_id=project.pk).keep_days == 365
    assert cutoff_for(project.pk) is not None
    event = AuditEvent.objects.get(action="audit.retention_changed")
    assert event.changes == {"audit_keep_days": [0, 365]}
    assert event.actor_name == owner.user.username
    assert 'value="365"' in client.get(URL).content.decode()


def test_a_negative_retention_is_refused_and_nothing_changes(owner, project):
    response = login(owner).post(URL, {"keep_days": "-1"})
    assert response.status_code == 200
    assert "keep_days" in response.context["form"].errors
    assert not AuditRetention.objects.filter(project_id=project.pk).exists()
