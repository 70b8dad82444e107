"""The order card's call history (templates/telephony/_card_calls.html)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template
from django.utils import timezone

from callvault.orders.models import Order
from callvault.telephony.models import Call, CallState

register = template.Library()

# The card shows the recent calls; the audit trail has them all.
CARD_CALLS = 20
# A token-dialled call the softphone never dialled stays "new"; after this it is shown as
# not dialled (the token has long expired).
NOT_DIALLED_AFTER = timedelta(minutes=10)


@register.inclusion_tag("telephony/_card_calls.html", takes_context=True)
def card_calls(context: template.Context, order: Order) -> dict[str, Any]:
    """The order's latest calls, newest first, each with its recording when it has one (one
    query: the recording comes along by its one-to-one join)."""
    calls = list(
        Call.objects.filter(project_id=order.project_id, order_id=order.pk)
        .select_related("recording")
        .order_by("-created_at", "-id")[:CARD_CALLS]
    )
    stale = timezone.now() - NOT_DIALLED_AFTER
    for call in calls:
        call.not_dialled = call.state == CallState.NEW and call.created_at < stale  # type: ignore[attr-defined]
    return {
        "calls": calls,
        "member": context.get("member"),
        "project": context.get("project"),
        "zone": context.get("operator_zone"),
    }
