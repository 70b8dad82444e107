"""`callvault manage telephony`: the SIP proxy's subscriber table, and scripted setup of PBXs
and SIP accounts (the secret or password printed once)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from callvault.accounts.models import Membership, Project
from callvault.audit.context import system_run
from callvault.lib.errors import FieldErrors
from callvault.telephony.kamailio import write_subscriber_table
from callvault.telephony.setup_actions import do_create_pbx, do_create_sip_account


class Command(BaseCommand):
    """Telephony setup from the command line."""

    help = "kamailio-subscribers --out FILE; create-pbx; create-sip-account."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        subs = sub.add_parser(
            "kamailio-subscribers", help="write Kamailio's db_text subscriber table (HA1 only)"
        )
        subs.add_argument("--out", required=True, type=Path, help="the table file to replace")
        subs.add_argument("--project", help="only this project's accounts (slug)")
        pbx = sub.add_parser("create-pbx", help="add a PBX; prints its secret once")
        pbx.add_argument("--project", required=True, help="the project's slug")
        pbx.add_argument("--name", required=True)
        pbx.add_argument(
            "--networks",
            nargs="+",
            required=True,
            metavar="CIDR",
            help="where the PBX calls from (at least one)",
        )
        sip = sub.add_parser("create-sip-account", help="prints the new password once")
        sip.add_argument("--project", required=True, help="the project's slug")
        sip.add_argument("--username", required=True, help="the member's login name")
        sip.add_argument("--sip-user", required=True, help="the extension, 2 to 6 digits")
        sip.add_argument("--realm", default="", help="default: the project's SIP domain")

    def handle(self, *args: Any, **opts: Any) -> None:
        with system_run(f"telephony {opts['action']}"):
            try:
                getattr(self, "do_" + opts["action"].replace("-", "_"))(**opts)
            except FieldErrors as exc:
                raise CommandError(str(exc)) from None

    def _project(self, slug: str) -> Project:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"no project {slug!r}")
        return project

    def do_kamailio_subscribers(self, *, out: Path, project: str | None, **opts: Any) -> None:
        count = write_subscriber_table(out, project)
        self.stdout.write(f"{out}: {count} SIP account(s)")

    def do_create_pbx(self, *, project: str, name: str, networks: list[str], **opts: Any) -> None:
        pbx, secret = do_create_pbx(self._project(project), name, networks=networks)
        self.stdout.write(f"PBX {pbx.name} (id {pbx.pk}) created. Its secret, shown only now:")
        self.stdout.write(secret)

    def do_create_sip_account(
        self, *, project: str, username: str, sip_user: str, realm: str, **opts: Any
    ) -> None:
        member = (
            Membership.objects.select_related("user", "project")
            .filter(project=self._project(project), user__username=username, is_active=True)
            .first()
        )
        if member is None:
            raise CommandError(f"{username!r} is not an active member of {project!r}")
        account, password = do_create_sip_account(member, sip_user, realm=realm)
        self.stdout.write(
            f"SIP account {account.username}@{account.realm} for {username} created. "
            "Its password, shown only now:"
        )
        self.stdout.write(password)
