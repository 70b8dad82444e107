"""Brute force: failed logins (and failed second-factor codes) counted per username and per
address, with escalating lockouts an owner can lift.

django-axes is the base: its backend refuses a locked-out login before the password is
checked, its middleware turns the refusal into our lockout page, and its failure log
(`axes.AccessFailureLog`) keeps every failure with the username as typed and the address
from `callvault.lib.clientip.client_ip` (AXES_CLIENT_IP_CALLABLE). The decision itself is
ours (`LockoutHandler`), because axes has one limit for all its counters and one cool-off,
and we want two different counters and an escalation:

- A username is locked after LOCKOUT_USER_FAILURES failures within LOCKOUT_WINDOW_MINUTES
  (from any address; a successful login starts the count over), for LOCKOUT_STEPS_MINUTES
  in turn (5 minutes, then 1 hour, then 24 hours) when it was locked before within a day.
  It does not matter whether the username exists: both are counted and answered alike.
- An address is locked after LOCKOUT_ADDRESS_FAILURES failures within the window that no
  successful login of the same username followed. Behind one NAT, people who mistype and
  then get in add nothing, so an office is not locked out by its own typos; a password
  spray from one address (many usernames, never a success) is. The address lock does not
  apply to a username that logged in successfully from that address within
  KNOWN_ADDRESS_DAYS (axes' `AccessLog`, which is never pruned): one machine behind a NAT
  spraying junk usernames locks out the spray, not the office's members.

A failure while locked is refused without counting (it would let anyone keep someone
locked forever by extending the lock; they can still lock it again when it ends).
"""

from __future__ import annotations

import ipaddress
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessFailureLog, AccessLog
from axes.signals import user_locked_out
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.accounts import passwords  # noqa: F401  (imported at startup: its login receiver)
from callvault.accounts.models import Membership, Project, User
from callvault.accounts.notices import notify_owners
from callvault.audit.recorder import record_event
from callvault.lib.clientip import client_ip
from callvault.lib.errors import FieldErrors
from callvault.vault.logfilter import redact

AUDIT_ACTIONS = {
    "auth.lockout": gettext_lazy("Locked out"),
    "auth.unlock": gettext_lazy("Lockout lifted"),
    # The owner's "choose a new password" (callvault/accounts/passwords.py).
    "user.password_change_required": gettext_lazy("New password required"),
}

DAY = timedelta(days=1)
# How far back failures are kept and read: the longest lock plus the day before it that
# decides its length.
RETENTION = timedelta(days=2)
# A username that logged in from an address within this many days is not held by that
# address's lockout (axes.AccessLog keeps successful logins; nothing prunes it sooner).
KNOWN_ADDRESS_DAYS = 30
USERNAME_MAX = 150  # longer input is not a username worth keeping (and the column is 255)


def _window() -> timedelta:
    return timedelta(minutes=settings.LOCKOUT_WINDOW_MINUTES)


def _steps() -> list[timedelta]:
    return [timedelta(minutes=m) for m in settings.LOCKOUT_STEPS_MINUTES]


@dataclass(frozen=True)
class Lock:
    """One lockout: of a username or of an address, from when to when."""

    scope: str  # "username" or "address"
    key: str
    started_at: datetime
    until: datetime
    level: int  # 0 for the first lockout within a day, 1 for the second, ...

    @property
    def duration(self) -> timedelta:
        """How long the lockout lasts in all."""
        return self.until - self.started_at

    @property
    def duration_text(self) -> str:
        """The duration as hours:minutes."""
        return format_duration(self.duration)

    def minutes_left(self, now: datetime | None = None) -> int:
        """Whole minutes until it ends, rounded up (at least 1)."""
        seconds = (self.until - (now or timezone.now())).total_seconds()
        return max(1, math.ceil(seconds / 60))


def format_duration(delta: timedelta) -> str:
    """A duration as hours:minutes, the same in every language (notices keep it as text)."""
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def username_locks(
    failures: Iterable[datetime], successes: Iterable[datetime], username: str
) -> list[Lock]:
    """Every lockout a username's failures and successful logins add up to, oldest first."""
    events = sorted([(t, True) for t in failures] + [(t, False) for t in successes])
    window, steps, limit = _window(), _steps(), settings.LOCKOUT_USER_FAILURES
    locks: list[Lock] = []
    recent: deque[datetime] = deque()
    for when, failed in events:
        if locks and when < locks[-1].until:
            continue  # refused while locked (not normally recorded at all)
        if not failed:
            recent.clear()
            continue
        recent.append(when)
        while recent[0] <= when - window:
            recent.popleft()
        if len(recent) >= limit:
            level = sum(1 for lock in locks if lock.started_at > when - DAY)
            step = steps[min(level, len(steps) - 1)]
            locks.append(Lock("username", username, when, when + step, level))
            recent.clear()
    return locks


def _username_history(usernames: list[str], now: datetime) -> dict[str, list[Lock]]:
    since = now - RETENTION
    failures: dict[str, list[datetime]] = {name: [] for name in usernames}
    successes: dict[str, list[datetime]] = {name: [] for name in usernames}
    rows = AccessFailureLog.objects.filter(username__in=usernames, attempt_time__gte=since)
    for name, when in rows.values_list("username", "attempt_time"):
        failures[name].append(when)
    logins = AccessLog.objects.filter(username__in=usernames, attempt_time__gte=since)
    for name, when in logins.values_list("username", "attempt_time"):
        successes[name].append(when)
    return {name: username_locks(failures[name], successes[name], name) for name in usernames}


def username_lock(username: str, now: datetime | None = None) -> Lock | None:
    """The username's lockout in force, if any."""
    now = now or timezone.now()
    if not username:
        return None
    locks = _username_history([username], now)[username]
    return locks[-1] if locks and locks[-1].until > now else None


def known_at(username: str, ip: str, now: datetime | None = None) -> bool:
    """Whether the username logged in successfully from the address recently (one indexed
    lookup on axes.AccessLog)."""
    since = (now or timezone.now()) - timedelta(days=KNOWN_ADDRESS_DAYS)
    return bool(
        AccessLog.objects.filter(ip_address=ip, username=username, attempt_time__gt=since).exists()
    )


def address_lock(ip: str | None, now: datetime | None = None, *, username: str = "") -> Lock | None:
    """The address's lockout in force, if any: too many failures within the window that no
    successful login of the same username followed. With `username`: None when that name
    logged in from this address within KNOWN_ADDRESS_DAYS (the lock is not for them)."""
    if not ip:
        return None
    now = now or timezone.now()
    window = _window()
    rows = list(
        AccessFailureLog.objects.filter(ip_address=ip, attempt_time__gt=now - window)
        .order_by("attempt_time")
        .values_list("username", "attempt_time")
    )
    if len(rows) < settings.LOCKOUT_ADDRESS_FAILURES:
        return None
    last_login: dict[str, datetime] = {}
    logins = AccessLog.objects.filter(
        username__in={name for name, _when in rows if name}, attempt_time__gt=now - window
    )
    for name, when in logins.values_list("username", "attempt_time"):
        last_login[name] = max(when, last_login.get(name, when))
    counted = [when for name, when in rows if not (name in last_login and last_login[name] > when)]
    limit = settings.LOCKOUT_ADDRESS_FAILURES
    if len(counted) < limit:
        return None
    # Locked until enough of the counted failures have left the window.
    started = counted[limit - 1]
    until = counted[len(counted) - limit] + window
    if username and known_at(username, ip, now):
        return None
    return Lock("address", ip, started, until, 0)


def current_lock(username: str | None, ip: str | None) -> Lock | None:
    """The longer of the username's and the address's lockouts in force, if any."""
    username = username or ""
    locks = [
        lock for lock in (username_lock(username), address_lock(ip, username=username)) if lock
    ]
    return max(locks, key=lambda lock: lock.until) if locks else None


def is_locked_out(request: HttpRequest, username: str) -> bool:
    """Whether a login (or a second-factor code) for this username from this request's
    address would be refused now."""
    return current_lock(username, client_ip(request)) is not None


def _typed(username: Any) -> str:
    return str(username or "")[:USERNAME_MAX]


def record_failure(
    username: str, ip: str | None, *, user_agent: str = "", path: str = "", accept: str = ""
) -> Lock | None:
    """Count one failure; the lockout it starts, if it starts one (audited, owners told)."""
    username = _typed(username)
    row = AccessFailureLog.objects.create(
        username=username,
        ip_address=ip,
        user_agent=user_agent[:255],
        http_accept=accept[:1025],
        path_info=path[:255],
        locked_out=False,
    )
    now = timezone.now()
    AccessFailureLog.objects.filter(attempt_time__lt=now - RETENTION).delete()
    started = [
        lock
        for lock in (username_lock(username, now), address_lock(ip, now, username=username))
        if lock
    ]
    for lock in started:
        _announce(lock, username, ip)
    if started:
        row.locked_out = True
        row.save(update_fields=["locked_out"])
    return max(started, key=lambda lock: lock.until) if started else None


def _projects_of(usernames: Iterable[str]) -> tuple[list[int], list[User]]:
    users = list(User.objects.filter(username__in=set(usernames)))
    projects = Membership.objects.filter(user__in=users, is_active=True)
    return sorted(set(projects.values_list("project_id", flat=True))), users


def _announce(lock: Lock, typed: str, ip: str | None) -> None:
    """auth.lockout, filed like the failed logins (callvault/accounts/signals.py), and a
    notice to the owners of each project the locked-out person works in."""
    if lock.scope == "username":
        projects, users = _projects_of([typed])
        who = typed
    else:
        window_rows = AccessFailureLog.objects.filter(
            ip_address=ip, attempt_time__gt=timezone.now() - _window()
        )
        # The owners of everyone who failed from there: an office sees its address locked.
        projects, _users = _projects_of(window_rows.values_list("username", flat=True)[:500])
        users, who = [], str(ip)
    user = users[0] if users else None
    event = record_event(
        "auth.lockout",
        project_id=projects[0] if len(projects) == 1 else None,
        object_type="user" if user else "",
        object_id=user.pk if user else "",
        object_repr=user.username if user else "",
        extra={
            "username": redact(typed),
            "address": ip or "",
            "scope": lock.scope,
            "duration": format_duration(lock.duration),
            "level": lock.level,
            **({"projects": projects} if len(projects) > 1 else {}),
        },
    )
    duration = format_duration(lock.duration)
    for project_id in projects:
        notify_owners(project_id, "lockout", {"who": who, "duration": duration}, event_id=event.pk)


class LockoutHandler(AxesDatabaseHandler):  # type: ignore[misc]  # axes has no types
    """axes' database handler with our counting: see the module's docstring."""

    def is_locked(self, request: Any, credentials: dict[str, Any] | None = None) -> bool:
        """Whether this login is refused before its password is checked."""
        username = _typed(get_client_username(request, credentials))
        return current_lock(username, request.axes_ip_address) is not None

    def get_failures(self, request: Any, credentials: dict[str, Any] | None = None) -> int:
        """The username's failures within the window (for axes' own reports)."""
        username = _typed(get_client_username(request, credentials))
        since = timezone.now() - _window()
        rows = AccessFailureLog.objects.filter(username=username, attempt_time__gt=since)
        return int(rows.count())

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
    ) -> None:
        """Count the failure; mark the request when it starts a lockout (or was refused for
        one) so that AxesMiddleware answers with the lockout page."""
        if request is None:
            return
        request.axes_credentials = credentials
        if request.axes_locked_out:  # refused by the backend: not counted
            return
        username = get_client_username(request, credentials)
        lock = record_failure(
            username,
            request.axes_ip_address,
            user_agent=request.axes_user_agent,
            path=request.axes_path_info,
            accept=request.axes_http_accept,
        )
        if lock is not None:
            # This wrong password started the lockout: it was checked, unlike the refused
            # attempts after it (signals.on_user_login_failed tells the two apart).
            request.lockout_started = True
            request.axes_locked_out = True
            user_locked_out.send(
                "axes", request=request, username=username, ip_address=request.axes_ip_address
            )


def record_second_factor_failure(request: HttpRequest, user: Any) -> bool:
    """Count a wrong TOTP, recovery or passkey answer like a wrong password; True when the
    user is (now) locked out, and the caller must then end the half-done login."""
    ip = client_ip(request)
    username = user.get_username()
    if current_lock(username, ip) is not None:
        return True
    lock = record_failure(
        username,
        ip,
        user_agent=str(request.META.get("HTTP_USER_AGENT", "")),
        path=request.path,
        accept=str(request.META.get("HTTP_ACCEPT", "")),
    )
    return lock is not None


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """The login page saying when to try again; the same whether the username exists."""
    from django.contrib.auth.forms import AuthenticationForm

    username = _typed(get_client_username(request, credentials))
    lock = current_lock(username, getattr(request, "axes_ip_address", None))
    minutes = lock.minutes_left() if lock else 1
    form = AuthenticationForm(request)
    context = {
        "form": form,
        "locked_minutes": minutes,
        "locked_hours": math.ceil(minutes / 60),
        "next": request.POST.get("next", "") if request.method == "POST" else "",
    }
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response


# --- The owner's view: who is locked out, and unlocking -------------------------------------


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


@dataclass(frozen=True)
class MemberLock:
    """A row of the owner's page: a member's lockout, and whether it is in force."""

    lock: Lock
    member: Membership
    current: bool


def project_lockouts(project: Project, now: datetime | None = None) -> dict[str, Any]:
    """The project's members' lockouts of the last two days (current first) and the addresses
    locked out now from which its members failed."""
    now = now or timezone.now()
    members = Membership.objects.filter(project=project).select_related("user")
    by_name = {m.user.username: m for m in members}
    history = _username_history(list(by_name), now)
    rows = [
        MemberLock(lock, by_name[name], lock.until > now)
        for name, locks in history.items()
        for lock in locks
    ]
    rows.sort(key=lambda row: (not row.current, -row.lock.started_at.timestamp()))
    ips = set(
        AccessFailureLog.objects.filter(
            username__in=list(by_name), attempt_time__gt=now - _window()
        ).values_list("ip_address", flat=True)
    )
    addresses = [lock for lock in (address_lock(ip, now) for ip in sorted(ips - {None})) if lock]
    return {"users": rows, "addresses": addresses}


@transaction.atomic
def do_unlock(
    project: Project,
    *,
    username: str = "",
    address: str = "",
    acting: Membership | None = None,
) -> int:
    """Lift a member's lockout (forgetting their failures, so the escalation starts over) or
    an address's (forgetting the failures from it within the window); audited. Returns how
    many failures were forgotten."""
    if acting is not None and acting.project_id != project.pk:
        raise FieldErrors.one("member", _("You may not manage the members of this project."))
    if username:
        member = (
            Membership.objects.select_related("user")
            .filter(project=project, user__username=username)
            .first()
        )
        if member is None:
            raise FieldErrors.one("username", _("No such member."))
        forgotten, _deleted = AccessFailureLog.objects.filter(username=username).delete()
        record_event(
            "auth.unlock",
            project_id=project.pk,
            object_type="user",
            object_id=member.user_id,
            object_repr=username,
            extra={"scope": "username", "forgotten": forgotten},
        )
        return int(forgotten)
    ip = _valid_ip(address)
    if ip is None:
        raise FieldErrors.one("address", _("Not an address."))
    rows = AccessFailureLog.objects.filter(
        ip_address=ip, attempt_time__gt=timezone.now() - _window()
    )
    forgotten, _deleted = rows.delete()
    record_event(
        "auth.unlock",
        project_id=project.pk,
        object_type="address",
        object_id=ip,
        object_repr=ip,
        extra={"scope": "address", "forgotten": forgotten},
    )
    return int(forgotten)
