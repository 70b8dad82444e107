"""Every URL of the project against every role: no page, write, list or API answer shows an
order to someone who may not see it.

The URL patterns are walked from `django.urls.get_resolver()`, and every one must be named in
`PAGES` or `API` below with what it is and why it is safe; a pattern in neither fails
`test_every_endpoint_is_classified` ("classify the new endpoint"). Each page is requested
once per role with one client per role: GET for pages, POST with an empty body for POST-only
endpoints, and only for roles that must be refused (a permitted write would change data; the
workspace tests cover those).

The order under test, "hidden", belongs to the project but is assigned to another operator
(olga): the operator and the trainee may not see it. The trainee also has an older order
assigned to them that they no longer hold, and holds one now (the only one they may see).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from callvault.accounts import twofactor
from callvault.accounts.actions import do_add_member, do_change_password, do_create_user
from callvault.accounts.models import ApiKey, Membership, Project, Role, access_membership
from callvault.accounts.stepup import SESSION_KEY
from callvault.accounts.support import do_create_support_account, do_grant_support_access
from callvault.audit.models import AuditEvent
from callvault.lib.fakephones import fake_phone_numbers
from callvault.monitoring.tests.support import world_screenshot
from callvault.orders.actions import do_add_comment, do_assign_order
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Order
from callvault.orders.tests.support import ORDERS_URL, HttpsClient, make_key
from callvault.orders.tests.workspace_support import fingerprint
from conftest import PASSWORD

if TYPE_CHECKING:
    from callvault.orders.tests.support import Response

# --- what each endpoint is -------------------------------------------------------------------

ORDER = "order"  # one order's page (GET): only members who may see that order
ORDER_WRITE = "order write"  # POST-only, on one order: 404 for members who may not see it
ORDER_ROWS = "order rows"  # a list of orders: only the ones the member may see
MY_ORDERS = "my orders"  # the member's own work: never someone else's order
QUEUE = "queue"  # hands out the next due order: never one assigned to someone else
WHOLE_BASE = "whole base"  # figures over all orders: can_view_all_orders only
AUDIT = "audit"  # the record names orders: can_view_audit only
EXPORT = "export"  # bulk copies: can_export only
OWNER = "owner"  # leak-control settings: owners only
SETTINGS = "settings"  # project settings by capability: no order data on them
PERSONAL = "personal"  # outside any project: the person's own account, login, health
ACTIVITY = "activity"  # operators' activity, screenshots, their CRM actions: can_view_activity
RECORDINGS = "recordings"  # call recordings and their reviews: can_listen_recordings
# Machines' endpoints (the PBX with its shared secret, the agent with its device token): a
# browser session is no credential there, so every role, logged in or not, is refused.
MACHINE = "machine"

PAGES: dict[str, tuple[str, str]] = {
    "orders:card": (ORDER, "the order card"),
    "orders:reveal": (ORDER_WRITE, "shows the number once"),
    "orders:call": (ORDER_WRITE, "starts a call"),
    "orders:update": (ORDER_WRITE, "edits name and address"),
    "orders:item_add": (ORDER_WRITE, "adds a line"),
    "orders:item_quantity": (ORDER_WRITE, "changes a line"),
    "orders:item_remove": (ORDER_WRITE, "removes a line"),
    "orders:status": (ORDER_WRITE, "sets the status"),
    "orders:callback": (ORDER_WRITE, "schedules a callback"),
    "orders:no_answer": (ORDER_WRITE, "records no answer"),
    "orders:release": (ORDER_WRITE, "returns the order to the queue"),
    "orders:comment": (ORDER_WRITE, "adds a comment"),
    "orders:list": (ORDER_ROWS, "the orders list and its search (POST)"),
    "orders:mine": (MY_ORDERS, "My orders"),
    "orders:next": (QUEUE, "Next order: claims, takes no order id"),
    "orders:dashboard": (WHOLE_BASE, "aggregates per operator, no order rows"),
    "audit:search": (AUDIT, "events name orders and their changes"),
    "audit:timeline": (AUDIT, "a member's day, with the orders they touched"),
    "audit:export": (EXPORT, "the record as CSV"),
    "guard:exports": (EXPORT, "order, audit and report exports"),
    "guard:export_download": (EXPORT, "an export's file, downloaded once"),
    "guard:quotas": (OWNER, "quota settings"),
    "guard:quota_roles": (OWNER, "quota settings per role (POST)"),
    "guard:quota_override": (OWNER, "a member's or key's own quota (POST)"),
    "guard:suspensions": (OWNER, "suspended members"),
    "guard:suspension_lift": (OWNER, "lifts a suspension (POST)"),
    "guard:alerts": (OWNER, "alerts name members, not customers"),
    "guard:alerts_read": (OWNER, "marks alerts read (POST)"),
    "guard:alert_read": (OWNER, "marks one alert read (POST)"),
    "guard:guard_settings": (OWNER, "leak-control settings"),
    "guard:webhook_secret": (OWNER, "the webhook's signing secret (POST)"),
    "accounts:api_keys": (SETTINGS, "API keys: names and permissions"),
    "accounts:api_key_revoke": (SETTINGS, "revokes a key (POST)"),
    "accounts:api_key_networks": (SETTINGS, "a key's allowed networks"),
    "accounts:members": (SETTINGS, "members and roles"),
    "accounts:member_add": (SETTINGS, "adds a member"),
    "accounts:member": (SETTINGS, "one member"),
    "accounts:member_role": (SETTINGS, "changes a role (POST)"),
    "accounts:member_capabilities": (SETTINGS, "changes capabilities (POST)"),
    "accounts:member_deactivate": (SETTINGS, "deactivates (POST)"),
    "accounts:member_reactivate": (SETTINGS, "reactivates (POST)"),
    "accounts:member_reset_password": (SETTINGS, "resets a password (POST)"),
    "accounts:member_force_password_change": (SETTINGS, "forces a new password (POST)"),
    "accounts:member_networks": (SETTINGS, "a member's allowed networks"),
    "accounts:lockouts": (SETTINGS, "locked-out users and addresses"),
    "accounts:lockout_unlock": (SETTINGS, "unlocks (POST)"),
    "accounts:networks": (SETTINGS, "the project's allowed networks"),
    "accounts:sessions": (SETTINGS, "members' sessions"),
    "accounts:session_revoke": (SETTINGS, "ends a session (POST)"),
    "accounts:security": (SETTINGS, "the security policy"),
    "accounts:support": (SETTINGS, "support grants"),
    "accounts:support_revoke": (SETTINGS, "ends a grant (POST)"),
    "accounts:notices": (SETTINGS, "security notices: members and addresses"),
    "setup:statuses": (SETTINGS, "statuses"),
    "setup:status": (SETTINGS, "one status"),
    "setup:products": (SETTINGS, "products"),
    "setup:product": (SETTINGS, "one product"),
    "setup:work": (SETTINGS, "calling hours and queue rules"),
    "setup:script": (SETTINGS, "the sales script"),
    "setup:audit": (SETTINGS, "audit retention"),
    "home": (PERSONAL, "the person's projects"),
    "login": (PERSONAL, "the login form"),
    "logout": (PERSONAL, "logs out (POST)"),
    "password_change": (PERSONAL, "the person's password"),
    "password_change_done": (PERSONAL, "a confirmation"),
    "set_language": (PERSONAL, "the interface language"),
    "healthz": (PERSONAL, "liveness, no database"),
    "account:two_factor": (PERSONAL, "the person's second factors"),
    "account:verify": (PERSONAL, "the second-factor prompt"),
    "account:totp": (PERSONAL, "authenticator app setup"),
    "account:totp_remove": (PERSONAL, "removes the app (POST)"),
    "account:recovery_codes": (PERSONAL, "recovery codes"),
    "account:passkey_register_options": (PERSONAL, "WebAuthn options"),
    "account:passkey_register": (PERSONAL, "WebAuthn registration"),
    "account:passkey_auth_options": (PERSONAL, "WebAuthn options"),
    "account:passkey_auth": (PERSONAL, "WebAuthn login"),
    "account:passkey_remove": (PERSONAL, "removes a passkey (POST)"),
    "account:step_up": (PERSONAL, "proves who one is again"),
    "account:my_sessions": (PERSONAL, "the person's sessions"),
    "account:my_session_revoke": (PERSONAL, "ends one of them (POST)"),
    "account:my_sessions_revoke_others": (PERSONAL, "ends the others (POST)"),
    "account:unlock": (PERSONAL, "the idle lock screen"),
    "account:idle_ping": (PERSONAL, "keeps the session awake"),
    "account:support_link": (PERSONAL, "a one-time support link (its own tests)"),
    # --- telephony (callvault/telephony): pages, then the PBX's endpoints (MACHINE) ---
    "telephony:settings": (SETTINGS, "telephony settings (can_manage_project), no call data"),
    # PBXs and SIP accounts also need can_see_phones (telephony/tests/test_routing_rights.py).
    "telephony:pbxs": (SETTINGS, "PBXs: names, networks; a new secret shown once"),
    "telephony:pbx_revoke": (SETTINGS, "revokes a PBX's secret (POST)"),
    "telephony:sip_accounts": (SETTINGS, "members' SIP accounts; a new password shown once"),
    "telephony:sip_account_disable": (SETTINGS, "disables a SIP account (POST)"),
    "pbx:resolve": (MACHINE, "a call token's number, for the PBX's secret only"),
    "pbx:events": (MACHINE, "a call's progress, from the PBX"),
    "pbx:inbound": (MACHINE, "who is calling: a display name, never the number"),
    "telephony:recording_play": (RECORDINGS, "a call's recording, streamed with Range"),
    "telephony:review": (RECORDINGS, "a call's quality review form"),
    "telephony:reviews": (RECORDINGS, "call reviews: calls, operators, scores"),
    "pbx:recording": (MACHINE, "the PBX uploads a call's recording or gives its URL"),
    # --- monitoring (callvault/monitoring): pages, then the agent's endpoints (MACHINE) ---
    "monitoring:devices": (ACTIVITY, "members' devices, pending codes"),
    "monitoring:code_create": (ACTIVITY, "an enrolment code, shown once (POST)"),
    "monitoring:device_revoke": (ACTIVITY, "revokes a device (POST)"),
    "monitoring:timeline": (ACTIVITY, "a member's day: spans, screenshots, CRM actions"),
    "monitoring:screenshot": (ACTIVITY, "a screenshot in full, each view recorded"),
    "monitoring:screenshot_thumb": (ACTIVITY, "a screenshot's thumbnail"),
    "monitoring:policy": (SETTINGS, "the monitoring policy (can_manage_project)"),
    "monitoring:mine": (SETTINGS, "what is collected about the member themself"),
    "agent:enrol": (MACHINE, "a one-time code for a device token"),
    "agent:policy": (MACHINE, "the policy, by device token"),
    "agent:heartbeats": (MACHINE, "heartbeats, by device token"),
    "agent:screenshots": (MACHINE, "screenshots, by device token"),
}

# The JSON API: keys are not roles. Orders are read through Order.objects.for_api_key.
API: dict[str, str] = {
    "api:list_orders": "orders of the key's project, with can_read_orders",
    "api:get_order": "one order of the key's project, with can_read_orders",
    "api:change_status": "with can_update_orders; the order in the answer only with read",
    "api:order_history": "the record of one order of the key's project, can_read_audit",
    "api:list_events": "the record of the key's project, can_read_audit",
    "api:post_lead": "intake: answers with the lead it posted (or its idempotent twin)",
    "api:post_lead_form": "intake from an HTML form: the same",
    "api:openapi-json": "the schema: no data",
    "api:openapi-view": "the schema's page: no data",
    "api:api-root": "the API's root: no data",
}

# "support" is a support account under a read-only grant: a transient membership.
ROLES = ["anonymous", "outsider", "trainee", "operator", "supervisor", "admin", "owner", "support"]
SEES_ALL = {"supervisor", "admin", "owner", "support"}
REFUSED = (403, 404)


def endpoints() -> list[tuple[str, str, list[str]]]:
    """(URL name, route, path kwargs) of every pattern of the project."""
    found: list[tuple[str, str, list[str]]] = []

    def walk(resolver: URLResolver, prefix: str, namespace: str, kwargs: list[str]) -> None:
        for entry in resolver.url_patterns:
            route = prefix + str(entry.pattern)
            names = kwargs + list(getattr(entry.pattern, "converters", {}))
            if isinstance(entry, URLResolver):
                inner = entry.namespace or ""
                ns = f"{namespace}:{inner}" if namespace and inner else inner or namespace
                walk(entry, route, ns, names)
            elif isinstance(entry, URLPattern):
                name = entry.name or route
                found.append((f"{namespace}:{name}" if namespace else name, route, names))

    walk(get_resolver(), "", "", [])
    return found


def test_every_endpoint_is_classified() -> None:
    names = {name for name, _route, _kwargs in endpoints()}
    new = sorted(names - set(PAGES) - set(API))
    assert not new, f"classify the new endpoint(s) in test_endpoint_matrix.py: {new}"
    gone = sorted((set(PAGES) | set(API)) - names)
    assert not gone, f"no longer in the URLconf, drop from the tables: {gone}"
    assert not set(PAGES) & set(API)


# --- the world -----------------------------------------------------------------------------


@dataclass
class World:
    """The project, its members, the orders each may or may not see, and path kwargs."""

    project: Project
    members: dict[str, Membership]
    hidden: Order
    operators_own: Order
    trainees_held: Order
    trainees_earlier: Order
    kwargs: dict[str, Any] = field(default_factory=dict)

    def secrets_for(self, role: str) -> list[str]:
        """What must not appear on any page the role gets (customer names, address, note)."""
        hidden = ["Zinaida Hiddenova", "7 Hidden Lane", "Hidden remark"]
        if role in SEES_ALL:
            return []
        if role == "trainee":
            return [*hidden, "Tatiana Earlierova", "Boris Ownov"]
        if role == "operator":
            return [*hidden, "Tatiana Heldova", "Tatiana Earlierova"]
        return hidden

    def own_for(self, role: str) -> str:
        """The customer whose order the role's own lists must show."""
        return {"trainee": "Tatiana Heldova", "operator": "Boris Ownov"}.get(role, "")


def _order(project: Project, phone: str, name: str, address: str = "Moscow") -> Order:
    lead = Lead(phone=phone, name=name, address=address, items=[LeadItem("TEA", 2)])
    return do_create_order(project, lead).order


@pytest.fixture
def world(
    owner: Membership,
    supervisor: Membership,
    operator: Membership,
    trainee: Membership,
    outsider: Membership,
    project: Project,
    rng: random.Random,
) -> World:
    admin = do_add_member(project, do_create_user("adam", PASSWORD, validate=False), Role.ADMIN)
    olga = do_add_member(project, do_create_user("olga", PASSWORD, validate=False), Role.OPERATOR)
    phones = fake_phone_numbers(4, rng)
    hidden = _order(project, phones[0], "Zinaida Hiddenova", "7 Hidden Lane")
    do_assign_order(hidden, olga.user)
    do_add_comment(hidden, "Hidden remark", author=olga.user)
    own = _order(project, phones[1], "Boris Ownov")
    do_assign_order(own, operator.user)
    earlier = _order(project, phones[2], "Tatiana Earlierova")
    do_assign_order(earlier, trainee.user)
    held = _order(project, phones[3], "Tatiana Heldova")
    Order.objects.filter(pk=held.pk).update(
        locked_by=trainee.user, locked_until=timezone.now() + timedelta(minutes=30)
    )
    make_key(project)  # for the key pages' key_id
    key = ApiKey.objects.get(project=project)
    account = do_change_password(
        do_create_support_account("vendor-kim", PASSWORD), "kim's own vendor passphrase 2026"
    )
    do_grant_support_access(project, hours=1, reason="ticket 42", account=account, acting=owner)
    members = {
        "support": access_membership(account, project.slug),
        "outsider": outsider,
        "trainee": trainee,
        "operator": operator,
        "supervisor": supervisor,
        "admin": admin,
        "owner": owner,
    }
    kwargs = {
        "project_slug": project.slug,
        "order_id": hidden.pk,
        "item_id": hidden.items.values_list("pk", flat=True)[0],
        "status_id": project.statuses.values_list("pk", flat=True)[0],
        "product_id": project.products.values_list("pk", flat=True)[0],
        "membership_id": olga.pk,
        "user_id": olga.user_id,
        "key_id": key.pk,
        "session_id": 1,
        "grant_id": 1,
        "job_id": 1,
        "notice_id": 1,
        "suspension_id": 1,
        "passkey_id": 1,
        "token": "x" * 43,
        "device_id": 1,
        # A real screenshot of olga's: its pages answer 200 to those who may see it.
        "screenshot_id": world_screenshot(olga),
        "call_id": 1,
        "pbx_id": 1,
        "account_id": 1,
    }
    return World(project, members, hidden, own, held, earlier, kwargs)


def client_for(world: World, role: str) -> HttpsClient:
    """One client per role: logged in (except anonymous) and freshly stepped up, so that no
    refusal below is only the step-up's."""
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    if role != "anonymous":
        client.force_login(world.members[role].user)
        session = client.session
        session[SESSION_KEY] = time.time()
        # Past the second factor too (a named support account must use one).
        session[twofactor.VERIFIED_SESSION_KEY] = world.members[role].user.pk
        session.save()
    return client


def state(order: Order) -> dict[str, Any]:
    """The order, its lines and notes, and every event about it (a refused request records
    nothing about the order: not even a view). Other events (alerts, say) are not its."""
    found = fingerprint(order)
    found["events"] = AuditEvent.objects.filter(object_type="order", object_id=str(order.pk))
    found["events"] = found["events"].count()
    return found


def url_of(world: World, name: str, kwargs: list[str]) -> str:
    missing = [k for k in kwargs if k not in world.kwargs]
    assert not missing, f"fill the path kwarg(s) {missing} of {name} in the world fixture"
    return reverse(name, kwargs={k: world.kwargs[k] for k in kwargs})


# --- pages, role by role -------------------------------------------------------------------


def _shows(response: Response, text: str) -> bool:
    """Whether the answer carries the text (a streamed answer is read once and kept)."""
    body = getattr(response, "read_once", None)
    if body is None:
        body = b"".join(response).decode(errors="replace")
        response.read_once = body  # type: ignore[attr-defined]
    return text in body if text else True


def _check(world: World, role: str, name: str, response: Response, kind: str) -> list[str]:
    """What is wrong with this role's answer from this endpoint (empty when all is well)."""
    code = response.status_code
    problems = [f"{name}: shows {s!r}" for s in world.secrets_for(role) if _shows(response, s)]
    if code >= 500:
        problems.append(f"{name}: {code}")
    if kind == MACHINE:
        if code not in (401, 403, 404, 405):
            problems.append(f"{name}: {code} to a browser session, not refused")
    elif role == "anonymous":
        location = response.get("Location", "")
        # A leak-control page still a stub answers 404 to everyone, which shows nothing.
        stub = name.startswith("guard:") and code == 404
        if not stub and (code != 302 or not location.startswith("/accounts/login/")):
            problems.append(f"{name}: {code} {location}, not the login")
    elif role == "outsider":
        if code != 404:
            problems.append(f"{name}: {code}, not 404")
    elif kind in (ORDER, ORDER_WRITE):
        expected = 200 if role in SEES_ALL else 404
        if code != expected:
            problems.append(f"{name}: {code}, not {expected}")
        if code == 200 and not _shows(response, "Zinaida Hiddenova"):
            problems.append(f"{name}: the permitted card does not show the order")
    elif kind in (ORDER_ROWS, MY_ORDERS):
        if code != 200 or not _shows(response, world.own_for(role)):
            problems.append(f"{name}: {code}, the member's own order missing")
        lists_hidden = kind == ORDER_ROWS and role in SEES_ALL
        if lists_hidden and not _shows(response, "Zinaida Hiddenova"):
            problems.append(f"{name}: the whole base is not listed")
        if kind == MY_ORDERS and _shows(response, "Zinaida Hiddenova"):
            problems.append(f"{name}: someone else's order in My orders")
    else:
        capability = {
            WHOLE_BASE: "can_view_all_orders",
            AUDIT: "can_view_audit",
            EXPORT: "can_export",
            ACTIVITY: "can_view_activity",
            RECORDINGS: "can_listen_recordings",
        }.get(kind)
        member = world.members[role]
        refused = (capability is not None and not getattr(member, capability)) or (
            kind == OWNER and member.role != Role.OWNER
        )
        if refused and code not in REFUSED:
            problems.append(f"{name}: {code}, not refused")
        if kind in (WHOLE_BASE, AUDIT, ACTIVITY) and not refused and code != 200:
            problems.append(f"{name}: {code} for a member who may")
    return problems


def _request(
    client: HttpsClient, world: World, role: str, name: str, url: str, kind: str
) -> Response | None:
    """The role's request to the endpoint, or None where it is not made (see the module's
    docstring): POST only to refuse, GET otherwise."""
    refused_writer = role not in SEES_ALL
    if kind == ORDER_WRITE:
        return client.post(url, {}) if refused_writer else None
    if kind == QUEUE:
        return client.post(url, {}) if role in ("anonymous", "outsider") else None
    if kind in (SETTINGS, PERSONAL) and role in SEES_ALL:
        return None  # not about orders, and these roles may see every order anyway
    if kind == PERSONAL and role in ("anonymous", "outsider"):
        return None  # outside any project: nothing of the project to refuse
    if name == "logout":
        return None  # would end the client's session for the rest of the walk
    response = client.get(url)
    if response.status_code == 405 and kind == MACHINE:
        response = client.post(url, {})  # a session's POST is refused as well
    if response.status_code == 405 and role in ("anonymous", "outsider"):
        response = client.post(url, {})  # a POST-only page: the refusal comes first
    if response.status_code == 405:
        return None  # a POST-only settings page: not requested by members (no order data)
    return response


@pytest.mark.parametrize("role", ROLES)
def test_no_page_shows_an_order_to_a_role_that_may_not_see_it(role: str, world: World) -> None:
    client = client_for(world, role)
    problems: list[str] = []
    for name, _route, kwargs in endpoints():
        if name in API:
            continue
        kind = PAGES[name][0]
        url = url_of(world, name, kwargs)
        before = state(world.hidden)
        response = _request(client, world, role, name, url, kind)
        if response is None:
            continue
        if kind in (PERSONAL, SETTINGS) and role not in ("anonymous", "outsider"):
            problems += [
                f"{name}: shows {s!r}" for s in world.secrets_for(role) if _shows(response, s)
            ]
        else:
            problems += _check(world, role, name, response, kind)
        if kind == ORDER_WRITE and state(world.hidden) != before:
            problems.append(f"{name}: a refused POST changed the order")
    assert not problems, f"{role}:\n" + "\n".join(problems)


@pytest.mark.parametrize("role", ["trainee", "operator"])
def test_next_order_never_hands_out_someone_elses_order(role: str, world: World) -> None:
    response = client_for(world, role).post(reverse("orders:next", args=["alpha"]))
    assert response.status_code == 302
    assert response["Location"] != reverse("orders:card", args=["alpha", world.hidden.pk])
    assert not Order.objects.visible_to(world.members[role]).filter(pk=world.hidden.pk).exists()


@pytest.mark.parametrize("role", ["trainee", "operator"])
def test_a_member_without_the_capability_may_not_search_the_base(role: str, world: World) -> None:
    client = client_for(world, role)
    for query in (str(world.hidden.number), world.hidden.phone_mask):
        response = client.post(reverse("orders:list", args=["alpha"]), {"q": query})
        assert response.status_code == 403
        assert not _shows(response, "Zinaida Hiddenova")


def test_a_member_with_the_capability_finds_the_order(world: World) -> None:
    client = client_for(world, "supervisor")
    response = client.post(reverse("orders:list", args=["alpha"]), {"q": str(world.hidden.number)})
    assert response.status_code == 200
    assert _shows(response, "Zinaida Hiddenova")


@pytest.mark.parametrize("role", ["trainee", "operator"])
def test_the_list_filters_do_not_reach_beyond_the_members_own_orders(
    role: str, world: World
) -> None:
    olga = world.kwargs["user_id"]
    query = {"operator": olga, "source": "", "duplicates": "", "group": "processing"}
    response = client_for(world, role).get(reverse("orders:list", args=["alpha"]), query)
    assert response.status_code == 200
    assert list(response.context["form"].fields) == ["status"]
    for secret in world.secrets_for(role):
        assert not _shows(response, secret)
    assert _shows(response, world.own_for(role))


# --- the JSON API --------------------------------------------------------------------------


def api(key: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> Response:
    headers: dict[str, Any] = {"HTTP_X_API_KEY": key} if key else {}
    client = HttpsClient()
    if method == "GET":
        return client.get(path, **headers)
    return client.post(path, json.dumps(body or {}), content_type="application/json", **headers)


@pytest.fixture
def keys(world: World, other_project: Project) -> dict[str, str]:
    project = world.project
    return {
        "reader": make_key(project, can_read_orders=True),
        "mover": make_key(project, can_update_orders=True),
        "reader_mover": make_key(project, can_read_orders=True, can_update_orders=True),
        "intake": make_key(project),
        "auditor": make_key(project, can_read_audit=True),
        "stranger": make_key(
            other_project, can_read_orders=True, can_update_orders=True, can_read_audit=True
        ),
    }


def test_the_order_list_api_obeys_the_key(world: World, keys: dict[str, str]) -> None:
    assert api(None, "GET", ORDERS_URL).status_code == 401
    for name in ("intake", "mover", "auditor"):
        assert api(keys[name], "GET", ORDERS_URL).status_code == 403, name
    stranger = api(keys["stranger"], "GET", ORDERS_URL)
    assert stranger.status_code == 200 and stranger.json()["items"] == []
    reader = api(keys["reader"], "GET", ORDERS_URL)
    assert world.hidden.pk in {o["id"] for o in reader.json()["items"]}


def test_one_order_through_the_api_obeys_the_key(world: World, keys: dict[str, str]) -> None:
    path = f"{ORDERS_URL}/{world.hidden.pk}"
    assert api(None, "GET", path).status_code == 401
    for name in ("intake", "mover", "auditor"):
        assert api(keys[name], "GET", path).status_code == 403, name
    stranger = api(keys["stranger"], "GET", path)
    assert stranger.status_code == 404 and "Hiddenova" not in stranger.content.decode()
    assert api(keys["reader"], "GET", path).json()["customer_name"] == "Zinaida Hiddenova"


def test_a_status_change_through_the_api_obeys_the_key(world: World, keys: dict[str, str]) -> None:
    path = f"{ORDERS_URL}/{world.hidden.pk}/status"
    before = state(world.hidden)
    assert api(None, "POST", path, {"status": "new"}).status_code == 401
    for name in ("intake", "reader", "auditor"):
        assert api(keys[name], "POST", path, {"status": "accepted"}).status_code == 403, name
    stranger = api(keys["stranger"], "POST", path, {"status": "accepted"})
    assert stranger.status_code == 404
    assert state(world.hidden) == before


def test_a_key_that_may_only_move_statuses_reads_nothing_back(
    world: World, keys: dict[str, str]
) -> None:
    # Posting the status an order already has changes nothing: the answer must not be a read.
    path = f"{ORDERS_URL}/{world.hidden.pk}/status"
    response = api(keys["mover"], "POST", path, {"status": "new"})
    assert response.status_code == 204
    assert response.content == b""
    both = api(keys["reader_mover"], "POST", path, {"status": "new"})
    assert both.status_code == 200 and both.json()["customer_name"] == "Zinaida Hiddenova"


def test_the_audit_api_obeys_the_key(world: World, keys: dict[str, str]) -> None:
    history = f"/api/v1/audit/orders/{world.hidden.pk}/history"
    events = "/api/v1/audit/events"
    for name in ("intake", "reader", "mover"):
        assert api(keys[name], "GET", history).status_code == 403, name
        assert api(keys[name], "GET", events).status_code == 403, name
    assert api(keys["stranger"], "GET", history).status_code == 404
    strangers = api(keys["stranger"], "GET", events)
    assert strangers.status_code == 200 and "Hiddenova" not in strangers.content.decode()
    assert api(keys["auditor"], "GET", history).status_code == 200


def test_the_api_docs_and_intake_carry_no_order(world: World, keys: dict[str, str]) -> None:
    for path in ("/api/v1/openapi.json", "/api/v1/docs", "/api/v1/"):
        assert "Hiddenova" not in api(keys["stranger"], "GET", path).content.decode()
    lead = api(keys["intake"], "POST", "/api/v1/leads", {"phone": world.hidden.phone_mask})
    assert "Hiddenova" not in lead.content.decode()
