"""Sends a user to the password change page before anything else when someone else chose
their password, an owner asked for a new one, or it is older than their projects allow."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from callvault.accounts.passwords import password_age_ok
from callvault.accounts.twofactor import ENROL_URL_NAMES

# Besides the change itself: leaving, switching the language, and what never uses the
# session login (the API authenticates by key, the health check by nothing). And the second
# factor's login step and enrolment (with the step-up it needs): a person with a factor
# passes it before changing the password (SecondFactorMiddleware, just before us), and
# neither middleware may send a person back and forth between them.
ALLOWED_URL_NAMES = (
    "password_change",
    "password_change_done",
    "logout",
    "set_language",
    *ENROL_URL_NAMES,
)
ALLOWED_PREFIXES = ("/api/", "/healthz")


class PasswordChangeRequiredMiddleware:
    """After authentication: a user with must_change_password, or whose password is older
    than the strictest maximum age of their projects, only reaches the change page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if (
            getattr(user, "is_authenticated", False)
            and not self._allowed(request.path)
            and (
                getattr(user, "must_change_password", False)
                or not password_age_ok(request.session, user)
            )
        ):
            return redirect("password_change")
        return self.get_response(request)

    @staticmethod
    def _allowed(path: str) -> bool:
        if path.startswith(ALLOWED_PREFIXES):
            return True
        return path in {reverse(name) for name in ALLOWED_URL_NAMES}
