"""The one client-IP function: forwarding headers only from trusted proxies."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpRequest
from django.test import RequestFactory

from callvault.lib.clientip import client_ip

SPOOFING_HEADERS = {
    "HTTP_X_FORWARDED_FOR": "203.0.113.7",
    "HTTP_X_REAL_IP": "203.0.113.7",
    "HTTP_FORWARDED": "for=203.0.113.7",
    "HTTP_TRUE_CLIENT_IP": "203.0.113.7",
    "HTTP_CF_CONNECTING_IP": "203.0.113.7",
}


def request_from(peer: str, **headers: Any) -> HttpRequest:
    return RequestFactory().get("/", REMOTE_ADDR=peer, **headers)


@pytest.mark.parametrize("header", sorted(SPOOFING_HEADERS))
def test_it_ignores_forwarding_headers_from_an_untrusted_peer(settings, header):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    req = request_from("198.51.100.20", **{header: SPOOFING_HEADERS[header]})
    assert client_ip(req) == "198.51.100.20"


def test_without_trusted_proxies_it_is_always_the_peer(settings):
    settings.TRUSTED_PROXIES = []
    assert client_ip(request_from("10.1.2.3", **SPOOFING_HEADERS)) == "10.1.2.3"


def test_behind_a_trusted_proxy_it_takes_the_rightmost_untrusted_hop(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    # The client wrote a fake first hop itself; the proxy appended the real address.
    req = request_from("10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9, 10.0.0.7")
    assert client_ip(req) == "203.0.113.9"


def test_it_ignores_x_real_ip_even_from_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_ip(request_from("10.0.0.5", HTTP_X_REAL_IP="203.0.113.7")) == "10.0.0.5"


def test_it_reads_rfc7239_forwarded_with_ipv6_and_ports(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.FORWARDED_HEADER = "Forwarded"
    req = request_from("10.0.0.5", HTTP_FORWARDED='for="[2001:db8::17]:4711";proto=https')
    assert client_ip(req) == "2001:db8::17"
    req = request_from("10.0.0.5", HTTP_FORWARDED="for=192.0.2.60:8080, for=10.0.0.9")
    assert client_ip(req) == "192.0.2.60"


def test_an_unparsable_hop_stops_the_walk(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    req = request_from("10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.1, unknown")
    assert client_ip(req) == "10.0.0.5"


def test_ipv6_proxies_are_supported(settings):
    settings.TRUSTED_PROXIES = ["fd00::/8"]
    req = request_from("fd00::1", HTTP_X_FORWARDED_FOR="2001:db8::99")
    assert client_ip(req) == "2001:db8::99"


def test_by_default_a_spoofed_forwarded_header_from_a_trusted_proxy_is_ignored(settings):
    # The proxy overwrote X-Forwarded-For with the real client and passed the client's own
    # Forwarded header through: the address comes from X-Forwarded-For only.
    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]
    req = request_from(
        "127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9", HTTP_FORWARDED="for=10.0.0.5"
    )
    assert client_ip(req) == "203.0.113.9"
    assert client_ip(request_from("127.0.0.1", HTTP_FORWARDED="for=10.0.0.5")) == "127.0.0.1"


def test_in_forwarded_mode_x_forwarded_for_is_ignored(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]
    settings.FORWARDED_HEADER = "Forwarded"
    req = request_from(
        "127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.0.5", HTTP_FORWARDED="for=203.0.113.9"
    )
    assert client_ip(req) == "203.0.113.9"
    assert client_ip(request_from("127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.0.5")) == "127.0.0.1"
