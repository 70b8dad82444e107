"""App config for telephony: calls without numbers."""

from django.apps import AppConfig


class TelephonyConfig(AppConfig):
    """Providers, calls, call tokens, the PBX endpoints and recordings."""

    name = "callvault.telephony"
    label = "telephony"

    def ready(self) -> None:
        from callvault.audit.labels import register_actions
        from callvault.telephony import actions, recordings, setup_actions
        from callvault.telephony.models import TelephonySettings
        from callvault.vault.registry import register_sealed_column

        for module in (actions, setup_actions, recordings):
            register_actions(module.AUDIT_ACTIONS)
        # Key rotation re-seals the provider's secret with the phone numbers.
        register_sealed_column(TelephonySettings, "secret_sealed", setup_actions.SECRET_FIELD)
