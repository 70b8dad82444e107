"""Step-up: before a sensitive action (revealing a number, exporting, changing security
settings) the member proves again who they are; the proof stays valid a few minutes."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

SESSION_KEY = "callvault_step_up_at"
DEFAULT_MINUTES = 5


def mark(request: HttpRequest) -> None:
    """The member has just proved who they are (password or second factor)."""
    request.session[SESSION_KEY] = time.time()


def is_fresh(request: HttpRequest, minutes: int = DEFAULT_MINUTES) -> bool:
    """Whether the last proof is younger than `minutes`."""
    at = request.session.get(SESSION_KEY)
    return isinstance(at, int | float) and 0 <= time.time() - at < minutes * 60


def minutes_for(project_slug: str | None) -> int:
    """The project's step-up validity (its security policy), or the default."""
    if not project_slug:
        return DEFAULT_MINUTES
    from callvault.accounts.models import SecurityPolicy

    value = (
        SecurityPolicy.objects.filter(project__slug=project_slug)
        .values_list("step_up_minutes", flat=True)
        .first()
    )
    return int(value or DEFAULT_MINUTES)


def step_up_url(next_url: str) -> str:
    """The step-up page, returning to `next_url` afterwards."""
    return f"{reverse('account:step_up')}?{urlencode({'next': next_url})}"


def step_up_response(request: HttpRequest, next_url: str | None = None) -> HttpResponse:
    """Send the member to the step-up page (HTMX requests through HX-Redirect)."""
    target = step_up_url(next_url or _return_to(request))
    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return HttpResponseRedirect(target)


def _return_to(request: HttpRequest) -> str:
    # A POST cannot be replayed after the detour: go back to the page it came from.
    if request.method == "GET":
        return request.get_full_path()
    referer = request.headers.get("Referer", "")
    host = request.get_host()
    if referer and f"//{host}/" in referer:
        return "/" + referer.split(f"//{host}/", 1)[1]
    return reverse("home")


def step_up_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Decorator: the view runs only within the project's step-up window."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_fresh(request, minutes_for(kwargs.get("project_slug"))):
            return step_up_response(request)
        return view(request, *args, **kwargs)

    return wrapper
