"""App config for telephony: calls without numbers."""

from django.apps import AppConfig


class TelephonyConfig(AppConfig):
    """Providers, calls, call tokens, the PBX endpoints and recordings."""

    name = "callvault.telephony"
    label = "telephony"
