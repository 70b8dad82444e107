"""`callvault createowner`: a project with its owner, for a fresh installation."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from callvault.accounts.actions import do_add_member, do_create_project, do_create_user
from callvault.accounts.models import Role
from callvault.accounts.passwords import generated_password
from callvault.audit.context import system_run
from callvault.lib.errors import FieldErrors
from callvault.orders.actions import do_create_default_statuses


class Command(BaseCommand):
    """Create a project and its owner."""

    help = "Create a project and its owner; the generated password is shown once."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--slug", required=True, help="project slug used in URLs")
        parser.add_argument("--region", default="RU", help="default phone region (ISO 3166)")
        parser.add_argument("--time-zone", default="Europe/Moscow")
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **opts: Any) -> None:
        password = generated_password()
        try:
            with system_run("createowner"), transaction.atomic():
                user = do_create_user(
                    opts["username"], password, email=opts["email"], must_change_password=True
                )
                project = do_create_project(
                    opts["project"],
                    opts["slug"],
                    default_region=opts["region"],
                    time_zone=opts["time_zone"],
                )
                do_create_default_statuses(project)
                do_add_member(project, user, Role.OWNER)
        except FieldErrors as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"project {project.name} ({project.slug}) created")
        self.stdout.write(f"owner {user.username}, password (shown once): {password}")
