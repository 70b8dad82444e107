"""The agent's API under /agent/v1/ (docs/monitoring.md, "The agent's API").

Plain JSON views rather than the django-ninja API: the agent is no API key holder, its
screenshots are multipart, and the contract's answers (401 with `detail`, 413, 415, 422
naming `heartbeats[3].state`) are simplest to keep exact by hand. CSRF does not apply: no
cookie authenticates here, only the device token in `Authorization: Bearer cvd_...`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from callvault.accounts.allowlist import member_may_enter_from, notify_refused
from callvault.audit.context import Actor, set_actor
from callvault.lib.clientip import client_ip
from callvault.lib.errors import FieldErrors
from callvault.monitoring import actions, throttle
from callvault.monitoring.heartbeats import do_ingest_heartbeats, parse_heartbeats, parse_time
from callvault.monitoring.models import Device
from callvault.monitoring.policy import policy_document
from callvault.monitoring.screenshots import (
    ScreenshotRefused,
    do_receive_screenshot,
    parse_client_id,
)

POLICY_HEADER = "X-Policy-Version"
# Requests per device and minute. A queue drained after an outage sends full batches of
# MAX_BATCH heartbeats back to back, so 120 batches a minute is far beyond any backlog a
# day could build; screenshots are a few per ten minutes.
RATE_LIMITS = {"heartbeats": 120, "screenshots": 30, "policy": 30}
# Wrong enrolment codes per address before it has to wait (a code has 50 bits; this
# makes guessing one hopeless, and an honest typo costs nothing).
ENROL_FAILURES = 10
ENROL_WINDOW_SECONDS = 15 * 60
# Room for the multipart framing and the small fields around the image.
MULTIPART_SLACK = 64 * 1024
# Screenshot bytes per device and minute, in largest screenshots: a queue drained after a
# day offline is a few hundred small files, while 30 requests a minute at the largest size
# would be a stream no screen produces.
SCREENSHOT_BUDGET = 5

DeviceView = Callable[[HttpRequest, Device], HttpResponse]


def _error(
    status: int, detail: str, errors: dict[str, str] | None = None, **more: Any
) -> JsonResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors:
        body["errors"] = errors
    return JsonResponse({**body, **more}, status=status)


def server_time() -> str:
    """The server's clock as the agent writes times (UTC with Z, milliseconds): answers
    that a PC's clock matters to carry it (the Date header, set by gunicorn and nginx on
    every answer, has whole seconds only)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def field_error(status: int, exc: FieldErrors, **more: Any) -> JsonResponse:
    """An error naming its fields: `detail` says "field: message", `errors` maps them."""
    detail = "; ".join(f"{name}: {message}" for name, message in exc.errors.items())
    return _error(status, detail, exc.errors, **more)


def _json_body(request: HttpRequest) -> Any:
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise FieldErrors.one("body", "not JSON") from None


def _ip(request: HttpRequest) -> str:
    return getattr(request, "client_ip", None) or client_ip(request)


def _bearer(request: HttpRequest) -> str:
    scheme, _sep, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else ""


def device_view(kind: str) -> Callable[[DeviceView], Callable[[HttpRequest], HttpResponse]]:
    """The device's token, its member's allowed networks and its rate; the agent becomes the
    request's actor, and the answer carries the policy's version."""

    def decorate(view: DeviceView) -> Callable[[HttpRequest], HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest) -> HttpResponse:
            ip = _ip(request)
            device, reason = actions.authenticate_device(_bearer(request), ip=ip)
            if device is None:
                detail = {
                    "revoked": "this device was revoked: enrol it again to resume",
                    "inactive member": "the member of this device is no longer active",
                }.get(reason, "a valid device token is required")
                return _error(401, detail)
            set_actor(Actor.agent(device.pk, device.hostname))
            if not member_may_enter_from(device.membership, ip):
                return _refuse_address(device, ip)
            limit = RATE_LIMITS[kind]
            response: HttpResponse
            if throttle.over_limit(f"monitoring:rate:{kind}:{device.pk}", limit, 60):
                response = _error(429, f"more than {limit} requests a minute: slow down")
                response["Retry-After"] = "60"
            else:
                response = view(request, device)
            response[POLICY_HEADER] = str(device.project.monitoring_policy.version)
            return response

        return wrapper

    return decorate


def _refuse_address(device: Device, ip: str) -> HttpResponse:
    """Record, tell the owners (once an hour per address) and answer 403."""
    actions.refuse_device(device, "address", ip=ip)
    who = f"agent {device.hostname} ({device.membership.user.username})"
    notify_refused(device.project_id, who, ip, event_id=None)
    return _error(403, "access from this address is not allowed")


@csrf_exempt
@require_POST
def enrol(request: HttpRequest) -> HttpResponse:
    """Trade a one-time code for a device token and the policy."""
    ip = _ip(request)
    failures = f"monitoring:enrol-failures:{ip}"
    if throttle.counted(failures, ENROL_WINDOW_SECONDS) >= ENROL_FAILURES:
        response = _error(429, "too many wrong codes from this address: wait a while")
        response["Retry-After"] = str(ENROL_WINDOW_SECONDS)
        return response
    try:
        body = _json_body(request)
    except FieldErrors:
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str) or not code.strip():
        # No credential at all (a browser's form post, not JSON, say): the code is what
        # authenticates here.
        return field_error(401, FieldErrors.one("code", "an enrolment code is required"))
    row = actions.find_code(code)
    reason = "unknown" if row is None else "used" if row.used_at else ""
    if row is not None and not reason and not row.expires_at > timezone.now():
        reason = "expired"
    if reason:
        _count_failure(failures)
        actions.refuse_code(row, reason)
        return field_error(400, FieldErrors.one("code", "unknown, used or expired code"))
    assert row is not None
    if not member_may_enter_from(row.membership, ip):
        actions.refuse_code(row, "address")
        return _error(403, "access from this address is not allowed")
    try:
        enrolled = actions.do_enrol_device(
            row,
            hostname=str(body.get("hostname") or ""),
            platform=str(body.get("platform") or ""),
            agent_version=str(body.get("agent_version") or ""),
        )
    except FieldErrors as exc:
        return field_error(422, exc)
    except actions.EnrolmentRefused as refused:
        _count_failure(failures)
        actions.refuse_code(row, refused.reason)
        return field_error(400, FieldErrors.one("code", "unknown, used or expired code"))
    project = enrolled.device.project
    response = JsonResponse(
        {
            "device_id": enrolled.device.pk,
            "token": enrolled.token,
            "policy": policy_document(project.monitoring_policy, project),
        },
        status=201,
    )
    response[POLICY_HEADER] = str(project.monitoring_policy.version)
    response["Cache-Control"] = "no-store"  # the token is in it
    return response


def _count_failure(key: str) -> None:
    throttle.count(key, ENROL_WINDOW_SECONDS)


@csrf_exempt
@require_GET
@device_view("policy")
def policy(request: HttpRequest, device: Device) -> HttpResponse:
    """The project's policy, as the agent applies it."""
    actions.touch_device(device, _ip(request))
    project = device.project
    return JsonResponse(policy_document(project.monitoring_policy, project))


@csrf_exempt
@require_POST
@device_view("heartbeats")
def heartbeats(request: HttpRequest, device: Device) -> HttpResponse:
    """A batch of heartbeats, merged into spans."""
    try:
        beats = parse_heartbeats(_json_body(request))
    except FieldErrors as exc:
        return field_error(422, exc, server_time=server_time())
    done = do_ingest_heartbeats(device, beats, ip=_ip(request))
    return JsonResponse(
        {"accepted": done.accepted, "last_seq": done.last_seq, "server_time": server_time()}
    )


def _whole_number(request: HttpRequest, name: str) -> None:
    value = request.POST.get(name)
    if value is not None and (not value.isdigit() or not 0 < int(value) < 100_000):
        raise FieldErrors.one(name, "a positive whole number")


@csrf_exempt
@require_POST
@device_view("screenshots")
def screenshots(request: HttpRequest, device: Device) -> HttpResponse:
    """One screenshot (multipart: image, taken_at, client_id, width, height)."""
    limit = device.project.monitoring_policy.max_screenshot_bytes
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > limit + MULTIPART_SLACK:
        # Refused before the body is read.
        return _error(413, f"image: larger than this project's limit of {limit} bytes")
    budget = f"monitoring:screenshot-bytes:{device.pk}"
    sent = int(length) if length.isdigit() else limit
    if throttle.counted(budget, 60) + sent > limit * SCREENSHOT_BUDGET:
        # Before the body is read or decoded; the agent keeps the screenshot and retries.
        response = _error(429, "more screenshot bytes a minute than this project allows: wait")
        response["Retry-After"] = "60"
        return response
    throttle.count(budget, 60, sent)
    actions.touch_device(device, _ip(request))
    try:
        if not (request.content_type or "").startswith("multipart/"):
            return _error(415, "image: send the image as multipart/form-data")
        client_id = parse_client_id(request.POST.get("client_id"))
        try:
            taken_at = parse_time(request.POST.get("taken_at"))
        except ValueError:
            raise FieldErrors.one("taken_at", "an ISO 8601 time") from None
        _whole_number(request, "width")
        _whole_number(request, "height")
        upload = request.FILES.get("image")
        if upload is None:
            raise FieldErrors.one("image", "the image file is required")
        if upload.size is not None and upload.size > limit:
            return _error(413, f"image: larger than this project's limit of {limit} bytes")
        received = do_receive_screenshot(
            device, client_id=client_id, taken_at=taken_at, content=upload.read()
        )
    except FieldErrors as exc:
        return field_error(422, exc, server_time=server_time())
    except ScreenshotRefused as refused:
        return _error(refused.status, refused.message, {refused.field: refused.message})
    return JsonResponse({"id": received.screenshot.pk}, status=201 if received.created else 200)
