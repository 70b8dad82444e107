"""Quotas: a new project's defaults, which rule applies, counting per window, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callvault.accounts.actions import do_create_api_key
from callvault.accounts.models import Membership, Project, Role, SecurityNotice
from callvault.audit.models import AuditEvent
from callvault.guard import alerts, quotas
from callvault.guard.models import GuardSettings, QuotaKind, QuotaRule
from callvault.guard.quotas import QuotaExceeded, charge, do_set_quota
from callvault.guard.tests.quota_support import limit_member
from callvault.lib.errors import FieldErrors

CARD = QuotaKind.CARD_OPEN
NOON = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)  # 12:00:05 in Moscow


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The quotas' clock, fixed until the test moves it."""
    moment = [NOON]
    monkeypatch.setattr(quotas, "now", lambda: moment[0])
    return moment


def charges_allowed(member: Membership | None, kind: str, times: int, **kw: Any) -> int:
    allowed = 0
    for _ in range(times):
        try:
            charge(member, kind, **kw)
        except QuotaExceeded:
            continue
        allowed += 1
    return allowed


def test_a_new_project_gets_its_settings_and_default_quotas_each_recorded(project: Project):
    settings = GuardSettings.objects.get(project=project)
    assert AuditEvent.objects.filter(
        action="guard_settings.create", object_type="guard_settings", object_id=str(settings.pk)
    ).exists()
    rules = QuotaRule.objects.filter(project=project)
    assert sorted((r.kind, r.role, r.limit) for r in rules) == sorted(
        (str(k), str(r), n) for k, r, n in quotas.DEFAULT_QUOTAS
    )
    for rule in rules:
        event = AuditEvent.objects.get(
            action="quota.create", object_type="quota_rule", object_id=str(rule.pk)
        )
        assert event.changes["limit"] == [None, rule.limit]


def test_a_members_own_rule_beats_their_roles(operator: Membership, owner: Membership):
    assert quotas.member_rule(operator, CARD).limit == 60  # type: ignore[union-attr]
    limit_member(operator, CARD, 7, owner)
    assert quotas.member_rule(operator, CARD).limit == 7  # type: ignore[union-attr]


def test_without_a_rule_a_member_is_unlimited_and_not_counted(owner: Membership, clock):
    assert quotas.member_rule(owner, CARD) is None
    assert charges_allowed(owner, CARD, 100) == 100


def test_an_api_key_has_its_own_rule_else_the_projects_default(project, owner):
    key, _ = do_create_api_key(project, "Partner", can_read_orders=True)
    assert quotas.key_rule(key).limit == 600  # type: ignore[union-attr]
    do_set_quota(project, QuotaKind.API_READ, 3, api_key=key, acting=owner)
    assert quotas.key_rule(key).limit == 3  # type: ignore[union-attr]
    do_set_quota(project, QuotaKind.API_READ, None, role="", acting=owner)
    other, _ = do_create_api_key(project, "Other", can_read_orders=True)
    assert quotas.key_rule(other) is None


def test_charges_pass_up_to_the_limit_and_are_refused_past_it(operator, owner, clock):
    limit_member(operator, CARD, 3, owner)
    for _ in range(3):
        charge(operator, CARD)
    with pytest.raises(QuotaExceeded) as refused:
        charge(operator, CARD)
    assert (refused.value.kind, refused.value.limit, refused.value.count) == (CARD, 3, 4)
    assert refused.value.retry_after == 3600 - 5  # the hour resets at 13:00 Moscow time


def test_the_next_window_starts_afresh(operator, owner, clock):
    limit_member(operator, CARD, 2, owner)
    assert charges_allowed(operator, CARD, 5) == 2
    clock[0] = NOON + timedelta(minutes=59, seconds=54)  # 12:59:59, the same hour
    assert charges_allowed(operator, CARD, 1) == 0
    clock[0] = NOON + timedelta(hours=1)  # 13:00:05
    assert charges_allowed(operator, CARD, 5) == 2


def test_reveals_are_counted_per_day_on_the_projects_clock(operator, owner, clock):
    limit_member(operator, QuotaKind.REVEAL, 1, owner)
    clock[0] = datetime(2026, 3, 2, 20, 59, tzinfo=UTC)  # 23:59 in Moscow
    assert charges_allowed(operator, QuotaKind.REVEAL, 2) == 1
    clock[0] = datetime(2026, 3, 2, 21, 1, tzinfo=UTC)  # 00:01, the next day in Moscow
    assert charges_allowed(operator, QuotaKind.REVEAL, 2) == 1


def test_api_reads_are_counted_per_key_per_minute(project, owner, clock):
    key, _ = do_create_api_key(project, "Partner", can_read_orders=True)
    other, _ = do_create_api_key(project, "Other", can_read_orders=True)
    do_set_quota(project, QuotaKind.API_READ, 2, api_key=key, acting=owner)
    assert charges_allowed(None, QuotaKind.API_READ, 4, api_key=key) == 2
    assert charges_allowed(None, QuotaKind.API_READ, 4, api_key=other) == 4  # default 600
    clock[0] = NOON + timedelta(minutes=1)
    assert charges_allowed(None, QuotaKind.API_READ, 4, api_key=key) == 2


def test_members_and_kinds_are_counted_apart(project, operator, owner, clock):
    from conftest import make_member

    olga = make_member(project, "olga", Role.OPERATOR)
    limit_member(operator, CARD, 1, owner)
    limit_member(olga, CARD, 1, owner)
    limit_member(operator, QuotaKind.SEARCH, 1, owner)
    assert charges_allowed(operator, CARD, 3) == 1
    assert charges_allowed(olga, CARD, 3) == 1
    assert charges_allowed(operator, QuotaKind.SEARCH, 3) == 1


def test_each_refusal_is_recorded_and_only_the_first_alerts_the_owners(operator, owner, clock):
    limit_member(operator, CARD, 2, owner)
    charges_allowed(operator, CARD, 5)
    refused = AuditEvent.objects.filter(action="quota.refused").order_by("id")
    assert [e.extra for e in refused] == [
        {"quota": "card_open", "count": n, "limit": 2} for n in (3, 4, 5)
    ]
    assert {(e.object_type, e.object_id) for e in refused} == {("membership", str(operator.pk))}
    (notice,) = SecurityNotice.objects.filter(kind="quota_reached")
    assert notice.params == {
        "user": "bob",
        "quota": "Order cards opened per hour",
        "count": 3,
        "limit": 2,
    }
    assert (notice.user_id, notice.event_id) == (operator.user_id, refused[0].pk)
    clock[0] = NOON + timedelta(hours=1)  # a new window: a new first refusal
    charges_allowed(operator, CARD, 3)
    assert SecurityNotice.objects.filter(kind="quota_reached").count() == 2


def test_an_api_keys_refusal_names_the_key(project, owner, clock):
    key, _ = do_create_api_key(project, "Partner", can_read_orders=True)
    do_set_quota(project, QuotaKind.API_READ, 1, api_key=key, acting=owner)
    charges_allowed(None, QuotaKind.API_READ, 2, api_key=key)
    event = AuditEvent.objects.get(action="quota.refused")
    assert (event.object_type, event.object_id) == ("api_key", str(key.pk))
    notice = SecurityNotice.objects.get(kind="quota_reached")
    assert notice.params["user"] == "API key Partner"
    assert notice.user_id is None


def test_allowed_actions_are_shown_to_the_alerts(operator, owner, clock, monkeypatch):
    seen: list[tuple[int, str]] = []
    monkeypatch.setattr(alerts, "observe", lambda member, kind, n=1: seen.append((member.pk, kind)))
    limit_member(operator, CARD, 1, owner)
    charges_allowed(operator, CARD, 2)
    charges_allowed(owner, QuotaKind.SEARCH, 1)  # unlimited, still watched
    assert seen == [(operator.pk, CARD), (owner.pk, QuotaKind.SEARCH)]


def test_owners_changes_are_recorded_before_and_after(project, owner, operator):
    rule = do_set_quota(project, CARD, 61, role=Role.OPERATOR, acting=owner)
    assert rule is not None
    update = AuditEvent.objects.get(action="quota.update", object_id=str(rule.pk))
    assert update.changes == {"limit": [60, 61]}
    do_set_quota(project, CARD, None, role=Role.OPERATOR, acting=owner)
    delete = AuditEvent.objects.get(action="quota.delete", object_id=str(rule.pk))
    assert delete.changes["limit"] == [61, None]
    assert quotas.member_rule(operator, CARD) is None


def test_only_an_owner_sets_quotas_and_only_sensible_ones(project, owner, supervisor, operator):
    with pytest.raises(FieldErrors):
        do_set_quota(project, CARD, 5, role=Role.OPERATOR, acting=supervisor)
    with pytest.raises(FieldErrors):
        do_set_quota(project, QuotaKind.API_READ, 5, role=Role.OPERATOR, acting=owner)
    with pytest.raises(FieldErrors):
        do_set_quota(project, CARD, 5, acting=owner)  # nobody to limit
    with pytest.raises(FieldErrors):
        do_set_quota(project, "cards", 5, role=Role.OPERATOR, acting=owner)
    with pytest.raises(FieldErrors):
        do_set_quota(project, CARD, 5, role=Role.OPERATOR, membership=operator, acting=owner)
    assert quotas.member_rule(operator, CARD).limit == 60  # type: ignore[union-attr]


def test_a_member_of_another_project_cannot_be_given_a_quota_here(project, owner, outsider):
    with pytest.raises(FieldErrors):
        do_set_quota(project, CARD, 5, membership=outsider, acting=owner)


def test_a_charge_of_many_counts_each_and_a_jump_past_the_limit_alerts_once(
    operator, owner, clock, monkeypatch
):
    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(alerts, "observe", lambda member, kind, n=1: seen.append((kind, n)))
    limit_member(operator, QuotaKind.REVEAL, 10, owner)
    charge(operator, QuotaKind.REVEAL, n=4)
    charge(operator, QuotaKind.REVEAL, n=6)  # ten of ten
    assert seen == [("reveal", 4), ("reveal", 6)]  # observed once a charge, with its size
    for n in (3, 1):
        with pytest.raises(QuotaExceeded):
            charge(operator, QuotaKind.REVEAL, n=n)
    refused = AuditEvent.objects.filter(action="quota.refused").order_by("id")
    assert [e.extra["count"] for e in refused] == [13, 14]
    (notice,) = SecurityNotice.objects.filter(kind="quota_reached")  # 13 jumped past 11
    assert notice.params["count"] == 13
    with pytest.raises(ValueError):
        charge(operator, QuotaKind.REVEAL, n=0)


def test_a_jump_past_the_breach_margin_suspends(operator, owner, clock):
    alerts.do_update_guard_settings(alerts.settings_for(owner.project), suspend_on_breach=True)
    limit_member(operator, QuotaKind.REVEAL, 10, owner)
    with pytest.raises(QuotaExceeded):
        charge(operator, QuotaKind.REVEAL, n=20)  # 10 past a margin of 5, in one go
    assert quotas.is_suspended(operator)
