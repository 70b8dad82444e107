"""`callvault access`: the allowed networks from the server's shell, the way back in for an
owner whose list shuts them out."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from callvault.accounts.allowlist import (
    do_add_network,
    do_remove_network,
    list_of,
    normalise_network,
)
from callvault.accounts.models import AllowedNetwork, Membership, Project
from callvault.audit.context import system_run
from callvault.lib.errors import FieldErrors


def _project(slug: str) -> Project:
    project = Project.objects.filter(slug=slug).first()
    if project is None:
        raise CommandError(f"no project with the slug {slug!r}")
    return project


def _member(project: Project, username: str | None) -> Membership | None:
    if not username:
        return None
    member = (
        Membership.objects.select_related("user")
        .filter(project=project, user__username=username)
        .first()
    )
    if member is None:
        raise CommandError(f"{username!r} is not a member of {project.slug}")
    return member


class Command(BaseCommand):
    """Add, list and remove allowed networks (recorded as the system)."""

    help = "Allowed networks: allow-ip, list, remove."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        allow = sub.add_parser(
            "allow-ip", help="add a range to the project's list (or a member's with --member)"
        )
        allow.add_argument("project", help="project slug")
        allow.add_argument("cidr", help="e.g. 203.0.113.0/24, 2001:db8::/32 or one address")
        allow.add_argument("--label", default="added on the server")
        allow.add_argument("--member", help="username: a range of this member's own")
        listing = sub.add_parser("list", help="show the project's ranges and members' ranges")
        listing.add_argument("project", help="project slug")
        remove = sub.add_parser("remove", help="remove a range by its CIDR")
        remove.add_argument("project", help="project slug")
        remove.add_argument("cidr")
        remove.add_argument("--member", help="username: remove from this member's own ranges")

    def handle(self, *args: Any, **opts: Any) -> None:
        project = _project(opts["project"])
        command = opts["subcommand"]
        if command == "list":
            self._list(project)
            return
        member = _member(project, opts.get("member"))
        try:
            with system_run(f"access {command}"):
                if command == "allow-ip":
                    row, note = do_add_network(
                        project, opts["cidr"], opts["label"], membership=member
                    )
                    if note:
                        self.stdout.write(note)
                    self.stdout.write(f"allowed {row.network} ({row.label}) in {project.slug}")
                else:
                    self._remove(project, member, opts["cidr"])
        except FieldErrors as exc:
            raise CommandError(str(exc)) from None

    def _remove(self, project: Project, member: Membership | None, cidr: str) -> None:
        stored, _ = normalise_network(cidr)
        row = list_of(project, membership=member).filter(network=stored).first()
        if row is None:
            raise CommandError(f"{stored} is not in that list")
        do_remove_network(row)
        self.stdout.write(f"removed {stored} from {project.slug}")

    def _list(self, project: Project) -> None:
        rows = (
            AllowedNetwork.objects.filter(project=project)
            .select_related("membership__user", "api_key")
            .order_by("membership_id", "api_key_id", "network")
        )
        if not rows:
            self.stdout.write(f"{project.slug}: no ranges (from anywhere)")
        for row in rows:
            if row.membership is not None:
                scope = f"member {row.membership.user.username}"
            elif row.api_key_id is not None:
                scope = f"key {row.api_key}"
            else:
                scope = "project"
            self.stdout.write(f"{row.network}\t{scope}\t{row.label}")
