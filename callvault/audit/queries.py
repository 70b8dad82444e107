"""Reading the record: filters and keyset pages over one project's events.

Events are append-only and numbered in the order they were written, so every list is
newest first by id and a page is `id < cursor ORDER BY id DESC LIMIT n + 1`: a short walk
down an index however deep the page, and no COUNT. Every helper takes the project id
first; nothing here can return another project's events.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models
from django.db.models import Q, QuerySet

from callvault.audit.models import ActorKind, AuditEvent

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PAGE_SIZE = 50
TIMELINE_LIMIT = 3000
NEW_IP_WINDOW = timedelta(days=30)
# new_ips first reads the actor's events of this stretch before the day (a weekend and more).
IP_RECENT = timedelta(days=4)
# How late after its created_at an event may be inserted, at most (clock skew between web
# servers included). Every writer on PostgreSQL stamps the time as it inserts: record_event
# just before, the queue's claim statement with the time it computed for it, the bypass
# triggers with clock_timestamp().
INSERT_DELAY = timedelta(hours=1)
MAX_ID = 2**63 - 1


class InNetwork(models.Func):
    """`ip` lies in a network: `ip <<= net::inet` on PostgreSQL (an inet column, and the
    planner turns `<<=` into a range on a b-tree index of ip); on SQLite, where the address
    is text that does not sort numerically, a Python function registered on the
    connection decides per row (SQLite is the small embedded install; the keyset LIMIT
    still bounds each page's walk)."""

    output_field = models.BooleanField()
    SQLITE_FUNCTION = "callvault_ip_in"

    def __init__(self, expression: Any, network: IPNetwork) -> None:
        super().__init__(expression, models.Value(str(network)))

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        column, network = self.get_source_expressions()
        column_sql, column_params = compiler.compile(column)
        network_sql, network_params = compiler.compile(network)
        return f"{column_sql} <<= ({network_sql})::inet", [*column_params, *network_params]

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        connection.ensure_connection()
        connection.connection.create_function(
            self.SQLITE_FUNCTION, 2, ip_in_network, deterministic=True
        )
        return self.as_sql(compiler, connection, function=self.SQLITE_FUNCTION)


def ip_in_network(ip: str | None, network: str) -> bool:
    """Whether the text address lies in the network (False for anything unparsable)."""
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def parse_ip_filter(text: str) -> str | IPNetwork | None:
    """An exact address (normalised) or a network ("10.0.0.0/8", "2001:db8::/32")."""
    text = text.strip()
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            # A full-length prefix is one address: compare exactly (cheaper everywhere).
            return str(net.network_address) if net.num_addresses == 1 else net
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class EventFilter:
    """What a search asks for; empty fields do not filter."""

    actor_kind: str = ""
    actor_id: str = ""
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    ip: str | IPNetwork | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_record(self) -> dict[str, str]:
        """The filter as the audit record of a search keeps it (only what was set)."""
        values = {
            "actor_kind": self.actor_kind,
            "actor_id": self.actor_id,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "ip": str(self.ip) if self.ip is not None else "",
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        return {k: v for k, v in values.items() if v}


def action_q(action: str) -> Q:
    """Exact action, or a prefix: "order." and "order.*" both mean every order action."""
    if action.endswith("*"):
        action = action[:-1]
    if action.endswith("."):
        return Q(action__startswith=action)
    return Q(action=action)


def project_events(project_id: int) -> QuerySet[AuditEvent]:
    """The one way into the table: a project's events."""
    return AuditEvent.objects.filter(project_id=project_id)


def search(project_id: int, f: EventFilter) -> QuerySet[AuditEvent]:
    """The project's events that pass the filter, newest first."""
    qs = project_events(project_id)
    if f.actor_kind:
        qs = qs.filter(actor_kind=f.actor_kind)
    if f.actor_id:
        qs = qs.filter(actor_id=f.actor_id)
    if f.action:
        qs = qs.filter(action_q(f.action))
    if f.object_type:
        qs = qs.filter(object_type=f.object_type)
    if f.object_id:
        qs = qs.filter(object_id=f.object_id)
    if isinstance(f.ip, str):
        qs = qs.filter(ip=f.ip)
    elif f.ip is not None:
        qs = qs.filter(InNetwork("ip", f.ip))
    return in_time(qs, f.since, f.until).order_by("-id")


def in_time(
    qs: QuerySet[AuditEvent],
    since: datetime | None,
    until: datetime | None,
    bounds: tuple[int, int] | None = None,
) -> QuerySet[AuditEvent]:
    """Events created in [since, until), also bounded by id where that is safe.

    Lists are ordered by id, which no time index serves. But ids follow time: an event
    stamped before `since - INSERT_DELAY` was inserted before any event stamped at or
    after `since`, so its id is a lower bound (and likewise above `until`). Probes of the
    created_at index find such ids (`id_bounds`); as constants in the query they let the
    indexes that end in id walk only that stretch instead of everything newer. Not on
    SQLite: its sweeper inserts unattributed events long after the change they stamp.
    """
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if connection.vendor != "postgresql" or not (since or until):
        return qs
    low, high = bounds or id_bounds(since, until)[0]
    return qs.filter(id__gt=low, id__lt=high)


# One descent of the created_at index each (audit_auditevent_created_at_...).
_LAST_BEFORE = (
    "COALESCE((SELECT id FROM audit_auditevent WHERE created_at < %s "
    "ORDER BY created_at DESC LIMIT 1), 0)"
)
_FIRST_FROM = (
    "COALESCE((SELECT id FROM audit_auditevent WHERE created_at >= %s "
    "ORDER BY created_at LIMIT 1), %s)"
)


def id_bounds(*windows: datetime | None) -> list[tuple[int, int]]:
    """For consecutive pairs (since, until) of moments, the ids bounding events stamped in
    between (0 and MAX_ID where a side is open): one query of two index probes per pair."""
    parts: list[str] = []
    params: list[Any] = []
    for i, moment in enumerate(windows):
        if moment is None:
            parts.append("%s")
            params.append(0 if i % 2 == 0 else MAX_ID)
        elif i % 2 == 0:
            parts.append(_LAST_BEFORE)
            params.append(moment - INSERT_DELAY)
        else:
            parts.append(_FIRST_FROM)
            params += [moment + INSERT_DELAY, MAX_ID]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        row = cursor.fetchone()
    return [(int(row[i]), int(row[i + 1])) for i in range(0, len(row), 2)]


@dataclass
class EventPage:
    """A page of events, newest first, and the cursor of the next (older) page."""

    rows: list[AuditEvent]
    next_before: int | None = None


def page_of(qs: QuerySet[AuditEvent], before: int | None, size: int = PAGE_SIZE) -> EventPage:
    """`size` events older than the cursor (or the newest): one query, one row beyond the
    page telling whether there is more."""
    if before is not None:
        qs = qs.filter(id__lt=before)
    rows = list(qs.order_by("-id")[: size + 1])
    more, rows = len(rows) > size, rows[:size]
    return EventPage(rows, rows[-1].pk if more and rows else None)


def events_for_object(
    project_id: int,
    object_type: str,
    object_id: object,
    *,
    before: int | None = None,
    size: int = 100,
) -> EventPage:
    """An object's history, newest first: every change and read recorded against it."""
    qs = project_events(project_id).filter(object_type=object_type, object_id=str(object_id))
    return page_of(qs, before, size)


@dataclass
class Timeline:
    """One actor's day in time order, and which addresses were new for them."""

    rows: list[AuditEvent]
    new_ips: set[str] = field(default_factory=set)
    truncated: bool = False


def actor_day(
    project_id: int, actor_kind: str, actor_id: str, start: datetime, end: datetime
) -> Timeline:
    """Everything the actor did in [start, end), oldest first, and the new addresses: on
    PostgreSQL the id bounds, the rows, then one read for the addresses (two when one was
    not used in the days just before)."""
    day_bounds = ip_bounds = None
    if connection.vendor == "postgresql":  # one query for the id bounds of all three stretches
        recent_from = start - IP_RECENT
        day_bounds, recent, earlier = id_bounds(
            start, end, recent_from, start, start - NEW_IP_WINDOW, recent_from
        )
        ip_bounds = (recent, earlier)
    qs = project_events(project_id).filter(actor_kind=actor_kind, actor_id=actor_id)
    rows = list(in_time(qs, start, end, day_bounds).order_by("id")[: TIMELINE_LIMIT + 1])
    truncated, rows = len(rows) > TIMELINE_LIMIT, rows[:TIMELINE_LIMIT]
    ips = {e.ip for e in rows if e.ip}
    fresh = new_ips(project_id, actor_kind, actor_id, ips, start, ip_bounds)
    return Timeline(rows, fresh, truncated)


def new_ips(
    project_id: int,
    actor_kind: str,
    actor_id: str,
    ips: Iterable[str],
    start: datetime,
    bounds: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> set[str]:
    """The addresses the actor had not used in the NEW_IP_WINDOW before `start`.

    Most days use the addresses of the days just before, so the IP_RECENT before `start` are
    read first, and they settle a usual day. Only addresses they do not show are looked for
    in the rest of the window. Reading the whole window every time (the first
    implementation) read the actor's month for every page (benchmarks/audit_search.py:
    13,418 rows against 1,767 for the 4 days). `bounds`: id_bounds of the two stretches,
    the recent one first.
    """
    pending = set(ips)
    if not pending:
        return set()
    qs = project_events(project_id).filter(actor_kind=actor_kind, actor_id=actor_id)
    recent_from = start - IP_RECENT
    stretches = ((recent_from, start), (start - NEW_IP_WINDOW, recent_from))
    for i, (since, until) in enumerate(stretches):
        stretch_bounds = bounds[i] if bounds else None
        used = in_time(qs.filter(ip__in=sorted(pending)), since, until, stretch_bounds)
        pending -= set(used.values_list("ip", flat=True).distinct())
        if not pending:
            break
    return pending


def member_filter(user_id: object) -> EventFilter:
    """The filter for one member's own actions."""
    return EventFilter(actor_kind=ActorKind.MEMBER, actor_id=str(user_id))
