"""Passkeys through their JSON endpoints, with a software authenticator that makes real
P-256 credentials and signatures (py_webauthn checks them as it would a browser's)."""

from __future__ import annotations

import json
import os
from base64 import urlsafe_b64encode
from hashlib import sha256
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client

from callvault.accounts.models import Membership, WebAuthnCredential
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, password_login


def login(member: Membership) -> Client:
    """Logged in through the login form: the password counts as a fresh proof (step-up)."""
    client = Client()
    assert password_login(client, member.user.username, PASSWORD)
    return client


BASE = "/accounts/two-factor/passkeys"


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftAuthenticator:
    """A passkey in memory: "none" attestation, user present and verified, a counter."""

    def __init__(self, rp_id: str = "testserver", origin: str = "http://testserver") -> None:
        self.rp_id, self.origin = rp_id, origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0

    @property
    def id(self) -> str:
        return b64url(self.credential_id)

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return bytes(
            cbor2.dumps(
                {
                    1: 2,
                    3: -7,
                    -1: 1,
                    -2: numbers.x.to_bytes(32, "big"),
                    -3: numbers.y.to_bytes(32, "big"),
                }
            )
        )

    def _auth_data(self, attested: bool) -> bytes:
        flags = 0x01 | 0x04 | (0x40 if attested else 0)  # user present, verified, attested
        data = sha256(self.rp_id.encode()).digest() + bytes([flags])
        data += self.sign_count.to_bytes(4, "big")
        if attested:
            data += bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id
            data += self._cose_key()
        return data

    def _client_data(self, kind: str, challenge: str) -> bytes:
        body = {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        return json.dumps(body).encode()

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        """What navigator.credentials.create() would give the page."""
        client_data = self._client_data("webauthn.create", options["challenge"])
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": self._auth_data(True)})
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        }

    def get(self, options: dict[str, Any], *, count: bool = True) -> dict[str, Any]:
        """What navigator.credentials.get() would give the page."""
        if count:
            self.sign_count += 1
        client_data = self._client_data("webauthn.get", options["challenge"])
        auth_data = self._auth_data(False)
        signature = self.key.sign(
            auth_data + sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": None,
            },
            "clientExtensionResults": {},
        }


def held_at_verify(client: Client) -> bool:
    """Whether the client is sent to the second-factor step instead of its page."""
    response = client.get("/")
    return response.status_code == 302 and response["Location"].startswith(
        "/accounts/two-factor/verify/"
    )


def post_json(client: Client, url: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(url, json.dumps(body or {}), content_type="application/json")


def register(client: Client, authenticator: SoftAuthenticator, name: str = "Office key") -> Any:
    options = post_json(client, f"{BASE}/register/options/").json()
    return post_json(
        client, f"{BASE}/register/", {"name": name, "credential": authenticator.create(options)}
    )


def authenticate(
    client: Client, authenticator: SoftAuthenticator, purpose: str = "login", **kw: Any
) -> Any:
    options = post_json(client, f"{BASE}/auth/options/").json()
    body = {"purpose": purpose, "next": "/", "credential": authenticator.get(options, **kw)}
    return post_json(client, f"{BASE}/auth/", body)


def test_anonymous_visitors_are_sent_to_login(db):
    for url in (
        f"{BASE}/register/options/",
        f"{BASE}/register/",
        f"{BASE}/auth/options/",
        f"{BASE}/auth/",
    ):
        response = Client().post(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_a_member_registers_a_passkey_and_it_is_recorded(operator: Membership):
    client = login(operator)
    authenticator = SoftAuthenticator()
    response = register(client, authenticator)
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "redirect": "/accounts/two-factor/"}
    passkey = WebAuthnCredential.objects.get(user=operator.user)
    assert passkey.credential_id == authenticator.id
    assert passkey.name == "Office key"
    assert passkey.transports == ["internal"]
    event = AuditEvent.objects.get(action="auth.passkey_added")
    assert event.object_type == "user" and event.object_id == str(operator.user.pk)
    assert event.changes == {f"passkey {passkey.pk}": [None, "Office key"]}


def test_a_forged_registration_is_refused(operator: Membership):
    client = login(operator)
    options = post_json(client, f"{BASE}/register/options/").json()
    credential = SoftAuthenticator(origin="https://evil.example").create(options)
    response = post_json(client, f"{BASE}/register/", {"credential": credential})
    assert response.status_code == 400
    assert not WebAuthnCredential.objects.exists()


def test_a_challenge_serves_once(operator: Membership):
    client = login(operator)
    authenticator = SoftAuthenticator()
    options = post_json(client, f"{BASE}/register/options/").json()
    credential = authenticator.create(options)
    assert post_json(client, f"{BASE}/register/", {"credential": credential}).status_code == 200
    again = post_json(client, f"{BASE}/register/", {"credential": credential})
    assert again.status_code == 400
    assert WebAuthnCredential.objects.count() == 1


def test_a_passkey_passes_the_login_step(operator: Membership):
    authenticator = SoftAuthenticator()
    register(login(operator), authenticator)
    client = login(operator)  # a new session: the second factor is asked
    assert held_at_verify(client)
    response = authenticate(client, authenticator)
    assert response.status_code == 200, response.content
    assert response.json()["ok"] is True
    assert not held_at_verify(client)
    passkey = WebAuthnCredential.objects.get()
    assert passkey.sign_count == 1 and passkey.last_used_at is not None
    event = AuditEvent.objects.get(action="auth.2fa_verified")
    assert event.extra["method"] == "passkey"


def test_a_replayed_counter_is_refused_and_counted_as_a_failure(operator: Membership):
    authenticator = SoftAuthenticator()
    register(login(operator), authenticator)
    client = login(operator)
    assert authenticate(client, authenticator).status_code == 200
    # A cloned authenticator would answer with a counter that did not move on.
    other = login(operator)
    assert authenticate(other, authenticator, count=False).status_code == 403
    assert held_at_verify(other)
    assert AuditEvent.objects.filter(action="auth.2fa_failed").count() == 1


def test_a_passkey_of_someone_else_is_refused(operator: Membership, supervisor: Membership):
    authenticator = SoftAuthenticator()
    register(login(operator), authenticator)
    register(login(supervisor), SoftAuthenticator())
    client = login(supervisor)
    assert authenticate(client, authenticator).status_code == 403
    assert held_at_verify(client)


def test_adding_a_second_passkey_needs_a_fresh_proof(operator: Membership):
    authenticator = SoftAuthenticator()
    register(login(operator), authenticator)
    client = login(operator)
    authenticate(client, authenticator)
    session = client.session
    session.pop("callvault_step_up_at")
    session.save()
    response = post_json(client, f"{BASE}/register/options/")
    assert response.status_code == 403
    assert response.json()["redirect"].startswith("/accounts/step-up/")


def test_a_member_removes_their_passkey(operator: Membership):
    client = login(operator)
    register(client, SoftAuthenticator())
    passkey = WebAuthnCredential.objects.get()
    response = client.post(f"{BASE}/{passkey.pk}/remove/")
    assert response.status_code == 302
    assert not WebAuthnCredential.objects.exists()
    event = AuditEvent.objects.get(action="auth.passkey_removed")
    assert event.changes == {f"passkey {passkey.pk}": ["Office key", None]}


def test_nobody_removes_another_persons_passkey(operator: Membership, outsider: Membership):
    register(login(operator), SoftAuthenticator())
    passkey = WebAuthnCredential.objects.get()
    assert login(outsider).post(f"{BASE}/{passkey.pk}/remove/").status_code == 404
    assert WebAuthnCredential.objects.filter(pk=passkey.pk).exists()


def test_a_passkey_serves_for_step_up(operator: Membership):
    authenticator = SoftAuthenticator()
    register(login(operator), authenticator)
    client = login(operator)
    assert authenticate(client, authenticator, purpose="step_up").status_code == 200
    assert AuditEvent.objects.get(action="auth.step_up").extra["method"] == "passkey"


def test_no_event_holds_the_credential_id_or_public_key(operator: Membership):
    authenticator = SoftAuthenticator()
    register(login(operator), authenticator)
    client = login(operator)
    authenticate(client, authenticator)
    passkey = WebAuthnCredential.objects.get()
    client.post(f"{BASE}/{passkey.pk}/remove/")
    dumped = json.dumps(
        list(AuditEvent.objects.values("changes", "extra", "object_repr")), ensure_ascii=False
    )
    assert authenticator.id not in dumped
    assert bytes(passkey.public_key).hex() not in dumped
    assert b64url(bytes(passkey.public_key)) not in dumped


def test_removing_the_app_that_verified_the_session_keeps_the_session(operator: Membership):
    from callvault.accounts.tests.test_two_factor_totp import enrol

    client = login(operator)
    enrol(client)
    register(client, SoftAuthenticator())
    assert client.post("/accounts/two-factor/app/remove/").status_code == 302
    assert WebAuthnCredential.objects.filter(user=operator.user).exists()
    assert not held_at_verify(client)
