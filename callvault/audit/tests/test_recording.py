"""Every action writes its event with the request's context, and secrets never appear."""

from __future__ import annotations

import json
import re

from django.test import Client

from callvault.accounts.actions import do_change_role, do_set_capabilities
from callvault.audit.context import Actor, acting_as
from callvault.audit.models import AuditEvent
from callvault.audit.recorder import Sealed, diff, record_event
from callvault.orders.actions import (
    do_add_comment,
    do_assign_order,
    do_change_status,
    do_update_order,
)
from callvault.orders.models import Status
from conftest import PASSWORD, login


def test_diff_keeps_only_changed_fields_and_hides_sealed_ones():
    before = {"name": "Ivan", "city": "Tver", "phone": Sealed("aaa")}
    after = {"name": "Ivan", "city": "Kazan", "phone": Sealed("bbb")}
    assert diff(before, after) == {"city": ["Tver", "Kazan"], "phone": "changed"}
    assert diff(before, dict(before)) == {}


def test_outside_a_request_the_system_is_the_actor(db):
    event = record_event("test.thing", project_id=None)
    assert (event.actor_kind, event.actor_name, event.ip) == ("system", "system", None)


def test_acting_as_changes_the_actor_for_a_block(db):
    with acting_as(Actor("pbx", "7", "PBX office")):
        event = record_event("test.thing", project_id=None)
    assert (event.actor_kind, event.actor_id, event.actor_name) == ("pbx", "7", "PBX office")


def test_a_page_request_records_member_ip_agent_and_request_id(owner, order):
    client = login(owner)
    response = client.get(
        f"/p/{owner.project.slug}/orders/{order.pk}/",
        HTTP_USER_AGENT="Firefox/140",
        REMOTE_ADDR="198.51.100.4",
    )
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="order.view")
    assert event.actor_kind == "member"
    assert event.actor_name == "alice"
    assert event.ip == "198.51.100.4"
    assert event.user_agent == "Firefox/140"
    assert event.request_id == response["X-Request-ID"]


def test_a_spoofed_forwarded_for_is_not_recorded_as_the_ip(owner, order, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    login(owner).get(
        f"/p/{owner.project.slug}/orders/{order.pk}/",
        REMOTE_ADDR="198.51.100.4",
        HTTP_X_FORWARDED_FOR="203.0.113.66",
    )
    assert AuditEvent.objects.get(action="order.view").ip == "198.51.100.4"


def test_a_trusted_proxy_passes_the_client_ip_and_its_request_id(owner, order, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    response = login(owner).get(
        f"/p/{owner.project.slug}/orders/{order.pk}/",
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="203.0.113.66",
        HTTP_X_REQUEST_ID="proxy-req-12345678",
    )
    event = AuditEvent.objects.get(action="order.view")
    assert (event.ip, event.request_id) == ("203.0.113.66", "proxy-req-12345678")
    assert response["X-Request-ID"] == "proxy-req-12345678"


def test_an_untrusted_client_cannot_choose_its_request_id(owner, order):
    response = login(owner).get(
        f"/p/{owner.project.slug}/orders/{order.pk}/", HTTP_X_REQUEST_ID="chosen-by-client-1"
    )
    assert response["X-Request-ID"] != "chosen-by-client-1"


def test_an_api_key_request_records_the_key_as_actor(project, api_key, phone):
    response = Client().post(
        "/api/v1/leads",
        {"phone": phone[0]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
        REMOTE_ADDR="192.0.2.10",
    )
    assert response.status_code == 201
    event = AuditEvent.objects.get(action="order.create")
    assert (event.actor_kind, event.actor_name, event.ip) == (
        "api_key",
        "API key Landing",
        "192.0.2.10",
    )


def strings_in(value: object) -> list[str]:
    """Every string inside nested JSON-like data."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings_in(k) + strings_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_in(v)]
    return []


def test_no_event_ever_holds_phone_digits_or_ciphertext(project, owner, operator, order, phone):
    """A whole order life: create, edit, re-number, status, comment, assign, reveal, roles."""
    new_number = phone[1][:-3] + ("100" if phone[1][-3:] != "100" else "101")
    ciphertexts = [order.phone_sealed]
    do_update_order(order, {"customer_name": "Ivan P.", "phone": phone[0]})
    do_update_order(order, {"phone": new_number})
    ciphertexts.append(order.phone_sealed)
    do_change_status(
        order,
        Status.objects.get(project=project, code="cancelled"),
        reason=f"said to call {new_number} instead",
    )
    do_add_comment(order, f"alt number {phone[0]}", author=owner.user)
    do_assign_order(order, operator.user)
    do_change_role(operator, "supervisor")
    do_set_capabilities(operator, {"can_see_phones": True})
    client = login(owner)
    client.post("/accounts/step-up/", {"password": PASSWORD})  # a reveal needs a fresh proof
    revealed = client.post(f"/p/{project.slug}/orders/{order.pk}/reveal/", {"purpose": "delivery"})
    assert revealed.status_code == 200

    texts = [
        text
        for e in AuditEvent.objects.all()
        for text in strings_in([e.changes, e.extra, e.object_repr])
    ]
    dumped = json.dumps(texts, ensure_ascii=False)
    for number in (phone[1], new_number):
        national = number[2:]
        for text in texts:
            assert national[-7:] not in re.sub(r"\D", "", text), text
    for ct in ciphertexts:
        assert ct.split(":", 2)[2] not in dumped
    phone_changes = [
        e.changes["phone"]
        for e in AuditEvent.objects.filter(action="order.update")
        if "phone" in e.changes
    ]
    assert phone_changes == ["changed"]  # the same number re-typed is not a change
