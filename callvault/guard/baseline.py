"""Each member's usual pace: how many order cards they open, and numbers they reveal, in an
hour of work, read off the audit record of the last weeks.

Only hours in which the member did at least one of that thing count ("active hours"), so
nights, days off and holidays do not pull the usual pace down to nothing. Hours are clock
hours (whole hours of UTC, which are the project's own hours wherever its offset is whole
hours). The figures are the mean, the population standard deviation and the 95th
percentile (nearest rank) of the counts of those hours; alerts.anomaly_limit turns them
into the alert's threshold.
"""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta

from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone
from django_tasks import task

from callvault.accounts.models import Membership, Role
from callvault.audit.models import ActorKind, AuditEvent
from callvault.guard.models import MemberBaseline

WEEKS = 4
# The audit action behind each paced kind (orders/views.py, vault/actions.py).
ACTIONS = {"card_open": "order.view", "reveal": "phone.reveal"}


def hourly_counts(member: Membership, kind: str, now: datetime) -> list[int]:
    """The member's count of `kind` in each active hour of the last WEEKS weeks, up to the
    start of the current hour (which is still being counted)."""
    end = now.replace(minute=0, second=0, microsecond=0)
    rows = (
        AuditEvent.objects.filter(
            project_id=member.project_id,
            actor_kind=ActorKind.MEMBER,
            actor_id=str(member.user_id),
            action=ACTIONS[kind],
            created_at__gte=end - timedelta(weeks=WEEKS),
            created_at__lt=end,
        )
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [row["n"] for row in rows]


def percentile(values: list[int], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `share` of values at or
    below it."""
    ordered = sorted(values)
    return float(ordered[max(math.ceil(share * len(ordered)) - 1, 0)])


def compute_baseline(member: Membership, kind: str, now: datetime | None = None) -> MemberBaseline:
    """Compute and store one member's usual pace of `kind` (bookkeeping: derived from the
    record, so no event of its own)."""
    now = now or timezone.now()
    counts = hourly_counts(member, kind, now)
    figures = {
        "hours": len(counts),
        "mean": statistics.fmean(counts) if counts else 0.0,
        "stdev": statistics.pstdev(counts) if counts else 0.0,
        "p95": percentile(counts, 0.95) if counts else 0.0,
        "computed_at": now,
    }
    baseline, _ = MemberBaseline.objects.update_or_create(
        membership=member, kind=kind, defaults=figures
    )
    return baseline


def compute_all_baselines(now: datetime | None = None) -> int:
    """Every watched member's usual pace (owners are not watched); returns how many."""
    now = now or timezone.now()
    members = Membership.objects.active().exclude(role=Role.OWNER)
    done = 0
    for member in members.iterator():
        for kind in ACTIONS:
            compute_baseline(member, kind, now)
            done += 1
    return done


@task()
def compute_baselines() -> int:
    """The worker's periodic job (callvault/maintenance.py): refresh every usual pace."""
    return compute_all_baselines()
