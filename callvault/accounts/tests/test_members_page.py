"""The members page: owners and admins add people, change roles and capabilities, take access
away and reset passwords; nobody changes themselves, and only owners hand out the keys to
phone numbers, the member list and exports."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from callvault.accounts.actions import do_add_member, do_set_capabilities
from callvault.accounts.models import Membership, Role, User
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, login, make_member, password_login

URL = "/p/alpha/settings/members/"


def member_url(member: Membership, step: str = "") -> str:
    return f"{URL}{member.pk}/{step + '/' if step else ''}"


def en(member: Membership) -> Client:
    """A logged-in client that reads the pages in English."""
    client = login(member)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def assert_not_recorded(secret: str) -> None:
    for event in AuditEvent.objects.all():
        assert secret not in json.dumps([event.changes, event.extra, event.object_repr])


@pytest.fixture
def admin(project):
    return make_member(project, "adam", Role.ADMIN)


def new_member_post():
    return {"username": "nina", "first_name": "Nina", "last_name": "Ivanova", "role": "operator"}


# --- who may see the page -------------------------------------------------------------------


def test_anonymous_is_sent_to_login(operator):
    for url in (URL, member_url(operator)):
        response = Client().get(url)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]
    response = Client().post(member_url(operator, "deactivate"))
    assert response.status_code == 302
    operator.refresh_from_db()
    assert operator.is_active


def test_an_outsider_gets_404(outsider, operator):
    client = login(outsider)
    assert client.get(URL).status_code == 404
    assert client.get(member_url(operator)).status_code == 404
    assert client.post(member_url(operator, "deactivate")).status_code == 404
    assert client.post(URL, new_member_post()).status_code == 404
    operator.refresh_from_db()
    assert operator.is_active
    assert not User.objects.filter(username="nina").exists()


@pytest.mark.parametrize("who", ["supervisor", "operator", "trainee"])
def test_members_without_the_capability_get_404(who, request, owner):
    member = request.getfixturevalue(who)
    client = login(member)
    assert client.get(URL).status_code == 404
    assert client.get(member_url(owner)).status_code == 404
    assert client.post(URL, new_member_post()).status_code == 404
    assert client.post(member_url(owner, "role"), {"role": "trainee"}).status_code == 404
    assert client.post(member_url(owner, "deactivate")).status_code == 404
    assert client.post(member_url(owner, "password")).status_code == 404
    owner.refresh_from_db()
    assert (owner.role, owner.is_active) == (Role.OWNER, True)
    assert not User.objects.filter(username="nina").exists()


def test_a_member_of_another_project_is_404_even_for_an_owner(owner, outsider):
    client = login(owner)
    assert client.get(member_url(outsider)).status_code == 404
    assert client.post(member_url(outsider, "role"), {"role": "trainee"}).status_code == 404
    assert client.post(member_url(outsider, "deactivate")).status_code == 404
    assert client.post(member_url(outsider, "password")).status_code == 404
    outsider.refresh_from_db()
    assert (outsider.role, outsider.is_active) == (Role.OWNER, True)


def test_the_settings_link_is_shown_only_to_managers(owner, supervisor):
    assert f'href="{URL}"' in login(owner).get("/p/alpha/orders/").content.decode()
    page = login(supervisor).get("/p/alpha/orders/")
    assert page.status_code == 200
    assert "/settings/" not in page.content.decode()
    assert "/setup/" not in page.content.decode()


# --- the list -------------------------------------------------------------------------------


def test_the_list_shows_roles_flags_and_last_login(
    owner, supervisor, operator, trainee, django_assert_max_num_queries
):
    password_login(Client(), "bob", PASSWORD)
    do_set_capabilities(operator, {"can_see_phones": True})
    client = en(owner)
    client.get(URL)  # the first page after logging in also records the session's bookkeeping
    # +2 since the login security: the allowed-networks check on every request, and the
    # owner's unread security notices in the settings menu.
    with django_assert_max_num_queries(10):
        response = client.get(URL)
    assert response.status_code == 200
    rows = {m.user.username: (m, caps) for m, caps in response.context["rows"]}
    assert set(rows) == {"alice", "sam", "bob", "tina"}
    assert rows["bob"][0].get_role_display() == "Operator"
    assert "May see phone numbers" in [str(c) for c in rows["bob"][1]]
    assert "May see phone numbers" not in [str(c) for c in rows["tina"][1]]
    content = response.content.decode()
    assert "Supervisor" in content
    assert rows["bob"][0].user.last_login is not None
    assert rows["tina"][0].user.last_login is None


# --- creating a member ----------------------------------------------------------------------


def test_a_new_member_gets_a_password_shown_once_that_must_be_changed(owner):
    client = en(owner)
    response = client.post(URL, new_member_post())
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    password = response.context["password"]
    assert len(password) >= 20
    assert response.content.decode().count(password) == 1
    assert password not in client.get(URL).content.decode()

    user = User.objects.get(username="nina")
    assert (user.first_name, user.last_name, user.must_change_password) == ("Nina", "Ivanova", True)
    member = Membership.objects.get(user=user)
    assert (member.project.slug, member.role, member.can_edit_orders) == ("alpha", "operator", True)

    newcomer = Client()
    assert password_login(newcomer, "nina", password)
    response = newcomer.get("/p/alpha/orders/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password_change/"

    created = AuditEvent.objects.get(action="user.create", object_repr="nina")
    assert created.actor_name == "alice"
    assert created.changes["password"] == "changed"
    assert created.changes["must_change_password"] == [None, True]
    added = AuditEvent.objects.get(action="member.add", object_repr="nina")
    assert (added.actor_name, added.changes["role"]) == ("alice", [None, "operator"])
    assert_not_recorded(password)


def test_a_taken_username_is_refused_and_nothing_is_created(owner, operator):
    users = User.objects.count()
    response = en(owner).post(URL, {**new_member_post(), "username": "BOB"})
    assert response.status_code == 200
    assert "username" in response.context["create_form"].errors
    assert response.context["password"] is None
    assert User.objects.count() == users
    assert Membership.objects.filter(project=owner.project).count() == 2
    assert not AuditEvent.objects.filter(action="user.create", actor_name="alice").exists()


def test_an_admin_may_not_create_an_admin_or_an_owner(admin):
    client = en(admin)
    for role in ("admin", "owner"):
        response = client.post(URL, {**new_member_post(), "role": role})
        assert "role" in response.context["create_form"].errors
        assert response.context["password"] is None
    assert not User.objects.filter(username="nina").exists()
    response = client.post(URL, new_member_post())
    assert User.objects.get(username="nina").memberships.get().role == "operator"


def test_an_existing_user_is_added_with_a_role(owner, outsider):
    response = en(owner).post(f"{URL}add/", {"username": "charlie", "role": "supervisor"})
    assert response.status_code == 302
    member = Membership.objects.get(project=owner.project, user=outsider.user)
    assert member.role == "supervisor" and member.can_view_audit and not member.can_see_phones
    event = AuditEvent.objects.get(
        action="member.add", project_id=owner.project_id, object_repr="charlie"
    )
    assert event.actor_name == "alice"
    # Their password is theirs: adding them does not touch it.
    outsider.user.refresh_from_db()
    assert not outsider.user.must_change_password
    assert password_login(Client(), "charlie", PASSWORD)


def test_adding_an_unknown_user_or_a_member_twice_is_refused(owner, operator):
    client = en(owner)
    response = client.post(f"{URL}add/", {"username": "nobody", "role": "operator"})
    assert "username" in response.context["add_form"].errors
    response = client.post(f"{URL}add/", {"username": "bob", "role": "supervisor"})
    assert "username" in response.context["add_form"].errors
    operator.refresh_from_db()
    assert operator.role == "operator"
    assert Membership.objects.filter(project=owner.project).count() == 2


# --- role and capabilities ------------------------------------------------------------------


def test_an_owner_changes_a_role_and_the_flags_follow_the_preset(owner, operator):
    do_set_capabilities(operator, {"can_see_phones": True})
    response = en(owner).post(member_url(operator, "role"), {"role": "supervisor"})
    assert response.status_code == 302
    operator.refresh_from_db()
    assert operator.role == "supervisor"
    assert operator.can_view_audit and not operator.can_see_phones
    event = AuditEvent.objects.get(action="member.role")
    assert event.actor_name == "alice"
    assert event.changes["role"] == ["operator", "supervisor"]
    assert event.changes["can_see_phones"] == [True, False]
    assert event.changes["can_view_audit"] == [False, True]


def test_an_owner_grants_the_right_to_see_phones(owner, operator):
    response = en(owner).post(
        member_url(operator, "capabilities"), {"can_edit_orders": "on", "can_see_phones": "on"}
    )
    assert response.status_code == 302
    operator.refresh_from_db()
    assert operator.can_see_phones and operator.can_edit_orders
    event = AuditEvent.objects.get(action="member.capabilities")
    assert (event.actor_name, event.changes) == ("alice", {"can_see_phones": [False, True]})


def test_an_admin_cannot_grant_the_right_to_see_phones(admin, operator):
    response = en(admin).post(
        member_url(operator, "capabilities"), {"can_edit_orders": "on", "can_see_phones": "on"}
    )
    assert response.status_code == 200
    assert "can_see_phones" in response.context["capabilities_form"].errors
    operator.refresh_from_db()
    assert not operator.can_see_phones
    assert not AuditEvent.objects.filter(action="member.capabilities").exists()


@pytest.mark.parametrize("flag", ["can_manage_members", "can_export"])
def test_an_admin_cannot_grant_the_other_owner_only_flags(admin, operator, flag):
    response = en(admin).post(member_url(operator, "capabilities"), {flag: "on"})
    assert flag in response.context["capabilities_form"].errors
    operator.refresh_from_db()
    assert not getattr(operator, flag)
    assert operator.can_edit_orders


def test_an_admin_changes_the_other_flags(admin, operator):
    response = en(admin).post(
        member_url(operator, "capabilities"), {"can_edit_orders": "on", "can_view_audit": "on"}
    )
    assert response.status_code == 302
    operator.refresh_from_db()
    assert operator.can_view_audit
    event = AuditEvent.objects.get(action="member.capabilities")
    assert (event.actor_name, event.changes) == ("adam", {"can_view_audit": [False, True]})


def test_an_admin_cannot_make_someone_an_admin(admin, operator):
    response = en(admin).post(member_url(operator, "role"), {"role": "admin"})
    assert "role" in response.context["role_form"].errors
    operator.refresh_from_db()
    assert (operator.role, operator.can_manage_members) == ("operator", False)


def test_an_admin_cannot_touch_an_owner(admin, owner):
    client = en(admin)
    page = client.get(member_url(owner))
    assert page.context["may_manage"] is False
    response = client.post(member_url(owner, "role"), {"role": "trainee"})
    assert response.context["role_form"].errors
    assert client.post(member_url(owner, "deactivate")).context["error"]
    response = client.post(member_url(owner, "password"))
    assert response.context["error"] and response.context["password"] is None
    owner.refresh_from_db()
    owner.user.refresh_from_db()
    assert (owner.role, owner.is_active, owner.can_see_phones) == ("owner", True, True)
    assert password_login(Client(), "alice", PASSWORD)
    assert not AuditEvent.objects.filter(
        action__in=["member.role", "member.deactivate", "user.password_reset"]
    ).exists()


# --- nobody locks themselves out ------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_nobody_changes_their_own_role_flags_or_access(who, request):
    me = request.getfixturevalue(who)
    client = en(me)
    page = client.get(member_url(me))
    assert page.context["is_self"] is True
    assert "Change role" not in page.content.decode()
    response = client.post(member_url(me, "role"), {"role": "trainee"})
    assert response.context["role_form"].errors
    response = client.post(member_url(me, "capabilities"), {"can_edit_orders": "on"})
    assert response.context["capabilities_form"].errors
    assert client.post(member_url(me, "deactivate")).context["error"]
    assert client.post(member_url(me, "password")).context["password"] is None
    me.refresh_from_db()
    assert me.is_active and me.role == who and me.can_manage_members
    assert client.get(URL).status_code == 200
    assert not AuditEvent.objects.filter(
        action__in=["member.role", "member.capabilities", "member.deactivate"]
    ).exists()


# --- access and passwords -------------------------------------------------------------------


def test_an_owner_deactivates_and_reactivates_a_member(owner, supervisor):
    client = en(owner)
    assert client.post(member_url(supervisor, "deactivate")).status_code == 302
    supervisor.refresh_from_db()
    assert not supervisor.is_active
    assert login(supervisor).get("/p/alpha/orders/").status_code == 404
    assert client.post(member_url(supervisor, "reactivate")).status_code == 302
    supervisor.refresh_from_db()
    assert supervisor.is_active
    assert login(supervisor).get("/p/alpha/orders/").status_code == 200
    events = AuditEvent.objects.filter(object_type="membership", object_id=str(supervisor.pk))
    assert [(e.action, e.actor_name, e.changes) for e in events.order_by("id")][-2:] == [
        ("member.deactivate", "alice", {"is_active": [True, False]}),
        ("member.reactivate", "alice", {"is_active": [False, True]}),
    ]


def test_an_owner_resets_a_password_shown_once(owner, operator):
    response = en(owner).post(member_url(operator, "password"))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    password = response.context["password"]
    assert response.content.decode().count(password) == 1
    assert not password_login(Client(), "bob", PASSWORD)
    client = Client()
    assert password_login(client, "bob", password)
    assert client.get("/")["Location"] == "/accounts/password_change/"
    operator.user.refresh_from_db()
    assert operator.user.must_change_password
    event = AuditEvent.objects.get(action="user.password_reset")
    assert event.actor_name == "alice"
    assert event.changes == {"password": "changed", "must_change_password": [False, True]}
    assert_not_recorded(password)


def test_a_password_of_someone_with_access_elsewhere_cannot_be_reset(owner, outsider):
    do_add_member(owner.project, outsider.user, Role.OPERATOR)
    charlie = Membership.objects.get(project=owner.project, user=outsider.user)
    response = en(owner).post(member_url(charlie, "password"))
    assert response.context["password"] is None
    assert "elsewhere" in response.context["error"]
    assert password_login(Client(), "charlie", PASSWORD)
    assert not AuditEvent.objects.filter(action="user.password_reset").exists()
