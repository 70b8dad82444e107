"""Allowed networks: which addresses a member (or an API key) may come from.

A member may come from the project's ranges and the member's own ranges; with neither, from
anywhere. An API key with ranges of its own is held to those; without, to the project's
(except a key that may only post leads: see `key_may_enter_from`).

Enforced on every request by `AllowListMiddleware` (a login included: the request that has
just authenticated a refused user leaves no session behind) and on every API key use by
`callvault/api.py`. The address is always the one client-IP function's (lib/clientip.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth import logout
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.accounts.actions import may_manage
from callvault.accounts.models import (
    AllowedNetwork,
    ApiKey,
    Membership,
    Project,
    Role,
    RolePolicy,
    SecurityNotice,
)
from callvault.accounts.notices import notify_owners
from callvault.audit.context import Actor, acting_as
from callvault.audit.recorder import record_event
from callvault.lib.clientip import client_ip
from callvault.lib.errors import FieldErrors
from callvault.vault.logfilter import redact

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

AUDIT_ACTIONS = {
    "allowed_network.add": gettext_lazy("Allowed network added"),
    "allowed_network.remove": gettext_lazy("Allowed network removed"),
    "auth.ip_refused": gettext_lazy("Refused: address not allowed"),
}

# One notice per person (or key) and address per project in this time: a script retrying a
# refused request must not bury the owner's page, and one notice already says it all.
NOTICE_INTERVAL = timedelta(hours=1)
REFUSED_NOTICE = "refused_address"


def parse_networks(specs: Iterable[str]) -> list[IPNetwork]:
    """CIDR strings as networks (a bare address is a /32 or /128)."""
    return [ipaddress.ip_network(spec, strict=False) for spec in specs]


def address_in(ip: str, networks: Iterable[IPNetwork]) -> bool:
    """Whether the address lies in any of the networks (IPv4-mapped IPv6 counts as IPv4)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)


def member_networks(member: Membership) -> list[IPNetwork]:
    """The project's ranges and the member's own."""
    listed = Q(membership__isnull=True, api_key__isnull=True)
    if member.pk is not None:  # a support grant's membership is never saved: no own ranges
        listed |= Q(membership_id=member.pk)
    specs = AllowedNetwork.objects.filter(project_id=member.project_id).filter(listed)
    return parse_networks(specs.values_list("network", flat=True))


def held_to_networks(user_id: int, project_ids: Iterable[int]) -> set[int]:
    """Of these projects, those that hold the user to their networks: the user's role there
    must work from them (RolePolicy.networks_required), or the user has ranges of their own."""
    ids = list(project_ids)
    own = AllowedNetwork.objects.filter(membership__user_id=user_id, project_id__in=ids)
    by_role = RolePolicy.objects.filter(
        project_id__in=ids,
        networks_required=True,
        project__memberships__user_id=user_id,
        project__memberships__is_active=True,
        role=F("project__memberships__role"),
    )
    return set(own.values_list("project_id", flat=True)) | set(
        by_role.values_list("project_id", flat=True)
    )


def key_networks(key: ApiKey) -> list[IPNetwork]:
    """The key's own ranges, or else the project's."""
    own = list(AllowedNetwork.objects.filter(api_key_id=key.pk).values_list("network", flat=True))
    if own:
        return parse_networks(own)
    project = AllowedNetwork.objects.filter(
        project_id=key.project_id, membership__isnull=True, api_key__isnull=True
    )
    return parse_networks(project.values_list("network", flat=True))


def member_may_enter_from(member: Membership, ip: str) -> bool:
    """Whether the member may work from this address: inside the ranges, or from anywhere
    when there are none or the member's role need not work from them."""
    networks = member_networks(member)
    if not networks or address_in(ip, networks):
        return True
    if member.pk is None:  # support: held to the project's ranges by the role's rule
        return not RolePolicy.objects.filter(
            project_id=member.project_id, role=member.role, networks_required=True
        ).exists()
    return member.project_id not in held_to_networks(member.user_id, [member.project_id])


def inside_allowed_networks(member: Membership, ip: str) -> bool:
    """Whether the address is inside ranges the owner named (for "second factor only
    outside the allowed networks": with no ranges, everywhere is outside)."""
    networks = member_networks(member)
    return bool(networks) and address_in(ip, networks)


def only_posts_leads(key: ApiKey) -> bool:
    """A key that may post leads and nothing else (the kind landing pages use)."""
    return not (key.can_read_orders or key.can_update_orders or key.can_read_audit)


def key_may_enter_from(key: ApiKey, ip: str) -> bool:
    """Whether the key may be used from this address.

    A key with ranges of its own is held to them. Without, it is held to the project's list,
    except a key that may only post leads: landing pages post from their visitors' browsers,
    anywhere on the internet, and an office allow-list must not silently stop the orders;
    such a key reads nothing, and it can still be given ranges of its own (a partner's server).
    """
    own = AllowedNetwork.objects.filter(api_key_id=key.pk).exists()
    if not own and only_posts_leads(key):
        return True
    networks = key_networks(key)
    return not networks or address_in(ip, networks)


# --- Changing the lists ---------------------------------------------------------------------


def normalise_network(spec: str) -> tuple[str, str]:
    """The CIDR as stored, and a note for the person when it differs from what they typed
    in more than spelling (host bits cleared, an IPv4-mapped IPv6 range written as IPv4)."""
    text = spec.strip()
    if not text:
        raise FieldErrors.one("network", _("Enter a network, e.g. 192.0.2.0/24 or 2001:db8::/32."))
    try:
        net: IPNetwork = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise FieldErrors.one(
            "network",
            _("“%(value)s” is not a network: write it as 192.0.2.0/24 or 2001:db8::/32.")
            % {"value": text[:60]},
        ) from None
    note = ""
    try:
        ipaddress.ip_network(text)  # strict: refuses host bits
    except ValueError:
        note = _("Host bits were set in %(value)s: saved as %(network)s.") % {
            "value": text[:60],
            "network": str(net),
        }
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            net = ipaddress.IPv4Network(f"{mapped}/{net.prefixlen - 96}")
            note = _("%(value)s is an IPv4-mapped range: saved as %(network)s.") % {
                "value": text[:60],
                "network": str(net),
            }
    return str(net), note


class SelfLockout(FieldErrors):
    """Saving would refuse the address the acting member is saving from."""

    def __init__(self, ip: str) -> None:
        super().__init__({"confirm_lockout": "would refuse your own address"})
        self.ip = ip


def list_of(
    project: Project, *, membership: Membership | None = None, api_key: ApiKey | None = None
) -> QuerySet[AllowedNetwork]:
    """The rows of one list: the project's, a member's or a key's."""
    rows = AllowedNetwork.objects.filter(project=project)
    if membership is not None:
        return rows.filter(membership=membership)
    if api_key is not None:
        return rows.filter(api_key=api_key)
    return rows.filter(membership__isnull=True, api_key__isnull=True)


def may_edit_list(
    acting: Membership, *, membership: Membership | None = None, api_key: ApiKey | None = None
) -> bool:
    """The project's list and a member's: owners (a member's ranges add to the project's, so
    whoever may edit them may undo the owner's "only from the office"); a key's: whoever may
    manage API keys."""
    if not acting.is_active:
        return False
    if membership is not None:
        return acting.role == Role.OWNER and may_manage(acting, membership)
    if api_key is not None:
        return acting.can_manage_api_keys and api_key.project_id == acting.project_id
    return acting.role == Role.OWNER


def _check_lockout(
    acting: Membership, ip: str | None, row: AllowedNetwork, *, adding: bool, confirmed: bool
) -> None:
    """Refuse a change that would shut the acting member out from `ip` unless confirmed."""
    if confirmed or not ip or row.api_key_id is not None:
        return
    if row.membership_id not in (None, acting.pk):
        return
    before = member_networks(acting)
    changed = ipaddress.ip_network(row.network)
    after = [*before, changed] if adding else [net for net in before if net != changed]
    allowed_before = not before or address_in(ip, before)
    if allowed_before and after and not address_in(ip, after):
        raise SelfLockout(ip)


def _describe(row: AllowedNetwork) -> dict[str, Any]:
    """Which list a row belongs to, for the record."""
    if row.membership is not None:
        return {"list": "member", "member": row.membership.user.username}
    if row.api_key_id is not None:
        return {"list": "api_key", "api_key": str(row.api_key)}
    return {"list": "project"}


@transaction.atomic
def do_add_network(
    project: Project,
    network: str,
    label: str,
    *,
    membership: Membership | None = None,
    api_key: ApiKey | None = None,
    acting: Membership | None = None,
    from_ip: str | None = None,
    confirmed: bool = False,
) -> tuple[AllowedNetwork, str]:
    """Add a range to the project's list, a member's or a key's; returns the row and a note
    when the range was normalised. An acting member saving from `from_ip` must confirm a
    change that would refuse that address for themselves (SelfLockout)."""
    if membership is not None and api_key is not None:
        raise ValueError("a range belongs to a member or to a key, not both")
    for owner_row in (membership, api_key):
        if owner_row is not None and owner_row.project_id != project.pk:
            raise FieldErrors.one("member", _("This belongs to another project."))
    if acting is not None and (
        acting.project_id != project.pk
        or not may_edit_list(acting, membership=membership, api_key=api_key)
    ):
        raise FieldErrors.one("member", _("You may not change this list."))
    stored, note = normalise_network(network)
    label = label.strip()
    if not label or len(label) > 100:
        raise FieldErrors.one("label", _("Give the range a label of 1 to 100 characters."))
    existing = list_of(project, membership=membership, api_key=api_key)
    if existing.filter(network=stored).exists():
        raise FieldErrors.one(
            "network", _("%(network)s is already in this list.") % {"network": stored}
        )
    row = AllowedNetwork(
        project=project, membership=membership, api_key=api_key, network=stored, label=label
    )
    if acting is not None:
        _check_lockout(acting, from_ip, row, adding=True, confirmed=confirmed)
    row.save()
    record_event(
        "allowed_network.add",
        project_id=project.pk,
        object_type="allowed_network",
        object_id=row.pk,
        object_repr=f"{stored} ({label})",
        changes={"network": [None, stored], "label": [None, label]},
        extra={**_describe(row), **({"lockout_confirmed": True} if confirmed else {})},
    )
    return row, note


@transaction.atomic
def do_remove_network(
    row: AllowedNetwork,
    *,
    acting: Membership | None = None,
    from_ip: str | None = None,
    confirmed: bool = False,
) -> None:
    """Remove a range (with the same self-lockout check as adding one)."""
    if acting is not None:
        if row.project_id != acting.project_id or not may_edit_list(
            acting, membership=row.membership, api_key=row.api_key
        ):
            raise FieldErrors.one("member", _("You may not change this list."))
        _check_lockout(acting, from_ip, row, adding=False, confirmed=confirmed)
    described = _describe(row)
    row_id = row.pk
    AllowedNetwork.objects.filter(pk=row_id).delete()
    # After the delete: on SQLite the event claims the change its trigger has just parked.
    record_event(
        "allowed_network.remove",
        project_id=row.project_id,
        object_type="allowed_network",
        object_id=row_id,
        object_repr=f"{row.network} ({row.label})",
        changes={"network": [row.network, None], "label": [row.label, None]},
        extra={**described, **({"lockout_confirmed": True} if confirmed else {})},
    )


# --- Refusals -------------------------------------------------------------------------------


def notify_refused(project_id: int, who: str, ip: str, *, event_id: int | None) -> bool:
    """Tell the project's owners, at most once per person and address in NOTICE_INTERVAL;
    whether a notice was made."""
    recent = SecurityNotice.objects.filter(
        project_id=project_id,
        kind=REFUSED_NOTICE,
        params__user=who,
        params__ip=ip,
        created_at__gte=timezone.now() - NOTICE_INTERVAL,
    )
    if recent.exists():
        return False
    notify_owners(project_id, REFUSED_NOTICE, {"user": who, "ip": ip}, event_id=event_id)
    return True


def refuse_key(key: ApiKey, ip: str) -> None:
    """Record and report a key used from outside its ranges (the caller answers 403)."""
    event = record_event(
        "api_key.refused",
        project_id=key.project_id,
        object_type="api_key",
        object_id=key.pk,
        object_repr=str(key),
        extra={"prefix": key.prefix, "reason": "address", "ip": ip},
    )
    notify_refused(key.project_id, f"cvk_{key.prefix}_… ({key.name})", ip, event_id=event.pk)


PROJECT_PATH = re.compile(r"^/p/(?P<slug>[-\w]+)/")


def _ranges_by_project(user_id: int, slug: str | None) -> dict[int, list[str]]:
    """The ranges that apply to the user, per project of an active membership (the project's
    list and the user's own): one query, which every request of a logged-in person pays."""
    rows = AllowedNetwork.objects.filter(
        api_key__isnull=True,
        project__memberships__user_id=user_id,
        project__memberships__is_active=True,
    ).filter(Q(membership__isnull=True) | Q(membership__user_id=user_id))
    if slug is not None:
        rows = rows.filter(project__slug=slug)
    ranges: dict[int, list[str]] = {}
    for project_id, network in rows.values_list("project_id", "network").distinct():
        ranges.setdefault(project_id, []).append(network)
    return ranges


def refused_projects(request: HttpRequest) -> list[int]:
    """The projects refusing this logged-in request (empty: it may go on). Under /p/<slug>/
    the membership of that project must allow the address; elsewhere at least one active
    membership must. Users without an active membership (a fresh superuser, a support
    account) are held to no list: these pages show them no project's data, and support
    access is held to its grant. No membership in /p/<slug>/'s project: the page answers
    404 (or the support grant decides)."""
    ip = getattr(request, "client_ip", None) or client_ip(request)
    user_id = int(request.user.pk or 0)
    match = PROJECT_PATH.match(request.path_info)
    ranges = _ranges_by_project(user_id, match["slug"] if match else None)
    outside = [pid for pid, specs in ranges.items() if not address_in(ip, parse_networks(specs))]
    if not outside:
        return []
    # Only now (the address is outside some list) is it asked whether the lists hold this
    # person: a supervisor whose role may work from anywhere pays this query, an operator
    # in the office does not.
    refusing = sorted(held_to_networks(user_id, outside))
    if not refusing:
        return []
    if match:
        return refusing
    if len(refusing) < len(ranges):
        return []  # another project's list allows the address
    # Every project with ranges refuses; a membership in a project without any lets them in.
    member_of = set(
        Membership.objects.active().filter(user_id=user_id).values_list("project_id", flat=True)
    )
    return sorted(refusing) if member_of <= set(refusing) else []


def refuse_request(request: HttpRequest, projects: list[int]) -> HttpResponse:
    """Record, tell the owners, end the session and answer with the plain refusal page."""
    user = request.user
    ip = getattr(request, "client_ip", None) or client_ip(request)
    match = PROJECT_PATH.match(request.path_info)
    with acting_as(Actor.member(user)):
        event = record_event(
            "auth.ip_refused",
            project_id=projects[0] if len(projects) == 1 else None,
            object_type="user",
            object_id=user.pk,
            object_repr=user.get_username(),
            extra={
                "ip": ip,
                "path": redact(request.path_info)[:200],
                "project": match["slug"] if match else "",
                **({"projects": projects} if len(projects) > 1 else {}),
            },
        )
    for project_id in projects:
        notify_refused(project_id, user.get_username(), ip, event_id=event.pk)
    logout(request)
    return render(request, "accounts/refused_address.html", status=403)


class AllowListMiddleware:
    """Refuses a logged-in person coming from outside their allowed networks: before the
    view, and after a view that has just logged someone in (the login page itself)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        was_in = request.user.is_authenticated
        if was_in:
            refusing = refused_projects(request)
            if refusing:
                return refuse_request(request, refusing)
        response = self.get_response(request)
        if not was_in and request.user.is_authenticated:
            # The login succeeded just now: its session must not outlive this response.
            refusing = refused_projects(request)
            if refusing:
                return refuse_request(request, refusing)
        return response
