"""Alerts: owner-set rules that watch each member's pace and hours, raised as the owners'
security notices (accounts/notices.py) and delivered to a signed webhook.

Counting is cheap on purpose: `observe` runs on every card open, reveal, search, call and
export. Each watched action adds one to a per-minute counter in Django's cache (the database
on the embedded default, Redis in production), and a rule reads at most its window's worth
of minute counters in one `get_many`. A rule fires at most once per member per window: a
"fired" marker with the window as its lifetime stops the repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time as clock
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _
from django_tasks import task

from callvault.accounts import notices
from callvault.accounts.models import Membership, Project, Role, SecurityNotice
from callvault.audit.recorder import SEALED_CHANGED, diff, record_event, record_update
from callvault.guard.models import AlertKind, AlertRule, GuardSettings, MemberBaseline
from callvault.lib.errors import FieldErrors
from callvault.vault.phones import open_phone, seal
from callvault.vault.registry import register_sealed_column

log = logging.getLogger(__name__)

AUDIT_ACTIONS = {
    "alert_rule.create": _("Alert rule created"),
    "alert_rule.update": _("Alert rule changed"),
    "alert.raised": _("Alert raised"),
    "guard_settings.update": _("Leak controls changed"),
}

# A new project's alert rules: (kind, threshold, window in minutes). All are on except
# OFF_BY_DEFAULT.
DEFAULT_ALERT_RULES: list[tuple[str, int, int]] = [
    (AlertKind.CARDS_BURST, 40, 10),
    (AlertKind.REVEALS_BURST, 10, 10),
    (AlertKind.EXPORTS_BURST, 3, 60),
    (AlertKind.OUTSIDE_HOURS, 1, 60),
    (AlertKind.ANOMALY, 4, 60),
    # Checked by callvault/monitoring/silence.py: silent 10 minutes, working within 10.
    (AlertKind.AGENT_SILENT, 10, 10),
]
# Working hours are the call center's own, and the defaults (08:00-21:00 every day) are a
# guess: until the owner has set them, an alert for work outside them would mostly be noise
# (a night shift, a late callback). The owner switches it on with the hours.
OFF_BY_DEFAULT = {AlertKind.OUTSIDE_HOURS}

# Windows are counted in one-minute buckets, so a window is at most an hour (60 keys read
# at once); the anomaly rule compares whole clock hours.
MAX_WINDOW_MINUTES = 60
# The anomaly rule's floor: never for fewer actions in the hour than this, and never from a
# baseline of fewer active hours than this.
ANOMALY_MIN_COUNT = 20
ANOMALY_MIN_HOURS = 20
# Which action feeds which burst rule.
BURSTS = {
    "card_open": AlertKind.CARDS_BURST,
    "reveal": AlertKind.REVEALS_BURST,
    "export": AlertKind.EXPORTS_BURST,
}
# Which actions have a usual pace (baseline.py computes it from these audit actions).
PACED = {"card_open", "reveal"}
# The counters outlive the longest window and the clock hour.
COUNTER_TTL = 2 * 3600
CONFIG_TTL = 60

WHAT = {
    "card_open": _("opened an order card"),
    "reveal": _("revealed a phone number"),
    "search": _("searched orders"),
    "call": _("started a call"),
    "export": _("exported"),
    "activity": _("used callvault"),
}
PACE_WHAT = {"card_open": _("order cards opened"), "reveal": _("numbers revealed")}


# --- Rules and settings: created and changed through actions, each recorded ----------------


@transaction.atomic
def create_default_alert_rules(project: Project) -> None:
    """Give a new project one rule per kind (DEFAULT_ALERT_RULES), each recorded."""
    for kind, threshold, window in DEFAULT_ALERT_RULES:
        enabled = kind not in OFF_BY_DEFAULT
        rule, created = AlertRule.objects.get_or_create(
            project=project,
            kind=kind,
            defaults={"threshold": threshold, "window_minutes": window, "enabled": enabled},
        )
        if created:
            record_event(
                "alert_rule.create",
                project_id=project.pk,
                object_type="alert_rule",
                object_id=rule.pk,
                object_repr=str(kind),
                extra={"threshold": threshold, "window_minutes": window, "enabled": enabled},
            )


RULE_FIELDS = ("threshold", "window_minutes", "enabled")


@transaction.atomic
def do_update_alert_rule(rule: AlertRule, **values: Any) -> AlertRule:
    """Change a rule's threshold, window or switch; recorded before -> after."""
    unknown = set(values) - set(RULE_FIELDS)
    if unknown:
        raise FieldErrors({name: "not an alert rule setting" for name in sorted(unknown)})
    if "threshold" in values and not 1 <= values["threshold"] <= 100_000:
        raise FieldErrors.one("threshold", "between 1 and 100000")
    if "window_minutes" in values and not 1 <= values["window_minutes"] <= MAX_WINDOW_MINUTES:
        raise FieldErrors.one("window_minutes", f"between 1 and {MAX_WINDOW_MINUTES}")
    rule = AlertRule.objects.select_for_update().get(pk=rule.pk)
    if record_update(
        "alert_rule.update",
        rule,
        values,
        project_id=rule.project_id,
        object_type="alert_rule",
        object_repr=rule.kind,
    ):
        _forget_config(rule.project_id)
    return rule


SETTINGS_FIELDS = (
    "suspend_on_breach",
    "watermark",
    "work_starts",
    "work_ends",
    "work_days",
    "webhook_url",
    "background_export_rows",
)


def settings_for(project: Project) -> GuardSettings:
    """The project's leak controls (every project has them: guard/defaults.py)."""
    return GuardSettings.objects.get(project=project)


def url_shown(url: str) -> str:
    """A webhook address as the record and the logs show it: scheme and host only. The path
    and query may hold a credential (a Telegram bot's token is in its path)."""
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


@transaction.atomic
def do_update_guard_settings(guard: GuardSettings, **values: Any) -> GuardSettings:
    """Change the project's leak controls; recorded before -> after (the webhook address as
    its host only)."""
    unknown = set(values) - set(SETTINGS_FIELDS)
    if unknown:
        raise FieldErrors({name: "not a leak-control setting" for name in sorted(unknown)})
    days = values.get("work_days")
    if days is not None and (not days or set(days) - set("1234567")):
        raise FieldErrors.one("work_days", "digits 1 (Monday) to 7 (Sunday)")
    url = values.get("webhook_url")
    if url and urlsplit(url).scheme not in ("http", "https"):
        raise FieldErrors.one("webhook_url", "an http or https address")
    guard = GuardSettings.objects.select_for_update().get(pk=guard.pk)
    if record_update(
        "guard_settings.update",
        guard,
        values,
        project_id=guard.project_id,
        object_type="guard_settings",
        object_repr=str(guard.project),
        changes_of=_settings_changes,
    ):
        _forget_config(guard.project_id)
    return guard


def _settings_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The settings' diff, with the webhook address as its host only (a bot token may sit in
    its path)."""
    old_url, new_url = before.pop("webhook_url", ""), after.pop("webhook_url", "")
    changes = diff(before, after)
    if old_url != new_url:
        shown = [url_shown(old_url), url_shown(new_url)]
        # The same host with another path or query: that it changed is all the record says.
        changes["webhook_url"] = shown if shown[0] != shown[1] else SEALED_CHANGED
    return changes


# The webhook secret is sealed like a phone number (the same key ring, rotation included),
# under a field name of its own in the associated data, so neither can pass for the other.
WEBHOOK_SECRET_FIELD = "webhook_secret"  # noqa: S105 (a field name, not a secret)
register_sealed_column(GuardSettings, "webhook_secret_sealed", WEBHOOK_SECRET_FIELD)


@transaction.atomic
def do_generate_webhook_secret(guard: GuardSettings) -> str:
    """A new signing secret for the webhook (replacing any old one), returned once to be
    shown once; stored sealed, recorded as "changed"."""
    guard = GuardSettings.objects.select_for_update().get(pk=guard.pk)
    secret = secrets.token_urlsafe(32)
    guard.webhook_secret_sealed = seal(
        secret, project_id=guard.project_id, field=WEBHOOK_SECRET_FIELD
    )
    guard.save(update_fields=["webhook_secret_sealed"])
    record_event(
        "guard_settings.update",
        project_id=guard.project_id,
        object_type="guard_settings",
        object_id=guard.pk,
        object_repr=str(guard.project),
        changes={"webhook_secret": SEALED_CHANGED},
    )
    return secret


def webhook_secret(guard: GuardSettings) -> str:
    """The signing secret in the clear, for signing only ("" when none was generated)."""
    if not guard.webhook_secret_sealed:
        return ""
    return open_phone(
        guard.webhook_secret_sealed, project_id=guard.project_id, field=WEBHOOK_SECRET_FIELD
    )


# --- Watching: observe() ------------------------------------------------------------------


@dataclass(frozen=True)
class RuleConf:
    """One rule as observe() needs it."""

    threshold: int
    window: int
    enabled: bool


@dataclass(frozen=True)
class AlertConfig:
    """A project's rules and working hours, cached for a minute (and dropped on change)."""

    rules: dict[str, RuleConf]
    work_starts: time
    work_ends: time
    work_days: str
    zone: str


def _config_key(project_id: int) -> str:
    return f"guard:alertconf:{project_id}"


def _forget_config(project_id: int) -> None:
    # Now, and again after the commit: a reader between the two may have cached the old rows.
    cache.delete(_config_key(project_id))
    transaction.on_commit(lambda: cache.delete(_config_key(project_id)))


def _config(project_id: int) -> AlertConfig:
    key = _config_key(project_id)
    found = cache.get(key)
    if isinstance(found, AlertConfig):
        return found
    zone = Project.objects.filter(pk=project_id).values_list("time_zone", flat=True).first()
    guard = GuardSettings.objects.filter(project_id=project_id).first() or GuardSettings()
    rules = {
        r.kind: RuleConf(r.threshold, min(max(r.window_minutes, 1), MAX_WINDOW_MINUTES), r.enabled)
        for r in AlertRule.objects.filter(project_id=project_id)
    }
    conf = AlertConfig(rules, guard.work_starts, guard.work_ends, guard.work_days, zone or "")
    cache.set(key, conf, CONFIG_TTL)
    return conf


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(timezone.get_default_timezone_name())


def is_working_time(conf: AlertConfig, moment: datetime) -> bool:
    """Whether `moment` falls in the call center's working hours (a day ending before it
    starts runs past midnight)."""
    local = moment.astimezone(_zone(conf.zone))
    if str(local.isoweekday()) not in conf.work_days:
        return False
    now = local.time()
    if conf.work_starts <= conf.work_ends:
        return conf.work_starts <= now < conf.work_ends
    return now >= conf.work_starts or now < conf.work_ends


def _minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def _counter(member: Membership, name: str, minute: int) -> str:
    return f"guard:n:{member.pk}:{name}:{minute}"


class Counts:
    """One member's per-minute counts of one kind, read in one go and bumped by `n`."""

    def __init__(self, member: Membership, name: str, first: int, last: int, n: int = 1) -> None:
        keys = {_counter(member, name, m): m for m in range(first, last + 1)}
        found = cache.get_many(list(keys))
        self.by_minute = {keys[k]: int(v) for k, v in found.items()}
        key = _counter(member, name, last)
        # incr is atomic on Redis; on the database cache it is a read and a write, so two
        # requests of one member at the same instant may count as one (accepted: the quotas,
        # not the alerts, are what stops a leak).
        if key in found or not cache.add(key, n, COUNTER_TTL):
            try:
                self.by_minute[last] = int(cache.incr(key, n))
            except ValueError:  # expired in between
                cache.set(key, n, COUNTER_TTL)
                self.by_minute[last] = n
        else:
            self.by_minute[last] = n

    def since(self, first: int) -> int:
        """The count from minute `first` on."""
        return sum(n for m, n in self.by_minute.items() if m >= first)


def _fire_once(member: Membership, rule: str, window: int, minute: int) -> bool:
    """True unless the rule already fired for the member within the last `window` minutes
    (the marker holds the minute it fired; a race may let two through, never none)."""
    key = f"guard:fired:{member.pk}:{rule}"
    if cache.add(key, minute, COUNTER_TTL):
        return True
    last = cache.get(key)
    if last is not None and minute - int(last) < window:
        return False
    cache.set(key, minute, COUNTER_TTL)
    return True


def now() -> datetime:
    """The current time (tests move it)."""
    return timezone.now()


def observe(member: Membership, kind: str, n: int = 1) -> None:
    """One action (or `n` at once: an export's numbers) of a member worth watching (kind:
    card_open, reveal, search, call, export, or any other activity as "activity"): the
    burst, outside-hours and anomaly rules look at it. Called by the quota counting and the
    exports.

    Owners are not watched: the alerts are theirs, and the base is theirs to read.
    """
    if member.role == Role.OWNER or member.pk is None:
        return
    conf = _config(member.project_id)
    at = now()
    minute = _minute(at)
    outside = conf.rules.get(AlertKind.OUTSIDE_HOURS)
    if outside and outside.enabled and not is_working_time(conf, at):
        _outside_hours(member, kind, outside, conf, at, minute, n)
    burst_kind = BURSTS.get(kind)
    burst = conf.rules.get(burst_kind) if burst_kind else None
    anomaly = conf.rules.get(AlertKind.ANOMALY) if kind in PACED else None
    starts = []  # the first minute each rule looks at
    if burst and burst.enabled:
        starts.append(minute - burst.window + 1)
    if anomaly and anomaly.enabled:
        starts.append(minute - minute % 60)
    if not starts:
        return
    counts = Counts(member, kind, min(starts), minute, n)
    if burst_kind and burst and burst.enabled:
        count = counts.since(minute - burst.window + 1)
        if count >= burst.threshold and _fire_once(member, burst_kind, burst.window, minute):
            params = {"count": count, "minutes": burst.window, "threshold": burst.threshold}
            raise_alert(member, burst_kind, params)
    if anomaly and anomaly.enabled:
        _anomaly(member, kind, anomaly, minute, counts)


def _outside_hours(
    member: Membership,
    kind: str,
    rule: RuleConf,
    conf: AlertConfig,
    at: datetime,
    minute: int,
    n: int = 1,
) -> None:
    count = Counts(member, "outside", minute - rule.window + 1, minute, n).since(0)
    if count >= rule.threshold and _fire_once(member, AlertKind.OUTSIDE_HOURS, rule.window, minute):
        local = at.astimezone(_zone(conf.zone))
        # Kept as the English msgid: notices.describe translates it for each reader.
        with translation.override("en"):
            what = str(WHAT.get(kind, WHAT["activity"]))
        raise_alert(
            member,
            AlertKind.OUTSIDE_HOURS,
            {"what": what, "time": local.strftime("%H:%M"), "count": count},
        )


def anomaly_limit(baseline: MemberBaseline, factor: int) -> float | None:
    """The count in one hour that is "far above usual" for this baseline: at least `factor`
    times the mean, the mean plus four standard deviations, the 95th percentile plus ten,
    and ANOMALY_MIN_COUNT, whichever is highest; None when the baseline has too few hours."""
    if baseline.hours < ANOMALY_MIN_HOURS:
        return None
    return max(
        factor * baseline.mean,
        baseline.mean + 4 * baseline.stdev,
        baseline.p95 + 10,
        ANOMALY_MIN_COUNT,
    )


def _anomaly(member: Membership, kind: str, rule: RuleConf, minute: int, counts: Counts) -> None:
    hour_start = minute - minute % 60
    count = counts.since(hour_start)
    if count < ANOMALY_MIN_COUNT:
        return  # the cheap case: no baseline is read below the floor
    fired = f"guard:fired:{member.pk}:anomaly-{kind}:{hour_start}"
    if cache.get(fired):
        return
    baseline = MemberBaseline.objects.filter(membership=member, kind=kind).first()
    limit = anomaly_limit(baseline, rule.threshold) if baseline else None
    if baseline is None or limit is None or count < limit:
        return
    if not cache.add(fired, 1, 3600):
        return
    with translation.override("en"):  # notices.describe translates it for each reader
        what = str(PACE_WHAT[kind])
    raise_alert(
        member,
        AlertKind.ANOMALY,
        {
            "count": count,
            "what": what,
            "mean": _figure(baseline.mean),
            "p95": _figure(baseline.p95),
            "stdev": _figure(baseline.stdev),
            "hours": baseline.hours,
            "limit": math.ceil(limit),
            "pace": kind,
        },
    )


def _figure(value: float) -> float | int:
    """A statistic as people read it: one decimal, none when it is whole."""
    rounded = round(value, 1)
    return int(rounded) if rounded == int(rounded) else rounded


def raise_alert(member: Membership, kind: str, params: dict[str, Any]) -> SecurityNotice:
    """Record the alert (alert.raised, with its numbers) and keep it for the owners, who get
    it by mail and webhook after the commit."""
    params = {"user": member.user.username, **params}
    with transaction.atomic():
        event = record_event(
            "alert.raised",
            project_id=member.project_id,
            object_type="user",
            object_id=member.user_id,
            object_repr=member.user.username,
            extra={"kind": kind, **params},
        )
        return notices.notify_owners(
            member.project_id, kind, params, event_id=event.pk, user_id=member.user_id
        )


def mark_read(project: Project, notice_id: int | None = None) -> int:
    """An owner has read one alert (or all of them); notices are bookkeeping, their events
    are the record."""
    unread = SecurityNotice.objects.filter(project=project, read_at__isnull=True)
    if notice_id is not None:
        unread = unread.filter(pk=notice_id)
    return unread.update(read_at=timezone.now())


# --- Delivery: the signed webhook ---------------------------------------------------------

WEBHOOK_TIMEOUT = 5  # seconds per attempt
# Pauses before the 2nd, 3rd and 4th attempts; tests set them to zero.
RETRY_DELAYS: tuple[float, ...] = (2.0, 10.0, 30.0)
SIGNATURE_HEADER = "X-Callvault-Signature"
TIMESTAMP_HEADER = "X-Callvault-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def public_origin() -> str:
    """Where people open callvault, for links in messages: the first trusted origin."""
    origins = list(settings.CSRF_TRUSTED_ORIGINS)
    return str(origins[0]).rstrip("/") if origins else ""


def timeline_path(notice: SecurityNotice) -> str:
    """The member's audit timeline on the day of the alert, or "" when it is about nobody."""
    if notice.user_id is None:
        return ""
    project = notice.project
    day = notice.created_at.astimezone(_zone(project.time_zone)).date()
    url = reverse("audit:timeline", args=[project.slug, notice.user_id])
    return f"{url}?day={day.isoformat()}"


def webhook_body(notice: SecurityNotice) -> bytes:
    """The JSON posted for a notice; `text` is the message itself, so a chat bot's
    "send message" address works as the webhook."""
    with translation.override(settings.LANGUAGE_CODE):
        text = notices.describe(notice)
    path = timeline_path(notice)
    body = {
        "id": notice.pk,  # the same notice delivered twice (a retry) carries the same id
        "project": notice.project.slug,
        "kind": notice.kind,
        "text": text,
        "params": notice.params,
        "member": notice.user.username if notice.user else None,
        "created_at": notice.created_at.isoformat(),
        "timeline_url": f"{public_origin()}{path}" if path else "",
    }
    return json.dumps(body, ensure_ascii=False).encode()


def deliver_to_webhook(notice: SecurityNotice) -> None:
    """The deliverer notify_owners calls after the commit: queue the POST, never wait."""
    url = (
        GuardSettings.objects.filter(project_id=notice.project_id)
        .values_list("webhook_url", flat=True)
        .first()
    )
    if url:
        send_webhook.enqueue(notice.pk)


notices.add_deliverer(deliver_to_webhook)


@task()
def send_webhook(notice_id: int) -> bool:
    """POST one notice to the project's webhook, signed; a few tries on network errors and
    5xx/429 answers (a redirect, like any other 3xx or 4xx, is final: not followed). True
    when the receiver took it (2xx)."""
    notice = SecurityNotice.objects.select_related("project", "user").filter(pk=notice_id).first()
    guard = GuardSettings.objects.filter(project_id=notice.project_id).first() if notice else None
    if notice is None or guard is None or not guard.webhook_url:
        return False
    body = webhook_body(notice)
    try:
        secret = webhook_secret(guard)
    except Exception:  # a retired key, a damaged value: say so, without the value
        log.error("webhook of project %s: the signing secret cannot be opened", guard.project_id)
        return False
    where = url_shown(guard.webhook_url)
    for attempt, delay in enumerate((0.0, *RETRY_DELAYS), start=1):
        if delay:
            clock.sleep(delay)
        status = _post(guard.webhook_url, body, secret)
        if status is not None and 200 <= status < 300:
            return True
        log.warning(
            "webhook %s for notice %s: attempt %d answered %s",
            where,
            notice_id,
            attempt,
            status if status is not None else "no answer",
        )
        if status is not None and status < 500 and status != 429:
            return False  # the receiver refused it: trying again would not help
    return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would repeat a POST answered 301/302/303 as a GET
    without the body (and count that GET's 200 as delivered), or send the signed alert to
    wherever the answer points. A 3xx is the receiver's answer, a final failure."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> None:
        return None  # urllib then raises HTTPError with the 3xx code


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, secret: str) -> int | None:
    timestamp = str(int(clock.time()))
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "callvault"}
    if secret:
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _OPENER.open(request, timeout=WEBHOOK_TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None
