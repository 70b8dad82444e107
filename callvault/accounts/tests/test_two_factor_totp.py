"""Enrolling an authenticator app (TOTP) and recovery codes on /accounts/two-factor/."""

from __future__ import annotations

import json
import re
import time
from base64 import b32encode

from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from callvault.accounts import stepup, twofactor
from callvault.accounts.models import Membership
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, login, password_login

PAGE = "/accounts/two-factor/"
APP = "/accounts/two-factor/app/"
CODES = "/accounts/two-factor/recovery-codes/"


def code_for(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The app's code now (or a few 30-second steps ahead, which the device still accepts
    within its tolerance of one step)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():06d}"


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def fresh(client: Client) -> Client:
    """The person has just proved who they are (as a password login does)."""
    session = client.session
    session[stepup.SESSION_KEY] = time.time()
    session.save()
    return client


def open_app_page(client: Client) -> TOTPDevice:
    """Open the enrolment page (within a fresh proof); the device it shows."""
    response = fresh(client).get(APP)
    assert response.status_code == 200
    return TOTPDevice.objects.get(confirmed=False, pk=response.context["form"].initial["device"])


def enrol(client: Client) -> tuple[TOTPDevice, list[str]]:
    """Set up the app through the pages; returns the device and the recovery codes shown."""
    device = open_app_page(client)
    response = client.post(APP, {"code": code_for(device), "device": device.pk})
    assert response.status_code == 200, response.content
    device.refresh_from_db()
    return device, list(response.context["codes"])


def test_anonymous_visitors_are_sent_to_login(db):
    for url in (PAGE, APP, CODES, f"{APP}remove/", "/accounts/two-factor/verify/"):
        response = Client().post(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_the_page_draws_the_qr_code_itself_and_shows_the_key(operator: Membership):
    response = fresh(login(operator)).get(APP)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    device = TOTPDevice.objects.get(user=operator.user)
    assert not device.confirmed
    assert "<svg" in page and "<path" in page
    secret = b32encode(device.bin_key).decode()
    assert secret[:4] + " " + secret[4:8] in page
    # Nothing loaded from, or sent to, another host.
    assert not re.search(r"(src|href)=\"https?://", page)


def test_a_wrong_code_does_not_confirm_the_app(operator: Membership):
    client = login(operator)
    device = open_app_page(client)
    response = client.post(APP, {"code": wrong(code_for(device)), "device": device.pk})
    assert response.status_code == 200
    assert response.context["form"].errors["code"]
    device.refresh_from_db()
    assert not device.confirmed
    assert not AuditEvent.objects.filter(action="auth.2fa_enabled").exists()


def test_the_right_code_confirms_the_app_and_shows_ten_codes_once(operator: Membership):
    client = login(operator)
    device, codes = enrol(client)
    assert device.confirmed
    assert len(codes) == 10 and len(set(codes)) == 10
    assert StaticToken.objects.filter(device__user=operator.user).count() == 10
    enabled = AuditEvent.objects.get(action="auth.2fa_enabled")
    assert (enabled.object_type, enabled.object_id) == ("user", str(operator.user.pk))
    assert enabled.extra["kind"] == "totp"
    assert AuditEvent.objects.get(action="auth.recovery_codes_generated").changes == {
        "recovery codes": [0, 10]
    }
    # The overview says how many are left; the codes themselves are never shown again.
    page = client.get(PAGE, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "10 unused recovery codes left" in page
    assert not any(code in page for code in codes)


def test_the_codes_answer_is_not_cached(operator: Membership):
    client = login(operator)
    device = open_app_page(client)
    response = client.post(APP, {"code": code_for(device), "device": device.pk})
    assert response["Cache-Control"] == "no-store"


def test_new_recovery_codes_make_the_old_ones_die(operator: Membership):
    client = login(operator)
    _, old = enrol(client)
    response = client.post(CODES)
    assert response["Cache-Control"] == "no-store"
    new = response.context["codes"]
    assert len(new) == 10 and not set(new) & set(old)
    stored = set(StaticToken.objects.values_list("token", flat=True))
    assert stored == set(new)


def test_recovery_codes_need_an_app_or_passkey_first(operator: Membership):
    assert fresh(login(operator)).post(CODES).status_code == 404
    assert not StaticToken.objects.exists()


def test_the_app_refuses_a_code_used_already(operator: Membership):
    device, _ = enrol(login(operator))
    used = code_for(device)  # the code that confirmed the app (same 30-second step)
    assert device.last_t > 0
    assert twofactor.check_code(operator.user, used) is None
    device.refresh_from_db()
    device.throttle_reset()  # the refusal counted as a failure; let the next try in at once
    # The next step's code is still good, once.
    ahead = code_for(device, steps_ahead=1)
    assert twofactor.check_code(operator.user, ahead) is not None
    assert twofactor.check_code(operator.user, ahead) is None


def test_wrong_codes_are_throttled(operator: Membership):
    device, _ = enrol(login(operator))
    assert twofactor.check_code(operator.user, wrong(code_for(device, 1))) is None
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    # Even the right code waits out the delay.
    assert twofactor.check_code(operator.user, code_for(device, 1)) is None


def test_removing_the_app_also_removes_the_recovery_codes(operator: Membership):
    client = login(operator)
    enrol(client)
    response = client.post(f"{APP}remove/")
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(confirmed=True).exists()
    assert not StaticToken.objects.exists()
    kinds = [e.extra["kind"] for e in AuditEvent.objects.filter(action="auth.2fa_disabled")]
    assert sorted(kinds) == ["recovery", "totp"]


def test_changing_factors_later_needs_a_fresh_proof(operator: Membership):
    client = login(operator)
    enrol(client)
    session = client.session
    session.pop("callvault_step_up_at")
    session.save()
    response = client.post(f"{APP}remove/")
    assert response["Location"].startswith("/accounts/step-up/")
    assert TOTPDevice.objects.filter(confirmed=True).exists()


def test_no_event_holds_the_key_or_a_code(operator: Membership):
    client = login(operator)
    device, codes = enrol(client)
    fresh = Client()
    fresh.force_login(operator.user)
    fresh.post("/accounts/two-factor/verify/", {"code": codes[0]})
    new_codes = client.post(CODES).context["codes"]
    dumped = json.dumps(
        list(AuditEvent.objects.values("changes", "extra", "object_repr", "action")),
        ensure_ascii=False,
    ).lower()
    secrets = [device.key, b32encode(device.bin_key).decode(), *codes, *new_codes]
    for secret in secrets:
        assert secret.lower() not in dumped


def test_every_visit_shows_a_new_secret_and_an_old_page_cannot_confirm(operator: Membership):
    client = login(operator)
    glimpsed = open_app_page(client)
    device = open_app_page(client)
    assert device.pk != glimpsed.pk and device.key != glimpsed.key
    assert TOTPDevice.objects.filter(user=operator.user).count() == 1
    # Someone who saw the first page (or a stale tab) cannot confirm the glimpsed secret.
    stale = client.post(
        APP, {"code": code_for(glimpsed), "device": glimpsed.pk}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert stale.status_code == 200
    assert "out of date" in stale.content.decode()
    assert not TOTPDevice.objects.filter(confirmed=True).exists()
    # The page now shows yet another secret, and that one confirms.
    current = TOTPDevice.objects.get(user=operator.user, confirmed=False)
    assert current.pk not in (glimpsed.pk, device.pk)
    done = client.post(APP, {"code": code_for(current), "device": current.pk})
    assert done.status_code == 200 and len(done.context["codes"]) == 10
    current.refresh_from_db()
    assert current.confirmed


def test_a_first_factor_also_needs_a_fresh_proof(operator: Membership):
    client = login(operator)  # a session whose password was not just typed
    for url in (PAGE, APP):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(
            "/accounts/step-up/"
        ), url
    assert not TOTPDevice.objects.exists()


def test_a_password_login_counts_as_the_fresh_proof_for_enrolling(operator: Membership):
    client = Client()
    assert password_login(client, "bob", PASSWORD)
    assert stepup.SESSION_KEY in client.session
    assert client.get(APP).status_code == 200
