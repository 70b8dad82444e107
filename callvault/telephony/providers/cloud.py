"""Cloud PBX callback: one signed HTTP POST asks a hosted PBX to ring the operator, then the
customer (the pattern most hosted PBXs offer).

The body is the project's JSON template with placeholders in its string values:
{call_id}, {order_number}, {operator_extension} and {number} (the customer's E.164). The
template is parsed first and the values put into the parsed strings, so nothing in a value can
change the JSON's shape. Signed like callvault's other webhooks: the headers
X-Callvault-Timestamp and X-Callvault-Signature ("sha256=" and the hex HMAC-SHA256 of the
timestamp, a dot and the body, keyed with the provider's secret). The request carries the
number, so it goes only over https to a public address checked when it is sent (or to a host
the installation lists, `TELEPHONY_CLOUD_HOSTS`), pinned to that address, within one deadline
(outbound.py). Redirects are not followed; the answer's body is never logged or recorded (a PBX
may echo the number), only its status and, from a JSON answer, the PBX's call id.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.telephony import outbound
from callvault.telephony.models import CallState, ProviderKind
from callvault.telephony.providers import ProviderError, StartResult, customer_number

if TYPE_CHECKING:
    from callvault.accounts.models import Membership
    from callvault.telephony.models import Call, SipAccount, TelephonySettings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 8.0
SIGNATURE_HEADER = "X-Callvault-Signature"
TIMESTAMP_HEADER = "X-Callvault-Timestamp"
PLACEHOLDERS = ("{call_id}", "{order_number}", "{operator_extension}", "{number}")
DEFAULT_TEMPLATE = (
    '{"call_id": "{call_id}", "order": "{order_number}", '
    '"from": "{operator_extension}", "to": "{number}"}'
)
# A PBX's call id in its answer, under one of these keys.
ID_KEYS = ("call_id", "id", "uuid")
MAX_ANSWER_BYTES = 65_536


class TemplateError(ValueError):
    """The body template is not a JSON object."""


def parse_template(text: str) -> dict[str, Any]:
    """The template as a JSON object (the default when blank); TemplateError otherwise."""
    try:
        parsed = json.loads(text or DEFAULT_TEMPLATE)
    except json.JSONDecodeError:
        raise TemplateError("not JSON") from None
    if not isinstance(parsed, dict):
        raise TemplateError("not a JSON object")
    return parsed


def fill(value: Any, values: dict[str, str]) -> Any:
    """The parsed template with every placeholder in its strings replaced."""
    if isinstance(value, str):
        for placeholder, text in values.items():
            value = value.replace(placeholder, text)
        return value
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    return value


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def _external_id(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    if not isinstance(answer, dict):
        return ""
    for key in ID_KEYS:
        value = answer.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)[:200]
    return ""


def cloud_hosts() -> frozenset[str]:
    """Hosts the callback may reach over plain http and at private addresses (a PBX on a
    closed network, tests): `CALLVAULT_TELEPHONY_CLOUD_HOSTS`; none by default."""
    return frozenset(h.lower() for h in getattr(django_settings, "TELEPHONY_CLOUD_HOSTS", []))


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str, str]:
    """POST without following redirects, to a checked public address (outbound.py):
    (status or None, the PBX's call id, the short cause when there is no status)."""
    deadline = outbound.Deadline(TIMEOUT_SECONDS)
    try:
        with outbound.request(
            "POST", url, headers=headers, body=body, deadline=deadline, allowed_hosts=cloud_hosts()
        ) as response:
            status = int(response.status)
            answer = response.read(MAX_ANSWER_BYTES) if 200 <= status < 300 else b""
            return status, _external_id(answer), ""
    except outbound.OutboundRefused:
        return None, "", "address_refused"
    except TimeoutError:
        return None, "", "timeout"
    except (OSError, ValueError, http.client.HTTPException):
        return None, "", "unreachable"


class CloudProvider:
    """Asks a hosted PBX over HTTP to call the operator, then the customer."""

    kind = ProviderKind.CLOUD.value
    needs_sip_account = True
    remote = True

    def missing(self, settings: TelephonySettings) -> list[str]:
        """The callback address and a body template that is a JSON object."""
        missing = [] if settings.cloud_url else [str(gettext_lazy("the callback URL"))]
        try:
            parse_template(settings.cloud_body_template)
        except TemplateError:
            missing.append(str(gettext_lazy("a body template that is a JSON object")))
        return missing

    def start(
        self,
        call: Call,
        member: Membership,
        settings: TelephonySettings,
        sip_account: SipAccount | None,
    ) -> StartResult:
        """One signed POST; 2xx means the PBX is ringing the operator."""
        from callvault.telephony.setup_actions import provider_secret

        if sip_account is None or self.missing(settings):
            raise ProviderError("not_configured")
        values = {
            "{call_id}": str(call.pk),
            "{order_number}": str(call.order.number if call.order else ""),
            "{operator_extension}": sip_account.username,
            "{number}": customer_number(call),
        }
        body = json.dumps(fill(parse_template(settings.cloud_body_template), values)).encode()
        del values  # the number goes no further than the request
        headers = {
            **{str(k): str(v) for k, v in (settings.cloud_headers or {}).items()},
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "callvault",
        }
        secret = provider_secret(settings)
        if secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
        status, external_id, cause = post(settings.cloud_url, body, headers)
        if status is not None and 200 <= status < 300:
            return StartResult(
                ok=True,
                message=_("Your phone will ring: answer it and you are connected."),
                state=CallState.DIALING,
                external_id=external_id,
            )
        outcome = cause if status is None else f"http {status}"
        log.info("cloud callback of call %s: %s", call.pk, outcome)
        return StartResult(
            ok=False,
            message=_("The phone system did not take the call. Try again, or tell an admin."),
            state=CallState.FAILED,
            result=outcome,
        )
