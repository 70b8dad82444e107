"""Sessions (mine, and everyone's for owners), the lock screen, the policy page."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from callvault.accounts.allowlist import member_may_enter_from
from callvault.accounts.forms import apply_field_errors
from callvault.accounts.models import (
    MemberSession,
    Membership,
    Role,
    RolePolicy,
    SecurityPolicy,
    TwoFactorRule,
    User,
    access_membership,
)
from callvault.accounts.policy import (
    LIMITS,
    POLICY_FIELDS,
    do_update_role_policy,
    do_update_security_policy,
    policy_for,
)
from callvault.accounts.sessions import (
    device_label,
    do_revoke_session,
    do_unlock_session,
    is_locked,
)
from callvault.accounts.stepup import step_up_required
from callvault.lib.clientip import client_ip
from callvault.lib.errors import FieldErrors

# --- My sessions ----------------------------------------------------------------------------


def _me(request: HttpRequest) -> User:
    """The logged-in user (the views below are behind login_required)."""
    return cast(User, request.user)


def _rows(sessions: Any, current_key: str | None) -> list[dict[str, Any]]:
    return [
        {
            "session": s,
            "device": device_label(s.user_agent),
            "current": s.session_key == current_key,
        }
        for s in sessions
    ]


@login_required
def my_sessions(request: HttpRequest) -> HttpResponse:
    """The person's open sessions: device, address, since when, last seen; revoke others."""
    sessions = MemberSession.objects.filter(
        user_id=_me(request).pk, ended_at__isnull=True
    ).order_by("-last_seen_at")
    return render(
        request,
        "accounts/sessions_mine.html",
        {"rows": _rows(sessions, request.session.session_key)},
    )


@login_required
@require_POST
def my_session_revoke(request: HttpRequest, session_id: int) -> HttpResponse:
    """End one of the person's other sessions (this one ends by logging out)."""
    session = (
        MemberSession.objects.select_related("user")
        .filter(pk=session_id, user_id=_me(request).pk, ended_at__isnull=True)
        .exclude(session_key=request.session.session_key)
        .first()
    )
    if session is None:
        raise Http404
    do_revoke_session(session)
    messages.success(request, _("The session was ended."))
    return redirect("account:my_sessions")


@login_required
@require_POST
def my_sessions_revoke_others(request: HttpRequest) -> HttpResponse:
    """End every session of the person but this one."""
    others = (
        MemberSession.objects.select_related("user")
        .filter(user_id=_me(request).pk, ended_at__isnull=True)
        .exclude(session_key=request.session.session_key)
    )
    with transaction.atomic():
        ended = sum(do_revoke_session(s) for s in others)
    messages.success(request, _("Other sessions ended: %(count)d.") % {"count": ended})
    return redirect("account:my_sessions")


# --- The lock screen ------------------------------------------------------------------------


class UnlockForm(forms.Form):
    """The password again; a second factor is not asked (see docs/security.md)."""

    password = forms.CharField(
        label=gettext_lazy("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("home")


def unlock(request: HttpRequest) -> HttpResponse:
    """The lock screen: the password opens the session again (and counts as a step-up).

    Failures go through `authenticate`, so django-axes counts them like failed logins."""
    if not request.user.is_authenticated:
        return redirect("login")
    next_url = _next_url(request)
    form = UnlockForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = authenticate(
            request,
            username=request.user.get_username(),
            password=form.cleaned_data["password"],
        )
        if user is not None and user.pk == request.user.pk:
            do_unlock_session(request)
            return redirect(next_url)
        form.add_error("password", _("Wrong password."))
    # The lock screen must not lock itself again.
    request.idle_lock_seconds = None  # type: ignore[attr-defined]
    status = 423 if is_locked(request) else 200
    return render(
        request,
        "accounts/lock_screen.html",
        {"form": form, "next": next_url, "locked": is_locked(request)},
        status=status,
    )


@require_POST
def idle_ping(request: HttpRequest) -> JsonResponse:
    """The page says its person is still at the keyboard (the request itself is the activity;
    the middleware records it). Answers whether the session is locked."""
    if not request.user.is_authenticated:
        return JsonResponse({"locked": False, "logged_in": False}, status=401)
    return JsonResponse({"locked": is_locked(request), "logged_in": True})


# --- The owner's sessions page --------------------------------------------------------------


def _owner(request: HttpRequest, project_slug: str) -> Membership:
    member = access_membership(request.user, project_slug)
    if member.role != Role.OWNER:
        raise Http404
    return member


@login_required
def sessions(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The open sessions of the project's members (one member's with ?member=<id>)."""
    owner = _owner(request, project_slug)
    memberships = Membership.objects.filter(project_id=owner.project_id).select_related("user")
    chosen = None
    if request.GET.get("member", "").isdigit():
        chosen = memberships.filter(pk=int(request.GET["member"])).first()
        if chosen is None:
            raise Http404
    users = [chosen.user_id] if chosen else memberships.values_list("user_id", flat=True)
    open_sessions = (
        MemberSession.objects.filter(user_id__in=users, ended_at__isnull=True)
        .select_related("user")
        .order_by("user__username", "-last_seen_at")
    )
    return render(
        request,
        "accounts/sessions_project.html",
        {
            "member": owner,
            "project": owner.project,
            "settings_section": "sessions",
            "rows": _rows(open_sessions, request.session.session_key),
            "memberships": memberships.order_by("user__username"),
            "chosen": chosen,
        },
    )


@login_required
@require_POST
def session_revoke(request: HttpRequest, project_slug: str, session_id: int) -> HttpResponse:
    """An owner ends a session of one of the project's members."""
    owner = _owner(request, project_slug)
    session = (
        MemberSession.objects.select_related("user")
        .filter(
            pk=session_id,
            ended_at__isnull=True,
            user__memberships__project_id=owner.project_id,
        )
        .first()
    )
    if session is None:
        raise Http404
    do_revoke_session(session, acting=owner)
    messages.success(
        request, _("The session of %(user)s was ended.") % {"user": session.user.username}
    )
    target = reverse("accounts:sessions", args=[project_slug])
    member = request.POST.get("member", "")
    return redirect(f"{target}?member={member}" if member.isdigit() else target)


# --- The security policy page ---------------------------------------------------------------


class SecurityPolicyForm(forms.ModelForm):  # type: ignore[type-arg]
    """The project's rules; bounds are checked by the action and shown by field."""

    class Meta:
        model = SecurityPolicy
        fields = POLICY_FIELDS
        help_texts = {
            "password_max_age_days": gettext_lazy(
                "Empty: passwords do not expire (recommended, see below)."
            ),
            "session_max_hours": gettext_lazy("A session ends this long after the login."),
            "step_up_minutes": gettext_lazy(
                "How long a re-entered password is enough for sensitive actions."
            ),
        }


class RolePolicyForm(forms.Form):
    """One role's second-factor rule and idle lock."""

    two_factor = forms.ChoiceField(label=gettext_lazy("Second factor"), choices=TwoFactorRule)
    idle_minutes = forms.IntegerField(
        label=gettext_lazy("Lock after idle, minutes"),
        min_value=LIMITS["idle_minutes"][0],
        max_value=LIMITS["idle_minutes"][1],
    )
    networks_required = forms.BooleanField(
        label=gettext_lazy("Only from the allowed networks"), required=False
    )


def _role_forms(project_id: int, data: Any = None) -> list[tuple[RolePolicy, RolePolicyForm]]:
    rows = {r.role: r for r in RolePolicy.objects.filter(project_id=project_id)}
    return [
        (
            rows[role],
            RolePolicyForm(
                data,
                prefix=role,
                initial={
                    "two_factor": rows[role].two_factor,
                    "idle_minutes": rows[role].idle_minutes,
                    "networks_required": rows[role].networks_required,
                },
            ),
        )
        for role in Role.values
        if role in rows
    ]


def _translated(exc: FieldErrors) -> FieldErrors:
    """The action's messages name the bounds in English; say it in the reader's language."""
    errors = {}
    for name, message in exc.errors.items():
        if name in LIMITS:
            low, high = LIMITS[name]
            message = _("Must be between %(low)d and %(high)d.") % {"low": low, "high": high}
        errors[name] = message
    return FieldErrors(errors)


SELF_LOCKOUT = gettext_lazy(
    "Your address is outside the allowed networks: with this your own role could not come in "
    "any more. Add your address on the Allowed networks page first."
)


@login_required
def security(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The owner edits the project's security policy and the rules per role (after step-up;
    others get 404 before being asked to prove anything)."""
    return _security_page(request, _owner(request, project_slug), project_slug=project_slug)


@step_up_required
def _security_page(request: HttpRequest, owner: Membership, *, project_slug: str) -> HttpResponse:
    policy = policy_for(owner.project)
    data = request.POST if request.method == "POST" else None
    form = SecurityPolicyForm(data, instance=policy)
    role_forms = _role_forms(owner.project_id, data)
    if data is not None and form.is_valid() and all(f.is_valid() for _r, f in role_forms):
        current: forms.BaseForm = form
        try:
            with transaction.atomic():
                do_update_security_policy(
                    policy, **{name: form.cleaned_data[name] for name in POLICY_FIELDS}
                )
                for row, role_form in role_forms:
                    current = role_form
                    do_update_role_policy(row, **role_form.cleaned_data)
                # "Only from the allowed networks" for the owner's own role, saved from
                # outside them, would shut the owner out at the next click: refuse it.
                owner.refresh_from_db()
                if not member_may_enter_from(owner, client_ip(request)):
                    current = next(f for r, f in role_forms if r.role == owner.role)
                    raise FieldErrors.one("networks_required", str(SELF_LOCKOUT))
        except FieldErrors as exc:
            apply_field_errors(current, _translated(exc))
        else:
            messages.success(request, _("The security policy was saved."))
            return redirect("accounts:security", project_slug=project_slug)
    return render(
        request,
        "accounts/security_policy.html",
        {
            "member": owner,
            "project": owner.project,
            "settings_section": "security",
            "form": form,
            "role_forms": role_forms,
        },
    )


project_urlpatterns = [
    path("sessions/", sessions, name="sessions"),
    path("sessions/<int:session_id>/revoke/", session_revoke, name="session_revoke"),
    path("security/", security, name="security"),
]
account_urlpatterns = [
    path("sessions/", my_sessions, name="my_sessions"),
    path("sessions/<int:session_id>/revoke/", my_session_revoke, name="my_session_revoke"),
    path("sessions/revoke-others/", my_sessions_revoke_others, name="my_sessions_revoke_others"),
    path("unlock/", unlock, name="unlock"),
    path("unlock/ping/", idle_ping, name="idle_ping"),
]
