"""Gaps: "agent offline while working" raised once per silence, only for members with a
device, through the guard's alerts; and the periodic task that checks it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from callvault.accounts.models import SecurityNotice
from callvault.audit.context import Actor, acting_as
from callvault.audit.models import AuditEvent
from callvault.audit.recorder import record_event
from callvault.guard.models import AlertKind, AlertRule
from callvault.monitoring.actions import do_revoke_device
from callvault.monitoring.models import Device
from callvault.monitoring.silence import check_silent_agents
from callvault.monitoring.tasks import check_agent_silence
from callvault.monitoring.tests.support import enrol


def works(member) -> None:
    """The member does something in callvault now (an event of their own)."""
    with acting_as(Actor.member(member.user)):
        record_event("order.view", project_id=member.project_id, object_type="order")


def last_seen(device: Device, minutes_ago: float) -> None:
    """The device's last accepted heartbeat (and contact) that long ago."""
    moment = timezone.now() - timedelta(minutes=minutes_ago)
    Device.objects.filter(pk=device.pk).update(last_seen_at=moment, last_heartbeat_at=moment)


def alerts(member) -> list[SecurityNotice]:
    return list(SecurityNotice.objects.filter(user=member.user, kind=AlertKind.AGENT_SILENT))


def test_every_project_has_the_rule(project, other_project):
    for p in (project, other_project):
        rule = AlertRule.objects.get(project=p, kind=AlertKind.AGENT_SILENT)
        assert (rule.threshold, rule.window_minutes, rule.enabled) == (10, 10, True)


def test_a_silent_agent_of_a_working_member_raises_the_alert_once(operator, owner):
    device, _token = enrol(operator, hostname="desk-9")
    last_seen(device, 25)
    works(operator)
    assert check_silent_agents() == 1
    (notice,) = alerts(operator)
    assert notice.params["device"] == "desk-9" and notice.params["minutes"] == 25
    event = AuditEvent.objects.get(action="alert.raised", extra__kind="agent_silent")
    assert event.object_id == str(operator.user_id)
    # Still silent, still working: no second alert for the same silence.
    works(operator)
    assert check_silent_agents() == 0
    assert len(alerts(operator)) == 1
    # Seen again, then silent again: a new silence, a new alert.
    last_seen(device, 0)
    assert check_silent_agents() == 0
    Device.objects.filter(pk=device.pk).update(
        last_heartbeat_at=timezone.now() - timedelta(minutes=12),
        silence_alerted_at=timezone.now() - timedelta(minutes=20),
    )
    assert check_silent_agents() == 1
    assert len(alerts(operator)) == 2


def test_no_alert_for_a_member_without_a_device(operator, trainee):
    works(operator)
    works(trainee)
    assert check_silent_agents() == 0
    assert not SecurityNotice.objects.filter(kind=AlertKind.AGENT_SILENT).exists()


def test_no_alert_while_the_agent_reports_or_the_member_is_away(operator, trainee):
    reporting, _ = enrol(operator)
    last_seen(reporting, 2)
    works(operator)
    away, _ = enrol(trainee, hostname="desk-2")
    last_seen(away, 60)  # silent, but the trainee has done nothing in callvault
    assert check_silent_agents() == 0


def test_no_alert_for_a_revoked_device_or_a_disabled_rule(operator, project):
    device, _ = enrol(operator)
    last_seen(device, 30)
    works(operator)
    AlertRule.objects.filter(project=project, kind=AlertKind.AGENT_SILENT).update(enabled=False)
    assert check_silent_agents() == 0
    AlertRule.objects.filter(project=project, kind=AlertKind.AGENT_SILENT).update(enabled=True)
    do_revoke_device(device)
    assert check_silent_agents() == 0


def test_a_device_never_seen_counts_from_its_enrolment(operator):
    device, _ = enrol(operator)
    Device.objects.filter(pk=device.pk).update(created_at=timezone.now() - timedelta(hours=1))
    works(operator)
    assert check_silent_agents() == 1
    assert alerts(operator)[0].params["last_seen"] == "never"


def test_work_long_ago_does_not_count(operator, monkeypatch):
    device, _ = enrol(operator)
    last_seen(device, 120)
    earlier = timezone.now() - timedelta(minutes=30)
    with monkeypatch.context() as patched:
        patched.setattr(timezone, "now", lambda: earlier)
        works(operator)
    assert check_silent_agents() == 0


@pytest.mark.parametrize("language", ["en"])
def test_the_owner_reads_the_alert_in_words(operator, language):
    from django.utils import translation

    from callvault.accounts.notices import describe

    device, _ = enrol(operator, hostname="desk-9")
    last_seen(device, 15)
    works(operator)
    check_agent_silence.enqueue()
    with translation.override(language):
        text = describe(alerts(operator)[0])
    assert text.startswith("bob is working in callvault but the monitoring agent on desk-9")
    assert "silent for 15 minutes" in text


def test_a_member_whose_other_pc_reports_is_not_silent(operator):
    home, _ = enrol(operator, hostname="home-pc")
    office, _ = enrol(operator, hostname="office-pc")
    last_seen(home, 300)
    last_seen(office, 1)
    works(operator)
    assert check_silent_agents() == 0
    last_seen(office, 20)  # now both are silent: the alert names the one seen last
    assert check_silent_agents() == 1
    assert alerts(operator)[0].params["device"] == "office-pc"
