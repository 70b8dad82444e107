"""Every change to orders, items, products, statuses and comments: atomic and audited."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from callvault.accounts.models import Project, User
from callvault.audit.context import current
from callvault.audit.models import ActorKind
from callvault.audit.recorder import Sealed, diff, plain, record_event, snapshot, update_recorded
from callvault.lib.errors import FieldErrors
from callvault.orders.models import (
    Comment,
    Order,
    OrderItem,
    Product,
    QueueClass,
    Status,
    StatusChange,
    StatusGroup,
    WorkSettings,
)
from callvault.vault.logfilter import redact
from callvault.vault.phones import PhoneError, parse_phone, seal_phone

PHONE_FIELD = "phone"

# (code, English name, group, requires a reason); names are translated on display, so a
# project that renames a status sees its own name, and the defaults appear in both languages.
DEFAULT_STATUSES: list[tuple[str, str, str, bool, str]] = [
    ("new", gettext_noop("New"), StatusGroup.PROCESSING, False, QueueClass.NEW),
    ("callback", gettext_noop("Call back"), StatusGroup.PROCESSING, False, QueueClass.CALLBACK),
    ("no_answer", gettext_noop("No answer"), StatusGroup.PROCESSING, False, QueueClass.RETRY),
    ("accepted", gettext_noop("Accepted"), StatusGroup.ACCEPTED, False, ""),
    ("cancelled", gettext_noop("Cancelled"), StatusGroup.CANCELLED, True, ""),
    ("unreachable", gettext_noop("Unreachable"), StatusGroup.CANCELLED, False, ""),
    ("spam", gettext_noop("Spam"), StatusGroup.SPAM, True, ""),
    ("shipped", gettext_noop("Shipped"), StatusGroup.SHIPPED, False, ""),
    ("delivered", gettext_noop("Delivered"), StatusGroup.DELIVERED, False, ""),
    ("returned", gettext_noop("Returned"), StatusGroup.RETURNED, False, ""),
]


@transaction.atomic
def do_create_default_statuses(project: Project) -> list[Status]:
    """Seed a new project's statuses and work settings; "new" is the one lead intake uses."""
    statuses = []
    for position, (code, name, group, reason, queue_class) in enumerate(DEFAULT_STATUSES):
        status = Status.objects.create(
            project=project,
            code=code,
            name=name,
            group=group,
            position=position,
            is_initial=(code == "new"),
            requires_reason=reason,
            queue_class=queue_class,
        )
        record_event(
            "status.create",
            project_id=project.pk,
            object_type="status",
            object_id=status.pk,
            object_repr=name,
            changes=diff({}, snapshot(status, STATUS_AUDITED_FIELDS)),
        )
        statuses.append(status)
    work = WorkSettings.objects.create(
        project=project,
        status_after_max_attempts=next(s for s in statuses if s.code == "unreachable"),
    )
    rank_statuses(work)
    record_event(
        "work_settings.create",
        project_id=project.pk,
        object_type="work_settings",
        object_id=work.pk,
        object_repr=str(work),
        changes=diff({}, work_state(work, WORK_AUDITED_FIELDS)),
    )
    return statuses


# A status's fields as the record keeps them (queue_rank is derived bookkeeping).
STATUS_AUDITED_FIELDS = (
    "code",
    "name",
    "group",
    "queue_class",
    "requires_reason",
    "position",
    "is_active",
    "is_initial",
)
# The work rules an owner may edit, each recorded as before -> after.
WORK_AUDITED_FIELDS = (
    "calling_hours_start",
    "calling_hours_end",
    "lock_minutes",
    "queue_priority",
    "no_answer_backoff",
    "max_attempts",
    "status_after_max_attempts",
    "script",
)


def work_state(work: WorkSettings, fields: Any, *, redacted: bool = True) -> dict[str, Any]:
    """The work settings as the record keeps them: the last-attempt status by its code, the
    script (free text) without anything phone-shaped unless `redacted` is False (to compare)."""
    state = snapshot(work, fields)
    if "status_after_max_attempts" in state:
        status = work.status_after_max_attempts
        state["status_after_max_attempts"] = status.code if status else None
    if "script" in state and redacted:
        state["script"] = redact(state["script"])
    return {name: plain(value) for name, value in state.items()}


def rank_statuses(work: WorkSettings) -> None:
    """Give each queued status its class's place in the project's queue order, and re-rank
    the waiting orders to match (a rare, whole-project step after a settings change)."""
    priority = work.priority()
    for status in Status.objects.filter(project_id=work.project_id):
        rank = priority.index(status.queue_class) if status.queue_class else 0
        if status.queue_rank != rank:
            Status.objects.filter(pk=status.pk).update(queue_rank=rank)
            # Bookkeeping derived from settings, not an edit of the orders: no event per row;
            # the settings change that caused it is recorded.
            Order.objects.filter(status=status, in_queue=True).update(queue_rank=rank)


@transaction.atomic
def do_create_product(
    project: Project, *, sku: str, name: str, price: Decimal | str, is_upsell: bool = False
) -> Product:
    """A product the shop sells."""
    errors: dict[str, str] = {}
    sku, name = sku.strip(), name.strip()
    if not sku or len(sku) > 64:
        errors["sku"] = "a SKU of 1 to 64 characters is required"
    elif Product.objects.filter(project=project, sku=sku).exists():
        errors["sku"] = "a product with this SKU exists"
    if not name or len(name) > 200:
        errors["name"] = "a name of 1 to 200 characters is required"
    try:
        amount = Decimal(str(price))
        if amount < 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
            raise ValueError
    except (ArithmeticError, ValueError):
        errors["price"] = "a non-negative amount with at most 2 decimals is required"
    if errors:
        raise FieldErrors(errors)
    product = Product.objects.create(
        project=project, sku=sku, name=name, price=amount, is_upsell=is_upsell
    )
    record_event(
        "product.create",
        project_id=project.pk,
        object_type="product",
        object_id=product.pk,
        object_repr=str(product),
        changes={
            "sku": [None, sku],
            "name": [None, name],
            "price": [None, str(amount)],
            "is_upsell": [None, is_upsell],
        },
    )
    return product


ORDER_AUDITED_FIELDS = (
    "number",
    "status",
    "customer_name",
    "customer_tz",
    "address",
    "source",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "partner_ref",
    "next_call_at",
    "attempts",
    "assigned_to",
    "duplicate_of",
)
EDITABLE_FIELDS = ("customer_name", "address", "next_call_at", PHONE_FIELD)
# Fields people type freely: customers put their number into the name or the address, so the
# record keeps these with phone-shaped runs blanked, as it does comments.
FREE_TEXT_FIELDS = frozenset(
    {
        "customer_name",
        "address",
        "source",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "utm_term",
        "partner_ref",
    }
)


def redact_free_text(changes: dict[str, Any]) -> dict[str, Any]:
    """The changes with phone-shaped digits blanked in free-text fields (only there: a
    date such as 2026-11-28 looks like a phone number to the pattern)."""
    return {
        name: [redact(v) if isinstance(v, str) else v for v in change]
        if name in FREE_TEXT_FIELDS and isinstance(change, list)
        else change
        for name, change in changes.items()
    }


class StaleOrder(Exception):
    """Someone else saved the order after this editor loaded it."""


def _save_order(
    order: Order,
    before: dict[str, Any],
    *,
    action: str,
    expected_version: int | None,
    extra: dict[str, Any] | None = None,
) -> Order:
    """Write changed fields with the version check, and record before -> after."""
    # The diff decides whether anything changed; the record keeps it with free text redacted.
    changes = diff(before, _order_state(order))
    if not changes:
        return order
    order.in_queue = order.status.is_queued
    order.queue_rank = order.status.queue_rank
    current_version = order.version if expected_version is None else expected_version
    fields = [f.attname for f in Order._meta.concrete_fields if not f.primary_key]
    values = {
        name: getattr(order, name)
        for name in fields
        if name not in ("version", "created_at", "project_id", "number")
    }
    values["updated_at"] = timezone.now()
    values["version"] = current_version + 1
    # The version-checked write and its event: one round trip on PostgreSQL. A write the
    # check refused marks the atomic block for rollback, which takes the event back.
    updated = update_recorded(
        Order.objects.filter(pk=order.pk, version=current_version),
        values,
        action,
        project_id=order.project_id,
        object_type="order",
        object_id=order.pk,
        object_repr=str(order),
        changes=redact_free_text(changes),
        extra=extra,
    )
    if updated != 1:
        raise StaleOrder(order.pk)
    order.version = current_version + 1
    order.updated_at = values["updated_at"]
    return order


def _order_state(order: Order) -> dict[str, Any]:
    """The audited fields as the record keeps them: the status by its code and the operator
    by username (readable, and still meaningful after either is renamed or deleted), the
    phone only as its blind index."""
    state = snapshot(order, ORDER_AUDITED_FIELDS)
    state["status"] = order.status.code if order.status_id else None
    state["assigned_to"] = order.assigned_to.username if order.assigned_to else None
    state[PHONE_FIELD] = Sealed(order.phone_index)
    return state


@transaction.atomic
def do_update_order(
    order: Order, values: dict[str, Any], *, expected_version: int | None = None
) -> Order:
    """Edit the customer's details; a new phone is re-sealed only if the number changed."""
    unknown = set(values) - set(EDITABLE_FIELDS)
    if unknown:
        raise FieldErrors({name: "cannot be changed here" for name in sorted(unknown)})
    errors: dict[str, str] = {}
    before = _order_state(order)
    if "customer_name" in values:
        order.customer_name = str(values["customer_name"]).strip()
        if len(order.customer_name) > 200:
            errors["customer_name"] = "at most 200 characters"
    if "address" in values:
        order.address = str(values["address"]).strip()
        if len(order.address) > 1000:
            errors["address"] = "at most 1000 characters"
    if "next_call_at" in values:
        when = values["next_call_at"]
        if when is not None and (not isinstance(when, datetime) or timezone.is_naive(when)):
            errors["next_call_at"] = "a date and time with a time zone is required"
        order.next_call_at = when
    if PHONE_FIELD in values:
        project = order.project
        try:
            parsed = parse_phone(
                str(values[PHONE_FIELD]), region=project.default_region, prefer_tz=project.time_zone
            )
        except PhoneError as exc:
            errors[PHONE_FIELD] = str(exc)
        else:
            sealed = seal_phone(parsed, project_id=order.project_id, field=PHONE_FIELD)
            # AEAD nonces are random: re-sealing the same number would look like a change.
            if sealed.blind_index != order.phone_index:
                order.phone_sealed = sealed.ciphertext
                order.phone_index = sealed.blind_index
                order.phone_mask = str.__str__(sealed)
                order.customer_tz = parsed.time_zone or ""
    if errors:
        raise FieldErrors(errors)
    return _save_order(order, before, action="order.update", expected_version=expected_version)


@transaction.atomic
def do_change_status(
    order: Order, status: Status, *, reason: str = "", expected_version: int | None = None
) -> Order:
    """Move an order to another status of its project; some statuses need a reason."""
    if status.project_id != order.project_id or not status.is_active:
        raise FieldErrors.one("status", "unknown status")
    reason = reason.strip()
    if status.requires_reason and not reason:
        raise FieldErrors.one("reason", "a reason is required for this status")
    if len(reason) > 1000:
        raise FieldErrors.one("reason", "at most 1000 characters")
    before = _order_state(order)
    previous = order.status
    order.status = status
    if status.group != StatusGroup.PROCESSING:
        order.next_call_at = None
    # Setting a status finishes the operator's turn with the order: the queue may hand it
    # out again (if it is still queued) when its time comes.
    order.locked_by, order.locked_until = None, None
    saved = _save_order(
        order,
        before,
        action="order.status",
        expected_version=expected_version,
        extra={"reason": redact(reason)} if reason else None,
    )
    record_status_change(order, previous, status)
    if reason:
        _add_comment(order, reason, author=None)
    return saved


def record_status_change(order: Order, previous: Status, status: Status) -> None:
    """Keep a status change for the dashboard and reports (nothing when it did not change)."""
    if previous.pk != status.pk:
        StatusChange.objects.create(
            project_id=order.project_id,
            order=order,
            user_id=acting_user_id(),
            from_status=previous,
            to_status=status,
            to_group=status.group,
        )


def acting_user_id() -> int | None:
    """The id of the member acting in this request, if the actor is a member."""
    actor = current().actor
    return int(actor.id) if actor.kind == ActorKind.MEMBER and actor.id.isdigit() else None


@transaction.atomic
def do_assign_order(order: Order, user: User | None) -> Order:
    """Give the order to an operator (or take it back to nobody)."""
    if (
        user is not None
        and not user.memberships.filter(project_id=order.project_id, is_active=True).exists()
    ):
        raise FieldErrors.one("assigned_to", "not an active member of this project")
    before = _order_state(order)
    order.assigned_to = user
    return _save_order(order, before, action="order.assign", expected_version=None)


@transaction.atomic
def do_add_item(
    order: Order,
    product: Product,
    quantity: int,
    *,
    is_upsell: bool = False,
    price: Decimal | None = None,
) -> OrderItem:
    """Add a product line (an upsell when offered on the call)."""
    if product.project_id != order.project_id or not product.is_active:
        raise FieldErrors.one("product", "unknown product")
    if not 1 <= quantity <= 1000:
        raise FieldErrors.one("quantity", "must be between 1 and 1000")
    if price is not None and price < 0:
        raise FieldErrors.one("price", "must not be negative")
    item = OrderItem.objects.create(
        order=order,
        project_id=order.project_id,
        product=product,
        quantity=quantity,
        price=product.price if price is None else price,
        is_upsell=is_upsell,
    )
    record_event(
        "order.item_add",
        project_id=order.project_id,
        object_type="order",
        object_id=order.pk,
        object_repr=str(order),
        changes={f"item {item.pk}": [None, _item_text(item)]},
    )
    return item


def _item_text(item: OrderItem) -> str:
    """A product line as the record shows it: "2 x TEA @ 990.00"."""
    return f"{item.quantity} x {item.product.sku} @ {item.price}"


@transaction.atomic
def do_remove_item(item: OrderItem) -> None:
    """Remove a product line."""
    order = item.order
    text = _item_text(item)
    item_id = item.pk
    item.delete()
    record_event(
        "order.item_remove",
        project_id=order.project_id,
        object_type="order",
        object_id=order.pk,
        object_repr=str(order),
        changes={f"item {item_id}": [text, None]},
    )


@transaction.atomic
def do_set_item_quantity(item: OrderItem, quantity: int) -> OrderItem:
    """Change how many of a product line the customer takes; the agreed price stays.

    Like adding and removing items, this does not bump the order's version: the version
    guards the customer's details and the status against a second editor, and the queue
    never hands one order to two operators, so item edits need no such check (and the card
    can update its items in place without making its other forms stale).
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 1000:
        raise FieldErrors.one("quantity", "must be between 1 and 1000")
    # The row as stored, locked: the record's "before" is what was there, not what a stale
    # page thought was there.
    stored = OrderItem.objects.select_for_update().select_related("product").get(pk=item.pk)
    if stored.quantity == quantity:
        return stored
    before = f"{stored.quantity} x {stored.product.sku} @ {stored.price}"
    OrderItem.objects.filter(pk=stored.pk).update(quantity=quantity)
    stored.quantity = item.quantity = quantity
    after = f"{quantity} x {stored.product.sku} @ {stored.price}"
    record_event(
        "order.item_change",
        project_id=stored.project_id,
        object_type="order",
        object_id=stored.order_id,
        object_repr=f"#{item.order.number}",
        changes={f"item {stored.pk}": [before, after]},
    )
    return stored


def _add_comment(order: Order, text: str, *, author: User | None) -> Comment:
    # Comments are free text: the record keeps them, with anything phone-shaped blanked.
    comment = Comment.objects.create(
        order=order,
        project_id=order.project_id,
        author=author,
        author_name=current().actor.name or "system",
        text=text,
    )
    record_event(
        "order.comment",
        project_id=order.project_id,
        object_type="order",
        object_id=order.pk,
        object_repr=str(order),
        changes={f"comment {comment.pk}": [None, redact(text[:200])]},
    )
    return comment


@transaction.atomic
def do_add_comment(order: Order, text: str, *, author: User | None) -> Comment:
    """A note on the order."""
    text = text.strip()
    if not text:
        raise FieldErrors.one("text", "a comment cannot be empty")
    if len(text) > 4000:
        raise FieldErrors.one("text", "at most 4000 characters")
    return _add_comment(order, text, author=author)
