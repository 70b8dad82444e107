"""The owner's quota and suspension pages; every change needs a fresh step-up."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from callvault.accounts.models import ApiKey, Membership, Role, access_membership
from callvault.accounts.stepup import is_fresh, minutes_for, step_up_response
from callvault.guard.models import QuotaKind, QuotaRule, Suspension
from callvault.guard.quotas import do_lift_suspension, do_set_quota
from callvault.lib.errors import FieldErrors

# The role table's columns (owners get no quota by default, but an owner may set one).
ROLES = [Role.OWNER, Role.ADMIN, Role.SUPERVISOR, Role.OPERATOR, Role.TRAINEE]
MEMBER_KINDS = [k for k in QuotaKind if k != QuotaKind.API_READ]


def _owner(request: HttpRequest, project_slug: str) -> Membership:
    """The acting owner; 404 for everyone else, as for a page that does not exist."""
    member = access_membership(request.user, project_slug)
    if member.role != Role.OWNER:
        raise Http404
    return member


def _limit(text: str) -> int | None:
    """A limit from a form field: empty is None (no quota); anything else a whole number."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise FieldErrors.one("limit", _("Enter a whole number, or leave it empty."))
    return int(text)


def _rules(project_id: int) -> list[QuotaRule]:
    return list(
        QuotaRule.objects.filter(project_id=project_id)
        .select_related("membership__user", "api_key")
        .order_by("kind", "pk")
    )


def _role_table(rules: list[QuotaRule]) -> list[dict[str, Any]]:
    by_target = {
        (r.kind, r.role): r.limit for r in rules if not r.membership_id and not r.api_key_id
    }
    return [
        {
            "kind": kind,
            "cells": [
                {"name": f"limit-{kind.value}-{role.value}", "limit": by_target.get((kind, role))}
                for role in ROLES
            ],
        }
        for kind in MEMBER_KINDS
    ] + [
        {
            "kind": QuotaKind.API_READ,
            "cells": [
                {
                    "name": "limit-api_read-",
                    "limit": by_target.get((QuotaKind.API_READ, "")),
                }
            ],
        }
    ]


@login_required
def quotas(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Quotas per role and kind, members' and API keys' own quotas."""
    acting = _owner(request, project_slug)
    project = acting.project
    rules = _rules(project.pk)
    return render(
        request,
        "guard/quotas.html",
        {
            "member": acting,
            "project": project,
            "settings_section": "quotas",
            "roles": [(r.value, r.label) for r in ROLES],
            "table": _role_table(rules),
            "member_rules": [r for r in rules if r.membership_id],
            "key_rules": [r for r in rules if r.api_key_id],
            "member_kinds": MEMBER_KINDS,
            "members": Membership.objects.filter(project=project, is_active=True)
            .exclude(role=Role.OWNER)
            .select_related("user")
            .order_by("user__username"),
            "keys": ApiKey.objects.usable().filter(project=project).order_by("name"),
        },
    )


def _changing(request: HttpRequest, project_slug: str) -> Membership | HttpResponse:
    """The acting owner of a change, or the step-up detour when their proof is stale."""
    acting = _owner(request, project_slug)
    if not is_fresh(request, minutes_for(project_slug)):
        return step_up_response(request)
    return acting


@login_required
@require_POST
def quota_roles(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Save the role table: each changed cell is one recorded change."""
    acting = _changing(request, project_slug)
    if isinstance(acting, HttpResponse):
        return acting
    current = {
        (r.kind, r.role): r.limit
        for r in _rules(acting.project_id)
        if not r.membership_id and not r.api_key_id
    }
    try:
        wanted = {
            (kind, role): _limit(request.POST.get(f"limit-{kind}-{role}", ""))
            for kind, role in [(k.value, r.value) for k in MEMBER_KINDS for r in ROLES]
            + [(QuotaKind.API_READ.value, "")]
        }
    except FieldErrors as exc:
        messages.error(request, exc.errors["limit"])
        return redirect("guard:quotas", project_slug)
    changed = 0
    for (kind, role), limit in wanted.items():
        if current.get((kind, role)) != limit:
            do_set_quota(acting.project, kind, limit, role=role, acting=acting)
            changed += 1
    if changed:
        messages.success(request, _("The quotas were saved."))
    return redirect("guard:quotas", project_slug)


@login_required
@require_POST
def quota_override(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Set or remove one member's or one API key's own quota."""
    acting = _changing(request, project_slug)
    if isinstance(acting, HttpResponse):
        return acting
    project = acting.project
    target: dict[str, Any] = {}
    member_id, key_id = request.POST.get("membership", ""), request.POST.get("api_key", "")
    if member_id.isdigit():
        found = Membership.objects.filter(project=project, pk=member_id).first()
        if found is None:
            raise Http404
        target["membership"] = found
        kind = request.POST.get("kind", "")
    elif key_id.isdigit():
        key = ApiKey.objects.filter(project=project, pk=key_id).first()
        if key is None:
            raise Http404
        target["api_key"] = key
        kind = QuotaKind.API_READ
    else:
        raise Http404
    try:
        limit = None if "remove" in request.POST else _limit(request.POST.get("limit", ""))
        if limit is None and "remove" not in request.POST:
            raise FieldErrors.one("limit", _("Enter a limit."))
        do_set_quota(project, kind, limit, acting=acting, **target)
    except FieldErrors as exc:
        messages.error(request, " ".join(exc.errors.values()))
    else:
        messages.success(request, _("The quota was saved."))
    return redirect("guard:quotas", project_slug)


@login_required
def suspensions(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Members suspended after a hard quota breach: current ones first, then the past."""
    acting = _owner(request, project_slug)
    rows = list(
        Suspension.objects.filter(project_id=acting.project_id)
        .select_related("membership__user", "lifted_by")
        .order_by("-started_at", "-pk")[:200]
    )
    return render(
        request,
        "guard/suspensions.html",
        {
            "member": acting,
            "project": acting.project,
            "settings_section": "suspensions",
            "active": [r for r in rows if r.lifted_at is None],
            "past": [r for r in rows if r.lifted_at is not None],
        },
    )


@login_required
@require_POST
def suspension_lift(request: HttpRequest, project_slug: str, suspension_id: int) -> HttpResponse:
    """The owner has reviewed the member: they may work again."""
    acting = _changing(request, project_slug)
    if isinstance(acting, HttpResponse):
        return acting
    row = Suspension.objects.filter(project_id=acting.project_id, pk=suspension_id).first()
    if row is None:
        raise Http404
    try:
        do_lift_suspension(row, acting=acting)
    except FieldErrors as exc:
        messages.error(request, " ".join(exc.errors.values()))
    else:
        messages.success(
            request,
            _("%(user)s may work again.") % {"user": row.membership.user.username},
        )
    return redirect("guard:suspensions", project_slug)


urlpatterns = [
    path("quotas/", quotas, name="quotas"),
    path("quotas/roles/", quota_roles, name="quota_roles"),
    path("quotas/own/", quota_override, name="quota_override"),
    path("suspensions/", suspensions, name="suspensions"),
    path("suspensions/<int:suspension_id>/lift/", suspension_lift, name="suspension_lift"),
]
