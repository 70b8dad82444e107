"""The supervisor's dashboard: today's work per operator, today's leads, the queue now.

"Today" is the project's day: from midnight in its time zone until now. Every figure is one
aggregate query in the database, so the page costs the same number of queries however many
members and orders there are:

- processed: distinct orders whose status the member changed today (StatusChange);
- approved: distinct orders among those that the member moved into the ACCEPTED group today,
  so the approval rate, approved / processed, never passes 100%;
- no-answers: the member's "order.no_answer" events today (AuditEvent). Every no-answer
  writes one, while a StatusChange is written only when the status changes, and a second
  no-answer leaves the order in "no answer";
- callbacks due: orders assigned to the member in a callback-class status whose time has come.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.db.models.functions import ExtractHour
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from callvault.accounts.models import Project, Role, SecurityNotice, User, access_membership
from callvault.accounts.notices import describe
from callvault.audit.models import ActorKind, AuditEvent
from callvault.orders.models import Order, QueueClass, StatusChange, StatusGroup


@dataclass
class OperatorDay:
    """One member's figures for today (the totals row has no user)."""

    user: User | None
    processed: int = 0
    approved: int = 0
    no_answers: int = 0
    callbacks_due: int = 0

    @property
    def approval_rate(self) -> int | None:
        """Approved as a whole percentage of processed; None when nothing was processed."""
        if not self.processed:
            return None
        return round(100 * self.approved / self.processed)


@dataclass
class QueueNow:
    """Orders waiting in the queue: due now and free, held by an operator, due later."""

    due: int = 0
    held: int = 0
    later: int = 0


@dataclass
class Dashboard:
    """Everything the dashboard shows, as of `now`."""

    day_start: datetime
    now: datetime
    operators: list[OperatorDay]
    leads_by_hour: list[int]
    queue: QueueNow
    totals: OperatorDay = field(init=False)

    def __post_init__(self) -> None:
        total = OperatorDay(None)
        for row in self.operators:
            total.processed += row.processed
            total.approved += row.approved
            total.no_answers += row.no_answers
            total.callbacks_due += row.callbacks_due
        self.totals = total

    @property
    def leads_today(self) -> int:
        """All leads that came in today."""
        return sum(self.leads_by_hour)

    @property
    def busiest_hour(self) -> int:
        """The most leads in one hour today (scales the chart)."""
        return max(self.leads_by_hour)


def day_start(project: Project, now: datetime) -> datetime:
    """Midnight of `now`'s date in the project's time zone."""
    zone = ZoneInfo(project.time_zone)
    return datetime.combine(now.astimezone(zone).date(), time.min, tzinfo=zone)


def _status_changes(project: Project, since: datetime, now: datetime) -> dict[int, tuple[int, int]]:
    rows = (
        StatusChange.objects.filter(
            project=project, created_at__gte=since, created_at__lte=now, user__isnull=False
        )
        .values("user_id")
        .annotate(
            processed=Count("order_id", distinct=True),
            approved=Count("order_id", distinct=True, filter=Q(to_group=StatusGroup.ACCEPTED)),
        )
        .order_by()
    )
    return {row["user_id"]: (row["processed"], row["approved"]) for row in rows}


def _no_answers(project: Project, since: datetime, now: datetime) -> dict[int, int]:
    rows = (
        AuditEvent.objects.filter(
            project_id=project.pk,
            action="order.no_answer",
            actor_kind=ActorKind.MEMBER,
            created_at__gte=since,
            created_at__lte=now,
        )
        .values("actor_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {int(row["actor_id"]): row["n"] for row in rows if row["actor_id"].isdigit()}


def _callbacks_due(project: Project, now: datetime) -> dict[int, int]:
    rows = (
        Order.objects.filter(
            project=project,
            assigned_to__isnull=False,
            status__queue_class=QueueClass.CALLBACK,
            next_call_at__lte=now,
        )
        .values("assigned_to_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["assigned_to_id"]: row["n"] for row in rows}


def _leads_by_hour(project: Project, since: datetime, now: datetime) -> list[int]:
    zone = ZoneInfo(project.time_zone)
    rows = (
        Order.objects.filter(project=project, created_at__gte=since, created_at__lte=now)
        .annotate(hour=ExtractHour("created_at", tzinfo=zone))
        .values("hour")
        .annotate(n=Count("id"))
        .order_by()
    )
    hours = [0] * 24
    for row in rows:
        hours[row["hour"]] += row["n"]
    return hours


def _queue(project: Project, now: datetime) -> QueueNow:
    # "Free" as the claim sees it (queue.claim_next): no lock, or an expired one.
    free = Q(locked_until__isnull=True) | Q(locked_until__lt=now)
    counts = Order.objects.filter(project=project, in_queue=True).aggregate(
        due=Count("id", filter=Q(next_call_at__lte=now) & free),
        held=Count("id", filter=Q(locked_until__gte=now)),
        later=Count("id", filter=Q(next_call_at__gt=now) & free),
    )
    return QueueNow(**counts)


def build_dashboard(project: Project, now: datetime | None = None) -> Dashboard:
    """Today's figures of the project: six queries, whatever its size."""
    now = now or timezone.now()
    since = day_start(project, now)
    changes = _status_changes(project, since, now)
    no_answers = _no_answers(project, since, now)
    callbacks = _callbacks_due(project, now)
    # The people who work orders, and anyone else with a figure today (a supervisor who set
    # a status, or a member deactivated since).
    active = set(changes) | set(no_answers) | set(callbacks)
    users = (
        User.objects.filter(
            Q(
                memberships__project=project,
                memberships__is_active=True,
                memberships__can_edit_orders=True,
                memberships__can_view_all_orders=False,
            )
            | Q(pk__in=active)
        )
        .distinct()
        .order_by("username")
    )
    operators = []
    for user in users:
        processed, approved = changes.get(user.pk, (0, 0))
        operators.append(
            OperatorDay(
                user,
                processed=processed,
                approved=approved,
                no_answers=no_answers.get(user.pk, 0),
                callbacks_due=callbacks.get(user.pk, 0),
            )
        )
    operators.sort(key=lambda row: -row.processed)  # busiest first, then by name (stable)
    return Dashboard(
        day_start=since,
        now=now,
        operators=operators,
        leads_by_hour=_leads_by_hour(project, since, now),
        queue=_queue(project, now),
    )


@login_required
def dashboard(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Today at a glance, for members who may see all orders (others get 404)."""
    member = access_membership(request.user, project_slug)
    if not member.can_view_all_orders:
        raise Http404
    data = build_dashboard(member.project)
    context: dict[str, object] = {"member": member, "project": member.project, "dashboard": data}
    if member.role == Role.OWNER:
        context["dashboard_alerts"] = latest_unread_alerts(member.project)
    return render(request, "orders/dashboard.html", context)


# How many unread alerts the owner's dashboard shows; the alerts page has the rest.
DASHBOARD_ALERTS = 5


def latest_unread_alerts(project: Project) -> list[tuple[SecurityNotice, str]]:
    """The project's newest unread alerts (security notices) with their text, for owners."""
    unread = SecurityNotice.objects.filter(project=project, read_at__isnull=True).order_by(
        "-created_at", "-pk"
    )[:DASHBOARD_ALERTS]
    return [(notice, describe(notice)) for notice in unread]
