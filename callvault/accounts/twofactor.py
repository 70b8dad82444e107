"""The second factor: who must use one, whether this session has, and every change to a
person's factors (TOTP, recovery codes, passkeys), each atomic and audited.

A session is verified when django-otp's OTPMiddleware found the TOTP or recovery-code device
that verified it (`request.user.is_verified()`), or by a session flag of ours that every
passed factor sets (passkeys are not django-otp devices). Factors belong to the person, not
to a project; their events are filed like logins (accounts/signals.py): under the one
project of a user with one active membership, else under none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import django_otp
from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from callvault.accounts import allowlist, stepup
from callvault.accounts.models import (
    Membership,
    RolePolicy,
    TwoFactorRule,
    User,
    WebAuthnCredential,
)
from callvault.audit.recorder import record_event

AUDIT_ACTIONS = {
    "auth.2fa_enabled": _("Second factor enabled"),
    "auth.2fa_disabled": _("Second factor removed"),
    "auth.passkey_added": _("Passkey added"),
    "auth.passkey_removed": _("Passkey removed"),
    "auth.recovery_codes_generated": _("Recovery codes generated"),
    "auth.2fa_verified": _("Second factor passed"),
    "auth.2fa_failed": _("Second factor failed"),
    "auth.step_up": _("Identity confirmed again"),
    "auth.step_up_failed": _("Identity confirmation failed"),
}

RECOVERY_CODE_COUNT = 10
# The session flag any passed factor sets: the user's id, so another user's session is not
# it. django-otp's own mark (OTP_DEVICE_ID) is set too for app and recovery codes, but it
# lapses when that device is removed, and passkeys are not django-otp devices.
VERIFIED_SESSION_KEY = "callvault_2fa_user"
TOTP_DEVICE_NAME = "TOTP"
RECOVERY_DEVICE_NAME = "recovery"


# --- State ----------------------------------------------------------------------------------


def confirmed_totp(user: User) -> TOTPDevice | None:
    """The user's confirmed authenticator app, if any (one per user)."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def recovery_device(user: User) -> StaticDevice | None:
    """The device holding the user's recovery codes, if any."""
    return StaticDevice.objects.filter(user=user, name=RECOVERY_DEVICE_NAME).first()


def recovery_codes_left(user: User) -> int:
    """How many unused recovery codes the user has."""
    return int(StaticToken.objects.filter(device__user=user, device__confirmed=True).count())


def has_second_factor(user: User) -> bool:
    """Whether the user has any confirmed factor (app, recovery codes or passkey)."""
    return (
        WebAuthnCredential.objects.filter(user=user).exists()
        or TOTPDevice.objects.filter(user=user, confirmed=True).exists()
        or StaticToken.objects.filter(device__user=user, device__confirmed=True).exists()
    )


def has_primary_factor(user: User) -> bool:
    """An app or a passkey: recovery codes are only the way back when those are lost."""
    return (
        WebAuthnCredential.objects.filter(user=user).exists()
        or TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    )


def is_verified(request: HttpRequest) -> bool:
    """Whether this session has passed a second factor."""
    user = request.user
    if not user.is_authenticated:
        return False
    verified = getattr(user, "is_verified", None)
    if callable(verified) and verified():
        return True
    return bool(request.session.get(VERIFIED_SESSION_KEY) == user.pk)


def mark_verified(request: HttpRequest) -> None:
    """A second factor has just verified this session."""
    request.session[VERIFIED_SESSION_KEY] = request.user.pk


def _rule_applies(rule: str) -> Exists:
    """Whether a role rule of one of the user's active memberships is `rule`."""
    return Exists(
        RolePolicy.objects.filter(
            two_factor=rule,
            project__memberships__user=OuterRef("pk"),
            project__memberships__is_active=True,
            project__memberships__role=F("role"),
        )
    )


def gate_state(user: User) -> dict[str, bool]:
    """In one query (the gate asks on every request until the factor has passed): whether
    the user has a factor, and whether a membership requires one always or outside its
    allowed networks."""
    confirmed = {"user": OuterRef("pk"), "confirmed": True}
    return dict(
        User.objects.filter(pk=user.pk)
        .annotate(
            passkey=Exists(WebAuthnCredential.objects.filter(user=OuterRef("pk"))),
            totp=Exists(TOTPDevice.objects.filter(**confirmed)),
            codes=Exists(
                StaticToken.objects.filter(device__user=OuterRef("pk"), device__confirmed=True)
            ),
            required=_rule_applies(TwoFactorRule.REQUIRED),
            outside=_rule_applies(TwoFactorRule.OUTSIDE_ALLOWED_NETWORKS),
        )
        .values("passkey", "totp", "codes", "required", "outside")
        .get()
    )


def must_enrol(user: User, ip: str, state: dict[str, bool] | None = None) -> bool:
    """Whether the policy of any of the user's active memberships asks for a second factor
    from this address ("outside": only when the address is outside the allowed networks).
    A named support account (the vendor's login, with a password) always must: it has no
    memberships for a rule to come from. A one-time-link account has no password; the link
    is its proof."""
    if user.is_support and user.has_usable_password():
        return True
    state = state or gate_state(user)
    if state["required"]:
        return True
    if not state["outside"]:
        return False
    rules = {
        (row.project_id, row.role)
        for row in RolePolicy.objects.filter(
            project__memberships__user=user, two_factor=TwoFactorRule.OUTSIDE_ALLOWED_NETWORKS
        )
    }
    members = Membership.objects.filter(user=user, is_active=True)
    return any(
        not allowlist.inside_allowed_networks(member, ip)
        for member in members
        if (member.project_id, member.role) in rules
    )


def client_ip(request: HttpRequest) -> str:
    """The address the audit middleware decided (the one client-IP function)."""
    ip = getattr(request, "client_ip", None)
    if ip is None:
        from callvault.lib.clientip import client_ip as decide

        ip = decide(request)
    return str(ip or "")


# --- The gate -------------------------------------------------------------------------------

# Reachable before the second factor: leaving, the language, and what never uses the session
# login (static files, the API with its keys, the health check).
OPEN_URL_NAMES = ("logout", "set_language", "login")
OPEN_PREFIXES = ("/api/", "/healthz")
# With a factor but not yet verified: only the verify step.
VERIFY_URL_NAMES = ("account:verify", "account:passkey_auth_options", "account:passkey_auth")
# With no factor, when the policy asks for one: only enrolment (and the verify step, which
# a person enrolling in two tabs may meet, and the step-up that enrolling needs).
ENROL_URL_NAMES = (
    *VERIFY_URL_NAMES,
    "account:step_up",
    "account:two_factor",
    "account:totp",
    "account:passkey_register_options",
    "account:passkey_register",
)


def _paths(names: tuple[str, ...]) -> set[str]:
    return {reverse(name) for name in names}


def detour(request: HttpRequest, url_name: str) -> HttpResponse:
    """Send the person to a second-factor page, coming back here afterwards."""
    target = reverse(url_name)
    if request.method == "GET" and not request.headers.get("HX-Request"):
        target += "?" + urlencode({"next": request.get_full_path()})
    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return HttpResponseRedirect(target)


class SecondFactorMiddleware:
    """After the password: a person with a factor passes it, and a person whose project asks
    for one sets one up, before reaching anything else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated and not self._open(request.path):
            refused = self._check(request, user)
            if refused is not None:
                return refused
        return self.get_response(request)

    @staticmethod
    def _open(path: str) -> bool:
        static = "/" + str(settings.STATIC_URL or "static/").lstrip("/")
        if path.startswith((*OPEN_PREFIXES, static)):
            return True
        return path in _paths(OPEN_URL_NAMES)

    @staticmethod
    def _check(request: HttpRequest, user: User) -> HttpResponse | None:
        # A person with a factor passes it first, even when an owner asked for a new
        # password (that is what a leaked password calls for): the change page comes after
        # (PasswordChangeRequiredMiddleware, next in line, lets the verify step through).
        # A person without one replaces a password someone else chose first, then enrols.
        if is_verified(request):
            return None
        ip = client_ip(request)
        if _clear_recently(request, user, ip):
            return None
        state = gate_state(user)
        if state["passkey"] or state["totp"] or state["codes"]:
            if request.path in _paths(VERIFY_URL_NAMES):
                return None
            return detour(request, "account:verify")
        if user.must_change_password:
            return None
        if must_enrol(user, ip, state):
            if request.path in _paths(ENROL_URL_NAMES):
                return None
            return detour(request, "account:two_factor")
        request.session[CLEAR_SESSION_KEY] = [user.pk, ip, time.time() + CLEAR_FOR_SECONDS]
        return None


# A person without a factor whom no policy asks for one is not asked the database again for
# a minute from the same address (the gate would otherwise cost a query on every request of
# everyone who never enrols). A policy that starts requiring a factor, or a factor added in
# another browser, takes hold within that minute; a new address is asked at once.
CLEAR_SESSION_KEY = "callvault_2fa_clear"
CLEAR_FOR_SECONDS = 60


def _clear_recently(request: HttpRequest, user: User, ip: str) -> bool:
    mark = request.session.get(CLEAR_SESSION_KEY)
    if not (isinstance(mark, list) and len(mark) == 3):
        return False
    user_id, seen_ip, until = mark
    return bool(user_id == user.pk and seen_ip == ip and time.time() < float(until))


# --- Events ---------------------------------------------------------------------------------


def _projects(user: User) -> list[int]:
    members = Membership.objects.filter(user=user, is_active=True)
    return sorted(members.values_list("project_id", flat=True))


def record_user_event(
    action: str,
    user: User,
    *,
    changes: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """An event about the user, filed like a login (never with a key, code or credential)."""
    projects = _projects(user)
    record_event(
        action,
        project_id=projects[0] if len(projects) == 1 else None,
        object_type="user",
        object_id=user.pk,
        object_repr=user.username,
        changes=changes,
        extra={**(extra or {}), **({"projects": projects} if len(projects) > 1 else {})},
    )


def record_failure(request: HttpRequest, user: User, method: str, *, step_up: bool) -> bool:
    """A wrong code, recovery code, passkey (or step-up password): recorded, and counted by
    the lockout like a wrong password. True when the person is now locked out: the caller
    then ends the session."""
    from callvault.accounts import lockout

    record_user_event(
        "auth.step_up_failed" if step_up else "auth.2fa_failed", user, extra={"method": method}
    )
    return bool(lockout.record_second_factor_failure(request, user))


@receiver(user_logged_in, dispatch_uid="callvault.accounts.twofactor.password_login")
def on_password_login(sender: object, request: HttpRequest | None, user: Any, **kw: Any) -> None:
    """A password just typed at the login page counts as a fresh step-up: enrolling a first
    factor right after login needs no second password prompt (a person with a factor
    passes it next anyway). Other logins (a support link, a test's force_login) do not."""
    if request is None or request.method != "POST":
        return
    match = getattr(request, "resolver_match", None)
    if match is not None and match.view_name == "login":
        stepup.mark(request)


def end_locked_session(request: HttpRequest) -> HttpResponse:
    """A lockout in the middle of a login ends it: back to the login page, which says when
    to try again."""
    from django.contrib.auth import logout

    logout(request)
    return HttpResponseRedirect(reverse("login"))


def passed(
    request: HttpRequest,
    user: User,
    method: str,
    *,
    step_up: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    """A second factor (or, at step-up, the password) has just been proved: the session
    counts as verified and freshly re-authenticated, and the proof is recorded."""
    if method != "password":
        mark_verified(request)
    stepup.mark(request)
    record_user_event(
        "auth.step_up" if step_up else "auth.2fa_verified",
        user,
        extra={"method": method, **(extra or {})},
    )


# --- Authenticator app (TOTP) ---------------------------------------------------------------


@transaction.atomic
def new_pending_totp(user: User) -> TOTPDevice:
    """A fresh unconfirmed app device (a new secret) for the enrolment page, replacing any
    earlier unconfirmed one: a secret someone glimpsed on an earlier visit is never the one
    the person confirms."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


def pending_totp(user: User, device_id: Any) -> TOTPDevice | None:
    """The unconfirmed device the enrolment form was made for, if it is still the current one
    (a newer visit to the page replaced it)."""
    try:
        pk = int(device_id)
    except (TypeError, ValueError):
        return None
    return TOTPDevice.objects.filter(user=user, confirmed=False, pk=pk).first()


def check_code(user: User, code: str) -> tuple[str, TOTPDevice | StaticDevice] | None:
    """The method and device a typed code belongs to, when it is right: six digits are an
    app code, anything else a recovery code. Both devices refuse replays (the app keeps the
    last time step used, a recovery code is deleted) and slow down guessing (throttling).
    Runs in a transaction with the device row locked: two requests with the same code are
    checked one after the other, so only one passes."""
    typed = "".join(code.split()).replace("-", "").lower()
    if not typed:
        return None
    if typed.isdigit() and len(typed) == 6:
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        if device is not None and device.verify_token(typed):
            return "totp", device
        return None
    recovery = (
        StaticDevice.objects.select_for_update()
        .filter(user=user, name=RECOVERY_DEVICE_NAME)
        .first()
    )
    if recovery is not None and recovery.confirmed and recovery.verify_token(typed):
        return "recovery", recovery
    return None


# What a typed code did.
PASSED, REFUSED, LOCKED = "passed", "refused", "locked"


def verify_with_code(request: HttpRequest, user: User, code: str, *, step_up: bool) -> str:
    """Check a typed code and, when right, verify the session with its device."""
    with transaction.atomic():
        found = check_code(user, code)
        if found is None:
            locked = record_failure(request, user, "code", step_up=step_up)
            return LOCKED if locked else REFUSED
        method, device = found
        django_otp.login(request, device)
        left = {"recovery_codes_left": recovery_codes_left(user)} if method == "recovery" else {}
        passed(request, user, method, step_up=step_up, extra=left)
    return PASSED


@transaction.atomic
def do_confirm_totp(device: TOTPDevice, code: str) -> bool:
    """Confirm the app being enrolled with a code from it; a wrong code changes nothing."""
    device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
    if device.confirmed or not device.verify_token(code.strip()):
        return False
    # One app per person: a new one replaces the old.
    TOTPDevice.objects.filter(user=device.user, confirmed=True).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    record_user_event(
        "auth.2fa_enabled",
        device.user,
        changes={"totp": [None, device.name]},
        extra={"kind": "totp"},
    )
    return True


@transaction.atomic
def do_remove_totp(user: User) -> bool:
    """Remove the person's authenticator app (and their recovery codes when no passkey is
    left, since they are the way back into a factor that no longer exists)."""
    device = confirmed_totp(user)
    if device is None:
        return False
    name = device.name
    device.delete()
    record_user_event(
        "auth.2fa_disabled", user, changes={"totp": [name, None]}, extra={"kind": "totp"}
    )
    _drop_orphan_recovery_codes(user)
    return True


# --- Recovery codes -------------------------------------------------------------------------


@transaction.atomic
def do_generate_recovery_codes(user: User) -> list[str]:
    """Ten new one-time codes; the old ones stop working. Returned once, to be shown once.

    django-otp keeps them as they are (not hashed): the trade-off of using its StaticDevice,
    accepted because each works once and only together with the password.
    """
    # Two clicks at once must not leave two sets (or two devices): one at a time per user.
    User.objects.select_for_update().filter(pk=user.pk).first()
    device = recovery_device(user)
    if device is None:
        device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    before = device.token_set.count()
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in codes])
    record_user_event(
        "auth.recovery_codes_generated",
        user,
        changes={"recovery codes": [before, len(codes)]},
        extra={"kind": "recovery"},
    )
    return codes


def _drop_orphan_recovery_codes(user: User) -> None:
    if has_primary_factor(user):
        return
    device = recovery_device(user)
    if device is None:
        return
    left = device.token_set.count()
    device.delete()
    record_user_event(
        "auth.2fa_disabled",
        user,
        changes={"recovery codes": [left, None]},
        extra={"kind": "recovery"},
    )


# --- Passkeys -------------------------------------------------------------------------------


@transaction.atomic
def do_add_passkey(
    user: User,
    *,
    name: str,
    credential_id: str,
    public_key: bytes,
    sign_count: int = 0,
    transports: list[str] | None = None,
) -> WebAuthnCredential:
    """Keep a passkey the browser has just registered (its public key only) and verified."""
    passkey = WebAuthnCredential.objects.create(
        user=user,
        name=name[:100],
        credential_id=credential_id,
        public_key=public_key,
        sign_count=sign_count,
        transports=transports or [],
    )
    record_user_event(
        "auth.passkey_added",
        user,
        changes={f"passkey {passkey.pk}": [None, passkey.name]},
        extra={"kind": "passkey"},
    )
    return passkey


@transaction.atomic
def do_remove_passkey(passkey: WebAuthnCredential) -> None:
    """Forget a passkey (and the recovery codes when no other factor is left)."""
    user = passkey.user
    pk, name = passkey.pk, passkey.name
    passkey.delete()
    record_user_event(
        "auth.passkey_removed",
        user,
        changes={f"passkey {pk}": [name, None]},
        extra={"kind": "passkey"},
    )
    _drop_orphan_recovery_codes(user)


def note_passkey_use(passkey: WebAuthnCredential, sign_count: int) -> None:
    """The authenticator's counter and the time of use (bookkeeping the triggers ignore;
    the login or step-up itself is the event)."""
    passkey.sign_count = sign_count
    passkey.last_used_at = timezone.now()
    passkey.save(update_fields=["sign_count", "last_used_at"])
