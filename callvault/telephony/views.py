"""Telephony pages for members who may manage the project: the provider's settings with a
checklist, the PBXs (a secret shown once) and the operators' SIP accounts (a password shown
once). Everyone else gets the same 404 as for a page that does not exist; changing anything
here needs a fresh step-up, as other security settings do.

A PBX's secret and a SIP account each open numbers (the token lookup, the caller lookup),
and the provider's settings say where numbers are sent: the PBX and SIP account pages, and
the provider's part of the settings, are for members who may also see phone numbers
(setup_actions.may_route_calls); others see the settings with those fields disabled."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from callvault.accounts.forms import apply_field_errors
from callvault.accounts.models import Membership, access_membership
from callvault.accounts.stepup import step_up_required
from callvault.lib.errors import FieldErrors
from callvault.telephony.forms import PbxForm, SipAccountForm, TelephonySettingsForm
from callvault.telephony.models import Pbx, ProviderKind, SipAccount, TelephonySettings
from callvault.telephony.providers import provider_for
from callvault.telephony.setup_actions import (
    do_create_pbx,
    do_create_sip_account,
    do_disable_sip_account,
    do_revoke_pbx,
    do_update_telephony_settings,
    may_route_calls,
    settings_for,
)


def access_manager(user: Any, project_slug: str) -> Membership:
    """The user's membership if they may manage the project; 404 otherwise."""
    member = access_membership(user, project_slug)
    if not member.can_manage_project:
        raise Http404  # not told the page exists
    return member


def access_router(user: Any, project_slug: str) -> Membership:
    """The user's membership if they may decide where calls go (manage the project and see
    phone numbers); 404 otherwise."""
    member = access_manager(user, project_slug)
    if not may_route_calls(member):
        raise Http404
    return member


def _page(
    request: HttpRequest, member: Membership, template: str, section: str, **context: Any
) -> HttpResponse:
    response = render(
        request,
        f"telephony/{template}",
        {
            "member": member,
            "project": member.project,
            "settings_section": "telephony",
            "telephony_section": section,
            "may_route": may_route_calls(member),
            **context,
        },
    )
    if context.get("secret") or context.get("password"):
        response["Cache-Control"] = "no-store"  # shown on this response only
    return response


def checklist(member: Membership, settings: TelephonySettings) -> list[tuple[str, bool]]:
    """What calling through the chosen provider still needs, item by item."""
    provider = provider_for(settings.provider)
    items = [(_("A provider is chosen"), provider is not None)]
    if provider is None:
        return items
    missing = provider.missing(settings)
    items.append(
        (
            _("Its settings are complete")
            if not missing
            else _("Missing: %(what)s") % {"what": ", ".join(missing)},
            not missing,
        )
    )
    pbxs = Pbx.objects.filter(project_id=member.project_id, revoked_at__isnull=True)
    needs_pbx = settings.provider == ProviderKind.SIP_TOKEN
    items.append(
        (
            _("A PBX or SIP proxy with a secret (token lookup, call events, inbound)"),
            pbxs.exists() or not needs_pbx,
        )
    )
    unlisted = pbxs.filter(networks="").count()
    if unlisted:
        # Added before allowed addresses were required: refused until added again.
        items.append(
            (
                _(
                    "PBXs without allowed addresses are refused: add them again with their "
                    "addresses (%(count)s)"
                )
                % {"count": unlisted},
                False,
            )
        )
    callers = Membership.objects.active().filter(project_id=member.project_id, can_edit_orders=True)
    without = callers.exclude(sip_account__is_active=True).count()
    items.append(
        (
            _("Every member who calls has a SIP account (%(count)s without)") % {"count": without},
            without == 0,
        )
    )
    return items


@login_required
def telephony_settings(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The provider and its settings, inbound calls, recordings; the checklist."""
    return _settings(request, access_manager(request.user, project_slug), project_slug=project_slug)


@step_up_required
def _settings(request: HttpRequest, member: Membership, *, project_slug: str) -> HttpResponse:
    current = settings_for(member.project)
    may_route = may_route_calls(member)
    form = TelephonySettingsForm(request.POST or None, instance=current, may_route=may_route)
    if request.method == "POST" and form.is_valid():
        try:
            do_update_telephony_settings(
                member.project, form.values(), secret=form.new_secret(), acting=member
            )
        except FieldErrors as exc:
            apply_field_errors(form, exc, {"cloud_headers": "cloud_headers_text"})
        else:
            messages.success(request, _("The telephony settings were saved."))
            return redirect("telephony:settings", project_slug=project_slug)
    current = settings_for(member.project)  # a failed save may have changed the instance
    return _page(
        request,
        member,
        "settings.html",
        "settings",
        form=form,
        checklist=checklist(member, current),
        has_secret=bool(current.secret_sealed),
    )


def _pbx_page(
    request: HttpRequest, member: Membership, form: PbxForm, secret: str = ""
) -> HttpResponse:
    pbxs = Pbx.objects.filter(project_id=member.project_id).order_by("revoked_at", "name", "id")
    return _page(request, member, "pbxs.html", "pbxs", form=form, pbxs=pbxs, secret=secret)


@login_required
def pbxs(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The PBXs allowed to ask about calls; add one (its secret is shown once)."""
    return _pbxs(request, access_router(request.user, project_slug), project_slug=project_slug)


@step_up_required
def _pbxs(request: HttpRequest, member: Membership, *, project_slug: str) -> HttpResponse:
    form = PbxForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            _pbx, secret = do_create_pbx(
                member.project,
                form.cleaned_data["name"],
                networks=form.cleaned_data["networks"],
                acting=member,
            )
        except FieldErrors as exc:
            apply_field_errors(form, exc)
        else:
            return _pbx_page(request, member, PbxForm(), secret=secret)
    return _pbx_page(request, member, form)


@login_required
@require_POST
def pbx_revoke(request: HttpRequest, project_slug: str, pbx_id: int) -> HttpResponse:
    """Revoke a PBX's secret."""
    member = access_router(request.user, project_slug)
    return _revoke(request, member, project_slug=project_slug, pbx_id=pbx_id)


@step_up_required
def _revoke(
    request: HttpRequest, member: Membership, *, project_slug: str, pbx_id: int
) -> HttpResponse:
    pbx = Pbx.objects.filter(project_id=member.project_id, pk=pbx_id).first()
    if pbx is None:
        raise Http404
    do_revoke_pbx(pbx, acting=member)
    messages.success(
        request, _("The PBX “%(name)s” can no longer ask about calls.") % {"name": pbx.name}
    )
    return redirect("telephony:pbxs", project_slug=project_slug)


def _members(member: Membership) -> QuerySet[Membership]:
    return (
        Membership.objects.active()
        .filter(project_id=member.project_id)
        .select_related("user")
        .order_by("user__username")
    )


def _sip_page(
    request: HttpRequest,
    member: Membership,
    form: SipAccountForm,
    *,
    password: str = "",
    account: SipAccount | None = None,
) -> HttpResponse:
    accounts = SipAccount.objects.filter(project_id=member.project_id).select_related(
        "membership__user"
    )
    return _page(
        request,
        member,
        "sip_accounts.html",
        "sip_accounts",
        form=form,
        accounts=accounts.order_by("-is_active", "username"),
        password=password,
        new_account=account,
        sip_domain=settings_for(member.project).sip_domain,
    )


@login_required
def sip_accounts(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The members' softphone accounts; create one (its password is shown once)."""
    member = access_router(request.user, project_slug)
    return _sip_accounts(request, member, project_slug=project_slug)


@step_up_required
def _sip_accounts(request: HttpRequest, member: Membership, *, project_slug: str) -> HttpResponse:
    form = SipAccountForm(request.POST or None, members=_members(member))
    if request.method == "POST" and form.is_valid():
        try:
            account, password = do_create_sip_account(
                form.cleaned_data["membership"], form.cleaned_data["username"], acting=member
            )
        except FieldErrors as exc:
            apply_field_errors(form, exc)
        else:
            blank = SipAccountForm(members=_members(member))
            return _sip_page(request, member, blank, password=password, account=account)
    return _sip_page(request, member, form)


@login_required
@require_POST
def sip_account_disable(request: HttpRequest, project_slug: str, account_id: int) -> HttpResponse:
    """Disable a SIP account."""
    member = access_router(request.user, project_slug)
    return _disable(request, member, project_slug=project_slug, account_id=account_id)


@step_up_required
def _disable(
    request: HttpRequest, member: Membership, *, project_slug: str, account_id: int
) -> HttpResponse:
    account = SipAccount.objects.filter(project_id=member.project_id, pk=account_id).first()
    if account is None:
        raise Http404
    do_disable_sip_account(account, acting=member)
    messages.success(
        request,
        _("SIP account %(user)s is disabled: export the subscribers to the proxy again.")
        % {"user": account.username},
    )
    return redirect("telephony:sip_accounts", project_slug=project_slug)


urlpatterns = [
    path("settings/", telephony_settings, name="settings"),
    path("pbxs/", pbxs, name="pbxs"),
    path("pbxs/<int:pbx_id>/revoke/", pbx_revoke, name="pbx_revoke"),
    path("sip-accounts/", sip_accounts, name="sip_accounts"),
    path("sip-accounts/<int:account_id>/disable/", sip_account_disable, name="sip_account_disable"),
]
