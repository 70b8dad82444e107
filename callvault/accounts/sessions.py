"""Sessions: where each login came from, how long it may live, and the idle lock.

Every login gets a MemberSession (address, browser, last seen). SessionGuardMiddleware holds
each logged-in request to the rules of the user's projects, the strictest of them winning:
a revoked or ended session is logged out; a session past its lifetime, or (when a project
asks) seen from a new address, is ended; a session idle for longer than the member's role
allows is locked until the password is typed again (the page locks itself too, with
idle-lock.js, but the server does not rely on it).

Cost: the rules are checked against the database at most once a minute per session; between
checks the middleware answers from a small summary kept in the Django session, so an ordinary
request costs no query. The price: a new policy, and the idle lock, take effect within a
minute; the lock comes after the idle time plus at most one minute (last_seen_at is written at
most once a minute, and we never lock early).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from typing import Any, cast
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from callvault.accounts.models import (
    DEFAULT_IDLE_MINUTES,
    MemberSession,
    Membership,
    Role,
    RolePolicy,
    SecurityPolicy,
)
from callvault.accounts.notices import notify_owners
from callvault.audit.context import Actor, acting_as
from callvault.audit.recorder import record_event

AUDIT_ACTIONS = {
    "auth.session_ended": _("Session ended"),
    "auth.session_revoked": _("Session revoked"),
    "auth.session_locked": _("Screen locked after idle time"),
    "auth.session_unlocked": _("Screen unlocked"),
}

# Why a session ended without anyone revoking it (MemberSession.end_reason).
EXPIRED = "expired"
IP_CHANGED = "ip_changed"
REPLACED = "replaced"
REVOKED = "revoked"
LOGOUT = "logout"

GUARD_KEY = "callvault_session_guard"
# Seconds between two checks of a session against the database (and last_seen_at writes).
CHECK_INTERVAL = 60
# Roles that "one session per operator" applies to.
OPERATOR_ROLES = (Role.OPERATOR, Role.TRAINEE)
# A user in no project still gets the installation's defaults.
NO_PROJECT_IDLE_MINUTES = max(DEFAULT_IDLE_MINUTES.values())
NO_PROJECT_MAX_HOURS = 12

# What a locked session may still reach: the unlock page and its ping, leaving, the
# language switch; the API authenticates by key and the health check by nothing.
EXEMPT_URL_NAMES = ("account:unlock", "account:idle_ping", "logout", "set_language")
EXEMPT_PREFIXES = ("/api/", "/healthz", "/static/")


@dataclass(frozen=True)
class Limits:
    """The strictest session rules among the user's projects."""

    idle_minutes: int | None
    max_hours: int
    end_on_ip_change: bool
    one_session: bool


def limits_for(user: Any) -> Limits:
    """The rules for this user: the shortest idle time and lifetime, and any project's
    "end on a new address" and (for operators and trainees) "one session"."""
    members = list(Membership.objects.active().filter(user=user).values_list("project_id", "role"))
    if not members:
        return Limits(NO_PROJECT_IDLE_MINUTES, NO_PROJECT_MAX_HOURS, False, False)
    projects = {pid for pid, _role in members}
    policies: dict[int, Any] = {
        row["project_id"]: row
        for row in SecurityPolicy.objects.filter(project_id__in=projects).values(
            "project_id",
            "session_max_hours",
            "end_session_on_ip_change",
            "one_session_per_operator",
        )
    }
    idle = {
        (pid, role): minutes
        for pid, role, minutes in RolePolicy.objects.filter(project_id__in=projects).values_list(
            "project_id", "role", "idle_minutes"
        )
    }
    default_hours = int(SecurityPolicy._meta.get_field("session_max_hours").get_default())
    return Limits(
        idle_minutes=min(idle.get((p, r), DEFAULT_IDLE_MINUTES[r]) for p, r in members),
        max_hours=min(
            int(policies[p]["session_max_hours"]) if p in policies else default_hours
            for p in projects
        ),
        end_on_ip_change=any(policies.get(p, {}).get("end_session_on_ip_change") for p in projects),
        one_session=any(
            r in OPERATOR_ROLES and policies.get(p, {}).get("one_session_per_operator")
            for p, r in members
        ),
    )


def device_label(user_agent: str) -> str:
    """ "Firefox on Windows": the browser and system named simply (versions left out, so a
    browser update is not a new device)."""
    ua = user_agent or ""
    browser = next(
        (
            name
            for token, name in (
                ("Edg/", "Edge"),
                ("OPR/", "Opera"),
                ("YaBrowser/", "Yandex Browser"),
                ("Firefox/", "Firefox"),
                ("Chrome/", "Chrome"),
                ("Chromium/", "Chromium"),
                ("Safari/", "Safari"),
            )
            if token in ua
        ),
        "",
    )
    system = next(
        (
            name
            for token, name in (
                ("Android", "Android"),
                ("iPhone", "iOS"),
                ("iPad", "iOS"),
                ("Windows", "Windows"),
                ("Mac OS X", "macOS"),
                ("CrOS", "ChromeOS"),
                ("Linux", "Linux"),
            )
            if token in ua
        ),
        "",
    )
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or (ua[:40] if ua else "unknown")


# --- Ending, revoking, locking and unlocking ---------------------------------------------


def _projects(user_id: int) -> list[int]:
    return sorted(
        Membership.objects.filter(user_id=user_id, is_active=True).values_list(
            "project_id", flat=True
        )
    )


def _record(action: str, session: MemberSession, project_id: int | None, **extra: Any) -> None:
    """A session event, filed like a login: under the user's project when they have one."""
    projects = _projects(session.user_id)
    if project_id is None and len(projects) == 1:
        project_id = projects[0]
    record_event(
        action,
        project_id=project_id,
        object_type="user",
        object_id=session.user_id,
        object_repr=session.user.username,
        extra={
            "session": session.pk,
            "session_ip": session.ip,
            **extra,
            **({"projects": projects} if len(projects) > 1 else {}),
        },
    )


def _delete_django_session(session_key: str) -> None:
    engine = import_module(settings.SESSION_ENGINE)
    engine.SessionStore().delete(session_key)


def _close(session: MemberSession, reason: str) -> bool:
    """Mark the session ended and delete its Django session; False if it had ended already."""
    closed = MemberSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason
    )
    if closed:
        _delete_django_session(session.session_key)
    return bool(closed)


@transaction.atomic
def do_end_session(session: MemberSession, reason: str) -> bool:
    """End a session by rule (expired, ip_changed, replaced); its user is the actor."""
    with acting_as(Actor.member(session.user)):
        if not _close(session, reason):
            return False
        _record("auth.session_ended", session, None, reason=reason)
    return True


@transaction.atomic
def do_revoke_session(session: MemberSession, *, acting: Membership | None = None) -> bool:
    """A person ends a session: its own user (My sessions) or a project owner (`acting`)."""
    if not _close(session, REVOKED):
        return False
    _record(
        "auth.session_revoked",
        session,
        acting.project_id if acting is not None else None,
        user=session.user.username,
        by="owner" if acting is not None and acting.user_id != session.user_id else "self",
    )
    return True


@transaction.atomic
def do_lock_session(session: MemberSession, idle_minutes: int) -> None:
    """The idle lock closes over the session; only the password opens it."""
    now = timezone.now()
    updated = MemberSession.objects.filter(pk=session.pk, locked_at__isnull=True).update(
        locked_at=now
    )
    if updated:
        session.locked_at = now
        with acting_as(Actor.member(session.user)):
            _record("auth.session_locked", session, None, idle_minutes=idle_minutes)


@transaction.atomic
def do_unlock_session(request: HttpRequest) -> None:
    """The password was typed again: open the lock and count it as a fresh proof (step-up)."""
    from callvault.accounts import stepup

    session = current_session(request)
    if session is None:
        return
    now = timezone.now()
    was_locked = session.locked_at is not None
    MemberSession.objects.filter(pk=session.pk).update(locked_at=None, last_seen_at=now)
    session.locked_at, session.last_seen_at = None, now
    if was_locked:
        _record("auth.session_unlocked", session, None)
    stepup.mark(request)
    request.session[GUARD_KEY] = _summary(session, limits_for(session.user), time.time())


def current_session(request: HttpRequest) -> MemberSession | None:
    """The open MemberSession of this request's login, if any."""
    key = request.session.session_key
    if not key or not request.user.is_authenticated:
        return None
    return (
        MemberSession.objects.select_related("user")
        .filter(session_key=key, user_id=request.user.pk, ended_at__isnull=True)
        .first()
    )


def is_locked(request: HttpRequest) -> bool:
    """Whether this request's session is under the idle lock (as of the last check)."""
    guard = request.session.get(GUARD_KEY)
    return isinstance(guard, dict) and bool(guard.get("locked"))


# --- At login -----------------------------------------------------------------------------


def _summary(session: MemberSession, limits: Limits, now: float) -> dict[str, Any]:
    """What the middleware needs between two database checks, kept in the Django session."""
    return {
        "at": now,
        "until": (session.created_at + timedelta(hours=limits.max_hours)).timestamp(),
        "ip": session.ip,
        "ip_rule": limits.end_on_ip_change,
        "idle": limits.idle_minutes * 60 if limits.idle_minutes else None,
        "locked": session.locked_at is not None,
    }


def _notify_if_new(user: Any, ip: str | None, device: str, earlier: list[tuple[Any, str]]) -> None:
    """Tell the owners of the user's projects about an address or device not seen before.

    Not on a user's very first login: there is nothing to compare with, and the owner (or
    admin) who created the account expects it."""
    if not earlier:
        return
    notices = []
    if ip and ip not in {seen_ip for seen_ip, _ua in earlier}:
        notices.append(("new_address", {"user": user.username, "ip": ip}))
    if device != "unknown" and device not in {device_label(ua) for _ip, ua in earlier}:
        notices.append(("new_device", {"user": user.username, "device": device}))
    for project_id in _projects(user.pk):
        for kind, params in notices:
            notify_owners(project_id, kind, params)


@receiver(user_logged_in, dispatch_uid="callvault.accounts.sessions.track_login")
def track_login(sender: object, request: Any, user: Any, **kwargs: Any) -> None:
    """Every login gets a MemberSession (and, under "one session per operator", ends the
    user's other sessions)."""
    session_store = getattr(request, "session", None)
    if session_store is None:
        return
    if not session_store.session_key:
        session_store.save()
    ip = getattr(request, "client_ip", None)
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:300]
    earlier = list(
        MemberSession.objects.filter(user=user)
        .order_by("-created_at")
        .values_list("ip", "user_agent")[:200]
    )
    now = timezone.now()
    fields = {"ip": ip, "user_agent": user_agent, "last_seen_at": now, "locked_at": None}
    # Logging in again in the same browser as the same user keeps Django's session key: the
    # row is that login's, renewed (its lifetime counts from now).
    renewed = MemberSession.objects.filter(
        session_key=session_store.session_key, user=user, ended_at__isnull=True
    ).update(created_at=now, **fields)
    if renewed:
        session = MemberSession.objects.get(session_key=session_store.session_key)
    else:
        session = MemberSession.objects.create(
            user=user, session_key=session_store.session_key, **fields
        )
    limits = limits_for(user)
    if limits.one_session:
        others = MemberSession.objects.filter(user=user, ended_at__isnull=True).exclude(
            pk=session.pk
        )
        for other in others.select_related("user"):
            do_end_session(other, REPLACED)
    if ip is not None:  # a real request (the test client's force_login has no address)
        _notify_if_new(user, ip, device_label(user_agent), earlier)
    session_store[GUARD_KEY] = _summary(session, limits, time.time())


@receiver(user_logged_out, dispatch_uid="callvault.accounts.sessions.track_logout")
def track_logout(sender: object, request: Any, user: Any, **kwargs: Any) -> None:
    """Logging out ends the session (auth.logout is the record; no event of our own)."""
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        MemberSession.objects.filter(session_key=key, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=LOGOUT
        )


def follow_new_key(request: HttpRequest, key_before: str, user_before: Any) -> None:
    """The request changed the session's key: the row follows a key Django cycled for the
    same login (a password change does), and a login replaced in the same browser ends."""
    key_after = request.session.session_key
    old = MemberSession.objects.filter(session_key=key_before, ended_at__isnull=True)
    same_login = (
        key_after
        and request.user.is_authenticated
        and request.user.pk == user_before
        and not MemberSession.objects.filter(session_key=key_after).exists()
    )
    if same_login:
        old.update(session_key=key_after)
    else:
        old.update(ended_at=timezone.now(), end_reason=REPLACED)


# --- On every request ---------------------------------------------------------------------


def lock_response(request: HttpRequest) -> HttpResponse:
    """Send a locked session to the unlock page (HTMX requests through HX-Redirect)."""
    target = reverse("account:unlock")
    if request.method == "GET":
        target += "?" + urlencode({"next": request.get_full_path()})
    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return HttpResponseRedirect(target)


def _exempt(path: str) -> bool:
    if path.startswith(EXEMPT_PREFIXES):
        return True
    return path in {reverse(name) for name in EXEMPT_URL_NAMES}


def _log_out_quietly(request: HttpRequest) -> None:
    """The session is over: the request goes on as anonymous (pages then ask to log in)."""
    request.session.flush()
    request.user = AnonymousUser()


class SessionGuardMiddleware:
    """After authentication: ends revoked, expired and moved sessions and enforces the idle
    lock (see the module's docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key_before = user_before = None
        if request.user.is_authenticated and request.session.session_key:
            guard = self._guard(request)
            if guard is not None:
                key_before, user_before = request.session.session_key, request.user.pk
                request.idle_lock_seconds = guard["idle"]  # type: ignore[attr-defined]
                if guard["locked"] and not _exempt(request.path):
                    return lock_response(request)
        response = self.get_response(request)
        if key_before is not None and request.session.session_key != key_before:
            follow_new_key(request, key_before, user_before)
        return response

    def _guard(self, request: HttpRequest) -> dict[str, Any] | None:
        now = time.time()
        guard: Any = request.session.get(GUARD_KEY)
        ip = getattr(request, "client_ip", None)
        fresh = (
            isinstance(guard, dict)
            and 0 <= now - float(guard.get("at", 0)) < CHECK_INTERVAL
            and now < float(guard.get("until", 0))
            and not (guard.get("ip_rule") and guard.get("ip") and guard.get("ip") != ip)
        )
        if fresh:
            return cast(dict[str, Any], guard)
        return self._check(request, ip, now)

    def _check(self, request: HttpRequest, ip: str | None, now: float) -> dict[str, Any] | None:
        """The database check, at most once a minute per session."""
        session = current_session(request)
        if session is None:  # revoked, ended, or from before sessions were tracked
            _log_out_quietly(request)
            return None
        limits = limits_for(session.user)
        moment = timezone.now()
        reason = None
        if moment >= session.created_at + timedelta(hours=limits.max_hours):
            reason = EXPIRED
        elif limits.end_on_ip_change and session.ip and ip and ip != session.ip:
            reason = IP_CHANGED
        if reason is not None:
            do_end_session(session, reason)
            _log_out_quietly(request)
            return None
        if session.locked_at is None:
            idle = (moment - session.last_seen_at).total_seconds()
            # The grace of one check interval: last_seen_at may lag the last request by that
            # much, and locking an active person would be worse than locking a minute late.
            if limits.idle_minutes and idle > limits.idle_minutes * 60 + CHECK_INTERVAL:
                do_lock_session(session, limits.idle_minutes)
            else:
                MemberSession.objects.filter(pk=session.pk).update(last_seen_at=moment)
        guard = _summary(session, limits, now)
        request.session[GUARD_KEY] = guard
        return guard
