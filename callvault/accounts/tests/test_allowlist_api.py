"""API keys and allowed networks: a key with ranges is accepted only inside them; a key
without uses the project's list (unless it only posts leads); refusals are recorded and
noticed, and answer a clear JSON error."""

from __future__ import annotations

from typing import Any

from django.test import Client

from callvault.accounts.actions import do_create_api_key
from callvault.accounts.allowlist import do_add_network
from callvault.accounts.models import ApiKey, SecurityNotice
from callvault.audit.models import AuditEvent
from callvault.orders.models import Order

ORDERS = "/api/v1/orders"
LEADS = "/api/v1/leads"
INSIDE = "198.51.100.7"
OUTSIDE = "203.0.113.9"
FORM = "/api/v1/leads/form"


def lead(phone: tuple[str, str]) -> dict[str, Any]:
    return {"phone": phone[0], "name": "Ivan", "items": [{"sku": "TEA", "quantity": 1}]}


def get_orders(secret: str, ip: str, header: str = "bearer") -> Any:
    auth: dict[str, Any] = (
        {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
        if header == "bearer"
        else {"HTTP_X_API_KEY": secret}
    )
    return Client().get(ORDERS, REMOTE_ADDR=ip, **auth)


def own_range(project: Any, secret: str, network: str = "198.51.100.0/24") -> ApiKey:
    key = ApiKey.objects.get(prefix=secret.split("_")[1])
    do_add_network(project, network, "Partner server", api_key=key)
    return key


def test_a_key_with_ranges_is_accepted_inside_them(project, api_key):
    own_range(project, api_key)
    response = get_orders(api_key, INSIDE)
    assert response.status_code == 200


def test_a_key_with_ranges_is_refused_outside_them_with_a_clear_error(project, api_key):
    own_range(project, api_key)
    for header in ("bearer", "x-api-key"):
        response = get_orders(api_key, OUTSIDE, header)
        assert response.status_code == 403
        assert response.json() == {"detail": "access from this address is not allowed"}


def test_a_refused_key_is_recorded_with_the_reason_and_noticed_once(project, api_key):
    key = own_range(project, api_key)
    get_orders(api_key, OUTSIDE)
    get_orders(api_key, OUTSIDE)
    events = AuditEvent.objects.filter(action="api_key.refused")
    assert events.count() == 2
    event = events.order_by("id")[0]
    assert (event.object_type, event.object_id, event.project_id) == (
        "api_key",
        str(key.pk),
        project.pk,
    )
    assert event.extra == {"prefix": key.prefix, "reason": "address", "ip": OUTSIDE}
    assert event.actor_kind == "anonymous"
    assert api_key.split("_", 2)[2] not in str(event.extra)  # the random part (may hold "_")
    notice = SecurityNotice.objects.get()
    assert notice.params == {"user": f"cvk_{key.prefix}_… (Landing)", "ip": OUTSIDE}


def test_a_key_without_ranges_uses_the_projects_list(project, api_key):
    do_add_network(project, "192.0.2.0/24", "Office")
    assert get_orders(api_key, "192.0.2.5").status_code == 200
    assert get_orders(api_key, OUTSIDE).status_code == 403


def test_a_keys_own_ranges_replace_the_projects(project, api_key):
    do_add_network(project, "192.0.2.0/24", "Office")
    own_range(project, api_key)
    assert get_orders(api_key, INSIDE).status_code == 200
    assert get_orders(api_key, "192.0.2.5").status_code == 403


def test_a_key_is_accepted_anywhere_when_there_are_no_ranges(project, api_key):
    assert get_orders(api_key, OUTSIDE).status_code == 200
    assert not AuditEvent.objects.filter(action="api_key.refused").exists()


def test_ipv6_key_ranges(project, api_key):
    own_range(project, api_key, "2001:db8:cafe::/48")
    assert get_orders(api_key, "2001:db8:cafe::1").status_code == 200
    assert get_orders(api_key, "2001:db8:beef::1").status_code == 403


def post_lead(secret: str, ip: str, phone: tuple[str, str]) -> Any:
    return Client().post(
        LEADS,
        lead(phone),
        content_type="application/json",
        REMOTE_ADDR=ip,
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def test_a_lead_only_key_posts_from_anywhere_despite_the_projects_list(project, phone):
    _, secret = do_create_api_key(project, "Landing")
    do_add_network(project, "192.0.2.0/24", "Office")
    assert post_lead(secret, OUTSIDE, phone).status_code == 201


def test_a_lead_only_key_with_ranges_is_held_to_them(project, phone):
    _, secret = do_create_api_key(project, "Partner")
    own_range(project, secret)
    assert post_lead(secret, OUTSIDE, phone).status_code == 403
    assert post_lead(secret, INSIDE, phone).status_code == 201


def test_the_html_lead_form_holds_a_key_to_its_ranges_too(project, phone):
    _, secret = do_create_api_key(project, "Partner")
    own_range(project, secret)
    form = {"api_key": secret, "phone": phone[0], "name": "Ivan"}
    refused = Client().post(FORM, form, REMOTE_ADDR=OUTSIDE)
    assert refused.status_code == 403
    assert "access from this address is not allowed" in refused.content.decode()
    assert not Order.objects.exists()
    assert AuditEvent.objects.filter(action="api_key.refused").count() == 1
    assert Client().post(FORM, form, REMOTE_ADDR=INSIDE).status_code == 201
