"""App config for orders."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OrdersConfig(AppConfig):
    """Orders, items, products, statuses, comments and lead intake."""

    name = "callvault.orders"
    label = "orders"

    def ready(self) -> None:
        from callvault.orders.models import Order
        from callvault.vault.registry import register_sealed_column

        register_sealed_column(Order, "phone_sealed", "phone")

        from callvault.audit.labels import register_actions, register_fields
        from callvault.orders.actions import FREE_TEXT_FIELDS

        register_actions(AUDIT_ACTIONS)
        register_fields("order", ORDER_FIELDS, free_text=FREE_TEXT_FIELDS | {"comment"})
        register_fields("product", {"name": _("Name"), "price": _("Price"), "sku": "SKU"})
        register_fields("status", {"name": _("Name"), "code": _("Code")})


# What the audit viewers call this app's actions and the order's fields.
AUDIT_ACTIONS = {
    "order.create": _("Order created"),
    "order.view": _("Card opened"),
    "order.search": _("Orders searched"),
    "order.view_refused": _("Card refused"),
    "order.search_refused": _("Search refused"),
    "order.update": _("Order edited"),
    "order.status": _("Status changed"),
    "order.assign": _("Operator assigned"),
    "order.claim": _("Taken from the queue"),
    "order.release": _("Returned to the queue"),
    "order.no_answer": _("No answer"),
    "order.callback": _("Callback scheduled"),
    "order.item_add": _("Item added"),
    "order.item_change": _("Item quantity changed"),
    "order.item_remove": _("Item removed"),
    "order.comment": _("Comment added"),
    "phone.reveal": _("Number revealed"),
    "phone.reveal_refused": _("Number reveal refused"),
    "product.create": _("Product created"),
    "product.update": _("Product changed"),
    "status.create": _("Status created"),
    "status.update": _("Status changed (setup)"),
    "work_settings.update": _("Queue settings changed"),
}
ORDER_FIELDS = {
    "number": _("Number"),
    "status": _("Status"),
    "customer_name": _("Customer"),
    "customer_tz": _("Customer's time zone"),
    "address": _("Address"),
    "phone": _("Phone"),
    "source": _("Source"),
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "utm_content": "utm_content",
    "utm_term": "utm_term",
    "partner_ref": _("Partner reference"),
    "next_call_at": _("Next call"),
    "attempts": _("Call attempts"),
    "assigned_to": _("Operator"),
    "duplicate_of": _("Duplicate of"),
    "locked_by": _("Held by"),
    "item": _("Item"),
    "comment": _("Comment"),
}
