"""Quotas: how many cards, reveals, calls, searches and API reads a member (or key) may make
in a window, counted across processes; and the suspension a hard breach may bring.

Counting. Windows are fixed (this hour, this day, this minute, on the project's clock) and
each has one counter in Django's cache, keyed by project, member or key, kind and the
window's start. On Redis the counter is `add` + `incr` (Redis INCR: atomic). Django's
DatabaseCache (the embedded default) implements `incr` as get + set, which loses counts
between processes, so on it the read-modify-write runs in a transaction that first locks
the counter's row (SELECT ... FOR UPDATE on PostgreSQL; on SQLite every transaction takes
the write lock at BEGIN, see lib/dburl.py). Every attempt is counted, allowed or not: the
count past the limit is the number of refused attempts, which defines a hard breach.

The counters are only as durable as the cache: a flushed Redis, or a DatabaseCache culling
rows past its MAX_ENTRIES, starts a window afresh (docs/leak-controls.md says how to size it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.db import DatabaseCache
from django.db import connections, router, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.accounts.models import ApiKey, Membership, Project, Role
from callvault.accounts.notices import notify_owners
from callvault.audit.context import Actor, acting_as
from callvault.audit.recorder import diff, record_event, record_update, snapshot
from callvault.guard.models import GuardSettings, QuotaKind, QuotaRule, Suspension
from callvault.lib.errors import FieldErrors

AUDIT_ACTIONS = {
    "guard_settings.create": gettext_lazy("Leak controls set up"),
    "quota.create": gettext_lazy("Quota added"),
    "quota.update": gettext_lazy("Quota changed"),
    "quota.delete": gettext_lazy("Quota removed"),
    "quota.refused": gettext_lazy("Refused at a quota"),
    "suspension.create": gettext_lazy("Member suspended"),
    "suspension.lift": gettext_lazy("Suspension lifted"),
}

# A new project's quotas: (what, role ("" = every API key for API reads), limit). Owners and
# admins have none: they may export the base anyway, and they own it.
DEFAULT_QUOTAS: list[tuple[str, str, int]] = [
    (QuotaKind.CARD_OPEN, Role.OPERATOR, 60),
    (QuotaKind.CARD_OPEN, Role.TRAINEE, 30),
    (QuotaKind.CARD_OPEN, Role.SUPERVISOR, 300),
    (QuotaKind.REVEAL, Role.OPERATOR, 20),
    (QuotaKind.REVEAL, Role.TRAINEE, 5),
    (QuotaKind.REVEAL, Role.SUPERVISOR, 50),
    (QuotaKind.CALL, Role.OPERATOR, 60),
    (QuotaKind.CALL, Role.TRAINEE, 30),
    (QuotaKind.CALL, Role.SUPERVISOR, 60),
    (QuotaKind.SEARCH, Role.OPERATOR, 20),
    (QuotaKind.SEARCH, Role.TRAINEE, 10),
    (QuotaKind.SEARCH, Role.SUPERVISOR, 200),
    (QuotaKind.API_READ, "", 600),
]

# Each kind's window.
PERIODS: dict[str, str] = {
    QuotaKind.CARD_OPEN: "hour",
    QuotaKind.REVEAL: "day",
    QuotaKind.CALL: "hour",
    QuotaKind.SEARCH: "hour",
    QuotaKind.API_READ: "minute",
}

# A hard breach: going on past a quota by this many refused attempts in the same window, or
# by this share of the limit when that is more (a limit of 300 tolerates 30 more clicks).
BREACH_MIN_ATTEMPTS = 5
BREACH_SHARE = 0.10

RULE_FIELDS = ("kind", "role", "membership", "api_key", "limit")
SETTINGS_FIELDS = (
    "suspend_on_breach",
    "watermark",
    "work_starts",
    "work_ends",
    "work_days",
    "webhook_url",
    "background_export_rows",
)


def now() -> datetime:
    """The clock the windows are cut from (tests move it)."""
    return timezone.now()


# --- Defaults of a new project ------------------------------------------------------------


def create_default_settings(project: Project) -> GuardSettings:
    """A new project's leak-control settings, recorded (inside do_create_project)."""
    row = GuardSettings.objects.create(project=project)
    record_event(
        "guard_settings.create",
        project_id=project.pk,
        object_type="guard_settings",
        object_id=row.pk,
        object_repr=str(project),
        changes=diff({}, snapshot(row, SETTINGS_FIELDS)),
    )
    return row


def create_default_quotas(project: Project) -> None:
    """A new project's role quotas and its API keys' default, each recorded."""
    for kind, role, limit in DEFAULT_QUOTAS:
        _create_rule(project, str(kind), limit, role=str(role))


# --- Which rule applies -------------------------------------------------------------------


def member_rule(member: Membership, kind: str) -> QuotaRule | None:
    """The member's own rule for the kind, else their role's, else None (unlimited)."""
    rules = QuotaRule.objects.filter(
        project_id=member.project_id, kind=kind, api_key__isnull=True
    ).filter(Q(membership_id=member.pk) if member.pk else Q(pk__in=[]))
    own = rules.order_by("limit").first()
    if own is not None:
        return own
    return (
        QuotaRule.objects.filter(
            project_id=member.project_id,
            kind=kind,
            role=member.role,
            membership__isnull=True,
            api_key__isnull=True,
        )
        .order_by("limit")
        .first()
    )


def key_rule(key: ApiKey, kind: str = QuotaKind.API_READ) -> QuotaRule | None:
    """The key's own rule, else the project's default for keys (no role, member or key)."""
    scoped = QuotaRule.objects.filter(project_id=key.project_id, kind=kind).order_by("limit")
    own = scoped.filter(api_key_id=key.pk).first()
    if own is not None:
        return own
    return scoped.filter(role="", membership__isnull=True, api_key__isnull=True).first()


# --- Windows and counters -----------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One fixed window: its start and end."""

    start: datetime
    end: datetime

    def seconds_left(self, at: datetime) -> int:
        """Whole seconds until the window ends (at least 1)."""
        return max(1, math.ceil((self.end - at).total_seconds()))


def project_zone(name: str) -> tzinfo:
    """The project's clock; UTC when its zone is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def window_of(kind: str, at: datetime, zone: tzinfo) -> Window:
    """The window of `kind` holding the moment `at`, on the clock `zone`."""
    local = at.astimezone(zone)
    period = PERIODS[kind]
    if period == "day":
        start = datetime.combine(local.date(), time.min, tzinfo=zone)
        return Window(start, datetime.combine(local.date() + timedelta(days=1), time.min, zone))
    if period == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        return Window(start, start + timedelta(hours=1))
    start = local.replace(second=0, microsecond=0)
    return Window(start, start + timedelta(minutes=1))


def counter_key(project_id: int, who: str, kind: str, window: Window) -> str:
    """The cache key of one counter."""
    return f"cv:quota:{project_id}:{who}:{kind}:{int(window.start.timestamp())}"


def count_one(key: str, timeout: int, n: int = 1) -> int:
    """Add `n` (one by default) to the counter and return its new value, atomically across
    processes."""
    backend = caches["default"]
    if isinstance(backend, DatabaseCache):
        return _count_in_database(backend, key, timeout, n)
    return _count_in_cache(backend, key, timeout, n)


def _count_in_cache(backend: BaseCache, key: str, timeout: int, n: int = 1) -> int:
    # Redis: INCRBY is atomic and keeps the key's expiry; locmem increments under its lock.
    for _attempt in range(3):
        backend.add(key, 0, timeout)
        try:
            return int(backend.incr(key, n))
        except ValueError:  # expired between add and incr: start it again
            continue
    raise RuntimeError("quota counter keeps expiring")


def _count_in_database(backend: DatabaseCache, key: str, timeout: int, n: int = 1) -> int:
    db = router.db_for_write(backend.cache_model_class)
    connection = connections[db]
    quote = connection.ops.quote_name
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    table, column = quote(backend._table), quote("cache_key")  # type: ignore[attr-defined]
    sql = f"SELECT {column} FROM {table} WHERE {column} = %s"  # noqa: S608 (quoted names)
    row_key = backend.make_and_validate_key(key)
    with transaction.atomic(using=db), connection.cursor() as cursor:
        cursor.execute(sql + lock, [row_key])
        if cursor.fetchone() is None:
            # The window's first count: a concurrent first insert waits for ours (or we for
            # theirs) on the primary key, the loser's add() answers False, and then the
            # row exists to be locked.
            backend.add(key, 0, timeout)
            cursor.execute(sql + lock, [row_key])
        count = int(backend.get(key, 0)) + n
        backend.set(key, count, timeout)
    return count


# --- Charging -----------------------------------------------------------------------------


class QuotaExceeded(Exception):
    """An action refused because the member (or key) reached a quota."""

    def __init__(self, kind: str, limit: int, count: int, *, retry_after: int = 0) -> None:
        super().__init__(f"quota {kind} reached: {count} of {limit}")
        self.kind = kind
        self.limit = limit
        self.count = count
        self.retry_after = retry_after

    @property
    def label(self) -> str:
        """What the quota counts, in the reader's language."""
        return str(QuotaKind(self.kind).label)


def breach_margin(limit: int) -> int:
    """How many refused attempts in one window make a hard breach."""
    return max(BREACH_MIN_ATTEMPTS, math.ceil(limit * BREACH_SHARE))


def charge(
    member: Membership | None, kind: str, *, api_key: ApiKey | None = None, n: int = 1
) -> None:
    """Count `n` actions (one by default: a page of orders counts each order, an export
    each number it opens) against the quota that applies (a member's, or an API key's for
    api_read); raise QuotaExceeded when they would go past it, and then none of them may
    happen. Without a rule the actions are unlimited and not counted. Call it outside any
    transaction of the action: a rolled-back caller would also roll back the refusal's
    record, notice and suspension."""
    if n < 1:
        raise ValueError("charge counts at least one action")
    if api_key is not None:
        rule, project, who = key_rule(api_key, kind), api_key.project, f"k{api_key.pk}"
    elif member is not None:
        rule, project = member_rule(member, kind), member.project
        who = f"m{member.pk}" if member.pk else f"u{member.user_id}"  # support: by user
    else:
        raise ValueError("charge needs a member or an API key")
    count = 0
    if rule is not None:
        at = now()
        window = window_of(kind, at, project_zone(project.time_zone))
        timeout = window.seconds_left(at) + 60
        count = count_one(counter_key(project.pk, who, kind, window), timeout, n)
        if count > rule.limit:
            refuse(member, kind, rule.limit, count, api_key=api_key, n=n)
            raise QuotaExceeded(kind, rule.limit, count, retry_after=window.seconds_left(at))
    if member is not None:
        from callvault.guard import alerts  # alerts may read quotas: import at use

        alerts.observe(member, kind, n)


def _who(member: Membership | None, api_key: ApiKey | None) -> str:
    if api_key is not None:
        return f"API key {api_key.name}"  # as the audit trail names a key (Actor.api_key)
    assert member is not None
    return member.user.username


@transaction.atomic
def refuse(
    member: Membership | None,
    kind: str,
    limit: int,
    count: int,
    *,
    api_key: ApiKey | None,
    n: int = 1,
) -> None:
    """Record a refused attempt (of `n` actions, the counter now at `count`); the first in
    a window alerts the owners, and a hard breach suspends the member when the project asks
    for it."""
    before = count - n  # the counter is atomic: exactly one request moves it across a mark
    project_id = api_key.project_id if api_key is not None else member.project_id  # type: ignore[union-attr]
    who = _who(member, api_key)
    event = record_event(
        "quota.refused",
        project_id=project_id,
        object_type="api_key" if api_key is not None else "membership",
        object_id=api_key.pk if api_key is not None else (member.pk or ""),  # type: ignore[union-attr]
        object_repr=who,
        extra={"quota": kind, "count": count, "limit": limit},
    )
    with translation.override("en"):  # notices.describe translates it for each reader
        label = str(QuotaKind(kind).label)
    user_id = member.user_id if member is not None else None
    if before <= limit:  # the window's first refusal
        notify_owners(
            project_id,
            "quota_reached",
            {"user": who, "quota": label, "count": count, "limit": limit},
            event_id=event.pk,
            user_id=user_id,
        )
    margin = breach_margin(limit)
    crossed = before - limit < margin <= count - limit
    if member is not None and crossed and may_suspend(member):
        do_suspend_member(member, kind=kind, limit=limit, count=count)


def may_suspend(member: Membership) -> bool:
    """Whether the project suspends on a hard breach and the member can be suspended
    (owners never are; a support session has no membership row to suspend)."""
    if member.role == Role.OWNER or not member.pk:
        return False
    return GuardSettings.objects.filter(
        project_id=member.project_id, suspend_on_breach=True
    ).exists()


# --- Suspensions --------------------------------------------------------------------------


def is_suspended(member: Membership) -> bool:
    """Whether the member has a suspension no owner has lifted (owners never count)."""
    if member.role == Role.OWNER or not member.pk:
        return False
    return Suspension.objects.filter(membership_id=member.pk, lifted_at__isnull=True).exists()


@transaction.atomic
def do_suspend_member(member: Membership, *, kind: str, limit: int, count: int) -> Suspension:
    """Stop a member who kept going past a quota until an owner reviews it; recorded as
    the system's doing, with the request's facts."""
    with translation.override("en"):  # notices.describe translates it for each reader
        label = str(QuotaKind(kind).label)
    reason = _("%(quota)s: %(over)s attempts past the limit of %(limit)s") % {
        "quota": label,
        "over": count - limit,
        "limit": limit,
    }
    row = Suspension.objects.create(project_id=member.project_id, membership=member, reason=reason)
    with acting_as(Actor.system("quota breach")):
        event = record_event(
            "suspension.create",
            project_id=member.project_id,
            object_type="suspension",
            object_id=row.pk,
            object_repr=member.user.username,
            changes=diff({}, {"membership": member.pk, "reason": reason}),
        )
    notify_owners(
        member.project_id,
        "suspended",
        {"user": member.user.username, "quota": label},
        event_id=event.pk,
        user_id=member.user_id,
    )
    return row


@transaction.atomic
def do_lift_suspension(suspension: Suspension, *, acting: Membership) -> Suspension:
    """An owner has reviewed the member: they may work again."""
    if acting.role != Role.OWNER or acting.project_id != suspension.project_id:
        raise FieldErrors.one("suspension", _("Only an owner may lift a suspension."))
    row = Suspension.objects.select_for_update().get(pk=suspension.pk)
    if row.lifted_at is not None:
        raise FieldErrors.one("suspension", _("This suspension was already lifted."))
    before = snapshot(row, ("lifted_at", "lifted_by"))
    row.lifted_at = timezone.now()
    row.lifted_by = acting.user
    row.save(update_fields=["lifted_at", "lifted_by"])
    record_event(
        "suspension.lift",
        project_id=row.project_id,
        object_type="suspension",
        object_id=row.pk,
        object_repr=row.membership.user.username,
        changes=diff(before, snapshot(row, ("lifted_at", "lifted_by"))),
    )
    return row


# --- The owner's changes ------------------------------------------------------------------


def _create_rule(
    project: Project,
    kind: str,
    limit: int,
    *,
    role: str = "",
    membership: Membership | None = None,
    api_key: ApiKey | None = None,
) -> QuotaRule:
    row = QuotaRule.objects.create(
        project=project, kind=kind, role=role, membership=membership, api_key=api_key, limit=limit
    )
    record_event(
        "quota.create",
        project_id=project.pk,
        object_type="quota_rule",
        object_id=row.pk,
        object_repr=rule_repr(row),
        changes=diff({}, snapshot(row, RULE_FIELDS)),
    )
    return row


def rule_repr(rule: QuotaRule) -> str:
    """A rule as the record names it: kind and whom it limits."""
    if rule.api_key_id:
        whom = f"key {rule.api_key_id}"
    elif rule.membership_id:
        whom = f"member {rule.membership_id}"
    else:
        whom = rule.role or "API keys"
    return f"{rule.kind} for {whom}"


def _check_target(
    project: Project, kind: str, role: str, membership: Membership | None, api_key: ApiKey | None
) -> None:
    if kind not in QuotaKind.values:
        raise FieldErrors.one("kind", _("Unknown quota."))
    if sum(bool(x) for x in (role, membership, api_key)) > 1:
        raise FieldErrors.one("kind", _("A quota limits a role, a member or an API key."))
    for scoped in (membership, api_key):
        if scoped is not None and scoped.project_id != project.pk:
            raise FieldErrors.one("kind", _("Unknown quota."))
    is_api = kind == QuotaKind.API_READ
    if is_api and (role or membership):
        raise FieldErrors.one("kind", _("API reads are limited per API key."))
    if not is_api and (api_key or not (role or membership)):
        raise FieldErrors.one("kind", _("This quota limits a role or a member."))
    if role and role not in Role.values:
        raise FieldErrors.one("role", _("Unknown role."))


@transaction.atomic
def do_set_quota(
    project: Project,
    kind: str,
    limit: int | None,
    *,
    role: str = "",
    membership: Membership | None = None,
    api_key: ApiKey | None = None,
    acting: Membership,
) -> QuotaRule | None:
    """Set one quota (for a role, a member or an API key; none of them: the API keys'
    default); limit None removes it (unlimited, or back to the role's / the default)."""
    if acting.role != Role.OWNER or acting.project_id != project.pk:
        raise FieldErrors.one("kind", _("Only an owner may change quotas."))
    _check_target(project, kind, role, membership, api_key)
    if limit is not None and not 0 <= limit <= 1_000_000:
        raise FieldErrors.one("limit", _("Enter a number from 0 to 1,000,000."))
    rows = list(
        QuotaRule.objects.select_for_update()
        .filter(project=project, kind=kind, role=role, membership=membership, api_key=api_key)
        .order_by("pk")
    )
    # One rule per target; stray duplicates (made outside the pages) go with the first change.
    for extra in rows[1:]:
        _delete_rule(extra)
    row = rows[0] if rows else None
    if limit is None:
        if row is not None:
            _delete_rule(row)
        return None
    if row is None:
        return _create_rule(project, kind, limit, role=role, membership=membership, api_key=api_key)
    record_update(
        "quota.update",
        row,
        {"limit": limit},
        project_id=project.pk,
        object_type="quota_rule",
        object_repr=rule_repr(row),
    )
    return row


def _delete_rule(row: QuotaRule) -> None:
    before = snapshot(row, RULE_FIELDS)
    pk, text = row.pk, rule_repr(row)
    row.delete()
    record_event(
        "quota.delete",
        project_id=row.project_id,
        object_type="quota_rule",
        object_id=pk,
        object_repr=text,
        changes=diff(before, {}),
    )


def describe_refusal(exc: QuotaExceeded) -> dict[str, Any]:
    """What a refusal tells the member: which quota, its limit, when it resets."""
    return {
        "quota": exc.label,
        "limit": exc.limit,
        "retry_after": exc.retry_after,
        "resets_at": now() + timedelta(seconds=exc.retry_after),
    }
