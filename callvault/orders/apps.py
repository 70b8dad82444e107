"""App config for orders."""

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    """Orders, items, products, statuses, comments and lead intake."""

    name = "callvault.orders"
    label = "orders"

    def ready(self) -> None:
        from callvault.orders.models import Order
        from callvault.vault.registry import register_sealed_column

        register_sealed_column(Order, "phone_sealed", "phone")
