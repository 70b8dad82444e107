"""Helpers the order tests share: API calls, row counts, and the search for leaked digits."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import phonenumbers
from django.test import Client

from callvault.accounts.actions import do_create_api_key
from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.lib.fakephones import STYLES
from callvault.orders.models import Comment, IdempotencyRecord, Order, OrderItem
from callvault.vault.phones import open_phone

if TYPE_CHECKING:
    from typing import TypeAlias

    from django.test.client import _MonkeyPatchedWSGIResponse

    # What the test client returns: a response with .json(), .context and the request.
    Response: TypeAlias = _MonkeyPatchedWSGIResponse

LEADS_URL = "/api/v1/leads"
FORM_URL = "/api/v1/leads/form"
ORDERS_URL = "/api/v1/orders"


class HttpsClient(Client):
    """A test client whose requests arrive over HTTPS, as in production (where the settings
    redirect plain HTTP)."""

    def generic(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["secure"] = True
        return super().generic(*args, **kwargs)


def login(member: Membership) -> HttpsClient:
    """A client logged in as the member's user."""
    client = HttpsClient()
    client.force_login(member.user)
    return client


def make_key(
    project: Project,
    *,
    can_create_leads: bool = True,
    can_read_orders: bool = False,
    can_update_orders: bool = False,
    can_read_audit: bool = False,
) -> str:
    """A new API key's secret with the given permissions."""
    _, secret = do_create_api_key(
        project,
        "Test key",
        can_create_leads=can_create_leads,
        can_read_orders=can_read_orders,
        can_update_orders=can_update_orders,
        can_read_audit=can_read_audit,
    )
    return secret


def post_lead(client: Client, key: str, body: Any, **headers: Any) -> Response:
    """POST a JSON lead with the key in X-Api-Key."""
    return client.post(
        LEADS_URL, body, content_type="application/json", HTTP_X_API_KEY=key, **headers
    )


def get_api(client: Client, key: str, path: str, **params: Any) -> Response:
    """GET an API path with the key in X-Api-Key."""
    return client.get(path, params, HTTP_X_API_KEY=key)


def row_counts() -> dict[str, int]:
    """How many rows intake can write, to show a failure wrote none."""
    return {
        "orders": Order.objects.count(),
        "items": OrderItem.objects.count(),
        "comments": Comment.objects.count(),
        "idempotency": IdempotencyRecord.objects.count(),
    }


def styles_of(e164: str) -> list[str]:
    """A reserved +1 number written in every style of callvault.lib.fakephones."""
    area, line = e164[2:5], e164[-3:]
    return [style.format(a=area, l=line) for style in STYLES]


def digit_runs(e164: str) -> list[re.Pattern[str]]:
    """Patterns for the national number and its last 7 digits, with any separators between."""
    national = phonenumbers.national_significant_number(phonenumbers.parse(e164))
    return [re.compile(r"[\s().\-/]*".join(seq)) for seq in (national, national[-7:])]


def assert_no_digits(text: str, *e164s: str) -> None:
    """Fail if the text carries any of the numbers in any writing (beyond the mask)."""
    for e164 in e164s:
        assert e164 not in text
        for pattern in digit_runs(e164):
            assert not pattern.search(text), f"digits of the phone leaked: {pattern.pattern}"


def event_text(event: AuditEvent) -> str:
    """Everything an audit event stores, as one string to search."""
    return json.dumps(
        [event.object_repr, event.object_id, event.actor_name, event.changes, event.extra]
    )


def assert_masked(mask: str, e164: str, visible: int = 2) -> None:
    """The mask keeps the country code and only the last `visible` digits."""
    assert mask.startswith("+1 ")
    shown = re.sub(r"\D", "", mask)
    assert shown == "1" + (e164[-visible:] if visible else "")


def reveal_e164(order: Order) -> str:
    """The stored number; tests open the vault directly to know which digits must not show."""
    return open_phone(order.phone_sealed, project_id=order.project_id, field="phone")
