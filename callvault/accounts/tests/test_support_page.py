"""The owner's Support access page: grant to a named support account or by a one-time link,
list, revoke; nobody but the owner sees it."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from callvault.accounts.models import SupportGrant, User
from callvault.accounts.stepup import SESSION_KEY
from callvault.accounts.support import do_create_support_account, hash_link_token
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, login

URL = "/p/alpha/settings/support/"
LINK = re.compile(r"/accounts/support/([A-Za-z0-9_-]{40,})/")


def stepped_up(client: Client) -> Client:
    """The owner proved who they are a moment ago (the step-up helper's session mark)."""
    session = client.session
    session[SESSION_KEY] = time.time()
    session.save()
    return client


@pytest.fixture
def helpdesk(db):
    return do_create_support_account("vendor-kim", PASSWORD, first_name="Kim")


def named(**extra):
    return {
        "kind": "account",
        "username": "vendor-kim",
        "hours": "4",
        "reason": "ticket 42",
    } | extra


def by_link(**extra):
    return {"kind": "link", "person": "Oleg from Acme", "hours": "1", "reason": "a crash"} | extra


def test_anonymous_is_sent_to_login(project):
    response = Client().get(URL)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_an_outsider_gets_404(outsider, project):
    assert login(outsider).get(URL).status_code == 404


@pytest.mark.parametrize("who", ["supervisor", "operator", "trainee"])
def test_members_who_are_not_owners_get_404(who, request, helpdesk):
    client = stepped_up(login(request.getfixturevalue(who)))
    assert client.get(URL).status_code == 404
    assert client.post(URL, named()).status_code == 404
    assert not SupportGrant.objects.exists()


def test_an_owner_sees_the_page(owner):
    response = login(owner).get(URL, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "Grant support access" in response.content.decode()


def test_granting_needs_a_fresh_step_up(owner, helpdesk):
    response = login(owner).post(URL, named())
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account:step_up"))
    assert not SupportGrant.objects.exists()


def test_an_owner_grants_a_named_support_account_read_only_by_default(owner, helpdesk):
    response = stepped_up(login(owner)).post(URL, named())
    assert response.status_code == 302
    grant = SupportGrant.objects.get()
    assert (grant.user, grant.person, grant.reason) == (helpdesk, "Kim", "ticket 42")
    assert grant.read_only and not grant.may_see_phones
    assert grant.link_token_hash == ""
    lasts = grant.expires_at - timezone.now()
    assert timedelta(hours=3, minutes=59) < lasts <= timedelta(hours=4)
    event = AuditEvent.objects.get(action="support.access_granted")
    assert (event.object_type, event.object_id) == ("support_grant", str(grant.pk))
    assert event.actor_name == "alice"
    assert event.changes["account"] == [None, "vendor-kim"]
    assert event.changes["read_only"] == [None, True]


def test_only_support_accounts_can_be_named(owner, operator):
    response = stepped_up(login(owner)).post(URL, named(username="bob"), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "no support account with this username" in response.content.decode()
    assert not SupportGrant.objects.exists()


def test_a_time_and_a_reason_are_required(owner, helpdesk):
    client = stepped_up(login(owner))
    assert client.post(URL, named(hours="")).status_code == 200
    assert client.post(URL, named(hours="9999")).status_code == 200
    assert client.post(URL, named(reason="")).status_code == 200
    assert not SupportGrant.objects.exists()


def test_a_one_time_link_is_shown_once_and_kept_only_as_a_hash(owner):
    client = stepped_up(login(owner))
    response = client.post(URL, by_link(read_write="on", may_see_phones="on"))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    tokens = LINK.findall(response.content.decode())
    assert len(tokens) == 1
    grant = SupportGrant.objects.get()
    assert grant.link_token_hash == hash_link_token(tokens[0])
    assert tokens[0] not in grant.link_token_hash
    assert (grant.person, grant.user, grant.read_only, grant.may_see_phones) == (
        "Oleg from Acme",
        None,
        False,
        True,
    )
    page = client.get(URL).content.decode()
    assert "Oleg from Acme" in page and tokens[0] not in page
    event = AuditEvent.objects.get(action="support.access_granted")
    assert event.changes["link"] == "changed"
    assert tokens[0] not in str(event.changes) and grant.link_token_hash not in str(event.changes)


def test_the_list_shows_active_expired_and_revoked_grants(owner, helpdesk):
    client = stepped_up(login(owner))
    for reason in ("first", "second", "third"):
        client.post(URL, named(reason=reason))
    first, second, _third = SupportGrant.objects.order_by("pk")
    SupportGrant.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    client.post(f"{URL}{second.pk}/revoke/")
    page = client.get(URL, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert page.count("Revoke</button>") == 1
    assert ">expired<" in page
    assert "revoked" in page


def test_an_owner_revokes_a_grant(owner, helpdesk):
    client = stepped_up(login(owner))
    client.post(URL, named())
    grant = SupportGrant.objects.get()
    response = login(owner).post(f"{URL}{grant.pk}/revoke/")  # no step-up to take access away
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.revoked_at is not None
    event = AuditEvent.objects.get(action="support.access_revoked")
    assert (event.object_type, event.object_id, event.actor_name) == (
        "support_grant",
        str(grant.pk),
        "alice",
    )


def test_revoking_needs_an_owner_of_the_grants_project(owner, supervisor, outsider, helpdesk):
    stepped_up(login(owner)).post(URL, named())
    grant = SupportGrant.objects.get()
    assert login(supervisor).post(f"{URL}{grant.pk}/revoke/").status_code == 404
    other = f"/p/beta/settings/support/{grant.pk}/revoke/"
    assert login(outsider).post(other).status_code == 404
    assert Client().post(f"{URL}{grant.pk}/revoke/").status_code == 302  # to the login
    grant.refresh_from_db()
    assert grant.revoked_at is None


def test_the_support_command_creates_a_named_account(db, capsys):
    from django.core.management import call_command

    call_command("support", "create-account", "vendor-lee", "--name", "Lee")
    out = capsys.readouterr().out
    user = User.objects.get(username="vendor-lee")
    assert user.is_support and user.must_change_password and user.first_name == "Lee"
    password = re.search(r"shown once.*: (\S+)", out)
    assert password and user.check_password(password.group(1))
    event = AuditEvent.objects.get(action="support.account_create")
    assert event.changes == {"is_support": [False, True]}
    assert event.actor_name == "system: support create-account"
    assert password.group(1) not in str(AuditEvent.objects.values_list("changes", "extra"))
