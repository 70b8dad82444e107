"""Supplies the audit context (IP, user agent, request id, actor) to everything a request does."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from callvault.audit.context import (
    ANONYMOUS,
    Actor,
    AuditContext,
    new_request_id,
    set_actor,
    use_context,
)
from callvault.lib.clientip import client_ip, peer_is_trusted_proxy

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def member_actor(user: object) -> Actor:
    """The actor for a logged-in person."""
    return Actor.member(user)


class RequestContextMiddleware:
    """Opens the audit context for a request and tags the response with its request id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ip = client_ip(request)
        # A proxy's request id is kept (it ties our events to its logs) only if we trust it.
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        trusted = peer_is_trusted_proxy(request) and _REQUEST_ID.match(incoming)
        request_id = incoming if trusted else new_request_id()
        request.client_ip = ip  # type: ignore[attr-defined]
        request.request_id = request_id  # type: ignore[attr-defined]
        ctx = AuditContext(
            actor=ANONYMOUS,
            ip=ip,
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:400],
            request_id=request_id,
        )
        with use_context(ctx):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class AuthenticatedActorMiddleware:
    """After authentication: a logged-in user becomes the actor of this request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            set_actor(member_actor(request.user))
        return self.get_response(request)
