"""Exports of orders, the audit trail and the day's report, and the rules they all obey.

An export is a file that leaves the system, so each one is an `ExportJob` row (its id names
the file), carries a watermark naming who made it, when and why (a first row, and the job id
as the last column of every row so a fragment still names its source), and is recorded with
its row count before any row leaves. Phone numbers are the stored masks unless the member may
see numbers and asked for them; then they are opened through the vault and each one counts
against the member's reveal quota.

Rows are fixed when the export is asked for: everything matching up to the newest id at that
moment, at most EXPORT_LIMIT rows. A background job writes the same set later (less the rows
that have since stopped matching a filter such as the status).
"""

from __future__ import annotations

import csv
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import get_language, gettext_lazy, override
from django.utils.translation import gettext as _

from callvault.accounts.models import Membership
from callvault.audit.labels import action_label, readable_changes
from callvault.audit.models import AuditEvent
from callvault.audit.queries import search
from callvault.audit.recorder import record_event
from callvault.audit.views import AuditFilterForm, project_members, project_zone
from callvault.guard.models import ExportJob, GuardSettings
from callvault.orders.dashboard import build_dashboard
from callvault.orders.lists import DATE_INPUT, DATE_LIMITS, filter_form
from callvault.orders.models import Order
from callvault.vault.logfilter import redact
from callvault.vault.phones import open_phone

AUDIT_ACTIONS = {
    "order.export": gettext_lazy("Orders exported"),
    "report.export": gettext_lazy("Report exported"),
    "export.download": gettext_lazy("Export downloaded"),
}

ORDERS, AUDIT, REPORT = "orders", "audit", "report"
KINDS = {
    ORDERS: gettext_lazy("Orders"),
    AUDIT: gettext_lazy("Audit trail"),
    REPORT: gettext_lazy("Operators' day (report)"),
}
EXPORT_LIMIT = 100_000
# A ready file waits this long for its one download; maintenance then deletes it.
EXPORT_TTL = timedelta(hours=24)
# Excel in a Russian locale splits on ";" (the decimal separator is the comma) and reads
# UTF-8 only after a byte-order mark.
DELIMITER = ";"
BOM = "\ufeff"
# Spreadsheets run a cell starting with these as a formula; names, addresses and reasons
# are typed by people, so such cells get a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Plan:
    """What an export will hold: its header, its rows (made lazily), how many, and what the
    record says about it."""

    header: list[str]
    rows: Callable[[], Iterator[list[object]]]
    count: int
    filters: dict[str, Any]
    phones: int  # numbers the rows will open (0 when masked)


def cell(value: object) -> str:
    """A value as a CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def kinds_for(member: Membership) -> list[str]:
    """The kinds this member may export: orders always (the ones they see), the audit
    trail with its capability, the report when they may see the dashboard."""
    kinds = [ORDERS]
    if member.can_view_audit:
        kinds.append(AUDIT)
    if member.can_view_all_orders:
        kinds.append(REPORT)
    return kinds


def background_rows(member: Membership) -> int:
    """Exports with more rows than this run in the background (the project's setting)."""
    value = (
        GuardSettings.objects.filter(project_id=member.project_id)
        .values_list("background_export_rows", flat=True)
        .first()
    )
    if value is None:
        default: int = GuardSettings._meta.get_field("background_export_rows").get_default()
        return default
    return int(value)


def export_dir() -> Path:
    """Where background exports wait for their download (inside the data directory, never
    served by the web server)."""
    path = Path(settings.DATA_DIR) / "exports"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


# --- The forms -------------------------------------------------------------------------------


class ReportForm(forms.Form):
    """The report's one filter: the day, on the project's clock (today when empty)."""

    day = forms.DateField(
        label=gettext_lazy("Day"), required=False, widget=DATE_INPUT, validators=DATE_LIMITS
    )

    def clean_day(self) -> date | None:
        day: date | None = self.cleaned_data.get("day")
        if day and day > timezone.now().date() + timedelta(days=1):
            raise forms.ValidationError(_("The day has not come yet."))
        return day


class ExportForm(forms.Form):
    """What to export and why; the filters are the kind's own form."""

    kind = forms.ChoiceField(label=gettext_lazy("What"))
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        min_length=3,
        max_length=300,
        widget=forms.TextInput(attrs={"placeholder": gettext_lazy("Why this export is needed")}),
    )
    reveal = forms.BooleanField(label=gettext_lazy("With phone numbers"), required=False)

    def __init__(self, data: QueryDict | None, *, member: Membership) -> None:
        super().__init__(data)
        kind_field: Any = self.fields["kind"]
        kind_field.choices = [(k, KINDS[k]) for k in kinds_for(member)]
        if not member.can_see_phones:
            del self.fields["reveal"]

    def clean_reason(self) -> str:
        # Free text goes into the record and the file: blank out anything shaped like a number.
        reason: str = redact(self.cleaned_data["reason"].strip())[:300]
        if len(reason) < 3:
            raise forms.ValidationError(_("Say why, in at least 3 characters."))
        return reason


def filters_form(kind: str, data: QueryDict, member: Membership) -> forms.Form:
    """The kind's filter form bound to `data`."""
    if kind == ORDERS:
        return filter_form(data, member)
    if kind == AUDIT:
        return AuditFilterForm(data, members=project_members(member))
    return ReportForm(data)


def submitted_filters(form: forms.Form) -> dict[str, str]:
    """The filters as typed (non-empty fields of the form only): what a background job
    replays and what the exports page shows."""
    data = form.data
    return {name: str(data.get(name, "")) for name in form.fields if data.get(name, "")}


def as_query(filters: dict[str, str]) -> QueryDict:
    """A dict of filters as the QueryDict the filter forms read."""
    query = QueryDict(mutable=True)
    query.update(filters)
    return query


# --- What each kind holds -----------------------------------------------------------------

ORDER_HEADER = [
    "number",
    "created",
    "status",
    "customer_name",
    "phone",
    "address",
    "source",
    "utm_source",
    "utm_campaign",
    "operator",
    "attempts",
    "next_call",
    "total",
]


def plan_orders(
    member: Membership, filters: dict[str, str], *, reveal: bool, pinned: dict[str, Any]
) -> tuple[Plan, dict[str, Any]]:
    """The orders the member sees that pass the list's filters, newest first."""
    project = member.project
    form = filter_form(as_query(filters), member)
    qs = form.apply(Order.objects.visible_to(member), project)
    until = pinned.get("until_id")
    if until is None:
        until = qs.aggregate(newest=Max("pk"))["newest"] or 0
    chosen = qs.filter(pk__lte=until).order_by("-created_at", "-pk")[:EXPORT_LIMIT]
    count = chosen.count()
    phones = (
        Order.objects.filter(pk__in=chosen.values("pk")).exclude(phone_sealed="").count()
        if reveal
        else 0
    )
    zone = project_zone(member)
    visible = project.mask_visible_digits

    def rows() -> Iterator[list[object]]:
        found = chosen.select_related("status", "assigned_to").prefetch_related("items")
        for order in found.iterator(chunk_size=500):
            if reveal and order.phone_sealed:
                shown = open_phone(order.phone_sealed, project_id=project.pk, field="phone")
            else:
                shown = order.phone_masked(visible)
            yield [
                order.number,
                _local(order.created_at, zone),
                _(order.status.name),
                order.customer_name,
                shown,
                order.address,
                order.source,
                order.utm_source,
                order.utm_campaign,
                order.assigned_to.username if order.assigned_to else "",
                order.attempts,
                _local(order.next_call_at, zone),
                order.total(),
            ]

    plan = Plan(ORDER_HEADER, rows, count, submitted_filters(form), phones)
    return plan, {"until_id": until}


AUDIT_HEADER = [
    "id",
    "time",
    "actor_kind",
    "actor_id",
    "actor",
    "action",
    "action_name",
    "object_type",
    "object_id",
    "object",
    "changes",
    "details",
    "ip",
    "user_agent",
    "request_id",
]


def plan_audit(
    member: Membership, filters: dict[str, str], *, reveal: bool, pinned: dict[str, Any]
) -> tuple[Plan, dict[str, Any]]:
    """The project's events that pass the audit search's filters, newest first.

    Always masked: the record holds no digits, and free text is shown redacted whatever the
    member may see, so a copy of the trail never carries a number."""
    zone = project_zone(member)
    event_filter = AuditFilterForm(as_query(filters), members=project_members(member)).to_filter(
        zone
    )
    qs = search(member.project_id, event_filter)
    until = pinned.get("until_id")
    if until is None:
        until = qs.values_list("id", flat=True).first() or 0
    chosen = qs.filter(id__lte=until)[:EXPORT_LIMIT]
    count = chosen.count()

    def rows() -> Iterator[list[object]]:
        for event in chosen.iterator(chunk_size=2000):
            yield _audit_row(event, zone)

    return Plan(AUDIT_HEADER, rows, count, event_filter.as_record(), 0), {"until_id": until}


def _audit_row(event: AuditEvent, zone: Any) -> list[object]:
    changes = readable_changes(
        event.object_type, event.changes or {}, may_see_phones=False, zone=zone
    )
    shown = "; ".join(
        f"{c.label}: {_('changed (hidden)') if c.hidden else f'{c.before} → {c.after}'}"
        for c in changes
    )
    return [
        event.pk,
        event.created_at.astimezone(zone).isoformat(timespec="seconds"),
        event.actor_kind,
        event.actor_id,
        event.actor_name,
        event.action,
        action_label(event.action),
        event.object_type,
        event.object_id,
        event.object_repr,
        shown,
        "; ".join(f"{k}: {v}" for k, v in (event.extra or {}).items()),
        event.ip or "",
        event.user_agent,
        event.request_id,
    ]


REPORT_HEADER = [
    "operator",
    "name",
    "processed",
    "approved",
    "approval_rate",
    "no_answers",
    "callbacks_due",
]


def plan_report(
    member: Membership, filters: dict[str, str], *, reveal: bool, pinned: dict[str, Any]
) -> tuple[Plan, dict[str, Any]]:
    """The dashboard's table of operators for a day (today: until now), and its totals."""
    project = member.project
    zone = project_zone(member)
    form = ReportForm(as_query(filters))
    form.is_valid()
    day: date | None = form.cleaned_data.get("day")
    at = datetime.fromisoformat(pinned["at"]) if "at" in pinned else timezone.now()
    if day is not None and day < at.astimezone(zone).date():
        # A past day: its figures up to its last moment.
        at = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
        at -= timedelta(microseconds=1)
    dashboard = build_dashboard(project, at)

    def rows() -> Iterator[list[object]]:
        for row in [*dashboard.operators, dashboard.totals]:
            rate = row.approval_rate
            yield [
                row.user.username if row.user else _("Total"),
                (row.user.get_full_name() if row.user else ""),
                row.processed,
                row.approved,
                "" if rate is None else f"{rate}%",
                row.no_answers,
                row.callbacks_due,
            ]

    record = {**submitted_filters(form), "until": at.astimezone(zone).isoformat(timespec="seconds")}
    plan = Plan(REPORT_HEADER, rows, len(dashboard.operators), record, 0)
    return plan, {"at": at.isoformat()}


PLANNERS = {ORDERS: plan_orders, AUDIT: plan_audit, REPORT: plan_report}


def plan_for(
    kind: str,
    member: Membership,
    filters: dict[str, str],
    *,
    reveal: bool,
    pinned: dict[str, Any] | None = None,
) -> tuple[Plan, dict[str, Any]]:
    """The plan of an export, and what pins its rows (so a later run writes the same set)."""
    return PLANNERS[kind](member, filters, reveal=reveal, pinned=pinned or {})


def _local(moment: datetime | None, zone: Any) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else ""


# --- The file -----------------------------------------------------------------------------


class _Echo:
    """A file-like object whose write returns the line, for csv.writer into a stream."""

    def write(self, value: str) -> str:
        return value


def watermark(job: ExportJob, member: Membership) -> str:
    """The first row: who, when, why."""
    user = member.user
    return _("Exported by %(username)s (%(name)s) at %(time)s for: %(reason)s") % {
        "username": user.username,
        "name": user.get_full_name() or user.username,
        "time": job.created_at.astimezone(project_zone(member)).strftime("%Y-%m-%d %H:%M:%S %Z"),
        "reason": job.reason,
    }


def csv_lines(plan: Plan, job: ExportJob, member: Membership) -> Iterator[str]:
    """The file, line by line: a byte-order mark, the watermark, the header, the rows; each
    row ends with the export's id."""
    writer = csv.writer(_Echo(), delimiter=DELIMITER)
    yield BOM + writer.writerow([cell(watermark(job, member))])
    yield writer.writerow([*plan.header, "export_id"])
    for row in plan.rows():
        yield writer.writerow([*(cell(v) for v in row), job.pk])


def file_name(job: ExportJob, member: Membership) -> str:
    """The name the browser saves the file under."""
    stamp = job.created_at.astimezone(project_zone(member)).strftime("%Y%m%d-%H%M%S")
    return f"{job.kind}-{member.project.slug}-{stamp}-{job.pk}.csv"


# --- Actions ------------------------------------------------------------------------------


def do_start_export(
    member: Membership,
    kind: str,
    plan: Plan,
    pinned: dict[str, Any],
    *,
    filters: dict[str, str],
    reason: str,
    reveal: bool,
    background: bool,
) -> ExportJob:
    """Create the export's job and record the export, before any row leaves.

    A small export is streamed at once, so its job is born downloaded; a large one waits
    in the queue for the worker."""
    now = timezone.now()
    state = ExportJob.State.QUEUED if background else ExportJob.State.DOWNLOADED
    with transaction.atomic():
        job = ExportJob.objects.create(
            project_id=member.project_id,
            user_id=member.user_id,
            kind=kind,
            reason=reason,
            params={
                "filters": filters,
                "pinned": pinned,
                "reveal": reveal,
                "language": get_language() or settings.LANGUAGE_CODE,
            },
            state=state,
            row_count=None if background else plan.count,
            finished_at=None if background else now,
            downloaded_at=None if background else now,
        )
        record_event(
            "order.export"
            if kind == ORDERS
            else "audit.export"
            if kind == AUDIT
            else "report.export",
            project_id=member.project_id,
            object_type="export",
            object_id=job.pk,
            object_repr=f"export {job.pk}",
            extra={
                "kind": kind,
                "rows": plan.count,
                "reason": reason,
                "filters": plan.filters,
                "phones": "revealed" if reveal else "masked",
                "revealed": plan.phones if reveal else 0,
                "background": background,
                "capped": plan.count >= EXPORT_LIMIT,
            },
        )
    return job


def still_allowed(job: ExportJob, member: Membership) -> bool:
    """Whether the member may still have this export as it was made: its kind among what
    they may export now, and numbers only while they may see numbers. An owner who took a
    right away after the export was asked for stops the file being made or downloaded."""
    if job.kind not in kinds_for(member):
        return False
    return not (job.params or {}).get("reveal") or member.can_see_phones


def claim_download(job_id: int, member: Membership) -> bool:
    """Take the member's ready export for its one download: a conditional UPDATE from
    ready to downloaded, so of two simultaneous attempts exactly one wins."""
    cutoff = timezone.now() - EXPORT_TTL
    claimed = ExportJob.objects.filter(
        pk=job_id,
        project_id=member.project_id,
        user_id=member.user_id,
        state=ExportJob.State.READY,
        created_at__gt=cutoff,
    ).update(state=ExportJob.State.DOWNLOADED, downloaded_at=timezone.now())
    return claimed == 1


def do_record_download(member: Membership, job: ExportJob) -> None:
    """The file of a background export left the server: record it."""
    record_event(
        "export.download",
        project_id=member.project_id,
        object_type="export",
        object_id=job.pk,
        object_repr=f"export {job.pk}",
        extra={"kind": job.kind, "rows": job.row_count},
    )


def write_file(job: ExportJob, member: Membership) -> tuple[str, int]:
    """Write a background export to the exports directory; (file name, rows written).

    Written under a temporary name and renamed, so a half-written file is never offered.
    The name carries a random part: the id alone would be guessable on a shared disk."""
    params = job.params
    with override(params.get("language") or settings.LANGUAGE_CODE):
        plan, _pinned = plan_for(
            job.kind,
            member,
            params.get("filters", {}),
            reveal=bool(params.get("reveal")),
            pinned=params.get("pinned", {}),
        )
        name = f"{job.pk}-{secrets.token_hex(8)}.csv"
        final = export_dir() / name
        partial = final.with_suffix(".part")
        lines = 0
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                partial.chmod(0o600)
                for line in csv_lines(plan, job, member):
                    out.write(line)
                    lines += 1
            partial.replace(final)
        finally:
            # A failed write must not leave its half (maybe with numbers) on the disk.
            partial.unlink(missing_ok=True)
    return name, lines - 2


def expire_old_files() -> int:
    """Expire exports past EXPORT_TTL and delete their files, and any file in the directory
    older than that (left by a crash); the number of files deleted."""
    cutoff = timezone.now() - EXPORT_TTL
    waiting = [ExportJob.State.QUEUED, ExportJob.State.RUNNING, ExportJob.State.READY]
    stale = ExportJob.objects.filter(state__in=waiting, created_at__lte=cutoff)
    for job in stale:
        ExportJob.objects.filter(pk=job.pk, state=job.state).update(state=ExportJob.State.EXPIRED)
    deleted = 0
    folder = export_dir()
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mtime <= cutoff.timestamp():
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted
