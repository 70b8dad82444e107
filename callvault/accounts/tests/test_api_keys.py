"""Project API keys: shown once, stored hashed, revocable, refusals recorded."""

from __future__ import annotations

from django.test import Client

from callvault.accounts.actions import authenticate_api_key, do_create_api_key, do_revoke_api_key
from callvault.accounts.models import ApiKey
from callvault.audit.models import AuditEvent


def test_the_secret_is_stored_only_as_a_hash(project):
    key, secret = do_create_api_key(project, "Landing")
    stored = ApiKey.objects.get(pk=key.pk)
    assert secret not in str(stored.__dict__)
    assert secret.startswith(f"cvk_{stored.prefix}_")
    assert len(secret) > 40


def test_a_key_authenticates_and_records_last_use(project):
    key, secret = do_create_api_key(project, "Landing")
    assert authenticate_api_key(secret) == key
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_a_revoked_key_is_refused_and_the_refusal_recorded(project):
    key, secret = do_create_api_key(project, "Landing")
    do_revoke_api_key(key)
    assert authenticate_api_key(secret) is None
    event = AuditEvent.objects.get(action="api_key.refused")
    assert event.extra["reason"] == "revoked"
    assert event.project_id == project.pk
    # The random part follows the second "_" (it may hold "_" itself: not rsplit).
    random_part = secret.split("_", 2)[2]
    assert len(random_part) >= 40 and random_part not in str(event.extra)


def test_a_wrong_secret_with_a_real_prefix_is_refused(project):
    _, secret = do_create_api_key(project, "Landing")
    assert authenticate_api_key(secret[:-2] + "xx") is None
    assert AuditEvent.objects.get(action="api_key.refused").extra["reason"] == "wrong secret"


def test_garbage_is_refused(db):
    assert authenticate_api_key("hello") is None
    assert authenticate_api_key("") is None
    assert AuditEvent.objects.filter(action="api_key.refused").count() == 1


def test_a_key_of_one_project_reads_nothing_of_another(project, other_project):
    _, secret = do_create_api_key(other_project, "Other", can_read_orders=True)
    response = Client().get("/api/v1/orders", HTTP_X_API_KEY=secret)
    assert response.status_code == 200
    assert response.json()["items"] == []
