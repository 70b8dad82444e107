"""Every write of the support paths is claimed by its own event: the database's triggers
find nothing unattributed (real commits, so PostgreSQL's deferred triggers fire)."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from callvault.accounts.models import SupportGrant
from callvault.accounts.stepup import SESSION_KEY
from callvault.accounts.support import do_create_support_account
from callvault.audit.models import ActorKind, AuditEvent
from callvault.audit.parked import sweep_pending_changes
from conftest import PASSWORD, login

pytestmark = pytest.mark.django_db(transaction=True)


def test_granting_using_and_revoking_support_leaves_nothing_unattributed(owner):
    kim = do_create_support_account("vendor-kim", PASSWORD, first_name="Kim")
    client = login(owner)
    session = client.session
    session[SESSION_KEY] = time.time()
    session.save()
    url = "/p/alpha/settings/support/"
    body = {"kind": "link", "person": "Oleg", "hours": "1", "reason": "ticket"}
    page = client.post(url, body).content.decode()
    token = page.split("/accounts/support/", 1)[1].split("/", 1)[0]
    assert Client().post(f"/accounts/support/{token}/").status_code == 302
    client.post(url, {**body, "kind": "account", "username": kim.username})
    for grant in SupportGrant.objects.all():
        client.post(f"{url}{grant.pk}/revoke/")

    sweep_pending_changes()
    stray = AuditEvent.objects.filter(actor_kind=ActorKind.UNATTRIBUTED)
    assert list(stray.values_list("object_type", "object_id", "changes")) == []
    assert SupportGrant.objects.filter(revoked_at__isnull=False).count() == 2
    assert AuditEvent.objects.filter(action="support.access_used").count() == 1
