"""Monitoring pages under /p/<project>/monitoring/: devices and enrolment codes, the policy,
a member's timeline with its screenshots, and each member's own "what is collected" page.

Devices, timelines and screenshots need the "view activity" capability and, member by
member, a place above them on the members page's ladder (access.may_watch); screenshots of a
member who may see numbers need that right too (access.may_see_screens). Everyone else gets
the same 404 as for a page that does not exist. Reading is recorded where it matters: a
timeline (timeline.view) and every screenshot seen in full (screenshot.view). The
timeline's thumbnails come with a short-lived signed token the recorded timeline view
mints for the day it shows; a thumbnail fetched without one is recorded on its own.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from callvault.accounts.forms import apply_field_errors
from callvault.accounts.models import Membership, access_membership
from callvault.accounts.stepup import step_up_required
from callvault.audit.recorder import record_event
from callvault.audit.views import project_zone
from callvault.lib.errors import FieldErrors
from callvault.monitoring.access import may_see_screens, may_watch
from callvault.monitoring.actions import (
    do_create_enrolment_code,
    do_revoke_device,
    may_enrol,
)
from callvault.monitoring.forms import EnrolmentCodeForm, PolicyForm
from callvault.monitoring.models import Device, EnrolmentCode, Screenshot
from callvault.monitoring.policy import do_update_policy, notice_text, policy_for
from callvault.monitoring.screenshots import open_screenshot, record_view
from callvault.monitoring.timeline import Day, member_day

# A screenshot or thumbnail is someone's screen: never kept by a browser or proxy cache.
NO_STORE = "private, no-store"
# The timeline's thumbnails load with the page; a token older than this is refused (a
# thumbnail fetched with it is then recorded on its own).
THUMB_TOKEN_SECONDS = 10 * 60
THUMB_TOKEN_SALT = "callvault.monitoring.thumbnails"  # noqa: S105 (a namespace, not a secret)


def access_activity(user: Any, project_slug: str) -> Membership:
    """The user's membership if it may watch activity; 404 otherwise, as for no project."""
    member = access_membership(user, project_slug)
    if not member.can_view_activity:
        raise Http404
    return member


def access_watched(member: Membership, user_id: int) -> Membership:
    """The project's member whose activity the member may watch; 404 for anyone else."""
    target = (
        Membership.objects.select_related("user")
        .filter(project_id=member.project_id, user_id=user_id)
        .first()
    )
    if target is None or not may_watch(member, target):
        raise Http404
    return target


def access_screenshot(member: Membership, screenshot_id: int) -> Screenshot:
    """One of the project's screenshots whose member's screens the member may see; 404 for
    missing, another project's and not-theirs alike."""
    shot = (
        Screenshot.objects.select_related("membership__user")
        .filter(project_id=member.project_id, pk=screenshot_id)
        .first()
    )
    if shot is None or not may_see_screens(member, shot.membership):
        raise Http404
    return shot


def thumbnail_token(member: Membership, target: Membership, shown: Day) -> str:
    """The token the timeline's thumbnail links carry: this viewer, this member's
    screenshots taken in the shown day, for THUMB_TOKEN_SECONDS."""
    span = [int(shown.start.timestamp()), int(shown.end.timestamp())]
    return signing.dumps([member.user_id, target.pk, *span], salt=THUMB_TOKEN_SALT)


def _token_covers(token: str, member: Membership, shot: Screenshot) -> bool:
    """Whether a thumbnail token minted by a recorded timeline view covers this fetch."""
    try:
        user_id, target_id, start, end = signing.loads(
            token, salt=THUMB_TOKEN_SALT, max_age=THUMB_TOKEN_SECONDS
        )
    except (signing.BadSignature, TypeError, ValueError):
        return False
    return bool(
        user_id == member.user_id
        and target_id == shot.membership_id
        and start <= shot.taken_at.timestamp() < end
    )


def _enrollable(member: Membership) -> list[Membership]:
    """The members the acting member may make enrolment codes for."""
    everyone = (
        Membership.objects.active()
        .filter(project_id=member.project_id)
        .select_related("user")
        .order_by("user__username")
    )
    return [m for m in everyone if may_enrol(member, m)]


def _listed(member: Membership, target: Membership) -> bool:
    """Whether the devices page lists the target's devices and codes for the member: those
    of members below them, and their own."""
    return may_watch(member, target) or (member.pk is not None and member.pk == target.pk)


def _devices_page(
    request: HttpRequest,
    member: Membership,
    form: EnrolmentCodeForm | None = None,
    code: tuple[EnrolmentCode, str] | None = None,
) -> HttpResponse:
    enrollable = _enrollable(member)
    may = {m.pk for m in enrollable}
    devices = [
        device
        for device in Device.objects.filter(project_id=member.project_id)
        .select_related("membership__user")
        .order_by("revoked_at", "membership__user__username", "-created_at")
        if _listed(member, device.membership)
    ]
    pending = [
        row
        for row in EnrolmentCode.objects.filter(
            project_id=member.project_id, used_at__isnull=True, expires_at__gt=timezone.now()
        )
        .select_related("membership__user", "created_by")
        .order_by("expires_at")
        if _listed(member, row.membership)
    ]
    zone = project_zone(member)
    response = render(
        request,
        "monitoring/devices.html",
        {
            "member": member,
            "project": member.project,
            "zone": zone,
            "today": timezone.now().astimezone(zone).date(),
            "rows": [(d, d.membership_id in may, may_watch(member, d.membership)) for d in devices],
            "pending": pending,
            "form": (form or EnrolmentCodeForm(members=enrollable)) if enrollable else None,
            "code": code,
            "server": request.build_absolute_uri("/").rstrip("/"),
        },
    )
    if code:
        response["Cache-Control"] = "no-store"  # the code is shown on this response only
    return response


@login_required
def devices(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The project's enrolled devices, pending codes, and a code for a member's PC."""
    return _devices_page(request, access_activity(request.user, project_slug))


@login_required
@require_POST
def code_create(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Make a one-time enrolment code and show it once."""
    member = access_activity(request.user, project_slug)
    enrollable = _enrollable(member)
    if not enrollable:
        raise Http404
    form = EnrolmentCodeForm(request.POST, members=enrollable)
    if not form.is_valid():
        return _devices_page(request, member, form)
    target = next(m for m in enrollable if m.pk == form.cleaned_data["membership"])
    try:
        made = do_create_enrolment_code(target, acting=member, hours=form.cleaned_data["hours"])
    except FieldErrors as exc:
        apply_field_errors(form, exc, {"member": "membership"})
        return _devices_page(request, member, form)
    return _devices_page(request, member, code=made)


@login_required
@require_POST
def device_revoke(request: HttpRequest, project_slug: str, device_id: int) -> HttpResponse:
    """Revoke a device: its agent is refused from the next request on."""
    member = access_activity(request.user, project_slug)
    device = (
        Device.objects.select_related("membership__user")
        .filter(project_id=member.project_id, pk=device_id)
        .first()
    )
    if device is None or not may_enrol(member, device.membership):
        raise Http404
    do_revoke_device(device, acting=member)
    messages.success(
        request, _("%(host)s was revoked: its agent stops.") % {"host": device.hostname}
    )
    return redirect("monitoring:devices", project_slug=project_slug)


@login_required
def policy(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The project's monitoring policy (owners and admins, after step-up; others get 404
    before being asked to prove anything)."""
    member = access_membership(request.user, project_slug)
    if not member.can_manage_project or member.pk is None:
        raise Http404
    return _policy_page(request, member, project_slug=project_slug)


@step_up_required
def _policy_page(request: HttpRequest, member: Membership, *, project_slug: str) -> HttpResponse:
    current = policy_for(member.project)
    data = request.POST if request.method == "POST" else None
    form = PolicyForm(data, initial=PolicyForm.initial_of(current))
    if data is not None and form.is_valid():
        values = form.values()
        try:
            changes = do_update_policy(current, **values)
        except FieldErrors as exc:
            apply_field_errors(form, exc)
        else:
            if changes:
                messages.success(
                    request,
                    _("The monitoring policy was saved (version %(version)s); agents pick it up.")
                    % {"version": changes["version"][1]},
                )
            return redirect("monitoring:policy", project_slug=project_slug)
    return render(
        request,
        "monitoring/policy.html",
        {
            "member": member,
            "project": member.project,
            "settings_section": "monitoring",
            "form": form,
            "policy": current,
            "notice": notice_text(current, member.project),
        },
    )


def _day(request: HttpRequest, zone: ZoneInfo) -> date:
    try:
        day = date.fromisoformat(request.GET.get("day", ""))
    except ValueError:
        return timezone.now().astimezone(zone).date()
    return min(max(day, date(1970, 1, 2)), date(9000, 12, 31))


@login_required
def timeline(request: HttpRequest, project_slug: str, user_id: int) -> HttpResponse:
    """One member's day: activity, programs, screenshots and CRM actions on one axis."""
    member = access_activity(request.user, project_slug)
    target = access_watched(member, user_id)
    zone = project_zone(member)
    day = _day(request, zone)
    screens = may_see_screens(member, target)
    shown = member_day(target, day, zone, screenshots=screens)
    # The thumbnails on the page are part of this view (the token covers them).
    record_event(
        "timeline.view",
        project_id=member.project_id,
        object_type="user",
        object_id=user_id,
        object_repr=target.user.username,
        extra={"day": day.isoformat(), **shown.counts()},
    )
    device_list = Device.objects.filter(membership=target).order_by("revoked_at", "-created_at")
    return render(
        request,
        "monitoring/timeline.html",
        {
            "member": member,
            "project": member.project,
            "target": target,
            "zone": zone,
            "day": day,
            "previous_day": day - timedelta(days=1),
            "next_day": day + timedelta(days=1),
            "shown": shown,
            "devices": device_list,
            "may_audit": member.can_view_audit,
            "thumb_token": thumbnail_token(member, target, shown) if shown.shots else "",
        },
    )


def _image(shot: Screenshot, *, thumb: bool) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        open_screenshot(shot, thumb=thumb),
        content_type="image/jpeg" if thumb else shot.content_type,
    )
    response["Cache-Control"] = NO_STORE
    response["Content-Disposition"] = "inline"
    # Only ever shown as a picture: opened as a page on its own, nothing in it runs, and
    # no browser guesses another type.
    response["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src 'self'; frame-ancestors 'none'"
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
def screenshot(request: HttpRequest, project_slug: str, screenshot_id: int) -> HttpResponseBase:
    """A screenshot in full, decrypted on the way out; each view recorded."""
    member = access_activity(request.user, project_slug)
    shot = access_screenshot(member, screenshot_id)
    response = _image(shot, thumb=False)
    record_view(shot, username=shot.membership.user.username)
    return response


@login_required
def screenshot_thumb(
    request: HttpRequest, project_slug: str, screenshot_id: int
) -> HttpResponseBase:
    """A screenshot's thumbnail for the timeline: with the token of a recorded timeline
    view that showed it, that view is the record; without one (an old page, a link of its
    own), the fetch is recorded as a view of the screenshot."""
    member = access_activity(request.user, project_slug)
    shot = access_screenshot(member, screenshot_id)
    response = _image(shot, thumb=True)
    if not _token_covers(request.GET.get("v", ""), member, shot):
        record_view(shot, username=shot.membership.user.username, thumbnail=True)
    return response


@login_required
def mine(request: HttpRequest, project_slug: str) -> HttpResponse:
    """What monitoring collects about the member: their devices and the policy, in words."""
    member = access_membership(request.user, project_slug)
    own = list(
        Device.objects.filter(Q(membership_id=member.pk) if member.pk else Q(pk__in=[])).order_by(
            "revoked_at", "-created_at"
        )
    )
    current = policy_for(member.project)
    return render(
        request,
        "monitoring/mine.html",
        {
            "member": member,
            "project": member.project,
            "zone": project_zone(member),
            "devices": own,
            "active": [d for d in own if d.revoked_at is None],
            "policy": current,
            "notice": notice_text(current, member.project),
        },
    )
