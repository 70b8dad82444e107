"""Support access grants, the one-time support link, and the old address of the owner's
security notices (now the alerts page)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from callvault.accounts.forms import apply_field_errors
from callvault.accounts.models import (
    Membership,
    Role,
    SupportGrant,
    User,
    access_membership,
)
from callvault.accounts.stepup import is_fresh, mark, minutes_for, step_up_response
from callvault.accounts.support import (
    DURATIONS,
    do_grant_support_access,
    do_revoke_support_access,
    do_use_support_link,
    grant_state,
    usable_link,
)
from callvault.lib.errors import FieldErrors

# The list pages show the recent past; older grants and notices are in the audit trail.
LIST_LIMIT = 200
LINK_BACKEND = "django.contrib.auth.backends.ModelBackend"


class SupportGrantForm(forms.Form):
    """Who gets in (a named support account or whoever opens a one-time link), for how long,
    seeing what, and why."""

    kind = forms.ChoiceField(
        label=gettext_lazy("Who"),
        choices=[
            ("account", gettext_lazy("A named support account")),
            ("link", gettext_lazy("An outside person, through a one-time link")),
        ],
        widget=forms.RadioSelect,
        initial="account",
    )
    username = forms.CharField(
        label=gettext_lazy("Support account (username)"), max_length=150, required=False
    )
    person = forms.CharField(
        label=gettext_lazy("Name of the person who gets the link"), max_length=150, required=False
    )
    hours = forms.TypedChoiceField(
        label=gettext_lazy("For how long"), choices=DURATIONS, coerce=int, initial=4
    )
    read_write = forms.BooleanField(
        label=gettext_lazy("May also change orders (otherwise read-only)"), required=False
    )
    may_see_phones = forms.BooleanField(
        label=gettext_lazy("May see customers' phone numbers"), required=False
    )
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=300)

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("kind") == "account" and not data.get("username"):
            self.add_error("username", _("Name the support account."))
        if data.get("kind") == "link" and not data.get("person"):
            self.add_error("person", _("Name the person who will use the link."))
        return data


def _owner(request: HttpRequest, project_slug: str) -> Membership:
    member = access_membership(request.user, project_slug)
    if member.role != Role.OWNER or member.pk is None:
        raise Http404  # the same answer as for a page that does not exist
    return member


def _render_support(
    request: HttpRequest,
    owner: Membership,
    form: SupportGrantForm | None = None,
    link: str = "",
    granted: SupportGrant | None = None,
) -> HttpResponse:
    grants = (
        SupportGrant.objects.filter(project_id=owner.project_id)
        .select_related("created_by", "user")
        .order_by("-created_at", "-pk")[:LIST_LIMIT]
    )
    response = render(
        request,
        "accounts/support.html",
        {
            "member": owner,
            "project": owner.project,
            "settings_section": "support",
            "form": form or SupportGrantForm(),
            "rows": [(grant, grant_state(grant)) for grant in grants],
            "link": link,
            "granted": granted,
        },
    )
    if link:
        response["Cache-Control"] = "no-store"  # the link is a credential: shown once
    return response


@login_required
def support(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The project's support grants; a new one (its one-time link shown on this response
    only). Granting access is a security change: it needs a fresh step-up."""
    owner = _owner(request, project_slug)
    if request.method != "POST":
        return _render_support(request, owner)
    if not is_fresh(request, minutes_for(project_slug)):
        return step_up_response(request)
    form = SupportGrantForm(request.POST)
    if not form.is_valid():
        return _render_support(request, owner, form)
    data = form.cleaned_data
    account = None
    if data["kind"] == "account":
        account = User.objects.filter(username__iexact=data["username"], is_support=True).first()
        if account is None:
            form.add_error("username", _("There is no support account with this username."))
            return _render_support(request, owner, form)
    try:
        grant, token = do_grant_support_access(
            owner.project,
            hours=data["hours"],
            reason=data["reason"],
            account=account,
            person=data["person"],
            read_only=not data["read_write"],
            may_see_phones=data["may_see_phones"],
            acting=owner,
        )
    except FieldErrors as exc:
        apply_field_errors(form, exc)
        return _render_support(request, owner, form)
    if not token:
        messages.success(
            request, _("Support access was granted to %(person)s.") % {"person": grant.person}
        )
        return redirect("accounts:support", project_slug=project_slug)
    link = request.build_absolute_uri(reverse("account:support_link", args=[token]))
    return _render_support(request, owner, link=link, granted=grant)


@login_required
@require_POST
def support_revoke(request: HttpRequest, project_slug: str, grant_id: int) -> HttpResponse:
    """End a grant now (no step-up: taking access away must never wait)."""
    owner = _owner(request, project_slug)
    grant = SupportGrant.objects.filter(project_id=owner.project_id, pk=grant_id).first()
    if grant is None:
        raise Http404
    do_revoke_support_access(grant, acting=owner)
    messages.success(
        request, _("Support access of %(person)s was revoked.") % {"person": grant.person}
    )
    return redirect("accounts:support", project_slug=project_slug)


def support_link(request: HttpRequest, token: str) -> HttpResponse:
    """A one-time support link. Opening it only shows what it opens (mail scanners and
    link previews fetch links); the button logs the person in and spends the link."""
    grant = usable_link(token)
    context: dict[str, object] = {"grant": grant}
    if grant is None:
        return _no_store(render(request, "accounts/support_link.html", context, status=404))
    if request.user.is_authenticated:
        # Someone already logged in (the owner trying the link?) would be logged out and
        # the link spent: they log out first, on purpose.
        context["logged_in"] = True
        return _no_store(render(request, "accounts/support_link.html", context))
    if request.method != "POST":
        return _no_store(render(request, "accounts/support_link.html", context))
    used = do_use_support_link(token)
    if used is None or used.user is None:
        return _no_store(render(request, "accounts/support_link.html", {"grant": None}, status=404))
    login(request, used.user, backend=LINK_BACKEND)
    # The person has just proved possession of the one-time link: that is their step-up (a
    # link account has no password and no second factor to step up with later).
    mark(request)
    return redirect("orders:list", project_slug=used.project.slug)


def _no_store(response: HttpResponse) -> HttpResponse:
    # The page's address is the link itself: no cache may keep it, and no other site may
    # see it as a referrer. (Not "no-referrer": the browser would then send "Origin: null"
    # with the button's POST, which the CSRF check rightly refuses.)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "same-origin"
    return response


@login_required
def notices(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The security notices are alerts now: one list for the owner, the alerts page."""
    _owner(request, project_slug)
    return redirect("guard:alerts", project_slug=project_slug)


project_urlpatterns = [
    path("support/", support, name="support"),
    path("support/<int:grant_id>/revoke/", support_revoke, name="support_revoke"),
    path("notices/", notices, name="notices"),
]
account_urlpatterns = [
    path("support/<str:token>/", support_link, name="support_link"),
]
