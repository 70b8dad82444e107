"""The one function that decides a request's client address.

The allow-lists, lockouts, rate limits and the audit trail all call `client_ip`. The one
configured forwarding header (`FORWARDED_HEADER`: X-Forwarded-For or Forwarded, never both)
is believed only when the direct peer is a configured trusted proxy; then the right-most
address that is not itself a trusted proxy is the client (anything to its left was written
by the client and can be forged).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def trusted_networks() -> tuple[IPNetwork, ...]:
    """The configured trusted proxies as networks (cached per distinct setting)."""
    return _networks(tuple(settings.TRUSTED_PROXIES))


def _parse_ip(value: str) -> str | None:
    value = value.strip().strip('"')
    if value.startswith("["):  # [v6]:port
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _is_trusted(ip: str, networks: tuple[IPNetwork, ...]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr in net for net in networks)


def _forwarded_chain(request: HttpRequest) -> list[str]:
    """Hops named by the one configured header (FORWARDED_HEADER), left to right.

    Only that header is read: a proxy that overwrites X-Forwarded-For usually passes the
    client's own `Forwarded` through untouched, so reading "whichever is present" would let
    any client pick its address.
    """
    if settings.FORWARDED_HEADER.lower() == "forwarded":
        hops: list[str] = []
        for element in str(request.META.get("HTTP_FORWARDED", "")).split(","):
            for pair in element.split(";"):
                key, _, value = pair.partition("=")
                if key.strip().lower() == "for":
                    hops.append(value)
        return hops
    return str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")


def client_ip(request: HttpRequest) -> str:
    """The client's address as decided by the trusted-proxy setting."""
    peer = _parse_ip(request.META.get("REMOTE_ADDR", "")) or "0.0.0.0"  # noqa: S104
    networks = trusted_networks()
    if not networks or not _is_trusted(peer, networks):
        return peer
    client = peer
    for hop in reversed(_forwarded_chain(request)):
        ip = _parse_ip(hop)
        if ip is None:
            # An unparsable hop (e.g. "unknown") ends the trust: keep the last good one.
            break
        client = ip
        if not _is_trusted(ip, networks):
            break
    return client


def peer_is_trusted_proxy(request: HttpRequest) -> bool:
    """Whether the direct peer is one of the configured trusted proxies."""
    peer = _parse_ip(request.META.get("REMOTE_ADDR", ""))
    networks = trusted_networks()
    return bool(peer and networks and _is_trusted(peer, networks))
