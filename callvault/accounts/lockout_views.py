"""Owner pages about lockouts, and the owner's "choose a new password" request."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from callvault.accounts.lockout import do_unlock, project_lockouts
from callvault.accounts.models import Membership, Role, access_membership
from callvault.accounts.passwords import do_require_password_change
from callvault.accounts.views import _member_step
from callvault.lib.errors import FieldErrors


def _owner(request: HttpRequest, project_slug: str) -> Membership:
    member = access_membership(request.user, project_slug)
    if member.role != Role.OWNER:
        raise Http404  # others are not told the page exists
    return member


@login_required
def lockouts(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The project's members locked out now and in the last two days, and locked addresses."""
    owner = _owner(request, project_slug)
    return render(
        request,
        "accounts/lockouts.html",
        {
            "member": owner,
            "project": owner.project,
            "settings_section": "lockouts",
            **project_lockouts(owner.project),
        },
    )


@login_required
@require_POST
def lockout_unlock(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Lift a member's or an address's lockout."""
    owner = _owner(request, project_slug)
    try:
        do_unlock(
            owner.project,
            username=request.POST.get("username", ""),
            address=request.POST.get("address", ""),
            acting=owner,
        )
    except FieldErrors:
        raise Http404 from None  # not one of this project's members or a malformed address
    messages.success(request, _("The lockout was lifted."))
    return redirect("accounts:lockouts", project_slug)


@login_required
@require_POST
def member_force_password_change(
    request: HttpRequest, project_slug: str, membership_id: int
) -> HttpResponse:
    """The member must choose a new password at their next request; nobody sees one."""
    return _member_step(
        request,
        project_slug,
        membership_id,
        do_require_password_change,
        _("The member must choose a new password at the next login."),
    )


project_urlpatterns = [
    path("lockouts/", lockouts, name="lockouts"),
    path("lockouts/unlock/", lockout_unlock, name="lockout_unlock"),
    path(
        "members/<int:membership_id>/force-password-change/",
        member_force_password_change,
        name="member_force_password_change",
    ),
]
account_urlpatterns: list[URLPattern] = []
