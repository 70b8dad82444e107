"""The JSON API (django-ninja): authentication by project API key, errors that name fields."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyHeader, HttpBearer

from callvault.accounts.actions import api_key_actor, authenticate_api_key
from callvault.accounts.allowlist import key_may_enter_from, refuse_key
from callvault.accounts.models import ApiKey
from callvault.audit.context import set_actor
from callvault.lib.clientip import client_ip
from callvault.lib.errors import FieldErrors

ADDRESS_REFUSED = "access from this address is not allowed"


def _accept(request: HttpRequest, raw: str | None) -> ApiKey | None:
    key = authenticate_api_key(raw)
    if key is not None:
        ip = getattr(request, "client_ip", None) or client_ip(request)
        if not key_may_enter_from(key, ip):
            refuse_key(key, ip)
            raise HttpError(403, ADDRESS_REFUSED)
        set_actor(api_key_actor(key))
        request.api_key = key  # type: ignore[attr-defined]
    return key


class BearerKey(HttpBearer):
    """`Authorization: Bearer cvk_...`."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return _accept(request, token)


class HeaderKey(APIKeyHeader):
    """`X-Api-Key: cvk_...`, for tools that cannot set Authorization."""

    param_name = "X-Api-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiKey | None:
        return _accept(request, key)


api = NinjaAPI(
    title="callvault API",
    version="1",
    urls_namespace="api",
    auth=[BearerKey(), HeaderKey()],
    description=(
        "Lead intake for landing pages and partners, and order reads and status updates for "
        "integrations. Authenticate with a project API key. Phone numbers are accepted in any "
        "common format and are only ever returned masked."
    ),
)


def field_errors_response(request: HttpRequest, errors: dict[str, str]) -> HttpResponse:
    """422 in the same shape as schema validation errors, one entry per field."""
    detail = [
        {"loc": ["body", *name.split(".")], "msg": msg, "type": "value_error"}
        for name, msg in errors.items()
    ]
    return api.create_response(request, {"detail": detail}, status=422)


@api.exception_handler(FieldErrors)
def on_field_errors(request: HttpRequest, exc: FieldErrors) -> HttpResponse:
    return field_errors_response(request, exc.errors)


FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@api.exception_handler(NinjaValidationError)
def on_validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    detail: list[dict[str, Any]] = []
    for err in exc.errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("payload", "body")]
        # Never echo the submitted value back: it may be a phone number.
        detail.append(
            {
                "loc": ["body", *loc] if loc else ["body"],
                "msg": err.get("msg", "invalid"),
                "type": err.get("type", "value_error"),
            }
        )
    if request.content_type in FORM_CONTENT_TYPES:
        # A plain HTML form (a landing page without JavaScript) cannot show JSON to the
        # visitor: answer with the same page the form view renders for its own errors.
        errors = {
            ".".join(part for part in d["loc"][1:] if part != "form") or "form": d["msg"]
            for d in detail
        }
        return render(request, "orders/lead_form_error.html", {"errors": errors}, status=422)
    return api.create_response(request, {"detail": detail}, status=422)


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request, {"detail": "a valid, unrevoked API key is required"}, status=401
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, {"detail": exc.message}, status=exc.status_code)


api.add_router("/", "callvault.orders.api.router")
api.add_router("/", "callvault.audit.api.router")
