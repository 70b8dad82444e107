"""App config for guard: against bulk leaks."""

from django.apps import AppConfig


class GuardConfig(AppConfig):
    """Visibility, quotas, exports, alerts and the anomaly baseline."""

    name = "callvault.guard"
    label = "guard"

    def ready(self) -> None:
        from callvault.audit.labels import register_actions
        from callvault.guard import alerts, baseline, defaults, exports, quotas  # noqa: F401

        # Each module connects its own receivers on import and names its audit actions.
        for module in (alerts, baseline, exports, quotas):
            register_actions(getattr(module, "AUDIT_ACTIONS", {}))
