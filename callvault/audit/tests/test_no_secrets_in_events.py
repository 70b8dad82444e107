"""No event ever holds a secret: phone digits, ciphertext, blind indexes, hashes, passwords.

The secret columns are found by walking the models (the vault's sealed-column registry plus
names that say "secret"), and every change path that writes one is driven here, through the
pages and the API where they exist. The walk must find nothing this file does not drive: a
sealed or hashed column added later fails the test until its change paths are added below.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from django.apps import apps
from django.core.management import call_command
from django.db import models
from django.test import Client

from callvault.accounts.actions import do_create_user
from callvault.accounts.models import ApiKey, Membership, SupportGrant
from callvault.audit.models import AuditEvent
from callvault.lib.fakephones import AREA_CODES, STYLES, fake_phone, fake_phone_numbers
from callvault.orders.actions import do_change_status, do_update_order
from callvault.orders.models import Order, Status
from callvault.vault.phones import FORMAT, parse_phone
from callvault.vault.registry import SEALED_COLUMNS
from conftest import PASSWORD, login

# Column names that say the value is a secret or derived from one.
SECRET_NAME = re.compile(
    r"sealed|_index$|hash|password|secret|token|fingerprint|otp|credential|private", re.I
)

# Every secret column and the change paths below that write it. A new one found by the walk
# and missing here fails `test_every_secret_column_has_its_change_paths_driven_here`.
COVERED = {
    "orders.Order.phone_sealed": "lead (API, form), phone edit, vault rotation",
    "orders.Order.phone_index": "lead (API, form), phone edit",
    "orders.IdempotencyRecord.fingerprint": "lead with an Idempotency-Key, and its replay",
    "accounts.User.password": "new member, reset, own change, failed and good logins",
    "accounts.ApiKey.secret_hash": "key created on its page, used, refused, revoked",
    "accounts.SupportGrant.link_token_hash": (
        "one-time link granted on its page, spent, refused a second time, revoked"
    ),
    "accounts.WebAuthnCredential.credential_id": "passkey registered, used, refused, removed",
    "guard.GuardSettings.webhook_secret_sealed": "generated on its page, replaced, rotated",
    # telephony (telephony/tests/call_support.py: drive_telephony_paths)
    "telephony.TelephonySettings.secret_sealed": "set on its page, replaced, rotated",
    "telephony.Pbx.secret_hash": "PBX added on its page, used, refused, revoked",
    "telephony.CallToken.token_hash": "issued by the card's Call, resolved, refused reused",
    # monitoring (monitoring/tests/support.py: drive_monitoring_paths)
    "monitoring.EnrolmentCode.code_hash": "code made on its page, used, refused when reused",
    "monitoring.Device.token_hash": "device enrolled, token used, refused, device revoked",
}


def audited_models() -> Iterator[type[models.Model]]:
    """The application's models; the record itself (audit) is what is being checked."""
    for model in apps.get_models():
        if model.__module__.startswith("callvault.") and model._meta.app_label != "audit":
            yield model


def secret_columns() -> set[str]:
    """`app.Model.field` of every column holding a sealed, indexed or hashed secret."""
    found = {f"{c.model._meta.label}.{c.column}" for c in SEALED_COLUMNS}
    for model in audited_models():
        for f in model._meta.concrete_fields:
            if is_text(f) and SECRET_NAME.search(f.name):
                found.add(f"{model._meta.label}.{f.name}")
    return found


def is_text(field: models.Field[Any, Any]) -> bool:
    """Secrets are stored as text (a flag such as must_change_password is not one)."""
    return isinstance(field, models.CharField | models.TextField | models.BinaryField)


def test_every_secret_column_has_its_change_paths_driven_here():
    assert secret_columns() - set(COVERED) == set()


def test_the_walk_finds_the_known_secret_columns():
    # If this fails the walk went blind, and the test above would pass for the wrong reason.
    assert secret_columns() == set(COVERED)


def column_values() -> dict[str, set[str]]:
    """The current non-empty values of every secret column."""
    values: dict[str, set[str]] = {}
    for label in secret_columns():
        app_model, name = label.rsplit(".", 1)
        model = apps.get_model(app_model)
        rows = model._default_manager.exclude(**{name: ""}).values_list(name, flat=True)
        values[label] = {str(v) for v in rows if v}
    return values


SECRETISH = re.compile(rf"^(?:{FORMAT}:|[0-9a-f]{{64}}$|(?:md5|argon2|pbkdf2_sha256)\$)")


def unregistered_secretish_columns() -> set[str]:
    """Columns outside the walk's list whose stored values look like ciphertext or hashes:
    a sealed field with an unexpected name shows up here once its path has run."""
    known = secret_columns()
    found = set()
    for model in audited_models():
        for f in model._meta.concrete_fields:
            label = f"{model._meta.label}.{f.name}"
            if label in known or not is_text(f):
                continue
            values = model._default_manager.values_list(f.attname, flat=True)
            if any(isinstance(v, str) and SECRETISH.match(v) for v in values):
                found.add(label)
    return found


class Run:
    """Drives change paths, noting which secret columns each one wrote and every secret seen."""

    def __init__(self) -> None:
        self.exercised: set[str] = set()
        self.seen: dict[str, set[str]] = {}
        self.plaintexts: set[str] = set()  # passwords and API key secrets as typed
        self.numbers: set[str] = set()  # E.164

    def step(self, action: Callable[[], Any]) -> Any:
        before = column_values()
        result = action()
        after = column_values()
        for label, values in after.items():
            if values != before.get(label, set()):
                self.exercised.add(label)
            self.seen.setdefault(label, set()).update(values | before.get(label, set()))
        return result


def e164(raw: str) -> str:
    return parse_phone(raw, region="RU").e164


def api(secret: str, body: dict[str, Any], **headers: Any):
    return Client().post(
        "/api/v1/leads",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        **headers,
    )


def drive_phone_paths(run: Run, owner: Membership, numbers: list[str], secret: str) -> Order:
    slug = owner.project.slug
    first, second, third, fourth, fifth, sixth = numbers
    run.numbers.update(e164(n) for n in numbers)
    body = {
        "phone": first,
        "name": f"Ivan {second}",
        "address": f"call {third} at the gate",
        "comment": f"or {fourth}",
        "items": [{"sku": "TEA", "quantity": 1}],
    }
    response = run.step(lambda: api(secret, body, HTTP_IDEMPOTENCY_KEY="lead-1"))
    assert response.status_code == 201, response.content
    assert run.step(lambda: api(secret, body, HTTP_IDEMPOTENCY_KEY="lead-1")).status_code == 200
    form = {"api_key": secret, "phone": fifth, "name": "Olga", "sku": "TEA"}
    assert run.step(lambda: Client().post("/api/v1/leads/form", form)).status_code in (201, 303)
    order = Order.objects.get(pk=response.json()["id"])

    client = login(owner)
    card = f"/p/{slug}/orders/{order.pk}/"
    run.step(lambda: do_update_order(order, {"phone": sixth}))
    run.step(lambda: do_update_order(order, {"phone": sixth.replace(" ", "-")}))  # the same
    details = {"customer_name": f"Ivan {first}", "address": f"ring {sixth}", "version": 0}
    details["version"] = Order.objects.get(pk=order.pk).version
    assert client.post(f"{card}details/", details).status_code in (200, 302)
    client.post(f"{card}comments/", {"text": f"new number {second}"})
    order.refresh_from_db()
    cancelled = Status.objects.get(project=owner.project, code="cancelled")
    do_change_status(order, cancelled, reason=f"asked to call {third} instead")
    client.post("/accounts/step-up/", {"password": PASSWORD})  # a reveal needs a fresh proof
    assert client.post(f"{card}reveal/", {"purpose": f"courier {fourth}"}).status_code == 200
    client.post(f"/p/{slug}/orders/", {"q": first})
    client.post(f"/p/{slug}/orders/", {"q": sixth})
    run.step(lambda: call_command("vault", "rotate", "--batch", "2"))
    return order


def drive_password_paths(run: Run, owner: Membership) -> None:
    slug = owner.project.slug
    client = login(owner)
    created = run.step(
        lambda: client.post(
            f"/p/{slug}/settings/members/",
            {"username": "nina", "first_name": "Nina", "last_name": "", "role": "operator"},
        )
    )
    run.plaintexts.add(created.context["password"])
    nina = Membership.objects.get(user__username="nina")
    reset = run.step(
        lambda: client.post(f"/p/{slug}/settings/members/{nina.pk}/password/")
    ).context["password"]
    run.plaintexts.add(reset)
    nina_client = Client()
    nina_client.post("/accounts/login/", {"username": "nina", "password": "wrong " + reset})
    nina_client.post("/accounts/login/", {"username": "nina", "password": reset})
    new = "nina's own passphrase 2026"
    run.plaintexts.add(new)
    changed = {"old_password": reset, "new_password1": new, "new_password2": new}
    assert run.step(lambda: nina_client.post("/accounts/password_change/", changed)).status_code
    run.step(lambda: do_create_user("zoe", "zoe's passphrase 2026 x", validate=False))
    run.plaintexts.update({"zoe's passphrase 2026 x", PASSWORD, "wrong " + reset})


def drive_api_key_paths(run: Run, owner: Membership) -> str:
    slug = owner.project.slug
    client = login(owner)
    body = {"name": "Landing", "can_create_leads": "on", "can_read_orders": "on"}
    secret = run.step(lambda: client.post(f"/p/{slug}/settings/api-keys/", body)).context["secret"]
    run.plaintexts.add(secret)
    other = run.step(
        lambda: client.post(f"/p/{slug}/settings/api-keys/", {**body, "name": "Old"})
    ).context["secret"]
    run.plaintexts.add(other)
    key = ApiKey.objects.get(name="Old")
    client.post(f"/p/{slug}/settings/api-keys/{key.pk}/revoke/")
    assert api(other, {"phone": fake_phone()[1]}).status_code == 401
    wrong = secret[:-4] + ("aaaa" if not secret.endswith("aaaa") else "bbbb")
    run.plaintexts.add(wrong)
    assert api(wrong, {"phone": fake_phone()[1]}).status_code == 401
    return str(secret)


def drive_support_paths(run: Run, owner: Membership) -> None:
    """A one-time support link granted on its page, spent once (and refused the second
    time), then revoked; a named account's grant beside it."""
    import re as _re
    import time as _time

    from callvault.accounts.stepup import SESSION_KEY
    from callvault.accounts.support import do_create_support_account

    slug = owner.project.slug
    client = login(owner)
    session = client.session
    session[SESSION_KEY] = _time.time()  # the owner's step-up, a moment ago
    session.save()
    url = f"/p/{slug}/settings/support/"
    body = {"kind": "link", "person": "Oleg", "hours": "1", "reason": "ticket", "read_write": "on"}
    page = run.step(lambda: client.post(url, body)).content.decode()
    (token,) = _re.findall(r"/accounts/support/([A-Za-z0-9_-]{40,})/", page)
    run.plaintexts.add(token)
    outside = Client()
    assert run.step(lambda: outside.post(f"/accounts/support/{token}/")).status_code == 302
    assert Client().post(f"/accounts/support/{token}/").status_code == 404
    grant = SupportGrant.objects.get(person="Oleg")
    run.step(lambda: client.post(f"{url}{grant.pk}/revoke/"))
    assert outside.get(f"/p/{slug}/orders/").status_code == 403  # the session ended
    kim = do_create_support_account("vendor-kim", "kim's first passphrase 2026", first_name="Kim")
    run.plaintexts.add("kim's first passphrase 2026")
    run.step(lambda: client.post(url, {**body, "kind": "account", "username": kim.username}))
    done = {"support.access_granted", "support.access_used", "support.access_revoked"}
    assert done <= set(AuditEvent.objects.values_list("action", flat=True))


def drive_webhook_secret_paths(run: Run, owner: Membership) -> None:
    """The alert webhook's signing secret generated on the settings page (shown once),
    replaced, and re-sealed by a key rotation."""
    import time as _time

    from callvault.accounts.stepup import SESSION_KEY

    client = login(owner)
    session = client.session
    session[SESSION_KEY] = _time.time()  # the owner's step-up, a moment ago
    session.save()
    url = f"/p/{owner.project.slug}/guard/settings/webhook-secret/"
    for _ in range(2):
        secret = run.step(lambda: client.post(url)).context["secret"]
        run.plaintexts.add(secret)
    run.step(lambda: call_command("vault", "rotate", "--batch", "2"))


def drive_passkey_paths(run: Run, owner: Membership) -> None:
    """The second factor on its pages: an app and recovery codes, a passkey registered, used,
    refused and removed (so the owner leaves with no factor, as the paths after expect)."""
    from callvault.accounts.models import WebAuthnCredential
    from callvault.accounts.tests.test_two_factor_passkeys import (
        SoftAuthenticator,
        authenticate,
        register,
    )
    from callvault.accounts.tests.test_two_factor_totp import enrol

    client = login(owner)
    device, codes = run.step(lambda: enrol(client))
    run.plaintexts.update({device.key, *codes})
    authenticator = SoftAuthenticator()
    assert run.step(lambda: register(client, authenticator)).status_code == 200
    assert run.step(lambda: authenticate(login(owner), authenticator)).status_code == 200
    stranger = SoftAuthenticator()
    stranger.credential_id = authenticator.credential_id  # the right id, the wrong key
    assert run.step(lambda: authenticate(login(owner), stranger)).status_code == 403
    passkey = WebAuthnCredential.objects.get(user=owner.user)
    run.step(lambda: client.post(f"/accounts/two-factor/passkeys/{passkey.pk}/remove/"))
    run.step(lambda: client.post("/accounts/two-factor/app/remove/"))


def event_strings() -> list[str]:
    """Every string of every event, as the viewers and exports could show it."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    for e in AuditEvent.objects.all():
        walk(
            [
                e.action,
                e.actor_id,
                e.actor_name,
                e.object_type,
                e.object_id,
                e.object_repr,
                e.changes,
                e.extra,
                e.user_agent,
            ]
        )
    return out


def is_moment(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def writings(number: str) -> list[str]:
    """A reserved +1 number in every style people type it."""
    national = number[2:]
    area, line = national[:3], national[-2:]
    assert area in AREA_CODES
    return [style.format(a=area, l=line) for style in STYLES]


def test_no_event_holds_a_secret_after_every_change_path(own_ring, project, owner, rng):
    run = Run()
    secret = drive_api_key_paths(run, owner)
    numbers = fake_phone_numbers(6, rng)
    drive_password_paths(run, owner)
    drive_phone_paths(run, owner, numbers, secret)
    # <second-factor paths>
    drive_passkey_paths(run, owner)
    # <support-grant paths>
    # <webhook-secret paths>
    drive_webhook_secret_paths(run, owner)
    drive_support_paths(run, owner)
    # <telephony paths>
    from callvault.telephony.tests.call_support import drive_telephony_paths

    drive_telephony_paths(run, owner, rng)
    # <monitoring paths>
    from callvault.monitoring.tests.support import drive_monitoring_paths

    drive_monitoring_paths(run, owner)

    assert run.exercised == secret_columns(), "a secret column had no change path driven"
    assert unregistered_secretish_columns() == set()

    texts = event_strings()
    dumped = json.dumps(texts, ensure_ascii=False)
    assert f"{FORMAT}:" not in dumped
    for label, values in run.seen.items():
        for value in values:
            body = value.split(":", 2)[-1] if value.startswith(f"{FORMAT}:") else value
            assert body not in dumped, label
    for plaintext in run.plaintexts:
        assert plaintext not in dumped
    for number in run.numbers:
        for written in writings(number):
            assert written not in dumped
        national = number[2:]
        for text in texts:
            if is_moment(text):
                continue  # an ISO time's digits may happen to run like a number
            digits = re.sub(r"\D", "", text)
            assert national not in digits and national[-7:] not in digits, text
    # The phone edit is recorded, as "changed" (re-typing the same number is no change).
    updates = AuditEvent.objects.filter(action="order.update")
    assert [e.changes["phone"] for e in updates if "phone" in e.changes] == ["changed"]
    # The paths really ran (a path that silently failed would prove nothing).
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert actions >= DRIVEN_ACTIONS, DRIVEN_ACTIONS - actions


DRIVEN_ACTIONS = {
    "order.create",
    "order.update",
    "order.comment",
    "order.status",
    "phone.reveal",
    "order.search",
    "vault.rotate",
    "user.create",
    "user.password_reset",
    "user.password_change",
    "auth.login",
    "auth.login_failed",
    "api_key.create",
    "api_key.revoke",
    "api_key.refused",
}
