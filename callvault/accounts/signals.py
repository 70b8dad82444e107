"""Logins, logouts and failed logins, recorded from Django's auth signals.

Django's login view, `login()` and `logout()` announce themselves through signals, so these
receivers see every way in without wrapping the views. The IP, user agent and request id
come from the audit context the request middleware opened (the one client-IP function).

Project: a user may belong to several projects, and an authentication event belongs to the
user, not to a project. It is filed under the user's project when they have exactly one
active membership (operators almost always do, so their owner sees their logins and failed
attempts), and otherwise under no project (the installation's own chain), naming the
projects in `extra` so a viewer can still find it. A username that matches nobody is never
filed under a project: it may be a typo of someone else's name, or a password typed into the
wrong box, and no project owner should read it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from callvault.accounts.models import Membership, User
from callvault.audit.context import Actor, acting_as, current
from callvault.audit.recorder import SEALED_CHANGED, record_event
from callvault.vault.logfilter import redact

# Usernames are at most 150 characters; anything longer is not a username worth keeping.
ATTEMPTED_USERNAME_MAX = 150


def _projects(user: Any) -> list[int]:
    # Active memberships, even of a deactivated user: their owner should see the attempts.
    members = Membership.objects.filter(user=user, is_active=True)
    return sorted(members.values_list("project_id", flat=True))


def _record(action: str, user: Any, **extra: Any) -> None:
    projects = _projects(user)
    record_event(
        action,
        project_id=projects[0] if len(projects) == 1 else None,
        object_type="user",
        object_id=user.pk,
        object_repr=user.username,
        extra={**extra, **({"projects": projects} if len(projects) > 1 else {})},
    )


def _in_request() -> bool:
    """Whether the request middleware opened the context (it always does for a real login).

    `login()` outside a request is the test client's force_login: there is no address, agent
    or browser behind it, and recording it would bury the events tests look at.
    """
    return bool(current().request_id)


def on_user_logged_in(sender: object, request: Any, user: Any, **kwargs: Any) -> None:
    """auth.login: the person is the actor (the request was anonymous until now)."""
    if user is None or not _in_request():
        return
    with acting_as(Actor.member(user)):
        _record("auth.login", user)


def on_user_logged_out(sender: object, request: Any, user: Any, **kwargs: Any) -> None:
    """auth.logout; a logout without a logged-in user changes nothing and is not recorded."""
    if user is None or not _in_request():
        return
    with acting_as(Actor.member(user)):
        _record("auth.logout", user)


def record_password_rehash(user: Any, algorithm: str) -> None:
    """user.password_rehash: a correct password was stored again under a newer hasher or
    stronger parameters (Django does it at login). The password did not change, but its
    column did, and the database's triggers would otherwise call that write unattributed."""
    projects = _projects(user)
    with acting_as(Actor.member(user)):
        record_event(
            "user.password_rehash",
            project_id=projects[0] if len(projects) == 1 else None,
            object_type="user",
            object_id=user.pk,
            object_repr=user.username,
            changes={"password": SEALED_CHANGED},
            extra={"algorithm": algorithm},
        )


def _attempted_username(credentials: dict[str, Any]) -> str:
    field = get_user_model().USERNAME_FIELD
    value = credentials.get(field, credentials.get("username", ""))
    return str(value or "")[:ATTEMPTED_USERNAME_MAX]


def on_user_login_failed(
    sender: object, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    """auth.login_failed with the attempted username (phone-shaped runs blanked, as in all
    free text) and why; Django has already replaced the password in `credentials`, and it is
    never read here. The page the person sees is the same whatever the reason."""
    attempted = _attempted_username(credentials)
    user = User.objects.filter(username=attempted).first() if attempted else None
    extra = {"username": redact(attempted)}
    # A lockout refuses before any password is checked (django-axes sets the flag; the
    # failure that starts a lockout was a checked password, lockout.py marks it).
    locked = getattr(request, "axes_locked_out", False) and not getattr(
        request, "lockout_started", False
    )
    if user is None:
        record_event(
            "auth.login_failed",
            project_id=None,
            object_type="user",
            extra={**extra, "reason": "locked out" if locked else "unknown user"},
        )
        return
    reason = "wrong password"
    if locked:
        reason = "locked out"
    elif not user.is_active:
        reason = "inactive user"
    _record("auth.login_failed", user, **extra, reason=reason)
