"""Order pages: the list (for members who may see the base) and the order card."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from callvault.accounts.models import Membership, access_membership
from callvault.audit.models import AuditEvent
from callvault.audit.recorder import record_event
from callvault.lib.errors import FieldErrors
from callvault.orders.models import Order, access_order_by_id
from callvault.vault.actions import reveal

PAGE_SIZE = 50


def _render_card(
    request: HttpRequest,
    member: Membership,
    order: Order,
    *,
    revealed: str | None = None,
    error: str = "",
) -> HttpResponse:
    items = list(order.items.select_related("product"))
    history: list[AuditEvent] = []
    if member.can_view_audit:
        history = list(
            AuditEvent.objects.filter(
                project_id=order.project_id, object_type="order", object_id=str(order.pk)
            ).order_by("-id")[:100]
        )
    return render(
        request,
        "orders/order_card.html",
        {
            "member": member,
            "project": member.project,
            "order": order,
            "items": items,
            "total": sum((i.line_total() for i in items), Decimal(0)),
            "comments": order.comments.all(),
            "history": history,
            "phone_masked": order.phone_masked(),
            "revealed": revealed,
            "reveal_error": error,
        },
    )


@login_required
def order_card(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """The order card; opening it is a recorded read."""
    member = access_membership(request.user, project_slug)
    order = access_order_by_id(member, order_id)
    record_event(
        "order.view",
        project_id=order.project_id,
        object_type="order",
        object_id=order.pk,
        object_repr=str(order),
    )
    return _render_card(request, member, order)


@login_required
@require_POST
def order_reveal(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """Show the number once to a member who may see it, for the purpose they state."""
    member = access_membership(request.user, project_slug)
    order = access_order_by_id(member, order_id)
    try:
        digits = reveal(member, order, request.POST.get("purpose", ""))
    except FieldErrors as exc:
        return _render_card(request, member, order, error=exc.errors["purpose"])
    response = _render_card(request, member, order, revealed=digits)
    response["Cache-Control"] = "no-store"  # the digits must not stay in any cache
    return response
