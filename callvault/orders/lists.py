"""The orders list: the whole base for members who may see it, their own orders for others."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from callvault.accounts.models import Membership, access_membership
from callvault.audit.recorder import record_event
from callvault.orders.models import Order, OrderQuerySet, visible_statuses
from callvault.vault.phones import PhoneError, blind_index, mask_with, parse_phone

PAGE_SIZE = 50


def _search(member: Membership, query: str) -> tuple[OrderQuerySet, str, str]:
    """Orders matching an order number or an exact phone number.

    Returns the orders, what to show back in the search box (a phone only masked: the
    page must not carry the digits even to the person who typed them), and an error.
    """
    project = member.project
    qs = Order.objects.visible_to(member)
    number = query.lstrip("#")
    by_number = number.isdigit() and len(number) <= 9
    shown, error = query, ""
    if by_number:
        qs = qs.filter(number=int(number))
    else:
        try:
            parsed = parse_phone(query, region=project.default_region)
        except PhoneError:
            qs, shown = qs.none(), ""
            error = _("Enter an order number or a complete phone number.")
        else:
            qs = qs.filter(phone_index=blind_index(parsed.e164, project_id=project.pk))
            shown = mask_with(parsed.mask, project.mask_visible_digits)
    # A search is a read that matters: record it, without the digits.
    record_event(
        "order.search",
        project_id=project.pk,
        extra={"kind": "number" if by_number else "phone", "results": qs.count()},
    )
    return qs, shown, error


@login_required
def order_list(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Orders the member may see, newest first, paged by id (no COUNT over the base).

    Searching is a POST, so a phone number never lands in a URL (browser history, proxy
    logs); the results of a search are shown on that response, without a pager.
    """
    member = access_membership(request.user, project_slug)
    project = member.project
    qs = Order.objects.visible_to(member)
    status_code = request.GET.get("status", "")
    query, search_error = "", ""
    searching = request.method == "POST"
    if searching:
        if not member.can_view_all_orders:
            raise PermissionDenied
        qs, query, search_error = _search(member, request.POST.get("q", "").strip()[:40])
    elif status_code:
        qs = qs.filter(status__code=status_code)
    before = request.GET.get("before", "")
    if before.isdigit() and not searching:
        qs = qs.filter(pk__lt=int(before))
    rows = list(qs.select_related("status", "assigned_to").order_by("-pk")[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE and not searching
    rows = rows[:PAGE_SIZE]
    visible = project.mask_visible_digits
    return render(
        request,
        "orders/order_list.html",
        {
            "member": member,
            "project": project,
            "rows": [(order, order.phone_masked(visible)) for order in rows],
            "next_before": rows[-1].pk if more and rows else None,
            "statuses": visible_statuses(project),
            "status_code": status_code,
            "query": query,
            "searching": searching,
            "search_error": search_error,
        },
    )
