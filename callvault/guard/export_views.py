"""Exports: start one with a reason, list them, download each once.

Only members with the "may export" capability reach these pages (others, support staff
included, get the same 404 as for a page that does not exist). Starting an export and
downloading a file both need a fresh step-up.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from callvault.accounts import stepup
from callvault.accounts.models import Membership, Role, access_membership
from callvault.guard import alerts, quotas
from callvault.guard.exports import (
    EXPORT_TTL,
    KINDS,
    ORDERS,
    ExportForm,
    Plan,
    background_rows,
    claim_download,
    csv_lines,
    do_record_download,
    do_start_export,
    export_dir,
    file_name,
    filters_form,
    kinds_for,
    plan_for,
    still_allowed,
    submitted_filters,
)
from callvault.guard.models import ExportJob, QuotaKind
from callvault.guard.tasks import make_export

RECENT_JOBS = 50
CSV_TYPE = "text/csv; charset=utf-8"


def access_exporter(user: Any, project_slug: str) -> Membership:
    """The user's membership if it may export; 404 otherwise, as for no project. Support
    staff read what they investigate; they never take a copy home."""
    member = access_membership(user, project_slug)
    if not member.can_export or getattr(member, "support_grant", None) is not None:
        raise Http404
    return member


@login_required
@require_http_methods(["GET", "POST"])
def exports(request: HttpRequest, project_slug: str) -> HttpResponseBase:
    """The form (what, filters, reason) and the recent exports."""
    member = access_exporter(request.user, project_slug)
    if request.method == "POST":
        return start_export(request, member)
    kind = _kind(request.GET, member)
    return _page(
        request,
        member,
        kind,
        ExportForm(None, member=member),
        filters_form(kind, request.GET, member),
    )


def start_export(
    request: HttpRequest, member: Membership, *, kind: str | None = None
) -> HttpResponseBase:
    """Check the proof, the reason, the filters and the quota; then stream a small export at
    once, or queue a large one for the worker. `kind` is fixed by the audit page's door."""
    data = request.POST.copy()
    data["kind"] = kind or data.get("kind", "")
    shown = _kind(data, member)  # a kind the member may not export falls back for the page
    if not stepup.is_fresh(request, stepup.minutes_for(member.project.slug)):
        return stepup.step_up_response(request, _page_url(member, shown))
    form = ExportForm(data, member=member)
    filters = filters_form(shown, data, member)
    if not (form.is_valid() & filters.is_valid()):  # both, so every error shows at once
        return _page(request, member, shown, form, filters)
    kind = form.cleaned_data["kind"]
    reveal = bool(form.cleaned_data.get("reveal"))
    typed = submitted_filters(filters)
    plan, pinned = plan_for(kind, member, typed, reveal=reveal)
    if not _charge_reveals(member, plan, form):
        return _page(request, member, kind, form, filters)
    background = plan.count > background_rows(member)
    job = do_start_export(
        member,
        kind,
        plan,
        pinned,
        filters=typed,
        reason=form.cleaned_data["reason"],
        reveal=reveal,
        background=background,
    )
    alerts.observe(member, "export")
    if background:
        transaction.on_commit(lambda: make_export.enqueue(job.pk))
        messages.success(
            request,
            _("Export %(id)s has %(rows)s rows: it is being made and will appear below.")
            % {"id": job.pk, "rows": plan.count},
        )
        return redirect("guard:exports", project_slug=member.project.slug)
    return _stream(plan, job, member)


def _charge_reveals(member: Membership, plan: Plan, form: ExportForm) -> bool:
    """Each number opened in the file counts against the member's reveal quota, as a reveal
    on the card would: the file must not be the way around it. Refused past the quota. One
    charge of all the numbers (not one per number: an export may open 10^5 of them)."""
    if not plan.phones:
        return True
    try:
        quotas.charge(member, QuotaKind.REVEAL, n=plan.phones)
    except quotas.QuotaExceeded as exc:
        form.add_error(
            "reveal",
            _(
                "This export would open %(count)s numbers; your quota of %(limit)s numbers a "
                "day does not allow it. Export without phone numbers, or ask an owner."
            )
            % {"count": plan.phones, "limit": exc.limit},
        )
        return False
    return True


def _stream(plan: Plan, job: ExportJob, member: Membership) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        (line.encode("utf-8") for line in csv_lines(plan, job, member)), content_type=CSV_TYPE
    )
    response["Content-Disposition"] = f'attachment; filename="{file_name(job, member)}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET"])
def export_download(request: HttpRequest, project_slug: str, job_id: int) -> HttpResponseBase:
    """The one download of the member's own background export; the file is gone after it."""
    member = access_exporter(request.user, project_slug)
    job = ExportJob.objects.filter(
        pk=job_id, project_id=member.project_id, user_id=member.user_id
    ).first()
    if job is None:
        raise Http404
    if not stepup.is_fresh(request, stepup.minutes_for(project_slug)):
        return stepup.step_up_response(request)
    if job.state == ExportJob.State.READY and not still_allowed(job, member):
        # Made while the member could; a right taken away since also takes the file away.
        withdraw(job)
        job.refresh_from_db()
        return _gone(request, member, job)
    if not claim_download(job.pk, member):
        job.refresh_from_db()
        return _gone(request, member, job)
    path = export_dir() / job.file_name
    try:
        handle = path.open("rb") if job.file_name and path.name == job.file_name else None
    except FileNotFoundError:
        handle = None
    if handle is None:
        ExportJob.objects.filter(pk=job.pk).update(
            state=ExportJob.State.FAILED, error="the file was missing"
        )
        job.refresh_from_db()
        return _gone(request, member, job)
    # Unlinked at once: the open handle still reads it, and no second copy stays on disk.
    path.unlink(missing_ok=True)
    do_record_download(member, job)
    response = FileResponse(
        handle, as_attachment=True, filename=file_name(job, member), content_type=CSV_TYPE
    )
    response["Cache-Control"] = "no-store"
    return response


def withdraw(job: ExportJob) -> None:
    """A ready file the member may no longer have: deleted, and the job failed."""
    if job.file_name:
        path = export_dir() / job.file_name
        if path.name == job.file_name:
            path.unlink(missing_ok=True)
    ExportJob.objects.filter(pk=job.pk, state=ExportJob.State.READY).update(
        state=ExportJob.State.FAILED, error="the member may no longer have this export"
    )


def _gone(request: HttpRequest, member: Membership, job: ExportJob) -> HttpResponse:
    waiting = job.state in (ExportJob.State.QUEUED, ExportJob.State.RUNNING)
    return render(
        request,
        "guard/exports_gone.html",
        {"member": member, "project": member.project, "job": job, "state": _state(job)},
        status=409 if waiting else 410,
    )


def _kind(data: QueryDict, member: Membership) -> str:
    kind = data.get("kind", "")
    return kind if kind in kinds_for(member) else ORDERS


def _page_url(member: Membership, kind: str) -> str:
    url = reverse("guard:exports", kwargs={"project_slug": member.project.slug})
    return f"{url}?kind={kind}"


def _state(job: ExportJob) -> str:
    """The state as the member sees it: a ready file past its day is expired already."""
    if job.state == ExportJob.State.READY and job.created_at <= timezone.now() - EXPORT_TTL:
        return str(ExportJob.State.EXPIRED.label)
    return str(job.get_state_display())


def _page(
    request: HttpRequest,
    member: Membership,
    kind: str,
    form: ExportForm,
    filters: Any,
) -> HttpResponse:
    jobs = ExportJob.objects.filter(project_id=member.project_id).select_related("user")
    everyone = member.role == Role.OWNER
    if not everyone:
        jobs = jobs.filter(user_id=member.user_id)
    cutoff = timezone.now() - EXPORT_TTL
    rows = [
        (
            job,
            KINDS.get(job.kind, job.kind),
            _state(job),
            job.user_id == member.user_id
            and job.state == ExportJob.State.READY
            and job.created_at > cutoff,
        )
        for job in jobs.order_by("-pk")[:RECENT_JOBS]
    ]
    return render(
        request,
        "guard/exports.html",
        {
            "member": member,
            "project": member.project,
            "kind": kind,
            "kinds": [(k, KINDS[k]) for k in kinds_for(member)],
            "form": form,
            "filters": filters,
            "jobs": rows,
            "everyone": everyone,
            "step_up_fresh": stepup.is_fresh(request, stepup.minutes_for(member.project.slug)),
        },
    )


urlpatterns = [
    path("exports/", exports, name="exports"),
    path("exports/<int:job_id>/download/", export_download, name="export_download"),
]
