"""The order card and its reveal; the workspace's actions on the card live in workspace.py."""

from __future__ import annotations

from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST

from callvault.accounts.models import Membership, Project, access_membership
from callvault.audit.queries import events_for_object
from callvault.audit.recorder import record_event
from callvault.guard import quotas
from callvault.guard.models import QuotaKind
from callvault.lib.errors import FieldErrors
from callvault.orders.forms import (
    AddItemForm,
    CallbackForm,
    CommentForm,
    ItemQuantityForm,
    NoAnswerForm,
    OrderDetailsForm,
    StatusForm,
)
from callvault.orders.models import Order, OrderItem, access_order_by_id, visible_statuses
from callvault.orders.queue import extend_hold, work_settings
from callvault.vault.actions import reveal


def zone_named(*names: str) -> tzinfo:
    """The first of the names that is a known time zone; the server's zone otherwise."""
    for name in names:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return timezone.get_default_timezone()


def customer_zone(order: Order, project: Project) -> tzinfo:
    """Where the customer is: the zone their number gave, else the project's."""
    return zone_named(order.customer_tz, project.time_zone)


def operator_zone(project: Project) -> tzinfo:
    """The operators' clock: the project's time zone."""
    return zone_named(project.time_zone)


def holds(member: Membership, order: Order) -> bool:
    """Whether the queue has this order locked to the member right now."""
    return (
        order.locked_by_id == member.user_id
        and order.locked_until is not None
        and order.locked_until > timezone.now()
    )


def _history(member: Membership, order: Order) -> dict[str, Any]:
    """The History tab: for members who may read the record (it names other operators and
    their addresses), and itself a recorded read."""
    if not member.can_view_audit:
        return {}
    page = events_for_object(order.project_id, "order", order.pk)
    record_event(
        "audit.view",
        project_id=order.project_id,
        object_type="order",
        object_id=order.pk,
        object_repr=str(order),
        extra={"page": "order_history", "results": len(page.rows)},
    )
    return {
        "history": page.rows,
        "history_more": page.next_before is not None,
        "history_object_type": "order",
        "history_object_id": order.pk,
    }


def items_context(
    order: Order,
    *,
    add_form: AddItemForm | None = None,
    quantity_form: ItemQuantityForm | None = None,
) -> dict[str, Any]:
    """What the items block needs (the card and its in-place updates render the same)."""
    items: list[OrderItem] = list(order.items.select_related("product"))
    return {
        "items": items,
        "total": sum((i.line_total() for i in items), Decimal(0)),
        "add_item_form": add_form or AddItemForm(order),
        "quantity_form": quantity_form,
    }


def render_card(
    request: HttpRequest,
    member: Membership,
    order: Order,
    *,
    revealed: str | None = None,
    error: str = "",
    forms: dict[str, Any] | None = None,
    renew_hold: bool = False,
) -> HttpResponse:
    """The card with its work forms; `forms` carries a submitted form back with its errors;
    `renew_hold`: opening the card renews the operator's hold on the order.

    Every showing of the card is a recorded read, also after a failed save: otherwise a
    rejected POST would be a way to read an order without leaving a trace. For the same
    reason every showing counts against the cards-per-hour quota, charged before the read
    is recorded: past the quota QuotaExceeded (the 429 page) and no card, no order.view.
    """
    if revealed is None:  # a reveal records itself, as phone.reveal, and is charged as one
        quotas.charge(member, QuotaKind.CARD_OPEN)
    if renew_hold:
        extend_hold(order, member)
    if revealed is None:
        record_event(
            "order.view",
            project_id=order.project_id,
            object_type="order",
            object_id=order.pk,
            object_repr=str(order),
        )
    forms = forms or {}
    project = member.project
    zone, own_zone = customer_zone(order, project), operator_zone(project)
    context: dict[str, Any] = {
        "member": member,
        "project": project,
        "order": order,
        "comments": order.comments.all(),
        "phone_masked": order.phone_masked(),
        "revealed": revealed,
        "reveal_error": error,
        "can_edit": member.can_edit_orders,
        "held": holds(member, order),
        "customer_zone": zone,
        "operator_zone": own_zone,
        "customer_now": timezone.now().astimezone(zone),
        "script": work_settings(order.project_id).script,
        **items_context(order, quantity_form=forms.get("quantity"), add_form=forms.get("add")),
        **_history(member, order),
    }
    if member.can_edit_orders:
        context.update(
            details_form=forms.get("details") or OrderDetailsForm(order, member),
            status_form=forms.get("status") or StatusForm(order),
            reason_statuses=[s for s in visible_statuses(project) if s.requires_reason],
            callback_form=forms.get("callback") or CallbackForm(order, zone),
            no_answer_form=forms.get("no_answer")
            or NoAnswerForm(initial={"version": order.version}),
            comment_form=forms.get("comment") or CommentForm(),
        )
    return render(request, "orders/order_card.html", context)


def local_times(when: datetime | None, *zones: tzinfo) -> list[datetime]:
    """The moment on each of the clocks (empty when there is no moment)."""
    return [when.astimezone(z) for z in zones] if when else []


@login_required
def order_card(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """The order card; opening it is a recorded read, and renews the operator's hold."""
    member = access_membership(request.user, project_slug)
    try:
        order = access_order_by_id(member, order_id)
    except Http404:
        # Walking order numbers is how a base is copied out: the answer is the same 404
        # whether the order exists or is someone else's, but the try is on record.
        record_event(
            "order.view_refused",
            project_id=member.project_id,
            object_type="order",
            object_id=order_id,
        )
        raise
    return render_card(request, member, order, renew_hold=True)  # charged: past it, the 429


@login_required
@require_POST
def order_reveal(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """Show the number once to a member who may see it, for the purpose they state."""
    member = access_membership(request.user, project_slug)
    order = access_order_by_id(member, order_id)
    from callvault.accounts import stepup

    # The digits need a fresh proof of who is asking (password or second factor).
    if not stepup.is_fresh(request, stepup.minutes_for(project_slug)):
        return stepup.step_up_response(request)
    if member.can_see_phones and request.POST.get("purpose", "").strip():
        quotas.charge(member, QuotaKind.REVEAL)  # only attempts the vault would answer
    try:
        digits = reveal(member, order, request.POST.get("purpose", ""))
    except FieldErrors as exc:
        return render_card(request, member, order, error=exc.errors["purpose"])
    response = render_card(request, member, order, revealed=digits)
    response["Cache-Control"] = "no-store"  # the digits must not stay in any cache
    return response
