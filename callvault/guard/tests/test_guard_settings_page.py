"""The leak-control settings page: owners only, behind a fresh step-up; every change
recorded before -> after; the webhook secret shown once and never recorded."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from callvault.accounts.stepup import SESSION_KEY
from callvault.audit.models import AuditEvent
from callvault.guard import alerts
from callvault.guard.models import AlertRule, GuardSettings
from conftest import login

URL = "/p/alpha/guard/settings/"
SECRET_URL = "/p/alpha/guard/settings/webhook-secret/"


def stepped_up(member) -> Client:
    """A client of the member who proved who they are a moment ago."""
    client = login(member)
    session = client.session
    session[SESSION_KEY] = time.time()
    session.save()
    return client


def form(**changes: Any) -> dict[str, Any]:
    """The page's form as the defaults fill it, with changes."""
    data: dict[str, Any] = {
        "work_starts": "08:00",
        "work_ends": "21:00",
        "work_days": list("1234567"),
        "webhook_url": "",
        "background_export_rows": "2000",
    }
    for kind, threshold, window in alerts.DEFAULT_ALERT_RULES:
        data[f"{kind}-enabled"] = None if kind in alerts.OFF_BY_DEFAULT else "on"
        data[f"{kind}-threshold"] = str(threshold)
        data[f"{kind}-window_minutes"] = str(window)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_anonymous_is_sent_to_login(project):
    for url in (URL, SECRET_URL):
        response = Client().get(url) if url == URL else Client().post(url)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]


def test_an_outsider_gets_404(outsider, project):
    client = stepped_up(outsider)
    assert client.get(URL).status_code == 404
    assert client.post(URL, form(watermark="on")).status_code == 404
    assert client.post(SECRET_URL).status_code == 404
    assert not GuardSettings.objects.get(project=project).watermark


@pytest.mark.parametrize("who", ["supervisor", "operator", "trainee"])
def test_members_who_are_not_owners_get_404_before_any_step_up(who, request, project):
    member = request.getfixturevalue(who)
    assert login(member).get(URL).status_code == 404
    client = stepped_up(member)
    assert client.post(URL, form(watermark="on")).status_code == 404
    assert client.post(SECRET_URL).status_code == 404
    assert not GuardSettings.objects.get(project=project).watermark


def test_the_owner_is_asked_to_step_up_first(owner):
    response = login(owner).get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/step-up/")
    response = login(owner).post(SECRET_URL)
    assert response.status_code == 302
    assert not GuardSettings.objects.get(project=owner.project).webhook_secret_sealed


def test_the_owner_sees_the_settings_and_the_rules(owner):
    page = stepped_up(owner).get(URL, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Leak controls" in page
    assert 'name="cards_burst-threshold" value="40"' in page
    assert "Far above the member&#x27;s usual pace" in page
    assert "No signing secret yet" in page


def test_changes_are_saved_and_recorded_before_and_after(owner):
    client = stepped_up(owner)
    response = client.post(
        URL,
        form(
            watermark="on",
            suspend_on_breach="on",
            work_starts="09:00",
            work_days=list("12345"),
            webhook_url="https://hooks.example.com/callvault?key=abc123",
            **{
                "cards_burst-threshold": "25",
                "anomaly-enabled": None,
                "outside_hours-enabled": "on",
            },
        ),
    )
    assert response.status_code == 302
    guard = GuardSettings.objects.get(project=owner.project)
    assert (guard.watermark, guard.suspend_on_breach, guard.work_days) == (True, True, "12345")
    assert guard.webhook_url == "https://hooks.example.com/callvault?key=abc123"
    event = AuditEvent.objects.get(action="guard_settings.update")
    assert event.object_type == "guard_settings" and event.object_id == str(guard.pk)
    assert event.changes == {
        "suspend_on_breach": [False, True],
        "watermark": [False, True],
        "work_days": ["1234567", "12345"],
        "work_starts": ["08:00:00", "09:00:00"],
        "webhook_url": ["", "https://hooks.example.com/…"],
    }
    assert event.actor_id == str(owner.user_id)
    rule_events = {
        e.object_repr: e.changes for e in AuditEvent.objects.filter(action="alert_rule.update")
    }
    assert rule_events == {
        "cards_burst": {"threshold": [40, 25]},
        "anomaly": {"enabled": [True, False]},
        "outside_hours": {"enabled": [False, True]},
    }
    assert AlertRule.objects.get(project=owner.project, kind="cards_burst").threshold == 25


def test_saving_without_changes_records_nothing(owner):
    stepped_up(owner).post(URL, form())
    assert not AuditEvent.objects.filter(
        action__in=["guard_settings.update", "alert_rule.update"]
    ).exists()


def test_invalid_values_are_refused_and_nothing_changes(owner):
    client = stepped_up(owner)
    response = client.post(
        URL,
        form(
            watermark="on",
            webhook_url="ftp://example.com/",
            **{"cards_burst-window_minutes": "600"},
        ),
    )
    assert response.status_code == 200
    assert "webhook_url" in response.context["form"].errors
    rule_forms = dict(response.context["rule_forms"])
    (cards,) = [f for rule, f in rule_forms.items() if rule.kind == "cards_burst"]
    assert "window_minutes" in cards.errors
    assert not GuardSettings.objects.get(project=owner.project).watermark
    assert not AuditEvent.objects.filter(action="guard_settings.update").exists()


def test_a_new_secret_is_shown_once_stored_sealed_and_recorded_as_changed(owner):
    client = stepped_up(owner)
    response = client.post(SECRET_URL)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    secret = response.context["secret"]
    assert len(secret) >= 40
    assert secret in response.content.decode()
    guard = GuardSettings.objects.get(project=owner.project)
    assert secret not in guard.webhook_secret_sealed
    assert alerts.webhook_secret(guard) == secret
    event = AuditEvent.objects.get(action="guard_settings.update")
    assert event.changes == {"webhook_secret": "changed"}
    later = client.get(URL, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert secret not in later
    assert "A signing secret is set" in later
    replaced = client.post(SECRET_URL).context["secret"]
    assert replaced != secret
    guard.refresh_from_db()
    assert alerts.webhook_secret(guard) == replaced


def test_the_settings_menu_marks_the_page(owner):
    page = stepped_up(owner).get(URL).content.decode()
    assert f'<a href="{URL}" aria-current="page">' in page
