"""A member suspended after a hard quota breach reaches nothing of that project until an
owner lifts the suspension; a quota refusal raised by a view becomes the 429 page."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from callvault.accounts.models import ApiKey, Role
from callvault.guard.models import QuotaKind, Suspension
from callvault.guard.quotas import QuotaExceeded, charge, describe_refusal

# A project's pages; logout, the language switch and the account pages live elsewhere and
# so stay reachable, as does the API (it authenticates keys, not members).
PROJECT_PATH = re.compile(r"^/p/(?P<slug>[-\w]+)/")


def suspended_in(user_id: int, project_slug: str) -> bool:
    """Whether the user's membership in the project is suspended (owners never are)."""
    return (
        Suspension.objects.filter(
            project__slug=project_slug, membership__user_id=user_id, lifted_at__isnull=True
        )
        .exclude(membership__role=Role.OWNER)
        .exists()
    )


class SuspensionMiddleware:
    """After authentication: a suspended member's requests to the project answer 403."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        match = PROJECT_PATH.match(request.path_info)
        user_id = user.pk if getattr(user, "is_authenticated", False) else None
        if match and user_id is not None and suspended_in(user_id, match["slug"]):
            response = render(request, "guard/suspended.html", status=403)
            if request.headers.get("HX-Request"):
                response["HX-Refresh"] = "true"  # show the whole page, not a fragment
            return response
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view's QuotaExceeded: the action did not happen; say which quota and when it
        resets (a fragment for HTMX requests)."""
        if not isinstance(exception, QuotaExceeded):
            return None
        return quota_reached_response(request, exception)


def quota_reached_response(request: HttpRequest, exc: QuotaExceeded) -> HttpResponse:
    """The 429 answer of a page, with Retry-After."""
    template = "guard/quota_reached.html"
    if request.headers.get("HX-Request"):
        template = "guard/quotas_refused.html"
    response = render(request, template, describe_refusal(exc), status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


def api_quota_refusal(key: ApiKey, n: int = 1) -> HttpResponse | None:
    """Charge `n` API reads (one by default; a page of orders: one per order) to the key:
    None when it may go on, else the 429 JSON answer (with Retry-After) that the endpoint
    returns instead of the data."""
    try:
        charge(None, QuotaKind.API_READ, api_key=key, n=n)
    except QuotaExceeded as exc:
        body = {
            "detail": f"API read quota reached: at most {exc.limit} a minute for this key",
            "quota": exc.kind,
            "limit": exc.limit,
            "retry_after": exc.retry_after,
        }
        response = JsonResponse(body, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    return None
