"""The orders list: the whole base for members who may see it, their own orders for others.

Newest first by (created_at, id), paged by a keyset cursor: a page is a short walk down an
index from the cursor, however deep it is, and no page counts the base. Every filter has an
index ending in (created_at, id) (see Order.Meta.indexes), so a filtered page is the same
short walk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.accounts.models import Membership, Project, access_membership
from callvault.audit.recorder import record_event
from callvault.guard import quotas
from callvault.guard.models import QuotaKind
from callvault.orders.models import Order, OrderQuerySet, Status, StatusGroup
from callvault.vault.phones import PhoneError, blind_index, mask_with, parse_phone

PAGE_SIZE = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNASSIGNED = "none"


@dataclass(frozen=True)
class Cursor:
    """A place in the list: the (created_at, id) of a row, written as "<microseconds>_<id>"."""

    created_at: datetime
    pk: int

    @classmethod
    def of(cls, order: Order) -> Cursor:
        """The cursor at an order."""
        return cls(order.created_at, order.pk)

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """The cursor in a query parameter; None for anything malformed."""
        micros, _sep, pk = text.partition("_")
        if not (micros.isdigit() and pk.isdigit() and len(micros) <= 17 and len(pk) <= 18):
            return None
        return cls(EPOCH + timedelta(microseconds=int(micros)), int(pk))

    def __str__(self) -> str:
        return f"{(self.created_at - EPOCH) // timedelta(microseconds=1)}_{self.pk}"

    def older(self) -> Q:
        """Rows after this one in the list. The redundant `created_at <= t` bounds the index
        range; the OR only settles ties within the same microsecond."""
        t = self.created_at
        return Q(created_at__lte=t) & (Q(created_at__lt=t) | Q(pk__lt=self.pk))

    def newer(self) -> Q:
        """Rows before this one in the list."""
        t = self.created_at
        return Q(created_at__gte=t) & (Q(created_at__gt=t) | Q(pk__gt=self.pk))


DUPLICATE_CHOICES = [
    ("", gettext_lazy("Duplicates and originals")),
    ("only", gettext_lazy("Only duplicates")),
    ("none", gettext_lazy("No duplicates")),
]


# A browser's date picker speaks ISO dates whatever the page's language.
DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
# Far enough for any real order; the ends of the calendar would overflow in time zone arithmetic.
DATE_LIMITS = [MinValueValidator(date(1970, 1, 2)), MaxValueValidator(date(9000, 12, 31))]


class OrderFilterForm(forms.Form):
    """The list's filters, all in the query string (none of them carries a phone number).

    Operators get only the status filter: they see their own orders and nothing to compare.
    """

    status = forms.ChoiceField(label=gettext_lazy("Status"), required=False)
    group = forms.ChoiceField(
        label=gettext_lazy("Status group"),
        required=False,
        choices=[("", gettext_lazy("All groups")), *StatusGroup.choices],
    )
    date_from = forms.DateField(
        label=gettext_lazy("Created from"),
        required=False,
        widget=DATE_INPUT,
        validators=DATE_LIMITS,
    )
    date_to = forms.DateField(
        label=gettext_lazy("Created to"),
        required=False,
        widget=DATE_INPUT,
        validators=DATE_LIMITS,
    )
    operator = forms.ChoiceField(label=gettext_lazy("Operator"), required=False)
    source = forms.CharField(
        label=gettext_lazy("Source"),
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": gettext_lazy("Source")}),
    )
    duplicates = forms.ChoiceField(
        label=gettext_lazy("Duplicates"), required=False, choices=DUPLICATE_CHOICES
    )

    def __init__(
        self,
        data: QueryDict,
        *,
        statuses: list[Status],
        members: list[Membership] | None,
    ) -> None:
        super().__init__(data)
        self.statuses = {s.code: s for s in statuses}
        status_field: Any = self.fields["status"]
        status_field.choices = [("", _("All statuses"))] + [
            (s.code, _(s.name)) for s in statuses if s.is_active
        ]
        if members is None:
            for name in ("group", "date_from", "date_to", "operator", "source", "duplicates"):
                del self.fields[name]
            return
        operator_field: Any = self.fields["operator"]
        operator_field.choices = [
            ("", _("All operators")),
            (UNASSIGNED, _("Nobody")),
            *((str(m.user_id), _member_label(m)) for m in members),
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The end date is before the start date."))
        return data

    def apply(self, qs: OrderQuerySet, project: Project) -> OrderQuerySet:
        """The orders that pass the valid filters (a field with an error is left out)."""
        self.is_valid()  # runs the checks once; cleaned_data keeps only the valid fields
        data = self.cleaned_data
        if data.get("status"):
            qs = qs.filter(status_id=self.statuses[data["status"]].pk)
        if data.get("group"):
            group_ids = [s.pk for s in self.statuses.values() if s.group == data["group"]]
            qs = qs.filter(status_id__in=group_ids)
        zone = ZoneInfo(project.time_zone)
        if data.get("date_from"):
            qs = qs.filter(created_at__gte=_local_midnight(data["date_from"], zone))
        if data.get("date_to"):
            next_day = data["date_to"] + timedelta(days=1)
            qs = qs.filter(created_at__lt=_local_midnight(next_day, zone))
        operator = data.get("operator")
        if operator == UNASSIGNED:
            qs = qs.filter(assigned_to__isnull=True)
        elif operator:
            qs = qs.filter(assigned_to_id=int(operator))
        if data.get("source"):
            qs = qs.filter(source=data["source"])
        if data.get("duplicates") == "only":
            qs = qs.filter(duplicate_of__isnull=False)
        elif data.get("duplicates") == "none":
            qs = qs.filter(duplicate_of__isnull=True)
        return qs


def _member_label(member: Membership) -> str:
    name = str(member.user)
    return name if member.is_active else _("%(name)s (inactive)") % {"name": name}


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


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


@dataclass
class Page:
    """One page of the list and the cursors to its neighbours (None where there is none)."""

    rows: list[Order]
    newer: Cursor | None
    older: Cursor | None


def page_of(qs: OrderQuerySet, before: Cursor | None, after: Cursor | None) -> Page:
    """PAGE_SIZE rows from a cursor: older than `before`, newer than `after`, or the newest.

    One query: PAGE_SIZE + 1 rows tell whether there is more beyond, instead of a COUNT.
    """
    qs = qs.select_related("status", "assigned_to")
    if after is not None:
        rows = list(qs.filter(after.newer()).order_by("created_at", "pk")[: PAGE_SIZE + 1])
        more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE][::-1]
        has_newer, has_older = more, True
    else:
        if before is not None:
            qs = qs.filter(before.older())
        rows = list(qs.order_by("-created_at", "-pk")[: PAGE_SIZE + 1])
        has_older, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
        has_newer = before is not None
    if not rows:
        return Page(rows, None, None)
    return Page(
        rows,
        newer=Cursor.of(rows[0]) if has_newer else None,
        older=Cursor.of(rows[-1]) if has_older else None,
    )


def filter_form(data: QueryDict, member: Membership) -> OrderFilterForm:
    """The filters this member gets, bound to `data` (two queries: statuses and members)."""
    project = member.project
    members = None
    if member.can_view_all_orders:
        members = list(
            Membership.objects.filter(project=project)
            .select_related("user")
            .order_by("-is_active", "user__username")
        )
    return OrderFilterForm(
        data, statuses=list(Status.objects.filter(project=project)), members=members
    )


@login_required
def order_list(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Orders the member may see, newest first, filtered and paged by a cursor.

    Searching is a POST, so a phone number never lands in a URL (browser history, proxy
    logs); the results of a search are shown on that response, without filters or a pager.
    """
    member = access_membership(request.user, project_slug)
    project = member.project
    searching = request.method == "POST"
    if searching and not member.can_view_all_orders:
        # Guessing numbers is how a base is probed: refused, and on record (never the query).
        record_event("order.search_refused", project_id=member.project_id)
        raise PermissionDenied
    form = filter_form(QueryDict() if searching else request.GET, member)
    query, search_error = "", ""
    if searching:
        quotas.charge(member, QuotaKind.SEARCH)  # past the quota: the 429 page, no search
        qs, query, search_error = _search(member, request.POST.get("q", "").strip()[:40])
        found = qs.select_related("status", "assigned_to").order_by("-created_at", "-pk")
        page = Page(list(found[:PAGE_SIZE]), None, None)
    else:
        qs = form.apply(Order.objects.visible_to(member), project)
        before = Cursor.parse(request.GET.get("before", ""))
        after = None if before else Cursor.parse(request.GET.get("after", ""))
        page = page_of(qs, before, after)
    # The pager's links keep the filters and replace the cursor.
    kept = request.GET.copy()
    for name in ("before", "after"):
        kept.pop(name, None)
    visible = project.mask_visible_digits
    return render(
        request,
        "orders/order_list.html",
        {
            "member": member,
            "project": project,
            "form": form,
            "rows": [(order, order.phone_masked(visible)) for order in page.rows],
            "newer": page.newer,
            "older": page.older,
            "filters_query": kept.urlencode(),
            "filtered": bool(kept) and not searching,
            "paged": "before" in request.GET or "after" in request.GET,
            "query": query,
            "searching": searching,
            "search_error": search_error,
        },
    )
