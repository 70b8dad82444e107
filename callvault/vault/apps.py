"""App config for vault."""

from django.apps import AppConfig


class VaultConfig(AppConfig):
    """The vault app."""

    name = "callvault.vault"
    label = "vault"
