"""`callvault check`: configuration, key ring, database and Django's own checks."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from callvault.vault.keyring import get_keyring


class Command(BaseCommand):
    """Everything that must hold before serving."""

    help = "Check configuration, key ring and database; --deploy adds production checks."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--deploy", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        ring = get_keyring()
        self.stdout.write(f"key ring: {len(ring.seal_keys)} key(s), active {ring.active}")
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:
            raise CommandError(f"database unreachable: {type(exc).__name__}: {exc}") from None
        self.stdout.write(f"database: {connection.vendor} reachable")
        call_command(
            "check", deploy=opts["deploy"], fail_level="WARNING" if opts["deploy"] else "ERROR"
        )
        call_command("migrate", check=True, plan=False, verbosity=0)
        self.stdout.write(self.style.SUCCESS("all checks passed"))
