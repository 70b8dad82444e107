"""Thumbnails are recorded too: the timeline's own, through the token its recorded view
mints for the day it shows; any other fetch of one, as a view of its own."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from callvault.audit.models import AuditEvent
from callvault.monitoring import views
from callvault.monitoring.models import Device, Screenshot
from callvault.monitoring.screenshots import do_receive_screenshot
from callvault.monitoring.tests.support import enrol, image_bytes, thumb_src


def client_of(member) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(member.user)
    return client


def shot_of(member, days_ago: int = 0) -> Screenshot:
    device, _ = enrol(member, hostname=f"pc-{member.user.username}-{days_ago}")
    device = Device.objects.select_related("project__monitoring_policy").get(pk=device.pk)
    return do_receive_screenshot(
        device,
        client_id=uuid.uuid4(),
        taken_at=timezone.now() - timedelta(days=days_ago),
        content=image_bytes(),
    ).screenshot


def thumb_views(shot: Screenshot) -> int:
    return AuditEvent.objects.filter(
        action="screenshot.view", object_id=str(shot.pk), extra__thumbnail=True
    ).count()


def test_a_thumbnail_fetched_by_id_alone_is_recorded(operator, supervisor):
    """The review's finding: thumbnails were served by id with no record at all."""
    shot = shot_of(operator)
    response = client_of(supervisor).get(f"/p/alpha/monitoring/screenshots/{shot.pk}/thumb/")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    (event,) = AuditEvent.objects.filter(action="screenshot.view")
    assert event.actor_id == str(supervisor.user_id) and event.object_id == str(shot.pk)
    assert event.extra["thumbnail"] is True and event.extra["member"] == "bob"


def test_the_timelines_thumbnails_are_covered_by_its_recorded_view(operator, supervisor):
    shots = [shot_of(operator), shot_of(operator)]
    client = client_of(supervisor)
    html = client.get(f"/p/alpha/monitoring/timeline/{operator.user_id}/").content.decode()
    for shot in shots:
        assert client.get(thumb_src(html, shot.pk)).status_code == 200
    (view,) = AuditEvent.objects.filter(action="timeline.view")
    assert view.extra["screenshots"] == 2
    assert not AuditEvent.objects.filter(action="screenshot.view").exists()


def test_a_token_covers_only_its_viewer_member_and_day(operator, trainee, supervisor, owner):
    today, yesterday, theirs = shot_of(operator), shot_of(operator, 1), shot_of(trainee)
    html = client_of(supervisor).get(f"/p/alpha/monitoring/timeline/{operator.user_id}/")
    token = thumb_src(html.content.decode(), today.pk).split("?v=", 1)[1]
    # Another viewer with the same link, another day's and another member's screenshot.
    assert client_of(owner).get(thumb_src(html.content.decode(), today.pk)).status_code == 200
    for shot in (yesterday, theirs):
        url = f"/p/alpha/monitoring/screenshots/{shot.pk}/thumb/?v={token}"
        assert client_of(supervisor).get(url).status_code == 200
    assert [thumb_views(s) for s in (today, yesterday, theirs)] == [1, 1, 1]
    # A forged or mangled token is no token.
    bad = f"/p/alpha/monitoring/screenshots/{today.pk}/thumb/?v={token[:-2]}xx"
    assert client_of(supervisor).get(bad).status_code == 200
    assert thumb_views(today) == 2


def test_an_expired_token_is_no_token(operator, supervisor, monkeypatch):
    shot = shot_of(operator)
    client = client_of(supervisor)
    html = client.get(f"/p/alpha/monitoring/timeline/{operator.user_id}/").content.decode()
    monkeypatch.setattr(views, "THUMB_TOKEN_SECONDS", 0)
    assert client.get(thumb_src(html, shot.pk)).status_code == 200
    assert thumb_views(shot) == 1


def test_a_token_never_opens_what_the_viewer_may_not_see(operator, supervisor, owner):
    """The token only spares the record; access is checked on every fetch."""
    shot = shot_of(owner)
    html = client_of(owner).get(f"/p/alpha/monitoring/timeline/{owner.user_id}/")
    assert client_of(supervisor).get(thumb_src(html.content.decode(), shot.pk)).status_code == 404
