"""The operator workspace: take the next order, work it on the card, see My orders.

Every change is a plain POST answered with a redirect (or with the card and the form's errors);
HTMX only swaps the items block and the call result in place when it is there. Reads go
through `access_order_by_id`, writes through the actions; nothing here calls `.save()`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import F, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from callvault.accounts.models import Membership, access_membership
from callvault.guard import quotas
from callvault.guard.models import QuotaKind
from callvault.lib.errors import FieldErrors
from callvault.orders.actions import (
    StaleOrder,
    do_add_comment,
    do_add_item,
    do_change_status,
    do_remove_item,
    do_set_item_quantity,
    do_update_order,
)
from callvault.orders.forms import (
    STALE_MESSAGE,
    AddItemForm,
    CallbackForm,
    CommentForm,
    ItemQuantityForm,
    NoAnswerForm,
    OrderDetailsForm,
    OutcomeForm,
    StatusForm,
    add_action_errors,
)
from callvault.orders.models import (
    Order,
    OrderItem,
    StatusGroup,
    access_order_by_id,
    sees_only_held,
)
from callvault.orders.queue import (
    do_record_no_answer,
    do_release_order,
    do_schedule_callback,
    held_or_claimed_id,
)
from callvault.orders.views import (
    customer_zone,
    holds,
    items_context,
    local_times,
    operator_zone,
    render_card,
)
from callvault.telephony.actions import CallRefused, do_start_call

# My orders is the work in hand, not an archive: the oldest due first, at most this many.
MY_ORDERS_LIMIT = 200


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _editor(request: HttpRequest, project_slug: str, order_id: int) -> tuple[Membership, Order]:
    """The member and the order, when they may change it: 404 if they cannot see it, 403 if
    they see it but may not edit orders."""
    member = access_membership(request.user, project_slug)
    order = access_order_by_id(member, order_id)
    if not member.can_edit_orders:
        raise PermissionDenied
    return member, order


def _card_url(order: Order, anchor: str = "") -> str:
    url = reverse("orders:card", args=[order.project.slug, order.pk])
    return f"{url}#{anchor}" if anchor else url


def _again(request: HttpRequest, member: Membership, order: Order, **forms: Any) -> HttpResponse:
    """The card again with a rejected form and its errors. The order is read afresh: a
    failed action may have changed the object in memory before the database said no."""
    fresh = access_order_by_id(member, order.pk)
    return render_card(request, member, fresh, forms=forms)


def _mine(member: Membership) -> HttpResponse:
    return redirect("orders:mine", project_slug=member.project.slug)


def _take_next(request: HttpRequest, member: Membership) -> HttpResponse:
    """To the order the member holds, else to a newly claimed one, else to My orders."""
    order_id, held = held_or_claimed_id(member)
    if held:
        messages.info(request, _("You still hold this order: finish it or return it first."))
    elif order_id is None:
        messages.info(request, _("No orders are due now."))
        return _mine(member)
    return redirect("orders:card", member.project.slug, order_id)


def _finished(
    request: HttpRequest, member: Membership, form: OutcomeForm, message: str
) -> HttpResponse:
    """After a call's outcome: My orders, or the next order for "Save and next"."""
    messages.success(request, message)
    if form.wants_next():
        return _take_next(request, member)
    return _mine(member)


def _when_text(order: Order, member: Membership) -> str:
    times = local_times(
        order.next_call_at, customer_zone(order, member.project), operator_zone(member.project)
    )
    return " / ".join(
        f"{formats.date_format(t, 'SHORT_DATETIME_FORMAT')} ({t.tzinfo})" for t in times
    )


@login_required
def my_orders(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The orders in this member's hands: held from the queue, or assigned and still open."""
    member = access_membership(request.user, project_slug)
    project = member.project
    now = timezone.now()
    held = Q(locked_by_id=member.user_id, locked_until__gt=now)
    assigned = Q(assigned_to_id=member.user_id, status__group=StatusGroup.PROCESSING)
    orders = (
        Order.objects.visible_to(member)
        .filter(held | assigned)
        .select_related("status")
        .order_by(F("next_call_at").asc(nulls_last=True), "id")[:MY_ORDERS_LIMIT]
    )
    own_zone = operator_zone(project)
    rows = []
    for order in orders:
        zone = customer_zone(order, project)
        rows.append(
            {
                "order": order,
                "held": holds(member, order),
                "masked": order.phone_masked(project.mask_visible_digits),
                "customer_zone": zone,
            }
        )
    rows.sort(key=lambda row: not row["held"])  # the order in hand first (a stable sort)
    context = {
        "member": member,
        "project": project,
        "rows": rows,
        "operator_zone": own_zone,
        "only_held": sees_only_held(member),  # a trainee: the page says why it is so short
    }
    return render(request, "orders/my_orders.html", context)


@login_required
@require_POST
def next_order(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Take the next due order from the queue (or go back to the one still held)."""
    member = access_membership(request.user, project_slug)
    if not member.can_edit_orders:
        raise PermissionDenied
    return _take_next(request, member)


@login_required
@require_POST
def update_details(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """Save the customer's name and address, unless someone else saved the order first."""
    member, order = _editor(request, project_slug, order_id)
    form = OrderDetailsForm(order, member, request.POST)
    if form.is_valid():
        changes = form.changes()
        try:
            if changes:
                do_update_order(order, changes, expected_version=form.cleaned_data["version"])
        except StaleOrder:
            form.add_error(None, STALE_MESSAGE)
        except FieldErrors as exc:
            add_action_errors(form, exc)
        else:
            messages.success(request, _("Saved.") if changes else _("Nothing to save."))
            return redirect(_card_url(order))
    return _again(request, member, order, details=form)


def _items_answer(
    request: HttpRequest,
    member: Membership,
    order: Order,
    *,
    ok: bool,
    add_form: AddItemForm | None = None,
    quantity_form: ItemQuantityForm | None = None,
) -> HttpResponse:
    """The items block for HTMX; otherwise the card: redirected to after a change, rendered
    with the errors after a refusal."""
    if _is_htmx(request):
        context = {
            "member": member,
            "project": member.project,
            "order": order,
            "can_edit": True,
            **items_context(order, add_form=None if ok else add_form, quantity_form=quantity_form),
        }
        return render(request, "orders/workspace_items.html", context)
    if ok:
        return redirect(_card_url(order, "items"))
    return _again(request, member, order, add=add_form, quantity=quantity_form)


def _item_of(order: Order, item_id: int) -> OrderItem:
    """A line of this order; another order's line is as missing as a deleted one."""
    item = order.items.select_related("product").filter(pk=item_id).first()
    if item is None:
        raise Http404
    item.order = order
    return item


@login_required
@require_POST
def add_item(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """Add a product offered on the call (recorded as an upsell)."""
    member, order = _editor(request, project_slug, order_id)
    form = AddItemForm(order, request.POST)
    ok = form.is_valid()
    if ok:
        try:
            data = form.cleaned_data
            do_add_item(order, data["product"], data["quantity"], is_upsell=True)
        except FieldErrors as exc:
            add_action_errors(form, exc)
            ok = False
    return _items_answer(request, member, order, ok=ok, add_form=form)


@login_required
@require_POST
def set_item_quantity(
    request: HttpRequest, project_slug: str, order_id: int, item_id: int
) -> HttpResponse:
    """Change the quantity of one line."""
    member, order = _editor(request, project_slug, order_id)
    item = _item_of(order, item_id)
    form = ItemQuantityForm(request.POST, item_id=item.pk)
    ok = form.is_valid()
    if ok:
        try:
            do_set_item_quantity(item, form.cleaned_data["quantity"])
        except FieldErrors as exc:
            add_action_errors(form, exc)
            ok = False
    return _items_answer(request, member, order, ok=ok, quantity_form=None if ok else form)


@login_required
@require_POST
def remove_item(
    request: HttpRequest, project_slug: str, order_id: int, item_id: int
) -> HttpResponse:
    """Take a line off the order."""
    member, order = _editor(request, project_slug, order_id)
    do_remove_item(_item_of(order, item_id))
    return _items_answer(request, member, order, ok=True)


@login_required
@require_POST
def change_status(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """Set the outcome of the call as a status (with a reason where the status needs one)."""
    member, order = _editor(request, project_slug, order_id)
    form = StatusForm(order, request.POST)
    if form.is_valid():
        status = form.cleaned_data["status"]
        try:
            do_change_status(
                order,
                status,
                reason=form.cleaned_data["reason"],
                expected_version=form.cleaned_data["version"],
            )
        except StaleOrder:
            form.add_error(None, STALE_MESSAGE)
        except FieldErrors as exc:
            add_action_errors(form, exc)
        else:
            message = _("Order %(number)s: %(status)s.") % {
                "number": order.number,
                "status": _(status.name),
            }
            return _finished(request, member, form, message)
    return _again(request, member, order, status=form)


@login_required
@require_POST
def schedule_callback(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """Call the customer back at the time they named, on their own clock."""
    member, order = _editor(request, project_slug, order_id)
    form = CallbackForm(order, customer_zone(order, member.project), request.POST)
    if form.is_valid():
        try:
            do_schedule_callback(
                order, form.cleaned_data["when"], expected_version=form.cleaned_data["version"]
            )
        except StaleOrder:
            form.add_error(None, STALE_MESSAGE)
        except FieldErrors as exc:
            add_action_errors(form, exc)
        else:
            message = _("Order %(number)s: call back %(when)s.") % {
                "number": order.number,
                "when": _when_text(order, member),
            }
            return _finished(request, member, form, message)
    return _again(request, member, order, callback=form)


@login_required
@require_POST
def record_no_answer(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """The customer did not pick up: the queue tries again later."""
    member, order = _editor(request, project_slug, order_id)
    form = NoAnswerForm(request.POST)
    if form.is_valid():
        try:
            do_record_no_answer(order, expected_version=form.cleaned_data["version"])
        except StaleOrder:
            form.add_error(None, STALE_MESSAGE)
        except FieldErrors as exc:
            add_action_errors(form, exc)
        else:
            message = _("Order %(number)s: no answer (attempt %(attempts)d).") % {
                "number": order.number,
                "attempts": order.attempts,
            }
            return _finished(request, member, form, message)
    return _again(request, member, order, no_answer=form)


@login_required
@require_POST
def release_order(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """Give the held order back to the queue unchanged."""
    member, order = _editor(request, project_slug, order_id)
    if not holds(member, order):
        messages.info(request, _("This order is not held by you."))
        return redirect(_card_url(order))
    do_release_order(order, member)
    messages.success(
        request, _("Order %(number)s is back in the queue.") % {"number": order.number}
    )
    return _mine(member)


@login_required
@require_POST
def add_comment(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """A note on the order."""
    member, order = _editor(request, project_slug, order_id)
    form = CommentForm(request.POST)
    if form.is_valid():
        try:
            do_add_comment(order, form.cleaned_data["text"], author=member.user)
        except FieldErrors as exc:
            add_action_errors(form, exc)
        else:
            return redirect(_card_url(order, "comments"))
    return _again(request, member, order, comment=form)


@login_required
@require_POST
def call(request: HttpRequest, project_slug: str, order_id: int) -> HttpResponse:
    """Start a call to the customer: the browser sends only the order id, and gets back the
    provider's word (for SIP token dialing, a `sip:` link holding a one-time token), never
    the number (telephony/actions.py: do_start_call)."""
    member, order = _editor(request, project_slug, order_id)
    quotas.charge(member, QuotaKind.CALL)  # past the quota: the 429 answer, no call
    try:
        _call, result = do_start_call(member, order)
    except CallRefused as refused:
        return _call_answer(request, member, order, refused.message, ok=False)
    return _call_answer(
        request, member, order, result.message, ok=result.ok, sip_uri=result.sip_uri
    )


def _call_answer(
    request: HttpRequest,
    member: Membership,
    order: Order,
    message: str,
    *,
    ok: bool,
    sip_uri: str = "",
) -> HttpResponse:
    """The HTMX fragment in the card; without HTMX, a refusal back on the card, and a started
    call on a page of its own (the sip: link cannot travel in a flash message)."""
    context = {"message": message, "ok": ok, "sip_uri": sip_uri, "card_url": _card_url(order)}
    if _is_htmx(request):
        response = render(request, "orders/workspace_call.html", context)
    elif not ok:
        messages.warning(request, message)
        return redirect(_card_url(order))
    else:
        page = {**context, "order": order, "member": member, "project": member.project}
        response = render(request, "telephony/call_started.html", page)
    response["Cache-Control"] = "no-store"  # a token is for this answer only
    return response
