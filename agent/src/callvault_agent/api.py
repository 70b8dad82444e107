"""The client of the agent API (`/agent/v1/`), on the standard library's urllib.

Every call answers a `Reply` (any HTTP status) or raises `Unreachable` (no answer at all:
refused, reset, timed out, DNS, TLS); deciding what a status means is the caller's job.
Redirects are never followed: a 3xx is answered as it is (the device token would otherwise
go along to wherever the redirect points).
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from callvault_agent import __version__
from callvault_agent.language import accept_language

USER_AGENT = f"callvault-agent/{__version__}"
TIMEOUT = 20.0
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class Unreachable(Exception):
    """The server gave no HTTP answer."""


@dataclass
class Reply:
    """An HTTP answer: status, headers and the decoded JSON body (None when not JSON)."""

    status: int
    headers: Message = field(repr=False)
    body: Any

    @property
    def policy_version(self) -> int | None:
        value = self.headers.get("X-Policy-Version")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    @property
    def retry_after(self) -> float:
        """Seconds from a Retry-After header (0 when absent or a date)."""
        try:
            return max(0.0, float(self.headers.get("Retry-After") or 0))
        except ValueError:
            return 0.0

    @property
    def is_redirect(self) -> bool:
        return 300 <= self.status < 400

    @property
    def date(self) -> datetime | None:
        """The `Date` header (whole seconds), when there is a valid one."""
        value = self.headers.get("Date")
        try:
            moment = parsedate_to_datetime(value) if value else None
        except (TypeError, ValueError):
            return None
        if moment is None or moment.tzinfo is None:
            return None
        return moment.astimezone(UTC)

    @property
    def server_time(self) -> datetime | None:
        """`server_time` of a JSON answer (ISO 8601, milliseconds), when there is a valid one."""
        value = self.body.get("server_time") if isinstance(self.body, dict) else None
        if not isinstance(value, str) or len(value) > 40:
            return None
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment.astimezone(UTC) if moment.tzinfo else None

    def detail(self) -> str:
        """What the server said went wrong, in one line."""
        if self.is_redirect:
            where = (self.headers.get("Location") or "nowhere")[:200]
            return f"HTTP {self.status}: a redirect to {where} (redirects are not followed)"
        if isinstance(self.body, dict):
            for key in ("detail", "error", "message"):
                if self.body.get(key):
                    return str(self.body[key])[:300]
            return json.dumps(self.body)[:300]
        return f"HTTP {self.status}"


def check_server_url(url: str, *, allow_http: bool = False) -> str:
    """The server's base URL without a trailing slash; plain HTTP only to this machine unless
    allowed, because the device token travels in every request."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK and not allow_http:
        raise ValueError("plain http sends the device token unencrypted: use https")
    return url.rstrip("/")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Answers a redirect as it is instead of following it: urllib would send the request
    again, Authorization header and all, to any host the Location names, even over plain
    http. The agent's URL is the server's own; a redirect is an error to fix there."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None


class Client:
    """One server, one device token (None before enrolment).

    `language` is the Accept-Language header (the server's notice comes in it); by default
    the operating system's language, none when it has none (the C locale).
    """

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        cafile: str | None = None,
        timeout: float = TIMEOUT,
        language: str | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.language = language if language is not None else accept_language()
        self._context = ssl.create_default_context(cafile=cafile)
        # No proxies from the environment: the agent talks to its server directly. Given a
        # subclass of the redirect handler, build_opener leaves the default one out.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=self._context),
            _NoRedirects(),
        )

    def __repr__(self) -> str:
        return f"Client({self.server!r})"

    def enrol(self, code: str, hostname: str, platform: str) -> Reply:
        body = {
            "code": code,
            "hostname": hostname,
            "platform": platform,
            "agent_version": __version__,
        }
        return self._json("POST", "/agent/v1/enrol", body, auth=False)

    def policy(self) -> Reply:
        return self._request("GET", "/agent/v1/policy", None, {})

    def heartbeats(self, items: list[dict[str, Any]]) -> Reply:
        return self._json("POST", "/agent/v1/heartbeats", {"heartbeats": items})

    def screenshot(
        self, *, image: bytes, mime: str, taken_at: str, client_id: str, width: int, height: int
    ) -> Reply:
        fields = {
            "taken_at": taken_at,
            "client_id": client_id,
            "width": str(width),
            "height": str(height),
        }
        extension = "webp" if mime == "image/webp" else "jpg"
        body, content_type = multipart(fields, "image", f"screen.{extension}", mime, image)
        return self._request("POST", "/agent/v1/screenshots", body, {"Content-Type": content_type})

    def _json(self, method: str, path: str, payload: Any, *, auth: bool = True) -> Reply:
        data = json.dumps(payload, separators=(",", ":")).encode()
        return self._request(method, path, data, {"Content-Type": "application/json"}, auth=auth)

    def _request(
        self,
        method: str,
        path: str,
        data: bytes | None,
        headers: dict[str, str],
        *,
        auth: bool = True,
    ) -> Reply:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **headers}
        if self.language:
            headers["Accept-Language"] = self.language
        if auth and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(  # noqa: S310 (the scheme was checked at enrolment)
            self.server + path, data=data, method=method, headers=headers
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return Reply(response.status, response.headers, _decode(response.read()))
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    raw = exc.read()
                except OSError:
                    raw = b""
                return Reply(exc.code, exc.headers, _decode(raw))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise Unreachable(_reason(exc)) from None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc) or type(exc).__name__


def multipart(
    fields: dict[str, str], file_field: str, filename: str, mime: str, content: bytes
) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type header."""
    boundary = f"callvault-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{filename}"\r\nContent-Type: {mime}\r\n\r\n'.encode()
    )
    parts.append(content)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
