"""Support access without passwords: an owner's time-limited grant opens one project to a
support person, and everything done under it is recorded as support.

Two ways in. A *named support account* is the vendor's own login (a User with is_support,
made by `callvault support create-account`): its password and second factor are the
vendor's, never the customer's, and without an active grant it opens nothing. A *one-time
link* is for an outside person: opening it once logs them in as an account made for that
grant, with no password at all. Either way the grant, not a membership, is what opens the
project: `access_membership` turns it into a transient supervisor-like membership, and
`SupportAccessMiddleware` keeps the grant's scope, names it as the actor and ends the
session once the grant is over.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.db.models import QuerySet
from django.dispatch import receiver
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.accounts.models import (
    Membership,
    Project,
    Role,
    SupportGrant,
    User,
)
from callvault.accounts.notices import notify_owners
from callvault.audit.context import Actor, acting_as, current, set_actor
from callvault.audit.labels import register_fields
from callvault.audit.recorder import SEALED_CHANGED, record_event
from callvault.lib.errors import FieldErrors
from callvault.vault.logfilter import redact

AUDIT_ACTIONS = {
    "support.account_create": gettext_lazy("Support account created"),
    "support.access_granted": gettext_lazy("Support access granted"),
    "support.access_revoked": gettext_lazy("Support access revoked"),
    "support.access_used": gettext_lazy("Support access used"),
    "support.write_refused": gettext_lazy("Support access refused a change (read-only)"),
}
register_fields(
    "support_grant",
    {
        "person": gettext_lazy("Support person"),
        "account": gettext_lazy("Support account"),
        "link": gettext_lazy("One-time link"),
        "reason": gettext_lazy("Reason"),
        "read_only": gettext_lazy("Read-only"),
        "may_see_phones": gettext_lazy("May see phone numbers"),
        "expires_at": gettext_lazy("Expires"),
        "revoked_at": gettext_lazy("Revoked"),
        "link_used_at": gettext_lazy("Link used"),
    },
    free_text=("person", "reason"),
)

# How long a grant may last, in hours: from a quick look to a week-long investigation.
DURATIONS: list[tuple[int, Any]] = [
    (1, gettext_lazy("1 hour")),
    (4, gettext_lazy("4 hours")),
    (24, gettext_lazy("1 day")),
    (72, gettext_lazy("3 days")),
    (168, gettext_lazy("7 days")),
]
MAX_HOURS = 168

# Writes a read-only grant still makes: a search is a POST only to keep the query out of
# URLs, and a reveal is a read the vault itself permits or refuses (and records).
READ_ONLY_POSTS = frozenset({"orders:list", "orders:reveal"})
# The project's settings and setup: members, keys, security, statuses, products. Support
# never manages the project, whatever the grant says.
NEVER_FOR_SUPPORT = frozenset({"accounts", "setup"})
# Nor bulk copies: support reads what it investigates, it does not take the data home.
NEVER_VIEWS_FOR_SUPPORT = frozenset({"audit:export", "guard:exports", "guard:export_download"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def hash_link_token(token: str) -> str:
    """SHA-256 of a link's token: it is 256-bit random, so a slow hash would add nothing."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def active_grants(user: Any) -> QuerySet[SupportGrant]:
    """The user's grants that are neither expired nor revoked, newest first."""
    return SupportGrant.objects.filter(
        user_id=user.pk, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("-created_at", "-pk")


def grant_state(grant: SupportGrant) -> str:
    """active, expired or revoked, as the list shows it."""
    if grant.revoked_at is not None:
        return "revoked"
    if grant.expires_at <= timezone.now():
        return "expired"
    return "active"


def _refuse_save(*args: Any, **kwargs: Any) -> None:
    raise TypeError("a support membership is transient and is never saved")


def support_membership(user: Any, project_slug: str) -> Membership:
    """The transient membership a support user's newest active grant in the project gives:
    supervisor-like reading, edits only when read-write, numbers only when granted; 404
    without a grant, as for a project that does not exist."""
    grant = active_grants(user).filter(project__slug=project_slug).select_related("project")
    found = grant.first()
    if found is None:
        raise Http404
    member = Membership(
        user=user,
        project=found.project,
        role=Role.SUPERVISOR,
        is_active=True,
        can_view_all_orders=True,
        can_view_audit=True,
        can_edit_orders=not found.read_only,
        can_see_phones=found.may_see_phones,
    )
    member.support_grant = found  # type: ignore[attr-defined]
    # Never a row: nothing may turn a grant into a lasting membership by saving this.
    member.save = _refuse_save  # type: ignore[method-assign]
    member.delete = _refuse_save  # type: ignore[method-assign,assignment]
    return member


def _check_owner(acting: Membership | None, project: Project) -> None:
    if acting is None:  # commands: no acting member
        return
    if acting.project_id != project.pk or acting.role != Role.OWNER or acting.pk is None:
        raise FieldErrors.one("member", _("Only an owner may grant support access."))


def _grant_changes(grant: SupportGrant, account: User | None, link: bool) -> dict[str, Any]:
    changes: dict[str, Any] = {
        "person": [None, redact(grant.person)],
        "read_only": [None, grant.read_only],
        "may_see_phones": [None, grant.may_see_phones],
        "expires_at": [None, grant.expires_at.isoformat()],
    }
    if grant.reason:
        changes["reason"] = [None, redact(grant.reason)]
    if account is not None:
        changes["account"] = [None, account.username]
    if link:
        # The link's secret exists: the record says so, never what it is.
        changes["link"] = SEALED_CHANGED
    return changes


@transaction.atomic
def do_grant_support_access(
    project: Project,
    *,
    hours: int,
    reason: str,
    account: User | None = None,
    person: str = "",
    read_only: bool = True,
    may_see_phones: bool = False,
    acting: Membership | None,
) -> tuple[SupportGrant, str]:
    """Open the project to a named support account, or (without one) to whoever opens the
    one-time link returned with the grant; the link's token is returned once, kept hashed."""
    _check_owner(acting, project)
    if not 1 <= hours <= MAX_HOURS:
        raise FieldErrors.one("hours", _("Choose how long the access lasts (up to 7 days)."))
    reason = reason.strip()
    if not reason:
        raise FieldErrors.one("reason", _("Say why support needs access."))
    token = ""
    if account is not None:
        if not account.is_support or not account.is_active:
            raise FieldErrors.one("username", _("This is not an active support account."))
        person = str(account)
    else:
        person = person.strip()
        if not person:
            raise FieldErrors.one("person", _("Name the person who will use the link."))
        token = secrets.token_urlsafe(32)
    grant = SupportGrant.objects.create(
        project=project,
        user=account,
        person=person[:150],
        reason=reason[:300],
        link_token_hash=hash_link_token(token) if token else "",
        read_only=read_only,
        may_see_phones=may_see_phones,
        expires_at=timezone.now() + timedelta(hours=hours),
        created_by=acting.user if acting is not None else None,
    )
    record_event(
        "support.access_granted",
        project_id=project.pk,
        object_type="support_grant",
        object_id=grant.pk,
        object_repr=str(grant),
        changes=_grant_changes(grant, account, bool(token)),
    )
    return grant, token


@transaction.atomic
def do_revoke_support_access(
    grant: SupportGrant, *, acting: Membership | None = None
) -> SupportGrant:
    """End a grant now; its sessions end on their next request."""
    _check_owner(acting, grant.project)
    if grant.revoked_at is None:
        grant.revoked_at = timezone.now()
        grant.save(update_fields=["revoked_at"])
        record_event(
            "support.access_revoked",
            project_id=grant.project_id,
            object_type="support_grant",
            object_id=grant.pk,
            object_repr=str(grant),
            changes={"revoked_at": [None, grant.revoked_at.isoformat()]},
        )
    return grant


def usable_link(token: str) -> SupportGrant | None:
    """The grant a link's token opens, while it is unused, unexpired and not revoked."""
    if not token or len(token) > 100:
        return None
    return (
        SupportGrant.objects.select_related("project")
        .filter(
            link_token_hash=hash_link_token(token),
            link_used_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .first()
    )


@transaction.atomic
def do_use_support_link(token: str) -> SupportGrant | None:
    """Spend a one-time link: the grant gets its own passwordless support account; None when
    the link is unknown, used, expired or revoked (of two requests at once, one wins)."""
    grant = usable_link(token)
    if grant is None:
        return None
    now = timezone.now()
    claimed = SupportGrant.objects.filter(
        pk=grant.pk, link_used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(link_used_at=now)
    if claimed != 1:
        return None
    with acting_as(Actor.support(grant.pk, grant.person)):
        user = grant.user or _link_account(grant)
        SupportGrant.objects.filter(pk=grant.pk).update(user=user)
        grant.user, grant.link_used_at = user, now
        event = record_event(
            "support.access_used",
            project_id=grant.project_id,
            object_type="support_grant",
            object_id=grant.pk,
            object_repr=str(grant),
            changes={"link_used_at": [None, now.isoformat()], "account": [None, user.username]},
            extra={"via": "link"},
        )
    notify_owners(
        grant.project_id,
        "support_used",
        {"person": grant.person, "ip": current().ip or "?"},
        event_id=event.pk,
    )
    return grant


def _link_account(grant: SupportGrant) -> User:
    """The account a link logs in as: support, no password, named after the grant."""
    username = f"support-{grant.pk}"
    if User.objects.filter(username__iexact=username).exists():  # someone took the name
        username = f"{username}-{secrets.token_hex(3)}"
    user = User(username=username, first_name=grant.person[:150], is_support=True)
    user.set_unusable_password()
    user.save()
    record_event(
        "user.create",
        # A user's events are filed under its memberships' projects or none (audit/bypass.py),
        # and this account has none: the grant's support.access_used names it in the project.
        project_id=None,
        object_type="user",
        object_id=user.pk,
        object_repr=user.username,
        changes={
            "username": [None, user.username],
            "first_name": [None, redact(user.first_name)],
            "is_support": [None, True],
        },
    )
    return user


@transaction.atomic
def do_create_support_account(
    username: str, password: str, *, first_name: str = "", email: str = ""
) -> User:
    """A named support account (the vendor's own login); it opens a project only while an
    owner's grant names it. It must choose its own password at the first login."""
    from callvault.accounts.actions import do_create_user

    user = do_create_user(
        username, password, first_name=first_name, email=email, must_change_password=True
    )
    user.is_support = True
    user.save(update_fields=["is_support"])
    record_event(
        "support.account_create",
        project_id=None,
        object_type="user",
        object_id=user.pk,
        object_repr=user.username,
        changes={"is_support": [False, True]},
    )
    return user


@receiver(user_logged_in, dispatch_uid="callvault.support.named_login")
def on_support_login(sender: object, request: Any, user: Any, **kwargs: Any) -> None:
    """A named support account logging in uses each of its grants: recorded, and the
    owners are told (a one-time link records and tells in do_use_support_link)."""
    if not getattr(user, "is_support", False) or not current().request_id:
        return
    for grant in active_grants(user).filter(link_token_hash=""):
        with acting_as(Actor.support(grant.pk, grant.person)):
            event = record_event(
                "support.access_used",
                project_id=grant.project_id,
                object_type="support_grant",
                object_id=grant.pk,
                object_repr=str(grant),
                extra={"via": "login"},
            )
        notify_owners(
            grant.project_id,
            "support_used",
            {"person": grant.person, "ip": current().ip or "?"},
            event_id=event.pk,
        )


class SupportAccessMiddleware:
    """For support accounts: no active grant ends the session; inside a project the grant
    is the actor, its read-only scope refuses changes, and settings stay closed."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if not (user.is_authenticated and getattr(user, "is_support", False)):
            return self.get_response(request)
        grants = list(active_grants(user).select_related("project"))
        if not grants:
            # Expired or revoked since the last request: the session ends here.
            logout(request)
            return render(request, "accounts/support_ended.html", status=403)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            match = None
        slug = match.kwargs.get("project_slug") if match else None
        if slug is None:
            # The person's own pages (second factor, sessions, logout): the actor is their
            # grant when they have one, else the support person by name.
            only = grants[0] if len(grants) == 1 else None
            set_actor(Actor.support(only.pk, only.person) if only else Actor.support("", str(user)))
            return self.get_response(request)
        grant = next((g for g in grants if g.project.slug == slug), None)
        if grant is None:
            return self.get_response(request)  # the read chokepoint answers 404
        set_actor(Actor.support(grant.pk, grant.person))
        request.support_grant = grant  # type: ignore[attr-defined]
        assert match is not None
        if match.namespace in NEVER_FOR_SUPPORT or match.view_name in NEVER_VIEWS_FOR_SUPPORT:
            raise Http404
        if (
            grant.read_only
            and request.method not in SAFE_METHODS
            and match.view_name not in READ_ONLY_POSTS
        ):
            return _refuse_write(request, grant, match.view_name)
        return self.get_response(request)


def _refuse_write(request: HttpRequest, grant: SupportGrant, view_name: str) -> HttpResponse:
    record_event(
        "support.write_refused",
        project_id=grant.project_id,
        object_type="support_grant",
        object_id=grant.pk,
        object_repr=str(grant),
        extra={
            "method": request.method or "",
            "view": view_name,
            "path": redact(request.path)[:200],
        },
    )
    context = {"project": grant.project, "grant": grant}
    return render(request, "accounts/support_refused.html", context, status=403)
