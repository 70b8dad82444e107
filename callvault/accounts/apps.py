"""App config for accounts."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Users, projects, memberships, roles and API keys."""

    name = "callvault.accounts"
    label = "accounts"
