"""The login step after the password, and the policy that makes members enrol
(SecondFactorMiddleware, /accounts/two-factor/verify/)."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from callvault.accounts import stepup, twofactor
from callvault.accounts.allowlist import do_add_network
from callvault.accounts.models import AllowedNetwork, Membership, RolePolicy, TwoFactorRule
from callvault.accounts.policy import do_update_role_policy
from callvault.accounts.tests.test_two_factor_totp import code_for, enrol, fresh, wrong
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, login

VERIFY = "/accounts/two-factor/verify/"
ENROL = "/accounts/two-factor/"
# Pages of every kind a member could try before the second factor.
PAGES = [
    "/",
    "/p/alpha/orders/",
    "/p/alpha/orders/mine/",
    "/p/alpha/audit/",
    "/p/alpha/settings/members/",
    "/accounts/password_change/",
    "/accounts/two-factor/",
    "/accounts/two-factor/app/",
    "/accounts/step-up/",
]


def with_app(member: Membership) -> TOTPDevice:
    """The member has set up an authenticator app (in a session of its own)."""
    device, _ = enrol(login(member))
    return device


def sent_to(response: Any, url: str) -> bool:
    return bool(response.status_code == 302 and response["Location"].startswith(url))


def require(member: Membership, rule: str) -> None:
    row = RolePolicy.objects.get(project=member.project, role=member.role)
    do_update_role_policy(row, two_factor=rule)


def test_a_member_with_an_app_reaches_nothing_before_the_code(owner: Membership):
    with_app(owner)
    client = login(owner)
    for url in PAGES:
        assert sent_to(client.get(url), VERIFY), url
    assert client.post("/accounts/two-factor/recovery-codes/")["Location"].startswith(VERIFY)
    assert client.get(VERIFY).status_code == 200


def test_the_way_back_is_kept_in_next(owner: Membership):
    with_app(owner)
    response = login(owner).get("/p/alpha/orders/?status=new")
    assert response["Location"] == f"{VERIFY}?next=%2Fp%2Falpha%2Forders%2F%3Fstatus%3Dnew"


def test_leaving_the_language_the_api_and_health_stay_open(owner: Membership, api_key: str):
    with_app(owner)
    client = login(owner)
    assert client.get("/healthz").status_code == 200
    api = client.get("/api/v1/orders", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert api.status_code == 200
    assert not sent_to(client.post("/i18n/setlang/", {"language": "en", "next": "/"}), VERIFY)
    assert sent_to(client.post("/accounts/logout/"), "/") and "_auth_user_id" not in client.session


def test_htmx_requests_are_sent_on_by_hx_redirect(owner: Membership):
    with_app(owner)
    response = login(owner).get("/p/alpha/orders/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"] == VERIFY


def test_the_right_code_lets_the_member_in_and_counts_as_step_up(owner: Membership):
    device = with_app(owner)
    client = login(owner)
    response = client.post(VERIFY, {"code": code_for(device, 1), "next": "/p/alpha/orders/"})
    assert response["Location"] == "/p/alpha/orders/"
    for url in PAGES:
        assert not sent_to(client.get(url), VERIFY), url
    assert client.session[stepup.SESSION_KEY]
    event = AuditEvent.objects.get(action="auth.2fa_verified")
    assert (event.object_type, event.object_id) == ("user", str(owner.user.pk))
    assert event.extra["method"] == "totp"


def test_next_may_not_lead_to_another_site(owner: Membership):
    device = with_app(owner)
    response = login(owner).post(
        VERIFY, {"code": code_for(device, 1), "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


def test_a_wrong_code_is_refused_recorded_and_counted(owner: Membership, monkeypatch: Any):
    from callvault.accounts import lockout

    counted: list[Any] = []
    real = lockout.record_second_factor_failure

    def counting(request: Any, user: Any) -> bool:
        counted.append(user)
        return real(request, user)

    monkeypatch.setattr(lockout, "record_second_factor_failure", counting)
    device = with_app(owner)
    client = login(owner)
    response = client.post(VERIFY, {"code": wrong(code_for(device, 1))})
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert sent_to(client.get("/"), VERIFY)
    failed = AuditEvent.objects.get(action="auth.2fa_failed")
    assert failed.object_id == str(owner.user.pk)
    assert counted == [owner.user]


def test_the_code_that_let_one_session_in_does_not_let_another(owner: Membership):
    device = with_app(owner)
    code = code_for(device, 1)
    assert sent_to(login(owner).post(VERIFY, {"code": code}), "/")
    other = login(owner)
    assert other.post(VERIFY, {"code": code}).status_code == 200
    assert sent_to(other.get("/"), VERIFY)


def test_a_recovery_code_lets_in_once(owner: Membership):
    _, codes = enrol(login(owner))
    first = login(owner)
    assert sent_to(first.post(VERIFY, {"code": codes[3].upper()}), "/")
    assert not sent_to(first.get("/"), VERIFY)
    second = login(owner)
    assert second.post(VERIFY, {"code": codes[3]}).status_code == 200
    assert sent_to(second.get("/"), VERIFY)
    event = AuditEvent.objects.get(action="auth.2fa_verified")
    assert event.extra == {"method": "recovery", "recovery_codes_left": 9}


def test_an_optional_policy_sends_nobody_to_enrol(operator: Membership):
    assert RolePolicy.objects.get(project=operator.project, role="operator").two_factor == (
        TwoFactorRule.OPTIONAL
    )
    assert login(operator).get("/p/alpha/orders/mine/").status_code == 200


def test_a_member_who_must_enrol_can_do_nothing_else_first(operator: Membership):
    require(operator, TwoFactorRule.REQUIRED)
    client = login(operator)
    for url in ("/", "/p/alpha/orders/mine/", "/accounts/password_change/"):
        assert sent_to(client.get(url), ENROL), url
    # The step-up that enrolling asks for stays reachable (no back and forth).
    assert client.get("/accounts/step-up/").status_code == 200
    page = fresh(client).get(ENROL)
    assert page.status_code == 200 and page.context["required"]
    # Enrolling through the pages opens the rest.
    device, codes = enrol(client)
    assert device.confirmed and len(codes) == 10
    assert client.get("/p/alpha/orders/mine/").status_code == 200


def test_a_requirement_of_any_project_counts(operator: Membership, outsider: Membership):
    from callvault.accounts.actions import do_add_member

    do_add_member(outsider.project, operator.user, "operator")
    beta = RolePolicy.objects.get(project=outsider.project, role="operator")
    do_update_role_policy(beta, two_factor=TwoFactorRule.REQUIRED)
    assert sent_to(login(operator).get("/p/alpha/orders/mine/"), ENROL)


def test_outside_the_allowed_networks_a_second_factor_is_required(operator: Membership):
    require(operator, TwoFactorRule.OUTSIDE_ALLOWED_NETWORKS)
    # With no networks named, everywhere is outside.
    assert twofactor.must_enrol(operator.user, "127.0.0.1")
    assert sent_to(login(operator).get("/p/alpha/orders/mine/"), ENROL)
    AllowedNetwork.objects.create(project=operator.project, network="10.1.0.0/16", label="office")
    assert not twofactor.must_enrol(operator.user, "10.1.2.3")
    assert twofactor.must_enrol(operator.user, "203.0.113.7")


def test_inside_the_allowed_networks_no_second_factor_is_needed(operator: Membership):
    require(operator, TwoFactorRule.OUTSIDE_ALLOWED_NETWORKS)
    AllowedNetwork.objects.create(project=operator.project, network="127.0.0.0/8", label="here")
    assert login(operator).get("/p/alpha/orders/mine/").status_code == 200


def test_an_inactive_membership_asks_nothing(operator: Membership):
    require(operator, TwoFactorRule.REQUIRED)
    Membership.objects.filter(pk=operator.pk).update(is_active=False)
    assert not twofactor.must_enrol(operator.user, "127.0.0.1")


def must_change(member: Membership) -> None:
    member.user.must_change_password = True
    member.user.save(update_fields=["must_change_password"])


def test_without_a_factor_a_password_someone_else_chose_is_changed_first_then_enrolment(
    operator: Membership,
):
    require(operator, TwoFactorRule.REQUIRED)
    must_change(operator)
    client = Client()
    client.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    assert sent_to(client.get("/p/alpha/orders/mine/"), "/accounts/password_change/")
    new = "bob's own long passphrase 2026"
    changed = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert changed.status_code == 302
    # Then enrolment, before anything else, with no second password prompt.
    assert sent_to(client.get("/p/alpha/orders/mine/"), ENROL)
    assert client.get(ENROL).status_code == 200


def test_with_a_factor_the_second_factor_comes_before_a_required_password_change(
    operator: Membership,
):
    require(operator, TwoFactorRule.REQUIRED)
    device = with_app(operator)
    must_change(operator)
    client = Client()
    client.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    # Someone holding only the leaked password cannot set a new one.
    for url in ("/p/alpha/orders/mine/", "/accounts/password_change/"):
        assert sent_to(client.get(url), VERIFY), url
    new = "bob's own long passphrase 2026"
    refused = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert sent_to(refused, VERIFY)
    operator.user.refresh_from_db()
    assert operator.user.must_change_password and operator.user.check_password(PASSWORD)
    # The verify step is reachable while the change is required; then the change page.
    assert client.get(VERIFY).status_code == 200
    assert sent_to(client.post(VERIFY, {"code": code_for(device, 1)}), "/")
    assert sent_to(client.get("/p/alpha/orders/mine/"), "/accounts/password_change/")
    changed = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert changed.status_code == 302
    assert client.get("/p/alpha/orders/mine/").status_code == 200


def test_a_named_support_account_with_a_password_must_use_a_second_factor(owner: Membership):
    from callvault.accounts.actions import do_change_password
    from callvault.accounts.support import do_create_support_account
    from callvault.accounts.tests.test_support_access import grant_named

    account = do_create_support_account("vendor-kim", PASSWORD, first_name="Kim")
    account = do_change_password(account, "kim's own vendor passphrase 2026")
    grant_named(owner, account)
    # No project rule asks it (it has no memberships); being a named account does.
    assert twofactor.must_enrol(account, "127.0.0.1")
    client = Client()
    client.force_login(account)
    assert sent_to(client.get("/p/alpha/orders/"), ENROL)


def test_a_one_time_link_account_without_a_password_is_not_asked_for_a_factor(owner: Membership):
    from callvault.accounts.tests.test_support_access import enter_by_link, grant_link

    grant, token = grant_link(owner)
    client, _response = enter_by_link(token)
    grant.refresh_from_db()
    account = grant.user
    assert account is not None and account.is_support and not account.has_usable_password()
    assert not twofactor.must_enrol(account, "127.0.0.1")
    assert client.get("/p/alpha/orders/").status_code == 200


def test_repeated_wrong_codes_end_the_half_done_login(owner: Membership, settings: Any):
    device = with_app(owner)
    client = login(owner)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(VERIFY, {"code": wrong(code_for(device, 1))})
    assert response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session
    assert (
        AuditEvent.objects.filter(action="auth.2fa_failed").count() == settings.AXES_FAILURE_LIMIT
    )


def expire_clear_mark(client: Client) -> None:
    session = client.session
    user_id, ip, _ = session[twofactor.CLEAR_SESSION_KEY]
    session[twofactor.CLEAR_SESSION_KEY] = [user_id, ip, 0]
    session.save()


def test_a_member_nobody_asks_for_a_factor_is_not_asked_the_database_on_every_request(
    operator: Membership, django_assert_max_num_queries: Any
):
    client = login(operator)
    client.get("/p/alpha/orders/mine/")
    with django_assert_max_num_queries(40) as first:
        client.get("/p/alpha/orders/mine/")
    expire_clear_mark(client)
    with django_assert_max_num_queries(40) as asked:
        client.get("/p/alpha/orders/mine/")

    def gate(capture: Any) -> list[str]:
        return [q["sql"] for q in capture.captured_queries if "otp_totp_totpdevice" in q["sql"]]

    assert gate(first) == []
    assert len(gate(asked)) == 1


def test_a_policy_that_starts_requiring_a_factor_holds_within_the_minute(operator: Membership):
    client = login(operator)
    assert client.get("/p/alpha/orders/mine/").status_code == 200
    require(operator, TwoFactorRule.REQUIRED)
    expire_clear_mark(client)
    assert sent_to(client.get("/p/alpha/orders/mine/"), ENROL)


def test_a_new_address_is_asked_at_once(operator: Membership):
    do_add_network(operator.project, "192.0.2.0/24", "Office")
    require(operator, TwoFactorRule.OUTSIDE_ALLOWED_NETWORKS)
    row = RolePolicy.objects.get(project=operator.project, role=operator.role)
    do_update_role_policy(row, networks_required=False)
    client = login(operator)
    assert client.get("/p/alpha/orders/mine/", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert sent_to(client.get("/p/alpha/orders/mine/", REMOTE_ADDR="203.0.113.5"), ENROL)
