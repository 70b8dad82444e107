"""The monitoring pages: who may open them, the timeline as drawn, screenshots, devices,
enrolment codes, the policy and each member's own page."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone

from callvault.accounts.stepup import SESSION_KEY
from callvault.audit.context import Actor, acting_as
from callvault.audit.models import AuditEvent
from callvault.audit.recorder import record_event
from callvault.monitoring.actions import find_code
from callvault.monitoring.heartbeats import Heartbeat, do_ingest_heartbeats
from callvault.monitoring.models import Device, MonitoringPolicy
from callvault.monitoring.screenshots import do_receive_screenshot
from callvault.monitoring.tests.support import enrol, image_bytes, same_picture, thumb_src

ZONE = ZoneInfo("Europe/Moscow")  # the project's time zone


def client_of(member, *, stepped_up: bool = False) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(member.user)
    if stepped_up:
        session = client.session
        session[SESSION_KEY] = time.time()
        session.save()
    return client


@pytest.fixture
def yesterday() -> datetime:
    """Local midnight at the start of yesterday, on the project's clock."""
    today = timezone.now().astimezone(ZONE).date()
    return datetime.combine(today - timedelta(days=1), datetime.min.time(), tzinfo=ZONE)


@pytest.fixture
def watched(operator, yesterday):
    """The operator's device with a morning of heartbeats and a screenshot yesterday:
    09:00-10:00 active in the CRM, 10:00-10:30 idle, then nothing (offline) until 11:00,
    11:00-11:15 active in the mail program."""
    device, _token = enrol(operator)
    device = Device.objects.select_related("project__monitoring_policy").get(pk=device.pk)
    beats, seq = [], 0

    def run(start_min: int, end_min: int, state: str, app: str | None, title: str | None):
        nonlocal seq
        for second in range(start_min * 60, end_min * 60 + 1, 5):
            seq += 1
            beats.append(Heartbeat(seq, yesterday + timedelta(seconds=second), state, app, title))

    run(9 * 60, 10 * 60, "active", "crm", "Order 1042")
    run(10 * 60, 10 * 60 + 30, "idle", None, None)
    run(11 * 60, 11 * 60 + 15, "active", "thunderbird", "Inbox")
    do_ingest_heartbeats(device, beats)
    shot = do_receive_screenshot(
        device,
        client_id=uuid.uuid4(),
        taken_at=yesterday + timedelta(hours=14, minutes=2, seconds=30),
        content=image_bytes(),
    ).screenshot
    return device, shot


def timeline_url(member, day) -> str:
    return f"/p/alpha/monitoring/timeline/{member.user_id}/?day={day:%Y-%m-%d}"


# --- who may open what --------------------------------------------------------------------


def pages(watched, operator) -> dict[str, str]:
    _device, shot = watched
    return {
        "devices": "/p/alpha/monitoring/",
        "timeline": f"/p/alpha/monitoring/timeline/{operator.user_id}/",
        "screenshot": f"/p/alpha/monitoring/screenshots/{shot.pk}/",
        "thumb": f"/p/alpha/monitoring/screenshots/{shot.pk}/thumb/",
        "policy": "/p/alpha/monitoring/policy/",
        "mine": "/p/alpha/monitoring/me/",
    }


def test_anonymous_visitors_are_sent_to_the_login(watched, operator):
    for name, url in pages(watched, operator).items():
        response = Client().get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], name


def test_an_outsider_gets_404_everywhere(watched, operator, outsider):
    client = client_of(outsider, stepped_up=True)
    for name, url in pages(watched, operator).items():
        assert client.get(url).status_code == 404, name
    device, _shot = watched
    assert client.post("/p/alpha/monitoring/codes/").status_code == 404
    assert client.post(f"/p/alpha/monitoring/devices/{device.pk}/revoke/").status_code == 404


def test_an_operator_sees_only_their_own_page(watched, operator, trainee):
    for member in (operator, trainee):
        client = client_of(member, stepped_up=True)
        for name, url in pages(watched, operator).items():
            expected = 200 if name == "mine" else 404
            assert client.get(url).status_code == expected, (member, name)
        device, _shot = watched
        assert client.post(f"/p/alpha/monitoring/devices/{device.pk}/revoke/").status_code == 404
    assert not AuditEvent.objects.filter(action__in=["timeline.view", "screenshot.view"]).exists()


def test_a_supervisor_watches_but_neither_enrols_nor_sets_the_policy(watched, operator, supervisor):
    client = client_of(supervisor, stepped_up=True)
    for name, url in pages(watched, operator).items():
        expected = 404 if name == "policy" else 200
        assert client.get(url).status_code == expected, name
    devices = client.get("/p/alpha/monitoring/").content.decode()
    assert "desk-1" in devices and "Revoke" not in devices and "Enrol a PC" not in devices
    device, _shot = watched
    assert client.post(f"/p/alpha/monitoring/devices/{device.pk}/revoke/").status_code == 404
    assert client.post("/p/alpha/monitoring/codes/", {"membership": operator.pk}).status_code == 404


def test_an_owner_opens_everything(watched, operator, owner):
    client = client_of(owner, stepped_up=True)
    for name, url in pages(watched, operator).items():
        assert client.get(url).status_code == 200, name


# --- the timeline -------------------------------------------------------------------------


def test_the_timeline_draws_the_spans_the_heartbeats_imply(
    watched, operator, supervisor, yesterday
):
    page = client_of(supervisor).get(timeline_url(operator, yesterday))
    html = page.content.decode()
    # 09:00-10:00 active and 10:00-10:30 idle on the state line (minutes since midnight).
    assert '<rect class="s-active" x="540.0" y="0" width="60.0"' in html
    assert '<rect class="s-idle" x="600.0" y="0" width="30.0"' in html
    assert '<rect class="s-active" x="660.0" y="0" width="15.0"' in html
    # Offline from midnight to 09:00, between 10:30 and 11:00, and after 11:15.
    assert '<rect class="offline" x="0.0" y="0" width="540.0"' in html
    assert '<rect class="offline" x="630.0" y="0" width="30.0"' in html
    assert re.search(r'<rect class="offline" x="675.0" y="0" width="765.0"', html)
    # The programs, and the totals.
    assert "Order 1042" in html and "thunderbird" in html
    assert "1 h 15 min" in html  # active
    assert "30 min" in html  # idle
    # The screenshot's mark at 14:02 (842.5 minutes), opening it in full.
    _device, shot = watched
    assert (
        f'href="/p/alpha/monitoring/screenshots/{shot.pk}/"><rect class="tl-shot" x="842.5"' in html
    )
    assert f'src="/p/alpha/monitoring/screenshots/{shot.pk}/thumb/?v=' in html


def test_the_crm_actions_sit_on_the_same_axis_per_minute(operator, supervisor, monkeypatch):
    # A minute shortly before now: the record's events are written when they are stamped
    # (its reads rely on that), so the test stamps them with a time it writes them at.
    at = (timezone.now() - timedelta(minutes=2)).astimezone(ZONE).replace(second=10)
    with monkeypatch.context() as patched, acting_as(Actor.member(operator.user)):
        patched.setattr(timezone, "now", lambda: at)
        for _ in range(30):
            record_event("order.view", project_id=operator.project_id, object_type="order")
        record_event("order.status", project_id=operator.project_id, object_type="order")
    # Someone else's action that minute is not the operator's.
    with monkeypatch.context() as patched, acting_as(Actor.member(supervisor.user)):
        patched.setattr(timezone, "now", lambda: at)
        record_event("order.view", project_id=operator.project_id, object_type="order")
    html = client_of(supervisor).get(timeline_url(operator, at.date())).content.decode()
    x = at.hour * 60 + at.minute
    assert f'<rect class="a-3" x="{x}.0" y="80" width="1.5" height="20">' in html
    row = re.search(
        rf"<time[^>]*>{at:%H:%M}</time></td><td class=\"num\">(\d+)</td>\s*<td>(.*?)</td>", html
    )
    assert row is not None
    assert row.group(1) == "31"
    assert "Card opened \N{MULTIPLICATION SIGN} 30" in row.group(2)


def test_opening_the_timeline_is_recorded_and_its_thumbnails_are_not(
    watched, operator, supervisor, yesterday
):
    client = client_of(supervisor)
    html = client.get(timeline_url(operator, yesterday)).content.decode()
    _device, shot = watched
    thumb = client.get(thumb_src(html, shot.pk))
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    event = AuditEvent.objects.get(action="timeline.view")
    assert (event.actor_id, event.object_id) == (str(supervisor.user_id), str(operator.user_id))
    assert event.extra["day"] == f"{yesterday:%Y-%m-%d}"
    assert event.extra["screenshots"] == 1
    assert not AuditEvent.objects.filter(action="screenshot.view").exists()


def test_a_full_screenshot_is_decrypted_private_and_each_view_recorded(watched, supervisor):
    _device, shot = watched
    client = client_of(supervisor)
    for _ in range(2):
        response = client.get(f"/p/alpha/monitoring/screenshots/{shot.pk}/")
        assert response.status_code == 200
        assert response["Cache-Control"] == "private, no-store"
        assert response["Content-Type"] == "image/webp"
        body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
        assert same_picture(body, image_bytes())
    views = AuditEvent.objects.filter(action="screenshot.view", object_id=str(shot.pk))
    assert views.count() == 2
    assert {e.actor_id for e in views} == {str(supervisor.user_id)}


def test_a_day_without_anything_says_so(operator, supervisor, yesterday):
    html = client_of(supervisor).get(timeline_url(operator, yesterday)).content.decode()
    assert "No screenshots this day." in html and "Nothing reported this day." in html


def test_titles_are_escaped_on_the_page(operator, supervisor, yesterday):
    device, _token = enrol(operator)
    device = Device.objects.select_related("project__monitoring_policy").get(pk=device.pk)
    at = yesterday + timedelta(hours=9)
    do_ingest_heartbeats(device, [Heartbeat(1, at, "active", "x", "<script>alert(1)</script>")])
    html = client_of(supervisor).get(timeline_url(operator, yesterday)).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- devices and codes --------------------------------------------------------------------


def test_an_owner_makes_a_code_that_is_shown_once(owner, operator):
    client = client_of(owner)
    response = client.post("/p/alpha/monitoring/codes/", {"membership": operator.pk, "hours": 8})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    code = re.search(
        r'<code class="key">([0-9A-Z]{5}-[0-9A-Z]{5})</code>', response.content.decode()
    )
    assert code is not None
    row = find_code(code.group(1))
    assert row is not None and row.membership == operator and row.created_by == owner.user
    again = client.get("/p/alpha/monitoring/").content.decode()
    assert code.group(1) not in again
    assert "Codes not used yet" in again


def test_an_admin_may_not_make_a_code_for_an_owner(owner, project):
    from conftest import make_member

    admin = make_member(project, "adam", "admin")
    response = client_of(admin).post("/p/alpha/monitoring/codes/", {"membership": owner.pk})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not find_code("00000-00000")


def test_revoking_a_device_from_the_page(watched, owner):
    device, _shot = watched
    response = client_of(owner).post(f"/p/alpha/monitoring/devices/{device.pk}/revoke/")
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.revoked_at is not None
    event = AuditEvent.objects.get(action="device.revoke")
    assert event.actor_id == str(owner.user_id)


# --- the policy ---------------------------------------------------------------------------


def policy_post(**changes) -> dict[str, object]:
    data = {
        "heartbeat_seconds": 5,
        "idle_seconds": 120,
        "window_titles": "on",
        "redact_patterns": "",
        "screenshots_min": 1,
        "screenshots_max": 3,
        "screenshot_interval_seconds": 600,
        "screenshot_scale": 0.5,
        "screenshot_blur": 0,
        "screenshot_format": "webp",
        "screenshot_quality": 60,
        "max_screenshot_bytes": 2000000,
        "retention_days": 30,
        "work_zone": "",
        "work_days": ["1", "2", "3", "4", "5"],
        "work_start": "09:00",
        "work_end": "18:00",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_the_policy_page_asks_for_a_step_up_first(owner):
    response = client_of(owner).get("/p/alpha/monitoring/policy/")
    assert response.status_code == 302 and "step-up" in response["Location"].replace("_", "-")


def test_the_policy_is_changed_on_its_page_recorded_and_versioned(owner, project):
    client = client_of(owner, stepped_up=True)
    response = client.post(
        "/p/alpha/monitoring/policy/",
        policy_post(screenshot_blur=6, redact_patterns="ticket \\d+\nINN\\s*\\d{10}"),
    )
    assert response.status_code == 302
    policy = MonitoringPolicy.objects.get(project=project)
    assert (policy.version, policy.screenshot_blur) == (2, 6)
    assert policy.redact_patterns == ["ticket \\d+", "INN\\s*\\d{10}"]
    event = AuditEvent.objects.get(action="monitoring_policy.update")
    assert event.changes["screenshot_blur"] == [0, 6]
    assert event.changes["version"] == [1, 2]
    # Saving the same again changes nothing and bumps nothing.
    client.post(
        "/p/alpha/monitoring/policy/",
        policy_post(screenshot_blur=6, redact_patterns="ticket \\d+\nINN\\s*\\d{10}"),
    )
    assert MonitoringPolicy.objects.get(project=project).version == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"redact_patterns": "([a-z"}, "Pattern 1 is not a regular expression"),
        ({"redact_patterns": "ok\n.*"}, "Pattern 2 matches an empty text"),
        ({"screenshots_min": 5, "screenshots_max": 2}, "above the most"),
        ({"work_zone": "Mars/Olympus"}, "Unknown time zone"),
    ],
)
def test_a_wrong_policy_is_refused_naming_the_field(owner, project, changes, message):
    client = client_of(owner, stepped_up=True)
    response = client.post("/p/alpha/monitoring/policy/", policy_post(**changes))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert MonitoringPolicy.objects.get(project=project).version == 1


def test_an_admin_without_project_settings_may_not_open_the_policy(owner, project):
    from callvault.accounts.actions import do_set_capabilities
    from conftest import make_member

    admin = make_member(project, "adam", "admin")
    do_set_capabilities(admin, {"can_manage_project": False})
    assert client_of(admin, stepped_up=True).get("/p/alpha/monitoring/policy/").status_code == 404


# --- the member's own page ----------------------------------------------------------------


def test_a_member_sees_what_is_collected_about_them(watched, operator, trainee):
    html = client_of(operator).get("/p/alpha/monitoring/me/").content.decode()
    assert "Monitoring is on for you." in html
    assert "desk-1" in html
    assert "every 5 seconds" in html and "Screenshots: 1 to 3 every 10 minutes" in html
    other = client_of(trainee).get("/p/alpha/monitoring/me/").content.decode()
    assert "Monitoring is off for you" in other and "desk-1" not in other


def test_the_nav_leads_each_member_to_their_page(operator, supervisor):
    assert (
        'href="/p/alpha/monitoring/me/"'
        in client_of(operator).get("/p/alpha/monitoring/me/").content.decode()
    )
    assert (
        'href="/p/alpha/monitoring/"'
        in client_of(supervisor).get("/p/alpha/monitoring/me/").content.decode()
    )
