"""Requests callvault makes to an address someone configured: a cloud PBX's callback URL (the
project's settings) and a recording's URL (the PBX's upload).

Whoever sets such an address chooses where callvault connects, and the callback carries the
customer's number. So: https only, or plain http to a host the installation lists; no user
name or password in the URL; every address the host name resolves to must be public
(private, loopback, link-local such as 169.254.169.254, shared and reserved ones are refused,
IPv4-mapped IPv6 too) unless the host is listed; the connection goes to the address that was
checked (no second lookup a DNS answer could change); redirects are never followed. And the
whole exchange keeps one deadline: every connect, send and receive (the answer's headers
included) waits at most for the time left, so a server that trickles its answer a byte at a
time cannot hold a worker past it. No message here quotes the URL.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit


class OutboundRefused(Exception):
    """The request is not made: the URL or the address it resolves to is not allowed."""


class Deadline:
    """The time left for one exchange; each wait gets at most `per_op` of it."""

    def __init__(self, seconds: float, per_op: float | None = None) -> None:
        self.at = time.monotonic() + seconds
        self.per_op = per_op

    def left(self) -> float:
        """Seconds to wait for the next step; TimeoutError when none are left."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return min(left, self.per_op) if self.per_op else left


def is_public(address: str) -> bool:
    """Whether an address is one of the open internet's (not private, loopback, link-local,
    shared, reserved or unspecified; an IPv4-mapped IPv6 address counts as its IPv4 one)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is the loopback
    return ip.is_global


def literal_address(host: str) -> str | None:
    """The host as an IP address when it is written as one."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def url_problem(url: str, allowed_hosts: frozenset[str], *, allow_private: bool = False) -> str:
    """Why the URL may not be requested ("" when it may), in words that never quote it:
    https (or http to a listed host), a host, no credentials, a valid port, and a host
    written as an address must be a public one unless listed (or `allow_private`)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return "the URL cannot be read"
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.password is not None:
        return "the URL needs a host and no user name or password"
    listed = host in allowed_hosts
    if not (parts.scheme == "https" or (parts.scheme == "http" and listed)):
        return "an https address (plain http only to a host the installation allows)"
    address = literal_address(host)
    if address is not None and not (listed or allow_private) and not is_public(address):
        return "a public address (this one is private or reserved)"
    return ""


def checked_address(host: str, port: int, *, trusted: bool) -> str:
    """The address to connect to; every address of the host must be public unless trusted."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise OutboundRefused("the host name does not resolve") from None
    found = [str(info[4][0]) for info in infos]
    if not found:
        raise OutboundRefused("the host name does not resolve")
    if not trusted and not all(is_public(address) for address in found):
        raise OutboundRefused("the host resolves to a private or reserved address")
    return found[0]


class _DeadlineSocket:
    """What http.client uses of a socket (sendall, makefile, close), on the deadline. Like
    a socket, it stays open while a reader made by makefile is: http.client closes the
    connection as soon as an answer says it will close, and reads the answer afterwards."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self.sock, self.deadline = sock, deadline
        self.readers = 0
        self.closing = False

    def sendall(self, data: Any) -> None:
        self.sock.settimeout(self.deadline.left())
        self.sock.sendall(data)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        self.readers += 1
        return io.BufferedReader(_Reader(self))

    def reader_closed(self) -> None:
        self.readers -= 1
        if self.closing and self.readers <= 0:
            self.sock.close()

    def close(self) -> None:
        self.closing = True
        if self.readers <= 0:
            self.sock.close()


class _Reader(io.RawIOBase):
    """The socket's receiving side, each receive bounded by the time left."""

    def __init__(self, owner: _DeadlineSocket) -> None:
        super().__init__()
        self.owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.owner.sock.settimeout(self.owner.deadline.left())
        return self.owner.sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self.owner.reader_closed()
        super().close()


class _Pinned(http.client.HTTPConnection):
    """Connects to the address that was checked, on the deadline."""

    def __init__(self, host: str, port: int, address: str, deadline: Deadline) -> None:
        super().__init__(host, port)
        self.address, self.deadline = address, deadline

    def _open(self) -> socket.socket:
        return socket.create_connection((self.address, self.port), self.deadline.left())

    def connect(self) -> None:
        self.sock = _DeadlineSocket(self._open(), self.deadline)


class _PinnedTLS(_Pinned):
    """The same over TLS, verifying the certificate for the host name."""

    default_port = http.client.HTTPS_PORT  # no ":443" in the Host header

    def connect(self) -> None:
        raw = self._open()
        try:
            raw.settimeout(self.deadline.left())
            tls = ssl.create_default_context().wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.sock = _DeadlineSocket(tls, self.deadline)


@contextmanager
def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None = None,
    deadline: Deadline,
    allowed_hosts: frozenset[str],
    allow_private: bool = False,
) -> Iterator[http.client.HTTPResponse]:
    """The answer to one request (redirects are answers, not followed). OutboundRefused
    before connecting when the URL or its addresses are not allowed; TimeoutError past the
    deadline; OSError or HTTPException when the exchange fails."""
    problem = url_problem(url, allowed_hosts, allow_private=allow_private)
    if problem:
        raise OutboundRefused(problem)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = checked_address(host, port, trusted=host in allowed_hosts or allow_private)
    connection = (_PinnedTLS if https else _Pinned)(host, port, address, deadline)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        try:
            yield response
        finally:
            response.close()
    finally:
        connection.close()
