"""Traceable screens: when the owner turns it on, every project page an operator or a trainee
sees carries a faint repeated watermark with that member's name, the project and the time of
rendering, so a photo of the screen names its source.

A context processor, because the page's own `member` is not reachable from one: it finds the
member again from the URL's project: one query, joined with the project's setting, made only
when the partial asks for it, which it does only when the page's member has a marked role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from callvault.accounts.models import Membership, Role

# The roles that work the queue, whose pages the setting promises to mark ("operators'
# pages"). Owners, admins and supervisors are not marked: their exports carry a watermark of
# their own (guard/exports.py), and their pages then cost no query for it.
MARKED_ROLES = frozenset({Role.OPERATOR.value, Role.TRAINEE.value})
# How many copies of the text the overlay repeats: enough to tile a large screen (the CSS
# lays them out in a rotated grid), few enough to keep the page light.
TILES = 32


@dataclass(frozen=True)
class Watermark:
    """What the overlay says: only the viewer's own name, the project and the time."""

    text: str
    tiles: range


def watermark_text(member: Membership, when: datetime) -> str:
    """'bob (Bob Smith) · Shop alpha · 2026-11-29 12:00:05' in the project's time zone."""
    user = member.user
    full_name = user.get_full_name().strip()
    who = f"{user.username} ({full_name})" if full_name else user.username
    try:
        zone: Any = ZoneInfo(member.project.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = timezone.get_default_timezone()
    moment = timezone.localtime(when, zone).strftime("%Y-%m-%d %H:%M:%S")
    return f"{who} · {member.project.name} · {moment}"


def watermark_for(request: HttpRequest) -> Watermark | None:
    """The watermark of this request's page, or None: outside a project, for anonymous
    visitors, for roles that are not marked, or when the project has it off."""
    match = request.resolver_match
    slug = match.kwargs.get("project_slug") if match else None
    user = getattr(request, "user", None)
    if not slug or user is None or not user.is_authenticated:
        return None
    member = (
        Membership.objects.active()
        .filter(user=user, project__slug=slug, project__guard__watermark=True)
        .filter(role__in=MARKED_ROLES)
        .select_related("project", "user")
        .first()
    )
    if member is None:
        return None
    return Watermark(text=watermark_text(member, timezone.now()), tiles=range(TILES))


def watermark(request: HttpRequest) -> dict[str, Any]:
    """Context processor: `watermark`, evaluated (and queried) only when a template uses it,
    and the roles it is for, which the partial checks first against the page's `member`."""
    return {
        "watermark": SimpleLazyObject(lambda: watermark_for(request)),
        "watermark_roles": MARKED_ROLES,
    }
