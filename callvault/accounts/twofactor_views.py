"""The second factor's pages under /accounts/: managing one's factors, the login step after
the password, passkeys (JSON endpoints used by static/callvault/webauthn.js), and step-up."""

from __future__ import annotations

import json
from base64 import b32encode
from collections.abc import Callable
from functools import wraps
from typing import Any

import django_otp
import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from callvault.accounts import stepup, twofactor
from callvault.accounts.models import User, WebAuthnCredential

REGISTER_CHALLENGE = "callvault_webauthn_register"
AUTH_CHALLENGE = "callvault_webauthn_auth"


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def safe_next(request: HttpRequest, fallback: str = "home") -> str:
    """The `next` the form or link carried, when it stays on this site; else `fallback`."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse(fallback)


def may_change_factors(request: HttpRequest) -> bool:
    """Factors are managed within a fresh proof (step-up; a password login counts): a
    borrowed session, verified or with no factor yet, must not quietly add its own."""
    user = _user(request)
    if not twofactor.has_second_factor(user):
        return stepup.is_fresh(request)
    return twofactor.is_verified(request) and stepup.is_fresh(request)


def manages_factors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Decorator: a logged-in person who may change their factors now (else step-up)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not may_change_factors(request):
            if request.content_type == "application/json":
                return JsonResponse(
                    {"ok": False, "redirect": stepup.step_up_url(reverse("account:two_factor"))},
                    status=403,
                )
            return stepup.step_up_response(request)
        return view(request, *args, **kwargs)

    return wrapper


def no_store(response: HttpResponse) -> HttpResponse:
    """Codes and secrets must not stay in any cache."""
    response["Cache-Control"] = "no-store"
    return response


# --- The overview ---------------------------------------------------------------------------


@manages_factors
def two_factor(request: HttpRequest) -> HttpResponse:
    """One's factors: the authenticator app, recovery codes, passkeys."""
    user = _user(request)
    context = {
        "totp": twofactor.confirmed_totp(user),
        "codes_left": twofactor.recovery_codes_left(user),
        "has_primary": twofactor.has_primary_factor(user),
        "passkeys": WebAuthnCredential.objects.filter(user=user).order_by("created_at"),
        "required": twofactor.must_enrol(user, twofactor.client_ip(request))
        and not twofactor.has_second_factor(user),
        "next": safe_next(request, "account:two_factor"),
    }
    return no_store(render(request, "accounts/two_factor.html", context))


# --- Authenticator app ----------------------------------------------------------------------


class CodeForm(forms.Form):
    """A code from the app or a recovery code."""

    code = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True}),
    )


class TotpForm(CodeForm):
    """The first code from the app, for the device (secret) this page showed."""

    device = forms.IntegerField(widget=forms.HiddenInput)


def qr_svg(data: str) -> str:
    """The QR code as inline SVG, drawn here: the secret never goes to another host."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return str(image.to_string(encoding="unicode"))


@manages_factors
def totp(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app: scan (or type) the secret, then prove it with a code."""
    user = _user(request)
    # Every visit shows a new secret; a post confirms the one its page showed.
    device = None
    if request.method == "POST":
        device = twofactor.pending_totp(user, request.POST.get("device"))
        if device is None:
            messages.error(
                request,
                _(
                    "This setup page is out of date (it was opened again elsewhere). "
                    "Scan the new code below and enter the code the app shows for it."
                ),
            )
    if device is None:
        device = twofactor.new_pending_totp(user)
        form = TotpForm(initial={"device": device.pk})
    else:
        form = TotpForm(request.POST)
    if form.is_bound and form.is_valid():
        if twofactor.do_confirm_totp(device, form.cleaned_data["code"]):
            device.refresh_from_db()
            django_otp.login(request, device)
            twofactor.mark_verified(request)
            stepup.mark(request)
            if twofactor.recovery_codes_left(user) == 0:
                codes = twofactor.do_generate_recovery_codes(user)
                return _show_codes(request, codes)
            messages.success(request, _("The authenticator app is set up."))
            return HttpResponseRedirect(safe_next(request, "account:two_factor"))
        form.add_error("code", _("The code is not right. Check the time on your phone."))
    secret = b32encode(device.bin_key).decode()
    context = {
        "form": form,
        "qr": qr_svg(device.config_url),
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "replaces": twofactor.confirmed_totp(user) is not None,
        "next": safe_next(request, "account:two_factor"),
    }
    return no_store(render(request, "accounts/two_factor_totp.html", context))


@require_POST
@manages_factors
def totp_remove(request: HttpRequest) -> HttpResponse:
    """Remove the authenticator app."""
    if twofactor.do_remove_totp(_user(request)):
        messages.success(request, _("The authenticator app was removed."))
    return HttpResponseRedirect(reverse("account:two_factor"))


# --- Recovery codes -------------------------------------------------------------------------


def _show_codes(request: HttpRequest, codes: list[str]) -> HttpResponse:
    context = {"codes": codes, "next": safe_next(request, "account:two_factor")}
    return no_store(render(request, "accounts/two_factor_codes.html", context))


@require_POST
@manages_factors
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """New recovery codes, shown once in this answer; the old ones die."""
    user = _user(request)
    if not twofactor.has_primary_factor(user):
        raise Http404
    return _show_codes(request, twofactor.do_generate_recovery_codes(user))


# --- The login step -------------------------------------------------------------------------


@login_required
def verify(request: HttpRequest) -> HttpResponse:
    """After the password: a code from the app, a recovery code, or a passkey."""
    user = _user(request)
    if not twofactor.has_second_factor(user):
        return HttpResponseRedirect(safe_next(request))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        outcome = twofactor.verify_with_code(
            request, user, form.cleaned_data["code"], step_up=False
        )
        if outcome == twofactor.PASSED:
            return HttpResponseRedirect(safe_next(request))
        if outcome == twofactor.LOCKED:
            return twofactor.end_locked_session(request)
        form.add_error(None, _("The code is not right, or it was used already."))
    context = {
        "form": form,
        "has_passkeys": WebAuthnCredential.objects.filter(user=user).exists(),
        "has_totp": twofactor.confirmed_totp(user) is not None,
        "next": safe_next(request),
    }
    return no_store(render(request, "accounts/two_factor_verify.html", context))


# --- Step-up --------------------------------------------------------------------------------


class StepUpForm(forms.Form):
    """The password again, or a second-factor code."""

    password = forms.CharField(
        label=gettext_lazy("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )
    code = forms.CharField(label=gettext_lazy("Or a code"), required=False, max_length=32)


@login_required
def step_up(request: HttpRequest) -> HttpResponse:
    """Prove again who you are before a sensitive action; valid a few minutes."""
    user = _user(request)
    form = StepUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        outcome = _stepped_up(
            request, user, form.cleaned_data["password"], form.cleaned_data["code"]
        )
        if outcome == twofactor.PASSED:
            return HttpResponseRedirect(safe_next(request))
        if outcome == twofactor.LOCKED:
            return twofactor.end_locked_session(request)
        form.add_error(None, _("That was not right. Try again."))
    context = {
        "form": form,
        "has_passkeys": WebAuthnCredential.objects.filter(user=user).exists(),
        "has_codes": twofactor.has_second_factor(user),
        "next": safe_next(request),
    }
    return no_store(render(request, "accounts/step_up.html", context))


def _stepped_up(request: HttpRequest, user: User, password: str, code: str) -> str:
    if code.strip():
        return twofactor.verify_with_code(request, user, code, step_up=True)
    if password and user.check_password(password):
        twofactor.passed(request, user, "password", step_up=True)
        return twofactor.PASSED
    locked = twofactor.record_failure(request, user, "password", step_up=True)
    return twofactor.LOCKED if locked else twofactor.REFUSED


# --- Passkeys -------------------------------------------------------------------------------


def rp_id(request: HttpRequest) -> str:
    """The relying party: CALLVAULT_WEBAUTHN_RP_ID, else this request's host name."""
    configured = str(getattr(settings, "WEBAUTHN_RP_ID", "") or "")
    if configured:
        return configured
    host = request.get_host()
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0]


def expected_origin(request: HttpRequest) -> str:
    """CALLVAULT_WEBAUTHN_ORIGIN, else this request's scheme and host."""
    configured = str(getattr(settings, "WEBAUTHN_ORIGIN", "") or "")
    return configured or f"{request.scheme}://{request.get_host()}"


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _options(options: Any) -> HttpResponse:
    return no_store(HttpResponse(options_to_json(options), content_type="application/json"))


def _refused(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"ok": False, "error": message}, status=status)


@require_POST
@manages_factors
def passkey_register_options(request: HttpRequest) -> HttpResponse:
    """Options for navigator.credentials.create(); the challenge stays in the session."""
    user = _user(request)
    options = generate_registration_options(
        rp_id=rp_id(request),
        rp_name="callvault",
        user_id=str(user.pk).encode(),
        user_name=user.username,
        user_display_name=user.get_full_name() or user.username,
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(c))
            for c in WebAuthnCredential.objects.filter(user=user).values_list(
                "credential_id", flat=True
            )
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    request.session[REGISTER_CHALLENGE] = bytes_to_base64url(options.challenge)
    return _options(options)


@require_POST
@manages_factors
def passkey_register(request: HttpRequest) -> HttpResponse:
    """Check the browser's new credential against the challenge and keep its public key."""
    user = _user(request)
    body = _json_body(request)
    challenge = request.session.pop(REGISTER_CHALLENGE, None)
    credential = body.get("credential")
    if not challenge or not isinstance(credential, dict):
        return _refused(_("Start again: the request expired."))
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp_id(request),
            expected_origin=expected_origin(request),
        )
    except (WebAuthnException, ValueError, KeyError):
        return _refused(_("The passkey could not be checked."))
    credential_id = bytes_to_base64url(verified.credential_id)
    if WebAuthnCredential.objects.filter(credential_id=credential_id).exists():
        return _refused(_("This passkey is registered already."))
    first = not twofactor.has_second_factor(user)
    transports = credential.get("response", {}).get("transports") or []
    name = str(body.get("name") or "").strip() or _("Passkey")
    twofactor.do_add_passkey(
        user,
        name=name,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=[str(t) for t in transports if isinstance(t, str)][:8],
    )
    if first:
        # Creating it needed the authenticator: this session has just proved it.
        twofactor.mark_verified(request)
        stepup.mark(request)
    messages.success(request, _("The passkey was added."))
    return JsonResponse({"ok": True, "redirect": reverse("account:two_factor")})


@require_POST
@login_required
def passkey_auth_options(request: HttpRequest) -> HttpResponse:
    """Options for navigator.credentials.get() with the person's own passkeys."""
    user = _user(request)
    ids = WebAuthnCredential.objects.filter(user=user).values_list("credential_id", flat=True)
    if not ids:
        return _refused(_("You have no passkey."), status=404)
    options = generate_authentication_options(
        rp_id=rp_id(request),
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in ids],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    request.session[AUTH_CHALLENGE] = bytes_to_base64url(options.challenge)
    return _options(options)


@require_POST
@login_required
def passkey_auth(request: HttpRequest) -> HttpResponse:
    """Check a passkey's signature (and its counter): the login step, or a step-up."""
    user = _user(request)
    body = _json_body(request)
    step_up = body.get("purpose") == "step_up"
    challenge = request.session.pop(AUTH_CHALLENGE, None)
    credential = body.get("credential")
    if not challenge or not isinstance(credential, dict):
        return _refused(_("Start again: the request expired."))
    passkey = WebAuthnCredential.objects.filter(
        user=user, credential_id=str(credential.get("id", ""))
    ).first()
    try:
        if passkey is None:
            raise WebAuthnException("not a passkey of this user")
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp_id(request),
            expected_origin=expected_origin(request),
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
        )
    except (WebAuthnException, ValueError, KeyError):
        if twofactor.record_failure(request, user, "passkey", step_up=step_up):
            twofactor.end_locked_session(request)
            return JsonResponse({"ok": False, "redirect": reverse("login")}, status=403)
        return _refused(_("The passkey was not accepted."), status=403)
    assert passkey is not None
    twofactor.note_passkey_use(passkey, verified.new_sign_count)
    twofactor.passed(request, user, "passkey", step_up=step_up, extra={"passkey": passkey.pk})
    next_url = str(body.get("next") or "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("home")
    return JsonResponse({"ok": True, "redirect": next_url})


@require_POST
@manages_factors
def passkey_remove(request: HttpRequest, passkey_id: int) -> HttpResponse:
    """Forget one of one's own passkeys (another person's is not found)."""
    passkey = get_object_or_404(WebAuthnCredential, pk=passkey_id, user=_user(request))
    twofactor.do_remove_passkey(passkey)
    messages.success(request, _("The passkey was removed."))
    return HttpResponseRedirect(reverse("account:two_factor"))


project_urlpatterns: list[Any] = []
account_urlpatterns = [
    path("two-factor/", two_factor, name="two_factor"),
    path("two-factor/verify/", verify, name="verify"),
    path("two-factor/app/", totp, name="totp"),
    path("two-factor/app/remove/", totp_remove, name="totp_remove"),
    path("two-factor/recovery-codes/", recovery_codes, name="recovery_codes"),
    path(
        "two-factor/passkeys/register/options/",
        passkey_register_options,
        name="passkey_register_options",
    ),
    path("two-factor/passkeys/register/", passkey_register, name="passkey_register"),
    path("two-factor/passkeys/auth/options/", passkey_auth_options, name="passkey_auth_options"),
    path("two-factor/passkeys/auth/", passkey_auth, name="passkey_auth"),
    path("two-factor/passkeys/<int:passkey_id>/remove/", passkey_remove, name="passkey_remove"),
    path("step-up/", step_up, name="step_up"),
]
