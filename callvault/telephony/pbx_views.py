"""The endpoints a PBX or SIP proxy calls (docs/telephony.md, "The PBX API").

Every answer is small plain text or JSON with no number in it, except resolve's 200 body,
which is the number the token stands for, for the proxy to dial. What may carry a number
(the caller's on inbound, a PBX's cause or id on events) is read from the body only: a query
string is written to every access log on its way.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict

from callvault.telephony import throttle
from callvault.telephony.actions import (
    EVENT_STATES,
    INBOUND_WINDOW_SECONDS,
    InboundLimited,
    TokenRead,
    TokenRefused,
    call_id_for_token,
    do_inbound_call,
    do_record_call_event,
    do_resolve_token,
    token_read,
)
from callvault.telephony.models import Pbx
from callvault.telephony.pbx_auth import pbx_endpoint
from callvault.telephony.providers.sip_token import TOKEN_PATTERN
from callvault.vault.logfilter import PHONE_LIKE

MAX_BODY = 16_384
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
CAUSE = re.compile(r"^[A-Za-z0-9_.:/ -]{1,100}$")
EXTERNAL_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
MAX_DURATION = 7 * 24 * 3600


def _text(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")


def _form(request: HttpRequest) -> QueryDict:
    """The body's form fields, with or without a form content type: proxies build these
    requests by hand."""
    if request.content_type in FORM_TYPES:
        return request.POST
    raw = request.body
    return QueryDict(raw if len(raw) <= MAX_BODY else b"")


def _field(request: HttpRequest, form: QueryDict, name: str) -> str:
    """One field of the token lookup (which carries no number in its request): the body's
    value, else the query string's, without copying either (the lookup is hot)."""
    return (form.get(name) if name in form else request.GET.get(name)) or ""


def _json_or_form(request: HttpRequest) -> dict[str, Any] | None:
    """The body as a JSON object, or its form fields (never the query string's); None when
    it is neither."""
    if request.content_type == "application/json":
        if len(request.body) > MAX_BODY:
            return None
        try:
            data = json.loads(request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None
    return {key: value for key, value in _form(request).items()}


def _unprocessable(field: str, problem: str) -> JsonResponse:
    return JsonResponse({"ok": False, "field": field, "error": problem}, status=422)


def _token_read(request: HttpRequest) -> TokenRead | None:
    return token_read(_field(request, _form(request), "token").strip())


@pbx_endpoint(ride=_token_read)
def resolve(
    request: HttpRequest, pbx: Pbx, row: tuple[Any, ...] | None, read: TokenRead | None
) -> HttpResponse:
    """The number a call token stands for, once (200 `+E.164`; 404, 403, 410 otherwise).
    The token is read in the same statement as the PBX: a proxy worker waits on this."""
    form = _form(request)
    token, operator = _field(request, form, "token"), _field(request, form, "operator")
    try:
        call_id, number = do_resolve_token(
            pbx, token.strip(), operator.strip(), (read, row) if read is not None else None
        )
    except TokenRefused as refused:
        return _text(refused.word, refused.status)
    response = _text(number)
    response["X-Callvault-Call"] = str(call_id)
    return response


def _when(value: Any) -> datetime | None:
    """An ISO 8601 moment (UTC when it names no zone); ValueError when it is not one."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("at")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _event_fields(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The event's fields checked, or the name of the first bad one."""
    call_id = data.get("call")
    if isinstance(call_id, str) and call_id.isdigit():
        call_id = int(call_id)
    if not isinstance(call_id, int) or isinstance(call_id, bool) or call_id < 1:
        return {}, "call"
    if data.get("event") not in EVENT_STATES:
        return {}, "event"
    try:
        at = _when(data.get("at"))
    except ValueError:
        return {}, "at"
    duration = data.get("duration")
    if duration is not None and (
        not isinstance(duration, int)
        or isinstance(duration, bool)
        or not 0 <= duration <= MAX_DURATION
    ):
        return {}, "duration"
    cause = data.get("cause") or ""
    if not isinstance(cause, str) or (cause and not CAUSE.match(cause)) or PHONE_LIKE.search(cause):
        return {}, "cause"
    external_id = data.get("external_id") or ""
    if not isinstance(external_id, str) or (external_id and not EXTERNAL_ID.match(external_id)):
        return {}, "external_id"
    fields = {
        "call_id": call_id,
        "event": data["event"],
        "at": at,
        "duration": duration,
        "cause": cause,
        "external_id": external_id,
    }
    return fields, ""


def _call_by_token(pbx: Pbx, data: dict[str, Any]) -> HttpResponse | None:
    """Put the call a `token` names into `data["call"]` (the reference proxy reports calls by
    the token its operator dialled); the 404 or 422 answer when it names none."""
    token = data.get("token")
    if token in (None, ""):
        return None
    if not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token.strip()):
        return _unprocessable("token", "a call token: ct- and 32 lowercase hex characters")
    call_id = call_id_for_token(pbx, token.strip())
    if call_id is None:
        return JsonResponse({"ok": False, "error": "unknown call"}, status=404)
    if data.get("call") not in (None, "") and str(data["call"]) != str(call_id):
        return _unprocessable("token", "names another call than `call`")
    data["call"] = call_id
    return None


@pbx_endpoint
def events(request: HttpRequest, pbx: Pbx) -> HttpResponse:
    """How a call goes: ringing, answered, ended, busy, no_answer, cancelled, failed; the
    call named by its id (`call`) or by the token its operator dialled (`token`)."""
    data = _json_or_form(request)
    if data is None:
        return _unprocessable("body", "a JSON object")
    refused = _call_by_token(pbx, data)
    if refused is not None:
        return refused
    if isinstance(data.get("duration"), str) and data["duration"].isdigit():
        data["duration"] = int(data["duration"])
    fields, bad = _event_fields(data)
    if bad:
        return _unprocessable(bad, "missing or not valid")
    try:
        do_record_call_event(pbx, fields.pop("call_id"), fields.pop("event"), **fields)
    except LookupError:
        return JsonResponse({"ok": False, "error": "unknown call"}, status=404)
    return JsonResponse({"ok": True})


@pbx_endpoint
def inbound(request: HttpRequest, pbx: Pbx) -> HttpResponse:
    """Who is calling: a display name, the order, the operator to route to; never the number.
    The caller's number is taken from the body only (429 past the PBX's lookups a minute)."""
    for name in ("caller", "called"):
        if name in request.GET:
            return _unprocessable(name, "send it in the body (form or JSON), not in the address")
    data = _json_or_form(request)
    caller = data.get("caller") if data is not None else None
    if not isinstance(caller, str) or not caller.strip() or len(caller) > 40:
        return _unprocessable("caller", "the caller's number is required")
    try:
        answer = do_inbound_call(pbx, caller.strip())
    except InboundLimited:
        response = JsonResponse(
            {"ok": False, "error": "too many caller lookups this minute"}, status=429
        )
        window = INBOUND_WINDOW_SECONDS
        response["Retry-After"] = str(window - int(throttle.now()) % window)
        return response
    if "text/plain" in request.headers.get("Accept", "") and "json" not in request.headers.get(
        "Accept", ""
    ):
        return _text(answer.display_name)
    return JsonResponse(
        {
            "display_name": answer.display_name,
            "order": answer.order_number,
            "operator": answer.operator,
            "call": answer.call.pk,
        },
        json_dumps_params={"ensure_ascii": False},
    )
