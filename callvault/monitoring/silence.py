"""Gaps: "agent offline while working". A member did something in callvault in the last few
minutes (the audit trail has their events) while their enrolled device has had no heartbeat
accepted for longer than the project's rule allows: the agent was stopped, blocked or
uninstalled, or its clock is so far ahead that its heartbeats are refused (its policy reads
still reach the server, so "last seen" is no measure). Raised through the guard's alerts
(notice, mail, webhook), once per silence: a heartbeat must be accepted again before it can
fire again.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models.functions import Coalesce
from django.utils import timezone

from callvault.audit.models import ActorKind
from callvault.audit.queries import in_time, project_events
from callvault.guard.alerts import raise_alert
from callvault.guard.models import AlertKind, AlertRule
from callvault.monitoring.models import Device
from callvault.monitoring.policy import in_working_hours, zone_of

# The agent's own and the system's events do not show the member at work.
WORKING_ACTORS = (ActorKind.MEMBER,)


def check_silent_agents(now: datetime | None = None) -> int:
    """Raise the alert for every working member whose devices are all silent; how many were
    raised. A member with two PCs, one of them reporting, is not silent: the other may
    simply be off."""
    now = now or timezone.now()
    rules = {
        rule.project_id: rule
        for rule in AlertRule.objects.filter(kind=AlertKind.AGENT_SILENT, enabled=True)
    }
    if not rules:
        return 0
    devices = (
        Device.objects.filter(
            project_id__in=list(rules),
            revoked_at__isnull=True,
            membership__is_active=True,
            membership__user__is_active=True,
        )
        .annotate(seen=Coalesce("last_heartbeat_at", "created_at"))
        .select_related("membership__user", "project__monitoring_policy")
        .order_by("membership_id", "-seen")
    )
    by_member: dict[int, list[Device]] = defaultdict(list)
    for device in devices:
        by_member[device.membership_id].append(device)
    raised = 0
    for own in by_member.values():
        newest = own[0]  # the member's device with the latest heartbeat
        rule = rules[newest.project_id]
        seen_at: datetime = newest.seen  # type: ignore[attr-defined]
        if now - seen_at < timedelta(minutes=rule.threshold):
            continue
        # Once per silence: not again until a heartbeat has been accepted since the alert.
        if newest.silence_alerted_at is not None and newest.silence_alerted_at >= seen_at:
            continue
        if not in_working_hours(newest.project.monitoring_policy, newest.project, now):
            continue  # the agent sends nothing outside them, by the policy
        if not _working(newest, now - timedelta(minutes=rule.window_minutes), now):
            continue
        claimed = Device.objects.filter(
            pk=newest.pk, silence_alerted_at=newest.silence_alerted_at
        ).update(silence_alerted_at=now)
        if not claimed:
            continue  # another worker raised it
        raise_alert(
            newest.membership,
            AlertKind.AGENT_SILENT,
            {
                "device": newest.hostname,
                "minutes": int((now - seen_at).total_seconds() // 60),
                "last_seen": _shown(newest, seen_at) if newest.last_heartbeat_at else "never",
                "device_id": newest.pk,
            },
        )
        raised += 1
    return raised


def _working(device: Device, since: datetime, until: datetime) -> bool:
    """Whether the device's member has events of their own in the project in the window."""
    events = project_events(device.project_id).filter(
        actor_kind__in=WORKING_ACTORS, actor_id=str(device.membership.user_id)
    )
    return in_time(events, since, until).exists()


def _shown(device: Device, moment: datetime) -> str:
    zone = zone_of(device.project.monitoring_policy, device.project)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
