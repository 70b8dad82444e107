"""The allowed-networks pages: the project's list (owners), a member's extra ranges (whoever
may manage that member) and a key's ranges (whoever may manage keys)."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from callvault.accounts.actions import do_create_api_key, do_revoke_api_key
from callvault.accounts.allowlist import do_add_network
from callvault.accounts.models import AllowedNetwork, Membership, Role
from callvault.accounts.stepup import SESSION_KEY
from callvault.audit.models import AuditEvent
from conftest import login, make_member

URL = "/p/alpha/settings/networks/"


def fresh(client: Client) -> Client:
    """The member has just proved who they are (the step-up window is open)."""
    session = client.session
    session[SESSION_KEY] = time.time()
    session.save()
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"  # the assertions read English text
    return client


def owner_client(owner: Membership) -> Client:
    return fresh(login(owner))


def member_url(target: Membership) -> str:
    return f"/p/alpha/settings/members/{target.pk}/networks/"


def key_url(key_id: int) -> str:
    return f"/p/alpha/settings/api-keys/{key_id}/networks/"


# --- The project's list ---------------------------------------------------------------------


def test_anonymous_is_sent_to_login(project):
    response = Client().get(URL)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_an_outsider_gets_404(outsider, project):
    assert fresh(login(outsider)).get(URL).status_code == 404


@pytest.mark.parametrize("role", [Role.ADMIN, Role.SUPERVISOR, Role.OPERATOR, Role.TRAINEE])
def test_everyone_but_an_owner_gets_404_and_changes_nothing(project, role):
    client = fresh(login(make_member(project, f"m-{role}", role)))
    assert client.get(URL).status_code == 404
    response = client.post(URL, {"network": "192.0.2.0/24", "label": "Office"})
    assert response.status_code == 404
    assert not AllowedNetwork.objects.exists()


def test_an_owner_sees_the_list_and_their_own_address(owner):
    do_add_network(owner.project, "192.0.2.0/24", "Office Tverskaya")
    response = owner_client(owner).get(URL, REMOTE_ADDR="192.0.2.10")
    assert response.status_code == 200
    text = response.content.decode()
    assert "192.0.2.0/24" in text and "Office Tverskaya" in text
    assert "192.0.2.10" in text


def test_an_owner_adds_a_range_and_it_is_recorded(owner):
    client = owner_client(owner)
    response = client.post(
        URL, {"network": "127.0.0.0/8", "label": "This machine"}, REMOTE_ADDR="127.0.0.1"
    )
    assert response.status_code == 302
    row = AllowedNetwork.objects.get()
    assert (row.network, row.label, row.membership_id, row.api_key_id) == (
        "127.0.0.0/8",
        "This machine",
        None,
        None,
    )
    event = AuditEvent.objects.get(action="allowed_network.add")
    assert (event.actor_name, event.ip) == ("alice", "127.0.0.1")


def test_a_change_needs_a_recent_step_up(owner):
    response = login(owner).post(URL, {"network": "127.0.0.0/8", "label": "This machine"})
    assert response.status_code == 302
    assert "/accounts/" in response["Location"] and "next=" in response["Location"]
    assert not AllowedNetwork.objects.exists()


def test_a_bad_cidr_is_shown_on_the_network_field(owner):
    response = owner_client(owner).post(URL, {"network": "192.0.2.0/33", "label": "Office"})
    assert response.status_code == 200
    assert "network" in response.context["form"].errors
    assert "192.0.2.0/33" in response.content.decode()
    assert not AllowedNetwork.objects.exists()


def test_host_bits_are_cleared_and_the_page_says_so(owner):
    client = owner_client(owner)
    client.post(URL, {"network": "127.0.0.9/8", "label": "This machine"})
    response = client.get(URL)
    assert AllowedNetwork.objects.get().network == "127.0.0.0/8"
    assert "Host bits were set in 127.0.0.9/8" in response.content.decode()


def test_a_duplicate_is_refused_on_the_network_field(owner):
    do_add_network(owner.project, "127.0.0.0/8", "This machine")
    response = owner_client(owner).post(URL, {"network": "127.0.0.0/8", "label": "Again"})
    assert "network" in response.context["form"].errors
    assert AllowedNetwork.objects.count() == 1


def test_an_owner_removes_a_range_and_it_is_recorded(owner):
    row, _ = do_add_network(owner.project, "192.0.2.0/24", "Office")
    response = owner_client(owner).post(URL, {"remove": row.pk}, REMOTE_ADDR="192.0.2.10")
    assert response.status_code == 302
    assert not AllowedNetwork.objects.exists()
    assert AuditEvent.objects.get(action="allowed_network.remove").object_id == str(row.pk)


def test_a_range_of_another_list_cannot_be_removed_through_this_page(owner, operator):
    row, _ = do_add_network(owner.project, "192.0.2.0/24", "Home", membership=operator)
    assert owner_client(owner).post(URL, {"remove": row.pk}).status_code == 404
    assert AllowedNetwork.objects.count() == 1


# --- Locking oneself out --------------------------------------------------------------------


def test_a_first_range_that_leaves_out_the_owners_address_asks_for_confirmation(owner):
    client = owner_client(owner)
    response = client.post(
        URL, {"network": "192.0.2.0/24", "label": "Office"}, REMOTE_ADDR="203.0.113.5"
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "would refuse your own address (203.0.113.5)" in text
    assert 'name="confirm_lockout"' in text
    assert not AllowedNetwork.objects.exists()
    # Still in: nothing was saved.
    assert client.get(URL, REMOTE_ADDR="203.0.113.5").status_code == 200


def test_with_the_confirmation_it_is_saved_and_the_owner_is_refused_next(owner):
    client = owner_client(owner)
    response = client.post(
        URL,
        {"network": "192.0.2.0/24", "label": "Office", "confirm_lockout": "1"},
        REMOTE_ADDR="203.0.113.5",
    )
    assert response.status_code == 302
    assert AllowedNetwork.objects.get().network == "192.0.2.0/24"
    assert client.get(URL, REMOTE_ADDR="203.0.113.5").status_code == 403


def test_removing_the_owners_own_range_asks_for_confirmation(owner):
    home, _ = do_add_network(owner.project, "203.0.113.0/24", "Home")
    do_add_network(owner.project, "192.0.2.0/24", "Office")
    client = owner_client(owner)
    response = client.post(URL, {"remove": home.pk}, REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 200
    assert "would refuse your own address" in response.content.decode()
    assert AllowedNetwork.objects.count() == 2
    response = client.post(
        URL, {"remove": home.pk, "confirm_lockout": "1"}, REMOTE_ADDR="203.0.113.5"
    )
    assert response.status_code == 302
    assert AllowedNetwork.objects.count() == 1


# --- A member's extra ranges ----------------------------------------------------------------


def test_member_ranges_anonymous_is_sent_to_login(operator):
    assert Client().get(member_url(operator)).status_code == 302


def test_member_ranges_an_outsider_gets_404(operator, outsider):
    assert fresh(login(outsider)).get(member_url(operator)).status_code == 404


def test_member_ranges_without_may_manage_get_404(operator, supervisor, trainee):
    client = fresh(login(supervisor))
    assert client.get(member_url(operator)).status_code == 404
    assert (
        client.post(member_url(trainee), {"network": "192.0.2.0/24", "label": "x"}).status_code
        == 404
    )
    assert not AllowedNetwork.objects.exists()


def test_an_admin_may_not_edit_an_owners_ranges_nor_anyone_their_own(project, owner):
    admin = make_member(project, "adam", Role.ADMIN)
    assert fresh(login(admin)).get(member_url(owner)).status_code == 404
    assert fresh(login(owner)).get(member_url(owner)).status_code == 404


def test_a_member_of_another_project_is_404(owner, outsider):
    assert owner_client(owner).get(member_url(outsider)).status_code == 404


def test_an_admin_may_not_widen_an_operators_networks(project, operator):
    # A member's ranges add to the project's: an admin who could add 0.0.0.0/0 for an
    # operator would undo the owner's "operators only from the office".
    admin = make_member(project, "adam", Role.ADMIN)
    do_add_network(project, "192.0.2.0/24", "Office")
    client = fresh(login(admin))
    client.defaults["REMOTE_ADDR"] = "192.0.2.10"  # inside the project's list
    assert client.get(member_url(operator)).status_code == 404
    response = client.post(member_url(operator), {"network": "0.0.0.0/0", "label": "Anywhere"})
    assert response.status_code == 404
    assert not AllowedNetwork.objects.filter(membership=operator).exists()


def test_an_owner_adds_an_operators_own_range(owner, operator):
    do_add_network(owner.project, "192.0.2.0/24", "Office")
    client = owner_client(owner)
    client.defaults["REMOTE_ADDR"] = "192.0.2.10"  # inside the project's list
    page = client.get(member_url(operator))
    assert page.status_code == 200
    assert "192.0.2.0/24" in page.content.decode()  # the project's list, for context
    response = client.post(member_url(operator), {"network": "2001:db8::/32", "label": "Home"})
    assert response.status_code == 302
    row = AllowedNetwork.objects.get(membership=operator)
    assert row.network == "2001:db8::/32"
    event = AuditEvent.objects.get(action="allowed_network.add", object_id=str(row.pk))
    assert event.extra == {"list": "member", "member": "bob"}


# --- An API key's ranges --------------------------------------------------------------------


@pytest.fixture
def key(project):
    key, _ = do_create_api_key(project, "Partner", can_read_orders=True)
    return key


def test_key_ranges_anonymous_is_sent_to_login(key):
    assert Client().get(key_url(key.pk)).status_code == 302


def test_key_ranges_an_outsider_gets_404(key, outsider):
    assert fresh(login(outsider)).get(key_url(key.pk)).status_code == 404


@pytest.mark.parametrize("who", ["supervisor", "operator", "trainee"])
def test_key_ranges_without_the_capability_get_404(key, who, request):
    client = fresh(login(request.getfixturevalue(who)))
    assert client.get(key_url(key.pk)).status_code == 404
    assert client.post(key_url(key.pk), {"network": "192.0.2.0/24", "label": "x"}).status_code == (
        404
    )
    assert not AllowedNetwork.objects.exists()


def test_a_revoked_key_or_another_projects_key_is_404(key, owner, other_project):
    other, _ = do_create_api_key(other_project, "Theirs")
    assert owner_client(owner).get(key_url(other.pk)).status_code == 404
    do_revoke_api_key(key)
    assert owner_client(owner).get(key_url(key.pk)).status_code == 404


def test_an_owner_adds_a_keys_own_range_without_any_lockout_question(key, owner):
    client = owner_client(owner)
    assert client.get(key_url(key.pk)).status_code == 200
    response = client.post(
        key_url(key.pk), {"network": "198.51.100.0/24", "label": "Partner server"}
    )
    assert response.status_code == 302
    assert AllowedNetwork.objects.get(api_key=key).network == "198.51.100.0/24"
    event = AuditEvent.objects.get(action="allowed_network.add")
    assert event.extra["list"] == "api_key"


def test_a_lead_only_key_page_says_the_projects_list_does_not_hold_it(owner, project):
    key, _ = do_create_api_key(project, "Landing")
    response = owner_client(owner).get(key_url(key.pk))
    assert "accepted from anywhere" in response.content.decode()


def test_the_page_speaks_the_members_language(owner):
    do_add_network(owner.project, "192.0.2.0/24", "Office")
    client = owner_client(owner)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "ru"
    response = client.get(URL, REMOTE_ADDR="192.0.2.10")
    assert response.status_code == 200
    assert '<html lang="ru">' in response.content.decode()
