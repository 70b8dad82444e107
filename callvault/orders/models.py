"""The work: orders with their items, products, per-project statuses and comments."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.http import Http404
from django.utils.translation import gettext_lazy as _

from callvault.accounts.models import ApiKey, Membership, Project
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


class Status(models.Model):
    """A project's order status; its group drives the queue and the reports."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="statuses")
    code = models.SlugField(_("code"), max_length=40)
    name = models.CharField(_("name"), max_length=100)
    group = models.CharField(_("group"), max_length=16, choices=StatusGroup.choices)
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    is_initial = models.BooleanField(_("new orders get this status"), default=False)
    requires_reason = models.BooleanField(_("requires a reason"), default=False)
    is_active = models.BooleanField(_("active"), default=True)

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


class OrderQuerySet(models.QuerySet["Order"]):
    """The one read chokepoint for orders."""

    def visible_to(self, member: Membership) -> OrderQuerySet:
        """Orders this member may see: the project's, and for operators only their own."""
        if not member.is_active:
            return self.none()
        qs = self.filter(project_id=member.project_id)
        if not member.can_view_all_orders:
            qs = qs.filter(assigned_to_id=member.user_id)
        return qs

    def for_api_key(self, key: ApiKey) -> OrderQuerySet:
        """Orders an integration key may read: its project's."""
        if key.revoked_at is not None or not key.can_read_orders:
            return self.none()
        return self.filter(project_id=key.project_id)


class Order(models.Model):
    """A customer's order as it is processed by the call center."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="orders")
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
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="order_number_per_project")
        ]
        indexes = [
            models.Index(fields=["project", "phone_index", "created_at"], name="order_phone_idx"),
            models.Index(fields=["project", "assigned_to", "id"], name="order_assignee_idx"),
            models.Index(fields=["project", "status", "id"], name="order_status_idx"),
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
