"""Step-up on /accounts/step-up/: the password or a second factor again, valid a few minutes."""

from __future__ import annotations

from django.test import Client

from callvault.accounts import stepup
from callvault.accounts.models import Membership
from callvault.accounts.tests.test_two_factor_totp import code_for, enrol
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, login

URL = "/accounts/step-up/"


def test_anonymous_visitors_are_sent_to_login(db):
    for response in (Client().get(URL), Client().post(URL, {"password": PASSWORD})):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_the_page_asks_for_the_password(operator: Membership):
    response = login(operator).get(f"{URL}?next=/p/alpha/orders/mine/")
    assert response.status_code == 200
    assert response.context["next"] == "/p/alpha/orders/mine/"
    assert 'name="password"' in response.content.decode()
    assert not response.context["has_codes"]


def test_the_password_marks_the_session_fresh_and_goes_back(operator: Membership):
    client = login(operator)
    response = client.post(URL, {"password": PASSWORD, "next": "/p/alpha/orders/mine/"})
    assert response["Location"] == "/p/alpha/orders/mine/"
    assert stepup.SESSION_KEY in client.session
    event = AuditEvent.objects.get(action="auth.step_up")
    assert (event.object_type, event.object_id) == ("user", str(operator.user.pk))
    assert event.extra == {"method": "password"}


def test_a_wrong_password_is_refused_recorded_and_counted(operator: Membership):
    client = login(operator)
    response = client.post(URL, {"password": "not it at all", "next": "/"})
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert stepup.SESSION_KEY not in client.session
    assert AuditEvent.objects.get(action="auth.step_up_failed").extra == {"method": "password"}
    assert "not it at all" not in str(AuditEvent.objects.values_list("changes", "extra"))


def test_a_code_from_the_app_serves_too(operator: Membership):
    device, _ = enrol(login(operator))
    client = login(operator)
    client.post("/accounts/two-factor/verify/", {"code": code_for(device, 1)})
    session = client.session
    session.pop(stepup.SESSION_KEY)
    session.save()
    assert client.get(URL).context["has_codes"]
    response = client.post(URL, {"code": code_for(device, 2), "next": "/"})
    assert response["Location"] == "/"
    assert stepup.SESSION_KEY in client.session
    assert AuditEvent.objects.get(action="auth.step_up").extra == {"method": "totp"}


def test_next_may_not_lead_to_another_site(operator: Membership):
    response = login(operator).post(URL, {"password": PASSWORD, "next": "//evil.example/x"})
    assert response["Location"] == "/"


def test_repeated_failures_end_the_session(operator: Membership, settings):
    client = login(operator)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(URL, {"password": "guess", "next": "/"})
    assert response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session
