"""The API keys page: owners and admins create and revoke keys; others do not see it."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from callvault.accounts.models import ApiKey
from callvault.audit.models import AuditEvent
from conftest import login

URL = "/p/alpha/settings/api-keys/"


def test_anonymous_is_sent_to_login(project):
    response = Client().get(URL)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_an_outsider_gets_404(outsider, project):
    assert login(outsider).get(URL).status_code == 404


@pytest.mark.parametrize("who", ["supervisor", "operator", "trainee"])
def test_members_without_the_capability_get_404(who, request):
    member = request.getfixturevalue(who)
    assert login(member).get(URL).status_code == 404
    assert login(member).post(URL, {"name": "x", "can_create_leads": "on"}).status_code == 404
    assert not ApiKey.objects.exists()


def test_an_owner_creates_a_key_and_sees_the_secret_once(owner):
    client = login(owner)
    response = client.post(URL, {"name": "Landing slim", "can_create_leads": "on"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    secrets = re.findall(r"cvk_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}", response.content.decode())
    assert len(secrets) == 1
    key = ApiKey.objects.get()
    assert (key.name, key.can_create_leads, key.can_read_orders) == ("Landing slim", True, False)
    assert secrets[0] not in client.get(URL).content.decode()
    assert AuditEvent.objects.filter(action="api_key.create", actor_name="alice").exists()


def test_a_key_that_may_do_nothing_is_refused(owner):
    response = login(owner).post(URL, {"name": "Useless"}, HTTP_ACCEPT_LANGUAGE="en")
    assert "must be allowed to do something" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_an_owner_revokes_a_key(owner, api_key):
    key = ApiKey.objects.get()
    response = login(owner).post(f"{URL}{key.pk}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert Client().get("/api/v1/orders", HTTP_X_API_KEY=api_key).status_code == 401


def test_a_key_of_another_project_cannot_be_revoked(owner, outsider):
    from callvault.accounts.actions import do_create_api_key

    other, _ = do_create_api_key(outsider.project, "Theirs")
    assert login(owner).post(f"{URL}{other.pk}/revoke/").status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None
