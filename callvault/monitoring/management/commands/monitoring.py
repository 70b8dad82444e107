"""`callvault monitoring`: enrolment codes, read-back of spans and screenshots, the policy."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.management.base import BaseCommand, CommandError

from callvault.accounts.models import Membership
from callvault.audit.context import system_run
from callvault.lib.errors import FieldErrors
from callvault.monitoring.actions import do_create_enrolment_code
from callvault.monitoring.models import Screenshot
from callvault.monitoring.policy import POLICY_FIELDS, do_update_policy, policy_for
from callvault.monitoring.screenshots import open_screenshot, record_view


class Command(BaseCommand):
    """The agent's server side from the command line (scripts and the agent's e2e test)."""

    help = (
        "enrolment-code: a one-time code for a member's PC (only the code is printed); "
        "spans: a member's activity spans of a day as JSON lines; screenshot: write one "
        "decrypted screenshot to a file (recorded as a view); set-policy: change the "
        "project's monitoring policy (recorded)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        code = sub.add_parser("enrolment-code", help="a one-time enrolment code")
        _member_args(code)
        code.add_argument("--hours", type=int, default=24, help="valid for, hours (24)")
        spans = sub.add_parser("spans", help="a member's spans of one day, as JSON lines")
        _member_args(spans)
        spans.add_argument("--date", required=True, help="YYYY-MM-DD")
        spans.add_argument("--zone", default="", help="the day's time zone (the project's)")
        shot = sub.add_parser("screenshot", help="write a decrypted screenshot")
        shot.add_argument("--id", type=int, help="the screenshot's id")
        shot.add_argument("--latest", action="store_true", help="the member's newest")
        shot.add_argument("--project", help="with --latest")
        shot.add_argument("--username", help="with --latest")
        shot.add_argument("--out", required=True, help="the file to write")
        policy = sub.add_parser("set-policy", help="change the monitoring policy")
        policy.add_argument("--project", required=True)
        policy.add_argument("values", nargs="+", metavar="key=value", help=_keys_help())

    def handle(self, *args: Any, **opts: Any) -> None:
        action = opts["action"]
        with system_run(f"monitoring {action}"):
            if action == "enrolment-code":
                self._code(opts)
            elif action == "spans":
                self._spans(opts)
            elif action == "screenshot":
                self._screenshot(opts)
            else:
                self._set_policy(opts)

    def _code(self, opts: dict[str, Any]) -> None:
        member = _member(opts["project"], opts["username"])
        try:
            _row, code = do_create_enrolment_code(member, hours=opts["hours"])
        except FieldErrors as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(code)

    def _spans(self, opts: dict[str, Any]) -> None:
        member = _member(opts["project"], opts["username"])
        try:
            day = date.fromisoformat(opts["date"])
            zone = ZoneInfo(opts["zone"] or member.project.time_zone)
        except (ValueError, ZoneInfoNotFoundError) as exc:
            raise CommandError(f"--date or --zone: {exc}") from None
        start = datetime.combine(day, time.min, tzinfo=zone)
        end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
        from callvault.monitoring.timeline import spans_between

        for span in spans_between(member, start, end):
            line = {
                "start": _iso(span.started_at),
                "end": _iso(span.ended_at),
                "state": span.state,
                "app": span.app,
                "title": span.title,
            }
            self.stdout.write(json.dumps(line, ensure_ascii=False))

    def _screenshot(self, opts: dict[str, Any]) -> None:
        shots = Screenshot.objects.select_related("membership__user")
        if opts["latest"]:
            if not (opts["project"] and opts["username"]):
                raise CommandError("--latest needs --project and --username")
            member = _member(opts["project"], opts["username"])
            shot = shots.filter(membership=member).order_by("-taken_at", "-pk").first()
        elif opts["id"] is not None:
            shot = shots.filter(pk=opts["id"]).first()
        else:
            raise CommandError("give --id N or --latest")
        if shot is None:
            raise CommandError("no such screenshot")
        with Path(opts["out"]).open("wb") as out:
            for piece in open_screenshot(shot):
                out.write(piece)
        record_view(shot, username=shot.membership.user.username)
        info = {
            "id": shot.pk,
            "width": shot.width,
            "height": shot.height,
            "taken_at": _iso(shot.taken_at),
        }
        self.stdout.write(json.dumps(info))

    def _set_policy(self, opts: dict[str, Any]) -> None:
        from callvault.accounts.models import Project

        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"no project {opts['project']!r}")
        values: dict[str, Any] = {}
        for item in opts["values"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"{item!r}: write key=value")
            values.update(_setting(key.strip(), value))
        policy = policy_for(project)
        try:
            changes = do_update_policy(policy, **values)
        except FieldErrors as exc:
            raise CommandError(str(exc)) from None
        policy.refresh_from_db()
        self.stdout.write(json.dumps({"version": policy.version, "changes": changes}))


def _member_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", required=True, help="the project's slug")
    parser.add_argument("--username", required=True, help="the member's username")


def _member(slug: str, username: str) -> Membership:
    member = (
        Membership.objects.select_related("project", "user")
        .filter(project__slug=slug, user__username=username)
        .first()
    )
    if member is None:
        raise CommandError(f"{username!r} is not a member of {slug!r}")
    return member


def _iso(moment: datetime) -> str:
    """UTC with Z, as the agent's API writes times."""
    return moment.astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")


def _setting(key: str, value: str) -> dict[str, Any]:
    """One key=value of set-policy as policy values (two shorthands for the agent's keys)."""
    if key == "screenshots_per_interval":
        low, _sep, high = value.partition(",")
        return {"screenshots_min": low, "screenshots_max": high or low}
    if key == "redact_patterns":
        text = value.strip()
        if not text.startswith("["):
            return {"redact_patterns": [text] if text else []}
        try:
            return {"redact_patterns": json.loads(text)}
        except ValueError:
            raise CommandError("redact_patterns: not a JSON list") from None
    if key not in POLICY_FIELDS:
        raise CommandError(f"unknown setting {key!r}; known: {', '.join(POLICY_FIELDS)}")
    return {key: value}


def _keys_help() -> str:
    return (
        "policy settings: "
        + ", ".join(POLICY_FIELDS)
        + "; screenshots_per_interval=MIN,MAX; redact_patterns takes one pattern or a JSON list"
    )
