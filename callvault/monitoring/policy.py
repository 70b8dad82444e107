"""A project's monitoring policy: its defaults, its checks, the document agents read, the
notice operators see, and the one action that changes it (recorded, version bumped)."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from callvault.accounts.models import Project
from callvault.audit.recorder import diff, record_event, snapshot
from callvault.lib.errors import FieldErrors
from callvault.monitoring.models import MonitoringPolicy, ScreenshotFormat
from callvault.vault.logfilter import redact

# The editable fields, each recorded as before -> after.
POLICY_FIELDS = (
    "heartbeat_seconds",
    "idle_seconds",
    "window_titles",
    "redact_patterns",
    "screenshots_min",
    "screenshots_max",
    "screenshot_interval_seconds",
    "screenshot_scale",
    "screenshot_blur",
    "screenshot_format",
    "screenshot_quality",
    "max_screenshot_bytes",
    "retention_days",
    "working_hours",
    "work_zone",
    "work_days",
    "work_start",
    "work_end",
)

# Bounds: below them a setting would flood the server or the operator's PC, above them it
# would measure nothing useful.
LIMITS: dict[str, tuple[int, int]] = {
    # Short heartbeats, idle times and intervals are for trying things out (the agent's
    # end-to-end test); a call center's policy is seconds, minutes and ten minutes.
    "heartbeat_seconds": (1, 60),
    "idle_seconds": (5, 3600),
    "screenshots_min": (0, 20),
    "screenshots_max": (0, 20),
    "screenshot_interval_seconds": (10, 86400),
    "screenshot_blur": (0, 50),
    "screenshot_quality": (10, 95),
    "max_screenshot_bytes": (50_000, 20_000_000),
    "retention_days": (1, 3650),
}
BOOLEANS = ("window_titles", "working_hours")
MAX_PATTERNS = 20
MAX_PATTERN_LENGTH = 200
# What a pattern's match becomes, on the PC and again on arrival.
REDACTED = "[redacted]"


def create_default_policy(project: Project) -> MonitoringPolicy:
    """A new project's policy with the defaults, recorded (nothing is collected until a
    device is enrolled)."""
    policy, created = MonitoringPolicy.objects.get_or_create(project=project)
    if created:
        record_event(
            "monitoring_policy.create",
            project_id=project.pk,
            object_type="monitoring_policy",
            object_id=policy.pk,
            object_repr=str(project),
            changes=_recorded(diff({}, snapshot(policy, POLICY_FIELDS))),
        )
    return policy


def policy_for(project: Project) -> MonitoringPolicy:
    """The project's policy (every project has one: monitoring/apps.py, migration 0002)."""
    return MonitoringPolicy.objects.get(project=project)


# --- Checking values ------------------------------------------------------------------------


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise FieldErrors.one(name, _("Enter on or off."))


def _as_int(name: str, value: Any) -> int:
    low, high = LIMITS[name]
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise FieldErrors.one(name, _("Enter a whole number.")) from None
    if not low <= number <= high:
        raise FieldErrors.one(
            name, _("Enter a number from %(low)s to %(high)s.") % {"low": low, "high": high}
        )
    return number


def _as_time(name: str, value: Any) -> time:
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0)
    try:
        return time.fromisoformat(str(value).strip()).replace(second=0, microsecond=0)
    except ValueError:
        raise FieldErrors.one(name, _("Enter a time as HH:MM.")) from None


def check_patterns(value: Any) -> list[str]:
    """Redaction patterns as stored: each a regular expression that compiles and cannot
    match an empty text (which would redact between every character)."""
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
        raise FieldErrors.one("redact_patterns", _("Enter one regular expression per line."))
    patterns = [p.strip() for p in value if p.strip()]
    if len(patterns) > MAX_PATTERNS:
        raise FieldErrors.one("redact_patterns", _("At most %(n)s patterns.") % {"n": MAX_PATTERNS})
    for number, pattern in enumerate(patterns, start=1):
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise FieldErrors.one(
                "redact_patterns",
                _("Pattern %(n)s is longer than %(max)s characters.")
                % {"n": number, "max": MAX_PATTERN_LENGTH},
            )
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise FieldErrors.one(
                "redact_patterns",
                _("Pattern %(n)s is not a regular expression: %(error)s.")
                % {"n": number, "error": exc.msg},
            ) from None
        if compiled.fullmatch(""):
            raise FieldErrors.one(
                "redact_patterns",
                _("Pattern %(n)s matches an empty text: it would redact everything.")
                % {"n": number},
            )
    return patterns


def clean_values(values: dict[str, Any]) -> dict[str, Any]:
    """Values as the policy stores them (from a form, a command line or code); FieldErrors
    naming the first wrong field."""
    unknown = set(values) - set(POLICY_FIELDS)
    if unknown:
        raise FieldErrors({name: _("Not a monitoring setting.") for name in sorted(unknown)})
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if name in LIMITS:
            clean[name] = _as_int(name, value)
        elif name in BOOLEANS:
            clean[name] = _as_bool(name, value)
        elif name == "redact_patterns":
            clean[name] = check_patterns(value)
        elif name == "screenshot_scale":
            try:
                scale = round(float(value), 2)
            except (TypeError, ValueError):
                scale = 0.0
            if not 0.1 <= scale <= 1.0:
                raise FieldErrors.one(name, _("Enter a scale from 0.1 to 1."))
            clean[name] = scale
        elif name == "screenshot_format":
            if str(value).lower() not in ScreenshotFormat.values:
                raise FieldErrors.one(name, _("Choose WebP or JPEG."))
            clean[name] = str(value).lower()
        elif name == "work_zone":
            zone = str(value).strip()
            if zone and not _zone_exists(zone):
                raise FieldErrors.one(name, _("Unknown time zone."))
            clean[name] = zone
        elif name == "work_days":
            days = "".join(sorted(set(str(value).replace(",", "").replace(" ", ""))))
            if not days or set(days) - set("1234567"):
                raise FieldErrors.one(name, _("Days are digits 1 (Monday) to 7 (Sunday)."))
            clean[name] = days
        else:  # work_start, work_end
            clean[name] = _as_time(name, value)
    return clean


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _check_whole(policy: MonitoringPolicy) -> None:
    """Rules between fields, checked on the policy as it would be saved."""
    if policy.screenshots_min > policy.screenshots_max:
        raise FieldErrors.one(
            "screenshots_min", _("The least number of screenshots is above the most.")
        )
    if policy.idle_seconds < 2 * policy.heartbeat_seconds:
        raise FieldErrors.one("idle_seconds", _("Idle time must be at least two heartbeats long."))
    if policy.working_hours and policy.work_start == policy.work_end:
        raise FieldErrors.one("work_end", _("The working day ends when it starts."))


# --- Changing the policy --------------------------------------------------------------------


def _recorded(changes: dict[str, Any]) -> dict[str, Any]:
    """The diff as the record keeps it: a pattern may quote a number to hide, so the
    patterns are kept with phone-shaped runs redacted, like any typed text."""
    patterns = changes.get("redact_patterns")
    if isinstance(patterns, list):
        changes["redact_patterns"] = [
            [redact(p) for p in side] if isinstance(side, list) else side for side in patterns
        ]
    return changes


@transaction.atomic
def do_update_policy(policy: MonitoringPolicy, **values: Any) -> dict[str, Any]:
    """Change the policy; recorded before -> after with the version bumped (agents re-read
    it when they see the new version). Returns the changes ({} when nothing changed)."""
    clean = clean_values(values)
    policy = MonitoringPolicy.objects.select_for_update().get(pk=policy.pk)
    before = snapshot(policy, clean)
    for name, value in clean.items():
        setattr(policy, name, value)
    changes = diff(before, snapshot(policy, clean))
    if not changes:
        return {}
    _check_whole(policy)
    changes["version"] = [policy.version, policy.version + 1]
    policy.version += 1
    policy.save(update_fields=[*clean, "version"])
    record_event(
        "monitoring_policy.update",
        project_id=policy.project_id,
        object_type="monitoring_policy",
        object_id=policy.pk,
        object_repr=str(policy.project),
        changes=_recorded(changes),
    )
    return changes


# --- What agents and operators read ----------------------------------------------------------


def zone_of(policy: MonitoringPolicy, project: Project) -> ZoneInfo:
    """The working hours' clock: the policy's own zone, or the project's."""
    for name in (policy.work_zone, project.time_zone):
        if name and _zone_exists(name):
            return ZoneInfo(name)
    return ZoneInfo(timezone.get_default_timezone_name())


def in_working_hours(policy: MonitoringPolicy, project: Project, moment: datetime) -> bool:
    """Whether collecting at `moment` is allowed (always, when working hours are off); a
    day that ends before it starts runs past midnight."""
    if not policy.working_hours:
        return True
    local = moment.astimezone(zone_of(policy, project))
    start, end, now = policy.work_start, policy.work_end, local.time()
    if start <= end:
        return str(local.isoweekday()) in policy.work_days and start <= now < end
    # A night shift belongs to the day it started on.
    if now >= start:
        return str(local.isoweekday()) in policy.work_days
    yesterday = local.isoweekday() - 1 or 7
    return now < end and str(yesterday) in policy.work_days


def pulse_seconds(policy: MonitoringPolicy) -> int:
    """How long after a heartbeat the next one may come and still continue its span: two
    heartbeat periods and a little slack (ActivityWatch's "pulsetime")."""
    return policy.heartbeat_seconds * 2 + PULSE_SLACK_SECONDS


PULSE_SLACK_SECONDS = 5


def notice_text(policy: MonitoringPolicy, project: Project) -> str:
    """What the operator is told, in the current language: what is collected, how often,
    and when."""
    parts = [
        _(
            "Monitoring is on: this computer reports to %(project)s whether you are active "
            "or away, every %(seconds)s seconds."
        )
        % {"project": project.name, "seconds": policy.heartbeat_seconds}
    ]
    if policy.window_titles:
        parts.append(_("It also reports the program and the window title in front."))
    if policy.screenshots_max:
        parts.append(_screenshots_sentence(policy))
    else:
        parts.append(_("No screenshots are taken."))
    if policy.working_hours:
        parts.append(
            _("Only during working hours: days %(days)s, %(start)s to %(end)s (%(zone)s).")
            % {
                "days": ",".join(policy.work_days),
                "start": policy.work_start.strftime("%H:%M"),
                "end": policy.work_end.strftime("%H:%M"),
                "zone": str(zone_of(policy, project)),
            }
        )
    return " ".join(parts)


def _screenshots_sentence(policy: MonitoringPolicy) -> str:
    values = {
        "low": policy.screenshots_min,
        "high": policy.screenshots_max,
        "days": policy.retention_days,
    }
    seconds = policy.screenshot_interval_seconds
    if seconds % 60:
        return ngettext(
            "Screenshots: %(low)s to %(high)s every %(n)s second, kept for %(days)s days.",
            "Screenshots: %(low)s to %(high)s every %(n)s seconds, kept for %(days)s days.",
            seconds,
        ) % {**values, "n": seconds}
    return ngettext(
        "Screenshots: %(low)s to %(high)s every %(n)s minute, kept for %(days)s days.",
        "Screenshots: %(low)s to %(high)s every %(n)s minutes, kept for %(days)s days.",
        seconds // 60,
    ) % {**values, "n": seconds // 60}


def policy_document(policy: MonitoringPolicy, project: Project) -> dict[str, Any]:
    """The policy as GET /agent/v1/policy answers it (docs/monitoring.md)."""
    hours = None
    if policy.working_hours:
        hours = {
            "zone": str(zone_of(policy, project)),
            "days": [int(d) for d in policy.work_days],
            "start": policy.work_start.strftime("%H:%M"),
            "end": policy.work_end.strftime("%H:%M"),
        }
    return {
        "version": policy.version,
        "heartbeat_seconds": policy.heartbeat_seconds,
        "idle_seconds": policy.idle_seconds,
        "window_titles": policy.window_titles,
        "redact_patterns": list(policy.redact_patterns or []),
        "screenshots_per_interval": [policy.screenshots_min, policy.screenshots_max],
        "screenshot_interval_seconds": policy.screenshot_interval_seconds,
        "screenshot_scale": policy.screenshot_scale,
        "screenshot_blur": policy.screenshot_blur,
        "screenshot_format": policy.screenshot_format,
        "screenshot_quality": policy.screenshot_quality,
        "working_hours": hours,
        "notice": notice_text(policy, project),
        "max_screenshot_bytes": policy.max_screenshot_bytes,
    }
