"""Spoofing the allow-list: forwarding headers from an untrusted peer change nothing, and
behind a trusted proxy only the right-most untrusted hop counts. For pages, the login and
API keys alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from callvault.accounts.allowlist import do_add_network
from callvault.accounts.models import ApiKey
from conftest import PASSWORD, login

OFFICE = "192.0.2.0/24"
INSIDE = "192.0.2.10"
OUTSIDE = "203.0.113.9"
PROXY = "10.0.0.2"
MINE = "/p/alpha/orders/mine/"
ORDERS = "/api/v1/orders"

# Each header a client might forge, claiming the office address.
SPOOFED: dict[str, Any] = {
    "HTTP_X_FORWARDED_FOR": INSIDE,
    "HTTP_X_REAL_IP": INSIDE,
    "HTTP_FORWARDED": f"for={INSIDE}",
    "HTTP_TRUE_CLIENT_IP": INSIDE,
    "HTTP_CF_CONNECTING_IP": INSIDE,
}


@pytest.fixture
def office(project, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    do_add_network(project, OFFICE, "Office")
    return project


def page(member: Any, **meta: Any) -> int:
    return login(member).get(MINE, **meta).status_code


def api(secret: str, **meta: Any) -> int:
    return Client().get(ORDERS, HTTP_AUTHORIZATION=f"Bearer {secret}", **meta).status_code


@pytest.mark.parametrize("header", sorted(SPOOFED))
def test_a_forged_header_from_an_untrusted_peer_is_refused_on_a_page(office, operator, header):
    assert page(operator, REMOTE_ADDR=OUTSIDE, **{header: SPOOFED[header]}) == 403


@pytest.mark.parametrize("header", sorted(SPOOFED))
def test_a_forged_header_from_an_untrusted_peer_is_refused_with_an_api_key(office, api_key, header):
    assert api(api_key, REMOTE_ADDR=OUTSIDE, **{header: SPOOFED[header]}) == 403


@pytest.mark.parametrize("header", sorted(SPOOFED))
def test_a_forged_header_does_not_get_a_login_through(office, operator, header):
    response = Client().post(
        "/accounts/login/",
        {"username": "bob", "password": PASSWORD},
        REMOTE_ADDR=OUTSIDE,
        **{header: SPOOFED[header]},
    )
    assert response.status_code == 403


def test_every_forged_header_at_once_without_trusted_proxies_is_refused(
    office, operator, api_key, settings
):
    settings.TRUSTED_PROXIES = []
    assert page(operator, REMOTE_ADDR=OUTSIDE, **SPOOFED) == 403
    assert api(api_key, REMOTE_ADDR=OUTSIDE, **SPOOFED) == 403


def test_behind_a_trusted_proxy_the_forwarded_client_inside_the_list_is_accepted(
    office, operator, api_key, settings
):
    assert page(operator, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=INSIDE) == 200
    assert api(api_key, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=INSIDE) == 200
    settings.FORWARDED_HEADER = "Forwarded"
    assert page(operator, REMOTE_ADDR=PROXY, HTTP_FORWARDED=f'for="{INSIDE}"') == 200
    assert api(api_key, REMOTE_ADDR=PROXY, HTTP_FORWARDED=f"for={INSIDE}") == 200


def test_a_forwarded_header_passed_through_by_the_proxy_cannot_name_an_office_address(
    office, operator, api_key
):
    # nginx overwrote X-Forwarded-For with the real client but passed the client's own
    # Forwarded header through: only the configured header (X-Forwarded-For) counts.
    spoof = {"HTTP_X_FORWARDED_FOR": OUTSIDE, "HTTP_FORWARDED": f"for={INSIDE}"}
    assert page(operator, REMOTE_ADDR=PROXY, **spoof) == 403
    assert api(api_key, REMOTE_ADDR=PROXY, **spoof) == 403


def test_behind_a_trusted_proxy_a_forged_leftmost_hop_does_not_help(
    office, operator, api_key, settings
):
    forged = f"{INSIDE}, {OUTSIDE}"
    assert page(operator, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forged) == 403
    assert api(api_key, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forged) == 403
    settings.FORWARDED_HEADER = "Forwarded"
    rfc = f"for={INSIDE}, for={OUTSIDE}"
    assert page(operator, REMOTE_ADDR=PROXY, HTTP_FORWARDED=rfc) == 403


def test_behind_a_trusted_proxy_other_headers_are_not_believed(office, operator, api_key):
    # The proxy itself (10.0.0.2) is outside the office: only X-Forwarded-For / Forwarded
    # could have named the client, and they are absent.
    for header in ("HTTP_X_REAL_IP", "HTTP_TRUE_CLIENT_IP", "HTTP_CF_CONNECTING_IP"):
        assert page(operator, REMOTE_ADDR=PROXY, **{header: INSIDE}) == 403
        assert api(api_key, REMOTE_ADDR=PROXY, **{header: INSIDE}) == 403


def test_two_trusted_proxies_in_a_row_are_skipped(office, operator):
    chain = f"{OUTSIDE}, {INSIDE}, 10.0.0.9"
    assert page(operator, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=chain) == 200


def test_a_key_with_its_own_range_is_not_fooled_either(office, api_key):
    key = ApiKey.objects.get(prefix=api_key.split("_")[1])
    do_add_network(office, "198.51.100.0/24", "Partner", api_key=key)
    assert api(api_key, REMOTE_ADDR=OUTSIDE, HTTP_X_FORWARDED_FOR="198.51.100.7") == 403
    assert api(api_key, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.7") == 200
