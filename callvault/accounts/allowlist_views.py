"""Allowed networks of the project, a member and an API key: one page each, the same form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.accounts.allowlist import (
    SelfLockout,
    do_add_network,
    do_remove_network,
    list_of,
    may_edit_list,
    only_posts_leads,
)
from callvault.accounts.forms import apply_field_errors
from callvault.accounts.models import ApiKey, Membership, access_membership
from callvault.accounts.stepup import is_fresh, minutes_for, step_up_response
from callvault.lib.clientip import client_ip
from callvault.lib.errors import FieldErrors


class NetworkForm(forms.Form):
    """A range to add: the CIDR and what it is."""

    network = forms.CharField(
        label=gettext_lazy("Network"),
        max_length=60,
        help_text=gettext_lazy("CIDR, IPv4 or IPv6: 192.0.2.0/24, 2001:db8::/32, or one address."),
    )
    label = forms.CharField(
        label=gettext_lazy("Label"),
        max_length=100,
        help_text=gettext_lazy("What it is, e.g. “Office, Tverskaya 7”."),
    )


def _scope(
    request: HttpRequest, project_slug: str, membership_id: int | None, key_id: int | None
) -> tuple[Membership, Membership | None, ApiKey | None]:
    """(acting member, target member or None, key or None); 404 for anyone who may not edit
    this list, as for a list that does not exist."""
    acting = access_membership(request.user, project_slug)
    target = None
    key = None
    if membership_id is not None:
        target = (
            Membership.objects.select_related("user")
            .filter(project_id=acting.project_id, pk=membership_id)
            .first()
        )
        if target is None:
            raise Http404
    if key_id is not None:
        key = ApiKey.objects.usable().filter(project_id=acting.project_id, pk=key_id).first()
        if key is None:
            raise Http404
    if not may_edit_list(acting, membership=target, api_key=key):
        raise Http404
    return acting, target, key


def _page(
    request: HttpRequest, project_slug: str, membership_id: int | None, key_id: int | None
) -> HttpResponse:
    acting, target, key = _scope(request, project_slug, membership_id, key_id)
    project = acting.project
    form = NetworkForm()
    lockout: dict[str, Any] | None = None
    if request.method == "POST":
        if not is_fresh(request, minutes_for(project_slug)):
            return step_up_response(request)
        ip = getattr(request, "client_ip", None) or client_ip(request)
        confirmed = request.POST.get("confirm_lockout") == "1"
        remove_id = request.POST.get("remove", "")
        if remove_id and not remove_id.isdigit():
            raise Http404
        try:
            if remove_id:
                row = list_of(project, membership=target, api_key=key).filter(pk=remove_id).first()
                if row is None:
                    raise Http404
                do_remove_network(row, acting=acting, from_ip=ip, confirmed=confirmed)
                messages.success(request, _("%(network)s was removed.") % {"network": row.network})
                return redirect(request.path)
            form = NetworkForm(request.POST)
            if form.is_valid():
                row, note = do_add_network(
                    project,
                    form.cleaned_data["network"],
                    form.cleaned_data["label"],
                    membership=target,
                    api_key=key,
                    acting=acting,
                    from_ip=ip,
                    confirmed=confirmed,
                )
                messages.success(request, _("%(network)s was added.") % {"network": row.network})
                if note:
                    messages.info(request, note)
                return redirect(request.path)
        except SelfLockout as exc:
            lockout = {"ip": exc.ip, "remove": remove_id}
        except FieldErrors as exc:
            if remove_id:  # no form behind a removal: say it above the list
                messages.error(request, " ".join(exc.errors.values()))
            else:
                apply_field_errors(form, exc)
    project_rows = list_of(project).order_by("network") if (target or key) else None
    context = {
        "member": acting,
        "project": project,
        "settings_section": "members" if target else ("api_keys" if key else "networks"),
        "target": target,
        "key": key,
        "rows": list_of(project, membership=target, api_key=key).order_by("network"),
        "project_rows": project_rows,
        "lead_only_key": key is not None and only_posts_leads(key),
        "form": form,
        "lockout": lockout,
        "your_ip": getattr(request, "client_ip", None) or client_ip(request),
    }
    return render(request, "accounts/networks.html", context)


@login_required
def networks(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The project's list: everyone's addresses (owners only)."""
    return _page(request, project_slug, None, None)


@login_required
def member_networks(request: HttpRequest, project_slug: str, membership_id: int) -> HttpResponse:
    """One member's extra ranges, on top of the project's."""
    return _page(request, project_slug, membership_id, None)


@login_required
def api_key_networks(request: HttpRequest, project_slug: str, key_id: int) -> HttpResponse:
    """A key's own ranges, which replace the project's for the key."""
    return _page(request, project_slug, None, key_id)


project_urlpatterns = [
    path("networks/", networks, name="networks"),
    path("members/<int:membership_id>/networks/", member_networks, name="member_networks"),
    path("api-keys/<int:key_id>/networks/", api_key_networks, name="api_key_networks"),
]
account_urlpatterns: list[URLPattern] = []
