"""The owner's quota page: per role, per member, per API key; changes need a step-up."""

from __future__ import annotations

from typing import Any

from callvault.accounts.actions import do_create_api_key
from callvault.accounts.models import Role
from callvault.audit.models import AuditEvent
from callvault.guard.models import QuotaKind, QuotaRule
from callvault.guard.tests.quota_support import guard_url, login
from callvault.orders.tests.support import HttpsClient

CARD = QuotaKind.CARD_OPEN


def role_limit(kind: str, role: str) -> int | None:
    rule = QuotaRule.objects.filter(kind=kind, role=role, membership=None, api_key=None).first()
    return None if rule is None else rule.limit


def role_form(response: Any) -> dict[str, str]:
    """The table's current values, as the browser would post them back."""
    return {
        cell["name"]: "" if cell["limit"] is None else str(cell["limit"])
        for row in response.context["table"]
        for cell in row["cells"]
    }


def test_it_sends_anonymous_visitors_to_login(project):
    for name in ("quotas", "quota_roles", "quota_override"):
        response = HttpsClient().post(guard_url(name))
        assert response["Location"].startswith("/accounts/login/"), name


def test_it_is_not_there_for_outsiders_and_non_owners(outsider, supervisor, operator):
    for member in (outsider, supervisor, operator):
        client = login(member, fresh=True)
        assert client.get(guard_url("quotas")).status_code == 404
        assert (
            client.post(guard_url("quota_roles"), {"limit-card_open-operator": "1"}).status_code
            == 404
        )
        assert (
            client.post(
                guard_url("quota_override"), {"membership": operator.pk, "kind": CARD, "limit": "1"}
            ).status_code
            == 404
        )
    assert role_limit(CARD, Role.OPERATOR) == 60


def test_the_owner_sees_every_kind_by_role(owner):
    response = login(owner).get(guard_url("quotas"))
    assert response.status_code == 200
    page = response.content.decode()
    for kind in QuotaKind:
        assert str(kind.label) in page
    form = role_form(response)
    assert form["limit-card_open-operator"] == "60"
    assert form["limit-card_open-owner"] == ""
    assert form["limit-api_read-"] == "600"


def test_saving_the_table_needs_a_fresh_step_up(owner):
    response = login(owner).post(guard_url("quota_roles"), {"limit-card_open-operator": "5"})
    assert response["Location"].startswith("/accounts/step-up/")
    assert role_limit(CARD, Role.OPERATOR) == 60


def test_saving_the_table_records_each_changed_cell(owner):
    client = login(owner, fresh=True)
    form = role_form(client.get(guard_url("quotas")))
    form.update(
        {"limit-card_open-operator": "45", "limit-search-trainee": "", "limit-call-admin": "9"}
    )
    before = AuditEvent.objects.count()
    assert client.post(guard_url("quota_roles"), form)["Location"] == guard_url("quotas")
    assert (role_limit(CARD, Role.OPERATOR), role_limit(QuotaKind.SEARCH, Role.TRAINEE)) == (
        45,
        None,
    )
    assert role_limit(QuotaKind.CALL, Role.ADMIN) == 9
    actions = sorted(AuditEvent.objects.order_by("id")[before:].values_list("action", flat=True))
    assert actions == ["quota.create", "quota.delete", "quota.update"]


def test_a_table_with_a_wrong_number_changes_nothing(owner):
    client = login(owner, fresh=True)
    form = role_form(client.get(guard_url("quotas")))
    form.update({"limit-card_open-operator": "45", "limit-call-operator": "lots"})
    response = client.post(guard_url("quota_roles"), form, follow=True)
    assert "Enter a whole number, or leave it empty." in response.content.decode()
    assert role_limit(CARD, Role.OPERATOR) == 60


def test_the_owner_gives_one_member_a_quota_and_takes_it_away(owner, operator):
    client = login(owner, fresh=True)
    override = guard_url("quota_override")
    client.post(override, {"membership": operator.pk, "kind": CARD, "limit": "3"})
    rule = QuotaRule.objects.get(membership=operator)
    assert (rule.kind, rule.limit) == (CARD, 3)
    assert "bob" in client.get(guard_url("quotas")).content.decode()
    client.post(override, {"membership": operator.pk, "kind": CARD, "remove": "1"})
    assert not QuotaRule.objects.filter(membership=operator).exists()
    assert AuditEvent.objects.filter(action="quota.delete", object_id=str(rule.pk)).exists()


def test_the_owner_gives_an_api_key_its_own_quota(owner, project):
    key, _ = do_create_api_key(project, "Partner", can_read_orders=True)
    client = login(owner, fresh=True)
    client.post(guard_url("quota_override"), {"api_key": key.pk, "limit": "30"})
    assert QuotaRule.objects.get(api_key=key).limit == 30
    assert "Partner" in client.get(guard_url("quotas")).content.decode()


def test_a_member_or_key_of_another_project_is_not_found(owner, outsider, other_project):
    key, _ = do_create_api_key(other_project, "Theirs", can_read_orders=True)
    client = login(owner, fresh=True)
    override = guard_url("quota_override")
    assert (
        client.post(override, {"membership": outsider.pk, "kind": CARD, "limit": "1"}).status_code
        == 404
    )
    assert client.post(override, {"api_key": key.pk, "limit": "1"}).status_code == 404
    assert not QuotaRule.objects.filter(membership=outsider).exists()
