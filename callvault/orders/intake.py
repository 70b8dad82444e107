"""Lead intake: a lead from a landing page or partner becomes an order, once.

Validation names each field, the whole order is one transaction, an Idempotency-Key retry
returns the first order, and a number already ordered within the project's window marks
the new order as a duplicate."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from callvault.accounts.models import Project
from callvault.audit.recorder import diff, record_event
from callvault.lib.errors import FieldErrors
from callvault.orders.actions import (
    PHONE_FIELD,
    _add_comment,
    _item_text,
    _order_state,
    redact_free_text,
)
from callvault.orders.models import (
    IdempotencyRecord,
    Order,
    OrderItem,
    Product,
    Status,
)
from callvault.vault.keyring import get_keyring
from callvault.vault.phones import PhoneError, parse_phone, seal_phone


@dataclass
class LeadItem:
    """A product line of an incoming lead."""

    sku: str
    quantity: int = 1


@dataclass
class Lead:
    """An incoming lead as the intake API accepts it, before it becomes an order."""

    phone: str
    name: str = ""
    address: str = ""
    items: list[LeadItem] = field(default_factory=list)
    source: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_content: str = ""
    utm_term: str = ""
    partner_ref: str = ""
    comment: str = ""

    def fingerprint(self) -> str:
        """A digest of the content, to tell a true retry from a different lead reusing a key.

        Keyed (the key ring's index key, in its own domain): the content holds the number as
        typed, and a plain hash of it could be brute-forced from the stored record.
        """
        data = json.dumps(self.__dict__, default=lambda o: o.__dict__, sort_keys=True)
        mac = hmac.new(get_keyring().index_key, b"callvault/lead-fingerprint\0", hashlib.sha256)
        mac.update(data.encode())
        return mac.hexdigest()


@dataclass
class LeadResult:
    """What intake answers: the order, and whether it was a replay of an earlier request."""

    order: Order
    replayed: bool = False


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a different lead."""


def _next_number(project: Project) -> int:
    # One UPDATE ... RETURNING takes the project row's lock until commit (PostgreSQL) or runs
    # inside SQLite's write lock (3.35+ has RETURNING), so two leads never share a number.
    table = Project._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET order_seq = order_seq + 1 WHERE id = %s RETURNING order_seq",  # noqa: S608
            [project.pk],
        )
        row = cursor.fetchone()
    return int(row[0])


def _initial_status(project: Project) -> Status:
    status = Status.objects.filter(project=project, is_initial=True).first()
    if status is None:
        raise RuntimeError(f"project {project.pk} has no initial status")
    return status


def _resolve_items(project: Project, items: list[LeadItem]) -> list[tuple[Product, int]]:
    skus = {item.sku for item in items}
    products = {
        p.sku: p for p in Product.objects.filter(project=project, sku__in=skus, is_active=True)
    }
    errors: dict[str, str] = {}
    resolved = []
    for i, item in enumerate(items):
        if item.sku not in products:
            errors[f"items.{i}.sku"] = "unknown product"
        elif not 1 <= item.quantity <= 1000:
            errors[f"items.{i}.quantity"] = "must be between 1 and 1000"
        else:
            resolved.append((products[item.sku], item.quantity))
    if errors:
        raise FieldErrors(errors)
    return resolved


def _find_original(project: Project, phone_index: str) -> int | None:
    since = timezone.now() - timedelta(hours=project.duplicate_window_hours)
    newest = (
        Order.objects.filter(project=project, phone_index=phone_index, created_at__gte=since)
        .order_by("-created_at", "-id")
        .values_list("id", "duplicate_of_id")
        .first()
    )
    if newest is None:
        return None
    # Point at the first order of the chain so duplicates of duplicates group together.
    return int(newest[1] or newest[0])


def do_create_order(
    project: Project, lead: Lead, *, idempotency_key: str | None = None
) -> LeadResult:
    """Turn a lead into an order: validate, seal the phone, flag a duplicate, record it.

    With an idempotency key, a retry of the same lead returns the first order; the same key
    with a different lead raises IdempotencyConflict. A concurrent retry that loses the race
    on the unique key rolls back whole and then finds the winner's order.
    """
    fingerprint = lead.fingerprint()
    if idempotency_key:
        existing = _replay(project, idempotency_key, fingerprint)
        if existing is not None:
            return existing
    try:
        return _create_order(project, lead, idempotency_key, fingerprint)
    except IntegrityError:
        if idempotency_key:
            existing = _replay(project, idempotency_key, fingerprint)
            if existing is not None:
                return existing
        raise


def _replay(project: Project, key: str, fingerprint: str) -> LeadResult | None:
    record = (
        IdempotencyRecord.objects.select_related("order", "order__status")
        .filter(project=project, key=key)
        .first()
    )
    if record is None:
        return None
    if record.fingerprint != fingerprint:
        raise IdempotencyConflict(key)
    return LeadResult(record.order, replayed=True)


def _validate_lead(project: Project, lead: Lead) -> dict[str, str]:
    errors: dict[str, str] = {}
    limits = {
        "name": 200,
        "address": 1000,
        "source": 200,
        "utm_source": 200,
        "utm_medium": 200,
        "utm_campaign": 200,
        "utm_content": 200,
        "utm_term": 200,
        "partner_ref": 100,
        "comment": 4000,
    }
    for name, limit in limits.items():
        if len(getattr(lead, name)) > limit:
            errors[name] = f"at most {limit} characters"
    if len(lead.items) > 50:
        errors["items"] = "at most 50 items"
    return errors


@transaction.atomic
def _create_order(
    project: Project, lead: Lead, idempotency_key: str | None, fingerprint: str
) -> LeadResult:
    errors = _validate_lead(project, lead)
    try:
        parsed = parse_phone(lead.phone, region=project.default_region, prefer_tz=project.time_zone)
    except PhoneError as exc:
        errors["phone"] = str(exc)
    items: list[tuple[Product, int]] = []
    try:
        items = _resolve_items(project, lead.items)
    except FieldErrors as exc:
        errors.update(exc.errors)
    if errors:
        raise FieldErrors(errors)
    sealed = seal_phone(parsed, project_id=project.pk, field=PHONE_FIELD)
    original = _find_original(project, sealed.blind_index)
    status = _initial_status(project)
    order = Order.objects.create(
        project=project,
        number=_next_number(project),
        status=status,
        customer_name=lead.name.strip(),
        phone_sealed=sealed.ciphertext,
        phone_index=sealed.blind_index,
        phone_mask=str.__str__(sealed),
        customer_tz=parsed.time_zone or "",
        address=lead.address.strip(),
        source=lead.source,
        utm_source=lead.utm_source,
        utm_medium=lead.utm_medium,
        utm_campaign=lead.utm_campaign,
        utm_content=lead.utm_content,
        utm_term=lead.utm_term,
        partner_ref=lead.partner_ref,
        next_call_at=timezone.now(),
        in_queue=status.is_queued,
        queue_rank=status.queue_rank,
        duplicate_of_id=original,
    )
    lines = OrderItem.objects.bulk_create(
        OrderItem(
            order=order,
            project=project,
            product=product,
            quantity=qty,
            price=product.price,
            is_upsell=False,
        )
        for product, qty in items
    )
    changes: dict[str, Any] = redact_free_text(diff({}, _order_state(order)))
    # Each line by its id, as adding one later records it, so every item has its history.
    changes.update({f"item {line.pk}": [None, _item_text(line)] for line in lines})
    record_event(
        "order.create",
        project_id=project.pk,
        object_type="order",
        object_id=order.pk,
        object_repr=str(order),
        changes=changes,
        extra={
            "items": [f"{qty} x {p.sku}" for p, qty in items],
            "duplicate_of": original,
        },
    )
    if lead.comment.strip():
        _add_comment(order, lead.comment.strip(), author=None)
    if idempotency_key:
        IdempotencyRecord.objects.create(
            project=project, key=idempotency_key, fingerprint=fingerprint, order=order
        )
    return LeadResult(order)


# Fields whose before -> after the record keeps (the phone separately, as "changed").
