"""API endpoints for leads and orders; the key decides the project, other projects are 404."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from ninja import Field, Form, Router, Schema
from ninja.errors import HttpError
from ninja.responses import Status as Reply

from callvault.accounts.actions import api_key_actor, authenticate_api_key
from callvault.accounts.allowlist import key_may_enter_from, refuse_key
from callvault.accounts.models import ApiKey
from callvault.audit.context import set_actor
from callvault.guard.middleware import api_quota_refusal
from callvault.lib.clientip import client_ip
from callvault.lib.errors import FieldErrors
from callvault.orders.actions import StaleOrder, do_change_status
from callvault.orders.intake import IdempotencyConflict, Lead, LeadItem, do_create_order
from callvault.orders.models import Order, Status

router = Router(tags=["orders"])

Short = Annotated[str, Field(max_length=200)]


class LeadItemSchema(Schema):
    """A product line: SKU and quantity."""

    sku: str = Field(..., min_length=1, max_length=64)
    quantity: int = Field(1, ge=1, le=1000)


class LeadSchema(Schema):
    """A lead from a landing page or a partner."""

    phone: str = Field(..., min_length=1, max_length=40, description="Any common format")
    name: str = Field("", max_length=200)
    address: str = Field("", max_length=1000)
    items: list[LeadItemSchema] = Field(default_factory=list, max_length=50)
    source: Short = ""
    utm_source: Short = ""
    utm_medium: Short = ""
    utm_campaign: Short = ""
    utm_content: Short = ""
    utm_term: Short = ""
    partner_ref: str = Field("", max_length=100)
    comment: str = Field("", max_length=4000)

    def to_lead(self) -> Lead:
        """The action's input."""
        data = self.dict()
        data["items"] = [LeadItem(sku=i.sku, quantity=i.quantity) for i in self.items]
        return Lead(**data)


class LeadOut(Schema):
    """The order a lead became."""

    id: int
    number: int
    phone_masked: str
    status: str
    duplicate_of: int | None


class ItemOut(Schema):
    """A product line of an order."""

    sku: str
    name: str
    quantity: int
    price: str
    is_upsell: bool


class OrderOut(Schema):
    """An order as integrations see it: the phone only masked."""

    id: int
    number: int
    status: str
    status_group: str
    customer_name: str
    phone_masked: str
    address: str
    source: str
    partner_ref: str
    duplicate_of: int | None
    items: list[ItemOut]
    total: str
    created_at: datetime
    updated_at: datetime


class OrderPage(Schema):
    """A page of orders and the cursor for the next one (keyset paging by id)."""

    items: list[OrderOut]
    next_after: int | None


class StatusIn(Schema):
    """A status change from an integration (e.g. the delivery service)."""

    status: str = Field(..., min_length=1, max_length=40, description="The status code")
    reason: str = Field("", max_length=1000)


class ErrorOut(Schema):
    """An error answer."""

    detail: Any


def _lead_out(order: Order) -> LeadOut:
    return LeadOut(
        id=order.pk,
        number=order.number,
        phone_masked=order.phone_masked(),
        status=order.status.code,
        duplicate_of=order.duplicate_of_id,
    )


def _order_out(order: Order) -> OrderOut:
    items = [
        ItemOut(
            sku=i.product.sku,
            name=i.product.name,
            quantity=i.quantity,
            price=str(i.price),
            is_upsell=i.is_upsell,
        )
        for i in order.items.all()
    ]
    return OrderOut(
        id=order.pk,
        number=order.number,
        status=order.status.code,
        status_group=order.status.group,
        customer_name=order.customer_name,
        phone_masked=order.phone_masked(),
        address=order.address,
        source=order.source,
        partner_ref=order.partner_ref,
        duplicate_of=order.duplicate_of_id,
        items=items,
        total=str(order.total()),
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


def _key(request: HttpRequest) -> ApiKey:
    key: ApiKey = request.api_key  # type: ignore[attr-defined]
    return key


def _idempotency_key(request: HttpRequest, fallback: str = "") -> str | None:
    value = request.headers.get("Idempotency-Key", "") or fallback
    value = value.strip()
    if len(value) > 200:
        raise FieldErrors.one("Idempotency-Key", "at most 200 characters")
    return value or None


def _take_lead(key: ApiKey, lead: Lead, idem: str | None) -> tuple[int, Order]:
    if not key.can_create_leads:
        raise HttpError(403, "this API key may not post leads")
    try:
        result = do_create_order(key.project, lead, idempotency_key=idem)
    except IdempotencyConflict:
        raise HttpError(409, "this Idempotency-Key was already used for a different lead") from None
    return (200 if result.replayed else 201), result.order


@router.post(
    "/leads",
    response={
        200: LeadOut,
        201: LeadOut,
        401: ErrorOut,
        403: ErrorOut,
        409: ErrorOut,
        422: ErrorOut,
    },
    summary="Post a lead (JSON)",
    description="Creates an order. Send an `Idempotency-Key` header to make retries safe: a "
    "retry answers 200 with the first order instead of creating another.",
)
def post_lead(request: HttpRequest, payload: LeadSchema) -> Reply[LeadOut]:
    status, order = _take_lead(_key(request), payload.to_lead(), _idempotency_key(request))
    return Reply(status, _lead_out(order))


class LeadForm(LeadSchema):
    """The same lead as a plain HTML form posts it, with the key as a field."""

    api_key: str = Field("", max_length=200)
    idempotency_key: str = Field("", max_length=200)
    sku: str = Field("", max_length=64, description="One product SKU (forms have no lists)")
    quantity: int = Field(1, ge=1, le=1000)


def _form_error_page(request: HttpRequest, errors: dict[str, str], status: int) -> HttpResponse:
    return render(request, "orders/lead_form_error.html", {"errors": errors}, status=status)


@router.post(
    "/leads/form",
    auth=None,
    summary="Post a lead (HTML form)",
    description="For landing pages without JavaScript: form-encoded fields, the key "
    "in `api_key`. Redirects to the project's thank-you page (303).",
    response={303: None, 201: LeadOut, 200: LeadOut},
)
def post_lead_form(request: HttpRequest, form: Form[LeadForm]) -> Any:
    key = authenticate_api_key(form.api_key or request.headers.get("X-Api-Key"))
    if key is None:
        return _form_error_page(request, {"api_key": "a valid, unrevoked API key is required"}, 401)
    ip = getattr(request, "client_ip", None) or client_ip(request)
    if not key_may_enter_from(key, ip):
        refuse_key(key, ip)
        return _form_error_page(
            request, {"api_key": "access from this address is not allowed"}, 403
        )
    set_actor(api_key_actor(key))
    lead = LeadSchema(**form.dict(exclude={"api_key", "idempotency_key", "sku", "quantity"}))
    if form.sku:
        lead.items.append(LeadItemSchema(sku=form.sku, quantity=form.quantity))
    try:
        status, order = _take_lead(
            key, lead.to_lead(), _idempotency_key(request, form.idempotency_key)
        )
    except FieldErrors as exc:
        return _form_error_page(request, exc.errors, 422)
    except HttpError as exc:
        # 403: the key may not post leads; 409: the idempotency key was used for another lead.
        field = "idempotency_key" if exc.status_code == 409 else "api_key"
        return _form_error_page(request, {field: exc.message}, exc.status_code)
    if key.project.thank_you_url:
        return HttpResponseRedirect(key.project.thank_you_url, status=303)
    return Reply(status, _lead_out(order))


def _readable(request: HttpRequest) -> ApiKey:
    key = _key(request)
    if not key.can_read_orders:
        raise HttpError(403, "this API key may not read orders")
    return key


@router.get(
    "/orders",
    response={200: OrderPage, 401: ErrorOut, 403: ErrorOut, 429: ErrorOut},
    summary="List orders",
    description="Newest first, 1-200 a page; pass `next_after` back as `before` for the next "
    "page. Each order returned counts as one read against the key's quota (an empty page as "
    "one): a page that would go past it answers 429.",
)
def list_orders(
    request: HttpRequest,
    status: str = "",
    partner_ref: str = "",
    updated_since: datetime | None = None,
    before: int | None = None,
    limit: int = 50,
) -> OrderPage | HttpResponse:
    key = _readable(request)
    limit = max(1, min(limit, 200))
    qs = Order.objects.for_api_key(key)
    if status:
        qs = qs.filter(status__code=status)
    if partner_ref:
        qs = qs.filter(partner_ref=partner_ref)
    if updated_since:
        qs = qs.filter(updated_at__gte=updated_since)
    if before:
        qs = qs.filter(pk__lt=before)
    page = list(
        qs.select_related("status", "project")
        .prefetch_related("items__product")
        .order_by("-pk")[: limit + 1]
    )
    more = len(page) > limit
    page = page[:limit]
    # Each order returned is one read: a page of 200 must not cost what one order does.
    if (refused := api_quota_refusal(key, n=max(1, len(page)))) is not None:
        return refused
    return OrderPage(
        items=[_order_out(o) for o in page], next_after=page[-1].pk if more and page else None
    )


def _get_order(key: ApiKey, order_id: int) -> Order:
    order = (
        Order.objects.for_api_key(key)
        .select_related("status", "project")
        .prefetch_related("items__product")
        .filter(pk=order_id)
        .first()
    )
    if order is None:
        raise HttpError(404, "no such order")
    return order


@router.get(
    "/orders/{order_id}",
    response={200: OrderOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 429: ErrorOut},
    summary="One order",
)
def get_order(request: HttpRequest, order_id: int) -> OrderOut | HttpResponse:
    key = _readable(request)
    if (refused := api_quota_refusal(key)) is not None:
        return refused
    return _order_out(_get_order(key, order_id))


@router.post(
    "/orders/{order_id}/status",
    response={
        200: OrderOut,
        204: None,
        401: ErrorOut,
        403: ErrorOut,
        404: ErrorOut,
        409: ErrorOut,
        422: ErrorOut,
    },
    summary="Change an order's status",
    description="Answers with the order (200) when the key may also read orders and its read "
    "quota allows one more read (the order counts as one), else with 204 No Content.",
)
def change_status(request: HttpRequest, order_id: int, payload: StatusIn) -> OrderOut | Reply[None]:
    key = _key(request)
    if not key.can_update_orders:
        raise HttpError(403, "this API key may not change orders")
    order = (
        Order.objects.filter(project_id=key.project_id, pk=order_id)
        .select_related("status", "project")
        .first()
    )
    if order is None:
        raise HttpError(404, "no such order")
    status = Status.objects.filter(
        project_id=key.project_id, code=payload.status, is_active=True
    ).first()
    if status is None:
        raise FieldErrors.one("status", "unknown status")
    try:
        do_change_status(order, status, reason=payload.reason)
    except StaleOrder:
        raise HttpError(409, "the order changed meanwhile; read it again") from None
    if not key.can_read_orders:
        # The answer is a read: without this, posting the status an order already has
        # would let a key that may only move statuses read every order of its project.
        return Reply(204, None)
    if api_quota_refusal(key) is not None:
        # The change is made; only the read it would carry is refused by the quota.
        return Reply(204, None)
    return _order_out(_get_order(key, order_id))
