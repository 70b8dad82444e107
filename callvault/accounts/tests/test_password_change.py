"""Changing one's password, and the change forced on a password someone else chose."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from callvault.accounts.actions import do_change_password
from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from conftest import PASSWORD, password_login

URL = "/accounts/password_change/"
DONE_URL = "/accounts/password_change/done/"
NEW_PASSWORD = "a brand new passphrase 77"


def logged_in(username: str, password: str = PASSWORD) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    assert password_login(client, username, password)
    return client


def must_change(member) -> None:
    member.user.must_change_password = True
    member.user.save(update_fields=["must_change_password"])


def change(client: Client, old: str, new: str):
    return client.post(URL, {"old_password": old, "new_password1": new, "new_password2": new})


def test_anonymous_is_sent_to_login(db):
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    "path",
    ["/", "/p/alpha/orders/", "/p/alpha/settings/members/", "/accounts/password_change/done/x"],
)
def test_a_user_who_must_change_the_password_is_sent_to_the_change_page(operator, path):
    must_change(operator)
    response = logged_in("bob").get(path)
    assert response.status_code == 302
    assert response["Location"] == URL


def test_the_change_page_and_logging_out_stay_reachable(operator):
    must_change(operator)
    client = logged_in("bob")
    page = client.get(URL)
    assert page.status_code == 200
    assert "Choose your own" in page.content.decode()
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302
    assert client.get("/")["Location"].startswith("/accounts/login/")


def test_the_api_is_not_redirected(operator, api_key):
    must_change(operator)
    response = logged_in("bob").get("/api/v1/orders", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 200


def test_changing_the_password_lifts_the_requirement_and_is_recorded(operator):
    must_change(operator)
    client = logged_in("bob")
    response = change(client, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == DONE_URL
    assert client.get(DONE_URL).status_code == 200
    operator.user.refresh_from_db()
    assert not operator.user.must_change_password
    # The session survives its own password change (an operator lands on their own orders);
    # the old password does not.
    assert client.get("/").get("Location") == "/p/alpha/orders/mine/"
    assert not password_login(Client(), "bob", PASSWORD)
    assert password_login(Client(), "bob", NEW_PASSWORD)
    event = AuditEvent.objects.get(action="user.password_change")
    assert (event.actor_name, event.object_repr) == ("bob", "bob")
    assert event.changes == {"password": "changed", "must_change_password": [True, False]}
    for event in AuditEvent.objects.all():
        assert NEW_PASSWORD not in json.dumps([event.changes, event.extra])


def test_keeping_the_password_someone_else_chose_is_refused(operator):
    must_change(operator)
    response = change(logged_in("bob"), PASSWORD, PASSWORD)
    assert response.status_code == 200
    assert "new_password1" in response.context["form"].errors
    operator.user.refresh_from_db()
    assert operator.user.must_change_password
    assert not AuditEvent.objects.filter(action="user.password_change").exists()


def test_a_weak_password_or_a_wrong_old_one_is_refused(operator):
    client = logged_in("bob")
    assert change(client, PASSWORD, "12345").context["form"].errors
    assert change(client, "not my password", NEW_PASSWORD).context["form"].errors
    assert password_login(Client(), "bob", PASSWORD)
    assert not AuditEvent.objects.filter(action="user.password_change").exists()


def test_a_user_may_change_the_password_without_being_asked(operator):
    client = logged_in("bob")
    assert change(client, PASSWORD, NEW_PASSWORD)["Location"] == DONE_URL
    event = AuditEvent.objects.get(action="user.password_change")
    assert event.changes == {"password": "changed"}


def test_the_action_checks_the_policy_itself(operator):
    with pytest.raises(FieldErrors) as exc:
        do_change_password(operator.user, "short")
    assert set(exc.value.errors) == {"new_password1"}
    operator.user.refresh_from_db()
    assert operator.user.check_password(PASSWORD)


def test_wrong_current_passwords_are_counted_and_the_lockout_ends_the_session(operator):
    client = logged_in("bob")
    for _ in range(4):
        assert change(client, "not my password", NEW_PASSWORD).status_code == 200
    failed = AuditEvent.objects.filter(action="auth.step_up_failed")
    assert failed.count() == 4
    assert all(e.extra["method"] == "password_change" for e in failed)
    response = change(client, "not my password", NEW_PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get(URL)["Location"].startswith("/accounts/login/")
    assert not password_login(Client(), "bob", PASSWORD)  # locked out now
