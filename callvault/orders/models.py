"""The work: orders with their items, products, per-project statuses and comments."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from callvault.accounts.models import ApiKey, Membership, Project, Role
from callvault.vault.phones import SealedPhone

if TYPE_CHECKING:
    from django.db.models import QuerySet


class StatusGroup(models.TextChoices):
    """What a status means for the business, whatever a project calls it."""

    PROCESSING = "processing", _("Processing")
    ACCEPTED = "accepted", _("Accepted")
    CANCELLED = "cancelled", _("Cancelled")
    SPAM = "spam", _("Spam")
    SHIPPED = "shipped", _("Shipped")
    DELIVERED = "delivered", _("Delivered")
    RETURNED = "returned", _("Returned")


class QueueClass(models.TextChoices):
    """How the queue treats orders in a processing status; the project orders the classes."""

    NEW = "new", _("New orders")
    CALLBACK = "callback", _("Callbacks")
    RETRY = "retry", _("No-answer retries")


class Status(models.Model):
    """A project's order status; its group drives the reports, its queue class the queue."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="statuses")
    code = models.SlugField(_("code"), max_length=40)
    name = models.CharField(_("name"), max_length=100)
    group = models.CharField(_("group"), max_length=16, choices=StatusGroup.choices)
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    is_initial = models.BooleanField(_("new orders get this status"), default=False)
    requires_reason = models.BooleanField(_("requires a reason"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    queue_class = models.CharField(
        _("queue class"),
        max_length=16,
        choices=QueueClass.choices,
        blank=True,
        help_text=_("Orders in this status are handed out by the queue (processing statuses)."),
    )
    # The class's place in the project's queue order, kept here so that placing an order in
    # the queue needs no extra query (set by orders.queue.rank_statuses).
    queue_rank = models.PositiveSmallIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = _("status")
        verbose_name_plural = _("statuses")
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "code"], name="status_code_per_project"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_initial=True), name="one_initial_status"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_queued(self) -> bool:
        """Whether orders in this status wait in the queue.

        A deactivated status can no longer be chosen, but orders already in it keep being
        called: deactivating must not silently drop them out of the queue.
        """
        return self.group == StatusGroup.PROCESSING and bool(self.queue_class)


class Product(models.Model):
    """Something the shop sells; upsell products are offered on the call."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="products")
    sku = models.CharField(_("SKU"), max_length=64)
    name = models.CharField(_("name"), max_length=200)
    price = models.DecimalField(
        _("price"), max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal(0))]
    )
    is_upsell = models.BooleanField(_("upsell"), default=False)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "sku"], name="product_sku_per_project")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


def sees_only_held(member: Membership) -> bool:
    """Whether the member sees only the order in their hands: a trainee, unless an owner
    let them view all orders. Their scheduled callbacks come back to them through the
    queue (which hands an assigned order only to its member), not through a list."""
    return member.role == Role.TRAINEE and not member.can_view_all_orders


class OrderQuerySet(models.QuerySet["Order"]):
    """The one read chokepoint for orders."""

    def visible_to(self, member: Membership) -> OrderQuerySet:
        """Orders this member may see: the project's to those who may view all orders; to
        others the ones assigned to them and the one the queue handed them while they hold
        it; to a trainee only that held one (see `sees_only_held`)."""
        if not member.is_active:
            return self.none()
        qs = self.filter(project_id=member.project_id)
        if member.can_view_all_orders:
            return qs
        held = Q(locked_by_id=member.user_id, locked_until__gt=timezone.now())
        if sees_only_held(member):
            return qs.filter(held)
        return qs.filter(Q(assigned_to_id=member.user_id) | held)

    def for_api_key(self, key: ApiKey) -> OrderQuerySet:
        """Orders an integration key may read: its project's."""
        if key.revoked_at is not None or not key.can_read_orders:
            return self.none()
        return self.filter(project_id=key.project_id)


class Order(models.Model):
    """A customer's order as it is processed by the call center."""

    # Every read is per project and every index below leads with it: a separate index on the
    # foreign key would only cost each lead another index write.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="orders", db_index=False
    )
    number = models.PositiveBigIntegerField(_("number"))
    status = models.ForeignKey(Status, on_delete=models.PROTECT, related_name="orders")
    customer_name = models.CharField(_("customer name"), max_length=200, blank=True)
    # The phone, sealed: ciphertext (key id inside), blind index, and the mask shown in lists.
    phone_sealed = models.TextField(blank=True, default="")
    phone_index = models.CharField(max_length=64, blank=True, default="")
    phone_mask = models.CharField(max_length=40, blank=True, default="")
    customer_tz = models.CharField(_("customer's time zone"), max_length=64, blank=True)
    address = models.TextField(_("address"), blank=True, max_length=1000)
    source = models.CharField(_("source"), max_length=200, blank=True)
    utm_source = models.CharField(max_length=200, blank=True)
    utm_medium = models.CharField(max_length=200, blank=True)
    utm_campaign = models.CharField(max_length=200, blank=True)
    utm_content = models.CharField(max_length=200, blank=True)
    utm_term = models.CharField(max_length=200, blank=True)
    partner_ref = models.CharField(_("partner reference"), max_length=100, blank=True)
    next_call_at = models.DateTimeField(_("next call"), null=True, blank=True)
    attempts = models.PositiveIntegerField(_("call attempts"), default=0)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_orders",
        verbose_name=_("operator"),
    )
    duplicate_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="duplicates",
        verbose_name=_("duplicate of"),
    )
    # The queue: whether the order waits for a call, its class's rank, and who holds it now.
    in_queue = models.BooleanField(default=False)
    queue_rank = models.PositiveSmallIntegerField(default=0)
    locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="locked_orders",
    )
    locked_until = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)  # order_list_idx
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="order_number_per_project")
        ]
        indexes = [
            # Only claimable rows: a table that is mostly processed keeps a small index, and
            # the claim walks it in hand-out order (see docs/benchmarks.md).
            models.Index(
                fields=["project", "queue_rank", "next_call_at", "id"],
                condition=Q(in_queue=True),
                name="order_queue_idx",
            ),
            models.Index(fields=["project", "locked_by"], name="order_locked_idx"),
            models.Index(fields=["project", "phone_index", "created_at"], name="order_phone_idx"),
            # The API pages a status by id (api.py).
            models.Index(fields=["project", "status", "id"], name="order_status_idx"),
            # The orders page: newest first by (created_at, id), each filter an index whose
            # tail is that order, so a page is a short backward walk from the cursor
            # (see lists.py and "Order list on 1,000,000 orders" in docs/benchmarks.md).
            models.Index(fields=["project", "created_at", "id"], name="order_list_idx"),
            models.Index(
                fields=["project", "status", "created_at", "id"], name="order_list_status_idx"
            ),
            models.Index(
                fields=["project", "assigned_to", "created_at", "id"],
                name="order_list_operator_idx",
            ),
            models.Index(
                fields=["project", "source", "created_at", "id"], name="order_list_source_idx"
            ),
            models.Index(
                fields=["project", "created_at", "id"],
                condition=Q(duplicate_of__isnull=False),
                name="order_list_dup_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.number}"

    @property
    def phone(self) -> SealedPhone | None:
        """The sealed number: renders as its mask everywhere."""
        if not self.phone_sealed:
            return None
        return SealedPhone(self.phone_mask, self.phone_sealed, self.phone_index)

    def phone_masked(self, visible: int | None = None) -> str:
        """The mask with the project's number of visible digits (no decryption)."""
        phone = self.phone
        if phone is None:
            return ""
        if visible is None:
            visible = self.project.mask_visible_digits
        return phone.masked(visible)

    def total(self) -> Decimal:
        """Sum of the items (uses prefetched items when present)."""
        return sum((item.line_total() for item in self.items.all()), Decimal(0))


class OrderItem(models.Model):
    """A product on an order with the quantity and the price agreed."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(_("quantity"), validators=[MinValueValidator(1)])
    price = models.DecimalField(_("price"), max_digits=12, decimal_places=2)
    is_upsell = models.BooleanField(_("upsell"), default=False)

    class Meta:
        verbose_name = _("order item")
        verbose_name_plural = _("order items")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product.sku}"

    def line_total(self) -> Decimal:
        """Quantity times price."""
        return self.price * self.quantity


class Comment(models.Model):
    """A note on an order by a member, an integration or the system."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="comments")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    author_name = models.CharField(max_length=200)
    text = models.TextField(_("text"), max_length=4000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("comment")
        verbose_name_plural = _("comments")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.author_name}: {self.text[:40]}"


class IdempotencyRecord(models.Model):
    """A lead already taken under an Idempotency-Key, so a retry returns it instead of a copy."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="idempotency_key_per_project")
        ]

    def __str__(self) -> str:
        return self.key


def access_order_by_id(member: Membership, order_id: int) -> Order:
    """An order the member may see; 404 alike for missing and not theirs."""
    try:
        return Order.objects.visible_to(member).select_related("project", "status").get(pk=order_id)
    except Order.DoesNotExist:
        raise Http404 from None


def visible_statuses(project: Project) -> QuerySet[Status]:
    """A project's active statuses in display order."""
    return Status.objects.filter(project=project, is_active=True)


def default_calling_start() -> time:
    """Calls start at 9:00 in the customer's time zone unless the project says otherwise."""
    return time(9, 0)


def default_calling_end() -> time:
    """Calls end at 21:00 in the customer's time zone unless the project says otherwise."""
    return time(21, 0)


class WorkSettings(models.Model):
    """How a project's call center works: calling hours, queue rules, the sales script."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="work")
    calling_hours_start = models.TimeField(_("calls from"), default=default_calling_start)
    calling_hours_end = models.TimeField(_("calls until"), default=default_calling_end)
    lock_minutes = models.PositiveSmallIntegerField(
        _("an operator holds an order for, minutes"),
        default=15,
        validators=[MinValueValidator(1), MaxValueValidator(240)],
    )
    queue_priority = models.CharField(
        _("queue order"),
        max_length=40,
        default="new,callback,retry",
        help_text=_("The order in which classes are handed out: new, callback, retry."),
    )
    no_answer_backoff = models.CharField(
        _("after no answer, call again in (minutes)"),
        max_length=200,
        default="15,60,240,1440",
        help_text=_("One delay per attempt, comma-separated; the last one repeats."),
    )
    max_attempts = models.PositiveSmallIntegerField(
        _("attempts before giving up"),
        default=6,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
    )
    status_after_max_attempts = models.ForeignKey(
        Status,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("status after the last attempt"),
    )
    script = models.TextField(_("sales script"), blank=True, max_length=20000)

    class Meta:
        verbose_name = _("work settings")
        verbose_name_plural = _("work settings")

    def __str__(self) -> str:
        return f"work settings of {self.project}"

    def priority(self) -> list[str]:
        """The queue classes in hand-out order (unknown names dropped, missing ones appended)."""
        named = [c.strip() for c in self.queue_priority.split(",") if c.strip() in QueueClass]
        return named + [c for c in QueueClass.values if c not in named]

    def backoff_minutes(self) -> list[int]:
        """The no-answer delays in minutes."""
        return [int(m) for m in self.no_answer_backoff.split(",") if m.strip().isdigit()] or [60]


class StatusChange(models.Model):
    """One status change of an order, kept for the dashboard and reports.

    The audit record has the same facts, but reports need them indexed by day and member.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="status_changes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    from_status = models.ForeignKey(Status, on_delete=models.PROTECT, related_name="+")
    to_status = models.ForeignKey(Status, on_delete=models.PROTECT, related_name="+")
    to_group = models.CharField(max_length=16, choices=StatusGroup.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["project", "created_at"], name="statuschange_day_idx")]

    def __str__(self) -> str:
        return f"{self.order} {self.from_status_id}->{self.to_status_id}"
