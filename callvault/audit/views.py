"""Audit pages under /p/<project>/audit/: search, CSV export, a member's day.

Only members with the "view audit" capability see them; everyone else gets the same 404 as
for a page that does not exist. Reading the record is itself recorded (audit.search,
audit.view, audit.export) with the filters used.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.validators import MaxValueValidator, MinValueValidator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from callvault.accounts.models import Membership, access_membership
from callvault.audit.labels import known_actions
from callvault.audit.models import ActorKind
from callvault.audit.queries import (
    EventFilter,
    actor_day,
    page_of,
    parse_ip_filter,
    search,
)
from callvault.audit.recorder import record_event

DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
DATE_LIMITS = [MinValueValidator(date(1970, 1, 2)), MaxValueValidator(date(9000, 12, 31))]


def access_auditor(user: Any, project_slug: str) -> Membership:
    """The user's membership if it may read the record; 404 otherwise, as for no project."""
    member = access_membership(user, project_slug)
    if not member.can_view_audit:
        raise Http404
    return member


def project_zone(member: Membership) -> ZoneInfo:
    """The project's clock, in which dates are picked and times shown."""
    try:
        return ZoneInfo(member.project.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(timezone.get_default_timezone_name())


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The start of the day on the project's clock."""
    return datetime.combine(day, time.min, tzinfo=zone)


def project_members(member: Membership) -> list[Membership]:
    """Everyone who is or was a member of the project, for the member filter."""
    return list(
        Membership.objects.filter(project_id=member.project_id)
        .select_related("user")
        .order_by("-is_active", "user__username")
    )


class AuditFilterForm(forms.Form):
    """The search's filters, all in the query string (a search carries no secrets)."""

    member = forms.ChoiceField(label=gettext_lazy("Member"), required=False)
    actor_kind = forms.ChoiceField(
        label=gettext_lazy("Actor kind"),
        required=False,
        choices=[("", gettext_lazy("Any actor")), *ActorKind.choices],
    )
    action = forms.CharField(
        label=gettext_lazy("Action"),
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"list": "audit-actions", "placeholder": "order."}),
    )
    object_type = forms.CharField(label=gettext_lazy("Object type"), required=False, max_length=64)
    object_id = forms.CharField(label=gettext_lazy("Object id"), required=False, max_length=64)
    ip = forms.CharField(
        label=gettext_lazy("IP or network"),
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": "10.0.0.0/8"}),
    )
    date_from = forms.DateField(
        label=gettext_lazy("From"), required=False, widget=DATE_INPUT, validators=DATE_LIMITS
    )
    date_to = forms.DateField(
        label=gettext_lazy("To"), required=False, widget=DATE_INPUT, validators=DATE_LIMITS
    )

    def __init__(self, data: QueryDict, *, members: list[Membership]) -> None:
        super().__init__(data)
        member_field: Any = self.fields["member"]
        member_field.choices = [
            ("", _("All members")),
            *((str(m.user_id), _member_label(m)) for m in members),
        ]

    def clean_ip(self) -> str:
        value: str = self.cleaned_data.get("ip", "").strip()
        if value and parse_ip_filter(value) is None:
            raise forms.ValidationError(_("Enter an IP address or a network such as 10.0.0.0/8."))
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The end date is before the start date."))
        return data

    def to_filter(self, zone: ZoneInfo) -> EventFilter:
        """The valid filters (a field with an error is left out) as a query filter."""
        self.is_valid()
        data = self.cleaned_data
        member = data.get("member", "")
        start, end = data.get("date_from"), data.get("date_to")
        return EventFilter(
            actor_kind=ActorKind.MEMBER if member else data.get("actor_kind", ""),
            actor_id=member,
            action=data.get("action", "").strip(),
            object_type=data.get("object_type", "").strip(),
            object_id=data.get("object_id", "").strip(),
            ip=parse_ip_filter(data["ip"]) if data.get("ip") else None,
            since=local_midnight(start, zone) if start else None,
            until=local_midnight(end + timedelta(days=1), zone) if end else None,
        )


def _member_label(member: Membership) -> str:
    name = str(member.user)
    return name if member.is_active else _("%(name)s (inactive)") % {"name": name}


def _cursor(request: HttpRequest) -> int | None:
    before = request.GET.get("before", "")
    return int(before) if before.isdigit() and len(before) <= 18 else None


@login_required
def search_page(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The project's events, newest first, filtered and paged by an id cursor."""
    member = access_auditor(request.user, project_slug)
    zone = project_zone(member)
    form = AuditFilterForm(request.GET, members=project_members(member))
    event_filter = form.to_filter(zone)
    before = _cursor(request)
    page = page_of(search(member.project_id, event_filter), before)
    record_event(
        "audit.search",
        project_id=member.project_id,
        extra={"filters": event_filter.as_record(), "before": before, "results": len(page.rows)},
    )
    kept = request.GET.copy()
    kept.pop("before", None)
    return render(
        request,
        "audit/search.html",
        {
            "member": member,
            "project": member.project,
            "zone": zone,
            "form": form,
            "rows": page.rows,
            "next_before": page.next_before,
            "paged": before is not None,
            "filters_query": kept.urlencode(),
            "filtered": bool(kept),
            "actions": sorted(known_actions()),
            "may_export": member.can_export,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def export_csv(request: HttpRequest, project_slug: str) -> HttpResponseBase:
    """The audit trail as CSV, under the rules of every export (guard/exports.py): the
    capability, a reason, a fresh step-up, a watermark, a record with the row count.

    A GET (the search page's link) opens the exports form with the search's filters; the
    form's POST comes back here or goes to the exports page alike.
    """
    member = access_auditor(request.user, project_slug)
    from callvault.guard import export_views

    exporter = export_views.access_exporter(request.user, project_slug)
    if request.method == "POST":
        return export_views.start_export(request, exporter, kind="audit")
    query = request.GET.copy()
    query["kind"] = "audit"
    url = reverse("guard:exports", kwargs={"project_slug": member.project.slug})
    return HttpResponseRedirect(f"{url}?{query.urlencode()}")


def _day(request: HttpRequest, zone: ZoneInfo) -> date:
    try:
        day = date.fromisoformat(request.GET.get("day", ""))
    except ValueError:
        return timezone.now().astimezone(zone).date()
    return min(max(day, date(1970, 1, 2)), date(9000, 12, 31))


@login_required
def timeline(request: HttpRequest, project_slug: str, user_id: int) -> HttpResponse:
    """Everything one member did in a day, in time order, with addresses new to them marked."""
    member = access_auditor(request.user, project_slug)
    target = (
        Membership.objects.select_related("user")
        .filter(project_id=member.project_id, user_id=user_id)
        .first()
    )
    if target is None:
        raise Http404
    zone = project_zone(member)
    day = _day(request, zone)
    start, end = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
    line = actor_day(member.project_id, ActorKind.MEMBER, str(user_id), start, end)
    record_event(
        "audit.view",
        project_id=member.project_id,
        object_type="user",
        object_id=user_id,
        object_repr=target.user.username,
        extra={"page": "timeline", "day": day.isoformat(), "results": len(line.rows)},
    )
    rows = [(event, bool(event.ip) and event.ip in line.new_ips) for event in line.rows]
    return render(
        request,
        "audit/timeline.html",
        {
            "member": member,
            "project": member.project,
            "zone": zone,
            "target": target,
            "day": day,
            "previous_day": day - timedelta(days=1),
            "next_day": day + timedelta(days=1),
            "rows": rows,
            "new_ips": sorted(line.new_ips),
            "truncated": line.truncated,
        },
    )
