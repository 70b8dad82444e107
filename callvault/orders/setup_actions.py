"""Changes to how a project works: its statuses, products and work settings.

Each action is atomic, validates everything before writing (errors name the fields), and
records before -> after. Messages are for the settings pages, so they are translated.
"""

from __future__ import annotations

import re
from datetime import time
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from callvault.accounts.models import Project
from callvault.audit.recorder import diff, record_event, snapshot
from callvault.lib.errors import FieldErrors
from callvault.orders.actions import (
    STATUS_AUDITED_FIELDS,
    WORK_AUDITED_FIELDS,
    rank_statuses,
    work_state,
)
from callvault.orders.models import (
    Order,
    Product,
    QueueClass,
    Status,
    StatusGroup,
    WorkSettings,
)

STATUS_CODE = re.compile(r"^[-a-zA-Z0-9_]{1,40}$")
STATUS_EDITABLE = ("name", "group", "queue_class", "requires_reason", "position", "is_active")
MAX_POSITION = 32767  # PositiveSmallIntegerField


def _status_state(status: Status) -> dict[str, Any]:
    return snapshot(status, STATUS_AUDITED_FIELDS)


def _last_of_its_class(status: Status, queue_class: str) -> bool:
    """Whether the status is the project's only active one of this queue class (the queue
    needs one of each: the no-answer and callback buttons move orders into them)."""
    others = Status.objects.filter(
        project_id=status.project_id,
        queue_class=queue_class,
        group=StatusGroup.PROCESSING,
        is_active=True,
    ).exclude(pk=status.pk)
    return not others.exists()


def _validate_status(status: Status, before: dict[str, Any] | None) -> dict[str, str]:
    """Errors in a status about to be saved; `before` is its saved state (None when new)."""
    errors: dict[str, str] = {}
    status.name = str(status.name).strip()
    if not status.name or len(status.name) > 100:
        errors["name"] = _("A name of 1 to 100 characters is required.")
    if status.group not in StatusGroup.values:
        errors["group"] = _("Unknown group.")
    if status.queue_class not in ("", *QueueClass.values):
        errors["queue_class"] = _("Unknown queue class.")
    elif status.queue_class and status.group != StatusGroup.PROCESSING:
        errors["queue_class"] = _("Only statuses of the processing group can be in the queue.")
    if not isinstance(status.position, int) or not 0 <= status.position <= MAX_POSITION:
        errors["position"] = _("A whole number from 0 to %(max)s is required.") % {
            "max": MAX_POSITION
        }
    if before is None:
        return errors
    if status.is_initial and not status.is_active:
        errors["is_active"] = _("New orders get this status: it cannot be deactivated.")
    meaning_changed = [
        name for name in ("group", "queue_class") if before[name] != getattr(status, name)
    ]
    if meaning_changed and Order.objects.filter(status=status).exists():
        for name in meaning_changed:
            errors[name] = _(
                "Orders have this status, so its meaning cannot change; "
                "create a new status instead."
            )
    was_queued = before["is_active"] and bool(before["queue_class"])
    still_queued = status.is_active and before["queue_class"] == status.queue_class
    if was_queued and not still_queued and _last_of_its_class(status, before["queue_class"]):
        field = "is_active" if not status.is_active else "queue_class"
        errors.setdefault(
            field, _("This is the only active status of its queue class; create another first.")
        )
    gives_up_with = WorkSettings.objects.filter(
        project_id=status.project_id, status_after_max_attempts=status
    ).exists()
    if gives_up_with and not status.is_active:
        errors["is_active"] = _(
            "The work rules give orders this status after the last attempt; "
            "choose another there first."
        )
    if gives_up_with and status.group == StatusGroup.PROCESSING:
        errors["group"] = _(
            "The work rules give orders this status after the last attempt; "
            "it cannot be a processing status."
        )
    return errors


def _rank(project_id: int) -> None:
    rank_statuses(WorkSettings.objects.get(project_id=project_id))


@transaction.atomic
def do_create_status(
    project: Project,
    *,
    code: str,
    name: str,
    group: str,
    queue_class: str = "",
    requires_reason: bool = False,
    position: int | None = None,
) -> Status:
    """A new status at the end of the list (or at `position`)."""
    code = code.strip()
    if position is None:
        last = Status.objects.filter(project=project).order_by("-position").first()
        position = min(last.position + 1, MAX_POSITION) if last else 0
    status = Status(
        project=project,
        code=code,
        name=name,
        group=group,
        queue_class=queue_class or "",
        requires_reason=bool(requires_reason),
        position=position,
    )
    errors = _validate_status(status, None)
    if not STATUS_CODE.match(code):
        errors["code"] = _("1 to 40 letters, digits, hyphens or underscores.")
    elif Status.objects.filter(project=project, code__iexact=code).exists():
        errors["code"] = _("This project already has a status with this code.")
    if errors:
        raise FieldErrors(errors)
    status.save()
    _rank(project.pk)
    record_event(
        "status.create",
        project_id=project.pk,
        object_type="status",
        object_id=status.pk,
        object_repr=status.name,
        changes=diff({}, _status_state(status)),
    )
    return status


@transaction.atomic
def do_update_status(status: Status, **values: Any) -> Status:
    """Change a status's name, group, queue class, reason rule, position or activity. The
    code is fixed (the record refers to orders' statuses by it); statuses are never deleted."""
    unknown = set(values) - set(STATUS_EDITABLE)
    if unknown:
        raise FieldErrors({name: _("This cannot be changed.") for name in sorted(unknown)})
    # Lock the row: two managers saving at once must each validate against the other's result.
    locked = Status.objects.select_for_update().get(pk=status.pk)
    before = _status_state(locked)
    for name, value in values.items():
        setattr(locked, name, value)
    locked.queue_class = locked.queue_class or ""
    errors = _validate_status(locked, before)
    if errors:
        raise FieldErrors(errors)
    locked.save(update_fields=list(values))
    changes = diff(before, _status_state(locked))
    if changes:
        _rank(locked.project_id)
        record_event(
            "status.update",
            project_id=locked.project_id,
            object_type="status",
            object_id=locked.pk,
            object_repr=locked.name,
            changes=changes,
        )
    for name in STATUS_EDITABLE:
        setattr(status, name, getattr(locked, name))
    return status


MAX_PRICE = Decimal("9999999999.99")  # max_digits=12, decimal_places=2
PRODUCT_EDITABLE = ("name", "price", "is_upsell", "is_active")


def _price(value: object) -> Decimal | None:
    """The amount, or None if it is not a non-negative amount with at most 2 decimals."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or not isinstance(exponent, int) or exponent < -2:
        return None
    return amount.quantize(Decimal("0.01")) if 0 <= amount <= MAX_PRICE else None


@transaction.atomic
def do_update_product(product: Product, **values: Any) -> Product:
    """Change a product's name, price, upsell flag or activity (its SKU is fixed: lead forms
    and integrations post it)."""
    unknown = set(values) - set(PRODUCT_EDITABLE)
    if unknown:
        raise FieldErrors({name: _("This cannot be changed.") for name in sorted(unknown)})
    errors: dict[str, str] = {}
    if "name" in values:
        values["name"] = str(values["name"]).strip()
        if not values["name"] or len(values["name"]) > 200:
            errors["name"] = _("A name of 1 to 200 characters is required.")
    if "price" in values:
        amount = _price(values["price"])
        if amount is None:
            errors["price"] = _("A non-negative amount with at most 2 decimals is required.")
        values["price"] = amount
    if errors:
        raise FieldErrors(errors)
    for flag in ("is_upsell", "is_active"):
        if flag in values:
            values[flag] = bool(values[flag])
    before = snapshot(product, values)
    for name, value in values.items():
        setattr(product, name, value)
    product.save(update_fields=list(values))
    changes = diff(before, snapshot(product, values))
    if changes:
        record_event(
            "product.update",
            project_id=product.project_id,
            object_type="product",
            object_id=product.pk,
            object_repr=str(product),
            changes=changes,
        )
    return product


MAX_BACKOFF_MINUTES = 30 * 24 * 60
MAX_BACKOFF_STEPS = 20
MAX_SCRIPT = 20000


def _items(value: object) -> list[str]:
    """A comma-separated string or a sequence, as stripped strings."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",")]
    if isinstance(value, list | tuple):
        return [str(item).strip() for item in value]
    return []


def _priority(value: object) -> str | None:
    """The classes as stored ("new,callback,retry"), or None unless each appears once."""
    names = _items(value)
    return ",".join(names) if sorted(names) == sorted(QueueClass.values) else None


def _backoff(value: object) -> str | None:
    """The delays as stored ("15,60,240"), or None unless each is a whole number of minutes."""
    parts = _items(value)
    if not 1 <= len(parts) <= MAX_BACKOFF_STEPS or not all(
        p.isascii() and p.isdigit() for p in parts
    ):
        return None
    minutes = [int(p) for p in parts]
    if not all(1 <= m <= MAX_BACKOFF_MINUTES for m in minutes):
        return None
    return ",".join(str(m) for m in minutes)


def _int_between(value: object, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if low <= number <= high else None


def _clean_work(work: WorkSettings, values: dict[str, Any]) -> dict[str, str]:
    """Normalise `values` in place; the errors, by field."""
    errors: dict[str, str] = {}
    for name in ("calling_hours_start", "calling_hours_end"):
        if name in values and not isinstance(values[name], time):
            errors[name] = _("A time of day is required.")
    start = values.get("calling_hours_start", work.calling_hours_start)
    end = values.get("calling_hours_end", work.calling_hours_end)
    if not errors and start == end:
        errors["calling_hours_end"] = _("Calls cannot start and end at the same time.")
    limits = {"lock_minutes": (1, 240), "max_attempts": (1, 100)}
    for name, (low, high) in limits.items():
        if name in values:
            number = _int_between(values[name], low, high)
            if number is None:
                errors[name] = _("A whole number from %(low)s to %(high)s is required.") % {
                    "low": low,
                    "high": high,
                }
            values[name] = number
    if "queue_priority" in values:
        values["queue_priority"] = _priority(values["queue_priority"])
        if values["queue_priority"] is None:
            errors["queue_priority"] = _(
                "Each of new orders, callbacks and no-answer retries must be placed exactly once."
            )
    if "no_answer_backoff" in values:
        values["no_answer_backoff"] = _backoff(values["no_answer_backoff"])
        if values["no_answer_backoff"] is None:
            errors["no_answer_backoff"] = _(
                "Whole numbers of minutes from 1 to %(max)s, separated by commas "
                "(at most %(steps)s)."
            ) % {"max": MAX_BACKOFF_MINUTES, "steps": MAX_BACKOFF_STEPS}
    status = values.get("status_after_max_attempts")
    if status is not None and (
        not isinstance(status, Status)
        or status.project_id != work.project_id
        or not status.is_active
    ):
        errors["status_after_max_attempts"] = _("Unknown status.")
    elif status is not None and status.group == StatusGroup.PROCESSING:
        errors["status_after_max_attempts"] = _(
            "After the last attempt the order must leave processing: choose a status of "
            "another group."
        )
    if "script" in values:
        values["script"] = str(values["script"]).replace("\r\n", "\n").strip()
        if len(values["script"]) > MAX_SCRIPT:
            errors["script"] = _("At most %(max)s characters.") % {"max": MAX_SCRIPT}
    return errors


@transaction.atomic
def do_update_work_settings(work: WorkSettings, **values: Any) -> WorkSettings:
    """Change calling hours, queue rules or the script; a new queue order re-ranks the
    waiting orders."""
    unknown = set(values) - set(WORK_AUDITED_FIELDS)
    if unknown:
        raise FieldErrors({name: _("This cannot be changed.") for name in sorted(unknown)})
    errors = _clean_work(work, values)
    if errors:
        raise FieldErrors(errors)
    before = work_state(work, values, redacted=False)
    shown_before = work_state(work, values)
    for name, value in values.items():
        setattr(work, name, value)
    work.save(update_fields=list(values))
    # Compared in full, recorded redacted: a script edit that only changes a number is still
    # a change (shown with the number blanked on both sides).
    changed = diff(before, work_state(work, values, redacted=False))
    if changed:
        if "queue_priority" in changed:
            rank_statuses(work)
        shown_after = work_state(work, values)
        record_event(
            "work_settings.update",
            project_id=work.project_id,
            object_type="work_settings",
            object_id=work.pk,
            object_repr=str(work),
            changes={name: [shown_before[name], shown_after[name]] for name in changed},
        )
    return work
