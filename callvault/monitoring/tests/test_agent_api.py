"""The agent's API: tokens, networks, heartbeats, screenshots, as docs/monitoring.md says."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from unittest.mock import ANY

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from callvault.accounts.allowlist import do_add_network
from callvault.accounts.models import SecurityNotice
from callvault.audit.models import AuditEvent
from callvault.monitoring.actions import do_revoke_device
from callvault.monitoring.models import ActivitySpan, Device, Screenshot
from callvault.monitoring.policy import do_update_policy, policy_for
from callvault.monitoring.tests.support import (
    agent,
    beat,
    enrol,
    image_bytes,
    minutes_ago,
    post_beats,
    post_shot,
    same_picture,
)
from callvault.vault.files import read_sealed


@pytest.fixture
def device(operator):
    return enrol(operator)


def test_every_endpoint_but_enrol_wants_a_device_token(db):
    for method, path in (
        ("get", "/agent/v1/policy"),
        ("post", "/agent/v1/heartbeats"),
        ("post", "/agent/v1/screenshots"),
    ):
        response = getattr(agent("cvd_not-a-token"), method)(path)
        assert response.status_code == 401, path
        assert response.json()["detail"] == "a valid device token is required"
    # One event for the address's three refusals in this window (test_refusals.py).
    (event,) = AuditEvent.objects.filter(action="device.refused")
    assert event.extra == {"reason": "unknown", "ip": "127.0.0.1", "refusals": 1}
    assert "cvd_" not in json.dumps(event.extra)


def test_the_policy_answers_with_its_version_in_body_and_header(device, project):
    _device, token = device
    do_update_policy(policy_for(project), screenshots_min=0, screenshots_max=2)
    response = agent(token).get("/agent/v1/policy", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    body = response.json()
    assert response["X-Policy-Version"] == str(body["version"]) == "2"
    assert body["screenshots_per_interval"] == [0, 2]
    assert body["working_hours"] is None
    assert body["notice"].startswith("Monitoring is on")
    assert set(body) == {
        "version", "heartbeat_seconds", "idle_seconds", "window_titles", "redact_patterns",
        "screenshots_per_interval", "screenshot_interval_seconds", "screenshot_scale",
        "screenshot_blur", "screenshot_format", "screenshot_quality", "working_hours",
        "notice", "max_screenshot_bytes",
    }  # fmt: skip


def test_a_revoked_device_is_refused_and_told_so(device):
    dev, token = device
    do_revoke_device(dev)
    response = post_beats(token, [beat(1, minutes_ago(1))])
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert not ActivitySpan.objects.exists()
    event = AuditEvent.objects.filter(action="device.refused").latest("id")
    assert (event.object_id, event.extra["reason"]) == (str(dev.pk), "revoked")


def test_a_deactivated_members_device_is_refused(device, operator):
    from callvault.accounts.actions import do_deactivate_member

    do_deactivate_member(operator)
    response = agent(device[1]).get("/agent/v1/policy")
    assert response.status_code == 401


def test_the_members_allowed_networks_apply_to_the_agent(device, project, operator):
    do_add_network(project, "192.0.2.0/24", "Office", membership=operator)
    refused = post_beats(device[1], [beat(1, minutes_ago(1))])
    assert refused.status_code == 403
    assert not ActivitySpan.objects.exists()
    assert AuditEvent.objects.filter(action="device.refused", extra__reason="address").exists()
    assert SecurityNotice.objects.filter(project=project, kind="refused_address").count() == 1
    inside = agent(device[1]).post(
        "/agent/v1/heartbeats",
        json.dumps({"heartbeats": [beat(1, minutes_ago(1))]}),
        content_type="application/json",
        REMOTE_ADDR="192.0.2.7",
    )
    assert inside.status_code == 200


def test_the_agent_is_the_actor_of_its_requests(device, project):
    dev, token = device
    do_revoke_device(dev)
    agent(token).get("/agent/v1/policy")
    event = AuditEvent.objects.filter(action="device.register").get()
    assert (event.actor_kind, event.actor_id, event.actor_name) == (
        "agent",
        str(dev.pk),
        "agent desk-1",
    )


# --- heartbeats ---------------------------------------------------------------------------


def test_heartbeats_become_spans_and_the_answer_names_the_last_seq(device):
    dev, token = device
    start = minutes_ago(10)
    beats = [beat(i + 1, start + timedelta(seconds=5 * i)) for i in range(12)]
    response = post_beats(token, beats)
    assert response.status_code == 200
    assert response.json() == {"accepted": 12, "last_seq": 12, "server_time": ANY}
    assert response["X-Policy-Version"] == "1"
    (span,) = ActivitySpan.objects.all()
    assert (span.started_at, span.ended_at) == (start, start + timedelta(seconds=55))
    dev.refresh_from_db()
    assert dev.last_seq == 12 and dev.last_seen_at is not None


def test_a_retried_batch_adds_nothing(device):
    _dev, token = device
    start = minutes_ago(10)
    beats = [beat(1, start), beat(2, start + timedelta(seconds=5), state="idle", app=None)]
    assert post_beats(token, beats).json() == {"accepted": 2, "last_seq": 2, "server_time": ANY}
    rows = list(ActivitySpan.objects.values_list("started_at", "ended_at", "state"))
    again = post_beats(token, beats)
    assert again.status_code == 200
    assert again.json() == {"accepted": 0, "last_seq": 2, "server_time": ANY}
    assert list(ActivitySpan.objects.values_list("started_at", "ended_at", "state")) == rows
    # A batch overlapping the last one takes only what is new.
    more = [*beats, beat(3, start + timedelta(seconds=10), state="idle", app=None)]
    assert post_beats(token, more).json() == {"accepted": 1, "last_seq": 3, "server_time": ANY}
    assert ActivitySpan.objects.count() == 2


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"seq": 1, "at": "2026-01-01T00:00:00Z", "state": "asleep"}, "heartbeats[1].state"),
        ({"seq": "2", "at": "2026-01-01T00:00:00Z", "state": "idle"}, "heartbeats[1].seq"),
        ({"seq": 2, "at": "yesterday", "state": "idle"}, "heartbeats[1].at"),
        (
            {"seq": 2, "at": "2026-01-01T00:00:00Z", "state": "idle", "title": 5},
            "heartbeats[1].title",
        ),
    ],
)
def test_a_bad_heartbeat_is_refused_naming_its_field(device, item, field):
    good = beat(1, minutes_ago(1))
    response = post_beats(device[1], [good, item])
    assert response.status_code == 422
    assert field in response.json()["errors"]
    assert response.json()["detail"].startswith(field)
    assert not ActivitySpan.objects.exists()


def test_a_batch_over_the_cap_is_refused(device):
    start = minutes_ago(60)
    beats = [beat(i + 1, start + timedelta(seconds=i)) for i in range(501)]
    response = post_beats(device[1], beats)
    assert response.status_code == 422
    assert "heartbeats" in response.json()["errors"]


def test_titles_are_dropped_when_the_policy_says_so_and_numbers_always(device, project, rng):
    from callvault.lib.fakephones import fake_phone

    _dev, token = device
    typed, _e164 = fake_phone(rng, style=1)
    post_beats(token, [beat(1, minutes_ago(3), title=f"Order 12 - {typed} - ticket 778899")])
    do_update_policy(policy_for(project), redact_patterns=[r"ticket \d+"])
    post_beats(token, [beat(2, minutes_ago(2), title=f"Order 12 - {typed} - ticket 778899")])
    do_update_policy(policy_for(project), window_titles=False)
    post_beats(token, [beat(3, minutes_ago(1), title="Secret plans")])
    titles = list(ActivitySpan.objects.order_by("id").values_list("app", "title"))
    assert titles == [
        ("firefox", "Order 12 - [redacted] - ticket 778899"),
        ("firefox", "Order 12 - [redacted] - [redacted]"),
        (None, None),
    ]


def test_numbers_with_slashes_underscores_and_dashes_are_blanked_on_arrival(device, rng):
    """The review's finding: numbers written with slashes, underscores or en dashes were kept."""
    from callvault.lib.fakephones import fake_phone

    _dev, token = device
    digits = fake_phone(rng)[1][2:]
    area, exchange, line = digits[:3], digits[3:6], digits[6:]
    titles = [
        f"Call {area}/{exchange}/{line} - Softphone",
        f"clients_{area}_{exchange}_{line}.xlsx",
        f"tel. 1\u2013{area}\u2013{exchange}\u2013{line}",
    ]
    start = minutes_ago(5)
    beats = [beat(i + 1, start + timedelta(minutes=i), title=t) for i, t in enumerate(titles)]
    assert post_beats(token, beats).status_code == 200
    stored = list(ActivitySpan.objects.order_by("id").values_list("title", flat=True))
    assert stored == [
        "Call [redacted] - Softphone",
        "clients_[redacted].xlsx",
        "tel. [redacted]",
    ]


def test_nothing_is_kept_outside_the_working_hours(device, project):
    policy = policy_for(project)
    now = timezone.now().astimezone(timezone.get_default_timezone())
    # Working hours that certainly do not include now: an hour, twelve hours away.
    start = (now + timedelta(hours=12)).time().replace(second=0, microsecond=0)
    end = (now + timedelta(hours=13)).time().replace(second=0, microsecond=0)
    do_update_policy(
        policy, working_hours=True, work_days="1234567", work_start=start, work_end=end
    )
    response = post_beats(device[1], [beat(1, timezone.now() - timedelta(seconds=5))])
    assert response.json() == {"accepted": 1, "last_seq": 1, "server_time": ANY}
    assert not ActivitySpan.objects.exists()


# --- screenshots --------------------------------------------------------------------------


def test_a_screenshot_is_stored_sealed_with_a_thumbnail(device, project):
    dev, token = device
    content = image_bytes(64, 40)
    response = post_shot(token, content)
    assert response.status_code == 201
    assert response["X-Policy-Version"] == "1"
    shot = Screenshot.objects.get(pk=response.json()["id"])
    assert (shot.width, shot.height, shot.content_type) == (64, 40, "image/webp")
    assert shot.storage_name == f"screenshots/{project.pk}/{dev.pk}/{shot.pk}.sealed"
    with default_storage.open(shot.storage_name, "rb") as stored:
        assert content not in stored.read()  # sealed at rest
    opened = b"".join(read_sealed(shot.storage_name, project_id=project.pk, purpose="screenshot"))
    assert same_picture(opened, content) and shot.size == len(opened)
    assert default_storage.exists(shot.thumb_storage_name)


def test_a_jpeg_is_accepted_too(device):
    response = post_shot(device[1], image_bytes(fmt="JPEG"), content_type="image/jpeg")
    assert response.status_code == 201
    assert Screenshot.objects.get().content_type == "image/jpeg"


def test_a_repeated_client_id_answers_with_the_first_and_stores_nothing(device):
    client_id = uuid.uuid4()
    first = post_shot(device[1], image_bytes(), client_id=client_id)
    again = post_shot(device[1], image_bytes(colour="blue"), client_id=client_id)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert Screenshot.objects.count() == 1


def _stored_files() -> list[str]:
    root = "screenshots"
    if not default_storage.exists(root):
        return []
    found: list[str] = []

    def walk(path: str) -> None:
        dirs, files = default_storage.listdir(path)
        found.extend(f"{path}/{f}" for f in files)
        for d in dirs:
            walk(f"{path}/{d}")

    walk(root)
    return found


def test_an_oversize_screenshot_is_refused_and_nothing_stored(device, project):
    do_update_policy(policy_for(project), max_screenshot_bytes=50_000)
    before = _stored_files()
    big = image_bytes(900, 900, fmt="JPEG", colour="white") + b"\0" * 60_000
    response = post_shot(device[1], big, content_type="image/jpeg")
    assert response.status_code == 413
    assert response.json()["detail"].startswith("image:")
    assert not Screenshot.objects.exists()
    assert _stored_files() == before


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"%PDF-1.4 not a picture at all", "shot.webp"),
        (image_bytes(fmt="PNG"), "shot.png"),  # an image, but not one the agent sends
        (image_bytes()[:60], "shot.webp"),  # a WebP cut short
    ],
)
def test_a_non_image_is_refused_naming_image_and_nothing_stored(device, content, name):
    before = _stored_files()
    response = post_shot(device[1], content, name=name)
    assert response.status_code == 415
    assert "image" in response.json()["errors"]
    assert "image" in response.json()["detail"]
    assert not Screenshot.objects.exists()
    assert _stored_files() == before


def test_screenshots_are_refused_when_the_policy_takes_none(device, project):
    do_update_policy(policy_for(project), screenshots_min=0, screenshots_max=0)
    response = post_shot(device[1], image_bytes())
    assert response.status_code == 422
    assert "image" in response.json()["errors"]
    assert not Screenshot.objects.exists()


def test_a_screenshot_needs_its_fields(device):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = agent(device[1]).post(
        "/agent/v1/screenshots",
        {"image": SimpleUploadedFile("a.webp", image_bytes()), "taken_at": "now"},
    )
    assert response.status_code == 422
    assert "client_id" in response.json()["errors"]


def test_another_projects_device_reaches_nothing_here(device, outsider, project, owner):
    stranger, token = enrol(outsider, hostname="their-pc")
    post_beats(token, [beat(1, minutes_ago(2))])
    shot = post_shot(token, image_bytes()).json()["id"]
    assert Device.objects.get(pk=stranger.pk).project_id != project.pk
    assert not ActivitySpan.objects.filter(project=project).exists()
    from conftest import login

    client = login(owner)
    assert client.get(f"/p/alpha/monitoring/screenshots/{shot}/").status_code == 404
    assert client.get(f"/p/alpha/monitoring/screenshots/{shot}/thumb/").status_code == 404
    assert client.post(f"/p/alpha/monitoring/devices/{stranger.pk}/revoke/").status_code == 404
    assert Device.objects.get(pk=stranger.pk).revoked_at is None
    assert client.get(f"/p/alpha/monitoring/timeline/{outsider.user_id}/").status_code == 404


def test_the_agent_is_rate_limited_per_device(device, settings):
    from callvault.monitoring import agent_views

    settings_limit = agent_views.RATE_LIMITS["policy"]
    client = agent(device[1])
    codes = [client.get("/agent/v1/policy").status_code for _ in range(settings_limit + 1)]
    assert codes[:-1] == [200] * settings_limit
    assert codes[-1] == 429


def test_the_rate_limit_starts_over_in_the_next_window(db):
    """On the database cache `incr` stretches a key's expiry: a counter under one key would
    keep an agent that never stops sending locked out for good."""
    from callvault.monitoring.throttle import over_limit

    key = "monitoring:rate:test:1"
    assert [over_limit(key, 2, 60, now=600.0) for _ in range(3)] == [False, False, True]
    assert over_limit(key, 2, 60, now=659.0) is True
    assert over_limit(key, 2, 60, now=660.0) is False


def test_a_file_left_by_a_rolled_back_screenshot_is_replaced(device, project):
    """SQLite hands a rolled-back row id out again: a sealed file written under it before
    the rollback must not block the next screenshot with that id."""
    from django.db import transaction

    dev, token = device
    with transaction.atomic():
        sid = transaction.savepoint()
        first = post_shot(token, image_bytes(colour="blue"))
        transaction.savepoint_rollback(sid)
    assert first.status_code == 201 and not Screenshot.objects.exists()
    leftover = f"screenshots/{project.pk}/{dev.pk}/{first.json()['id']}.sealed"
    assert default_storage.exists(leftover)
    again = post_shot(token, image_bytes(colour="green"))
    assert again.status_code == 201
    shot = Screenshot.objects.get()
    if shot.pk == first.json()["id"]:  # the id came round again (SQLite)
        opened = read_sealed(shot.storage_name, project_id=project.pk, purpose="screenshot")
        assert same_picture(b"".join(opened), image_bytes(colour="green"))
