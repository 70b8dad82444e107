"""`callvault support`: the vendor's named support accounts (create-account, list)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from callvault.accounts.models import User
from callvault.accounts.passwords import generated_password
from callvault.accounts.support import active_grants, do_create_support_account
from callvault.audit.context import system_run
from callvault.lib.errors import FieldErrors


class Command(BaseCommand):
    """Create and list support accounts; owners then grant them access per project."""

    help = (
        "Support accounts: `create-account USERNAME` makes one (its password is generated, "
        "shown once, and must be changed at the first login); `list` shows them and their "
        "active grants."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create-account", help="a new named support account")
        create.add_argument("username")
        create.add_argument("--name", default="", help="the person's name, shown to owners")
        create.add_argument("--email", default="")
        sub.add_parser("list", help="support accounts and the projects they may enter now")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["action"] == "create-account":
            self._create(opts)
        else:
            self._list()

    def _create(self, opts: dict[str, Any]) -> None:
        password = generated_password()
        try:
            with system_run("support create-account"):
                user = do_create_support_account(
                    opts["username"], password, first_name=opts["name"], email=opts["email"]
                )
        except FieldErrors as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"support account {user.username} created")
        self.stdout.write(f"password (shown once, to be changed at the first login): {password}")
        self.stdout.write("An owner grants it access on the project's Support access page.")

    def _list(self) -> None:
        for user in User.objects.filter(is_support=True).order_by("username"):
            grants = active_grants(user).select_related("project")
            where = ", ".join(
                f"{g.project.slug} until {g.expires_at:%Y-%m-%d %H:%M}Z" for g in grants
            )
            self.stdout.write(f"{user.username}\t{where or '-'}")
