"""The alert rules: each fires at its threshold with the right figures, once per window;
an honest pace raises nothing; owners are not watched."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import translation

from callvault.accounts.models import SecurityNotice
from callvault.accounts.notices import describe
from callvault.audit.models import AuditEvent
from callvault.guard import alerts
from callvault.guard.models import AlertRule, GuardSettings
from callvault.guard.quotas import charge

# A Wednesday, 12:00 in Moscow (the test project's zone): inside the default 08:00-21:00.
NOON = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class Clock:
    """The time alerts see, moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    c = Clock(NOON)
    monkeypatch.setattr(alerts, "now", c)
    return c


@pytest.fixture
def hours_watched(project):
    """The owner has set the working hours and switched the outside-hours alert on."""
    rule = AlertRule.objects.get(project=project, kind="outside_hours")
    alerts.do_update_alert_rule(rule, enabled=True)


def raised(kind: str | None = None) -> list[SecurityNotice]:
    notices = SecurityNotice.objects.order_by("pk")
    return list(notices.filter(kind=kind) if kind else notices)


def test_a_new_project_gets_one_recorded_rule_per_default(project):
    rules = {r.kind: (r.threshold, r.window_minutes, r.enabled) for r in project.alert_rules.all()}
    assert rules == {
        str(k): (t, w, k not in alerts.OFF_BY_DEFAULT) for k, t, w in alerts.DEFAULT_ALERT_RULES
    }
    assert rules["outside_hours"][2] is False  # on once the owner has set the hours
    events = AuditEvent.objects.filter(action="alert_rule.create", project_id=project.pk)
    assert sorted(int(e.object_id) for e in events) == sorted(
        project.alert_rules.values_list("pk", flat=True)
    )
    assert {e.object_type for e in events} == {"alert_rule"}


def test_many_cards_fire_at_the_threshold_with_the_figures(operator, clock):
    for _ in range(39):
        alerts.observe(operator, "card_open")
        clock.advance(seconds=10)
    assert raised() == []
    alerts.observe(operator, "card_open")
    (notice,) = raised("cards_burst")
    assert notice.params == {"user": "bob", "count": 40, "minutes": 10, "threshold": 40}
    assert notice.user_id == operator.user_id
    with translation.override("en"):
        assert describe(notice) == ("bob opened 40 order cards within 10 minutes (alert at 40).")
    event = AuditEvent.objects.get(action="alert.raised")
    assert (event.object_type, event.object_id) == ("user", str(operator.user_id))
    assert event.extra["kind"] == "cards_burst"
    assert event.extra["count"] == 40
    assert notice.event_id == event.pk


def test_an_alert_fires_once_per_window_and_again_in_the_next(operator, clock):
    for _ in range(60):
        alerts.observe(operator, "card_open")
        clock.advance(seconds=5)
    assert len(raised("cards_burst")) == 1
    clock.advance(minutes=10)
    for _ in range(40):
        alerts.observe(operator, "card_open")
    assert len(raised("cards_burst")) == 2


def test_cards_spread_beyond_the_window_do_not_add_up(operator, clock):
    # 39 cards, then a pause as long as the window: the next ones start from zero.
    for _ in range(39):
        alerts.observe(operator, "card_open")
    clock.advance(minutes=10)
    for _ in range(39):
        alerts.observe(operator, "card_open")
    assert raised() == []


def test_many_reveals_fire_at_their_threshold(operator, clock):
    for _ in range(10):
        alerts.observe(operator, "reveal")
        clock.advance(seconds=30)
    (notice,) = raised("reveals_burst")
    assert notice.params == {"user": "bob", "count": 10, "minutes": 10, "threshold": 10}


def test_many_exports_fire_at_their_threshold(supervisor, clock):
    alerts.observe(supervisor, "export")
    clock.advance(minutes=25)
    alerts.observe(supervisor, "export")
    assert raised() == []
    clock.advance(minutes=25)
    alerts.observe(supervisor, "export")
    (notice,) = raised("exports_burst")
    assert notice.params == {"user": "sam", "count": 3, "minutes": 60, "threshold": 3}


def test_the_owners_threshold_and_window_are_used(owner, operator, clock):
    rule = AlertRule.objects.get(project=operator.project, kind="reveals_burst")
    alerts.do_update_alert_rule(rule, threshold=3, window_minutes=2)
    for _ in range(2):
        alerts.observe(operator, "reveal")
    clock.advance(minutes=2)
    alerts.observe(operator, "reveal")  # the first two are out of the window now
    assert raised() == []
    alerts.observe(operator, "reveal")
    alerts.observe(operator, "reveal")
    (notice,) = raised("reveals_burst")
    assert notice.params["count"] == 3
    assert notice.params["minutes"] == 2


def test_a_rule_switched_off_raises_nothing(operator, clock):
    rule = AlertRule.objects.get(project=operator.project, kind="cards_burst")
    alerts.do_update_alert_rule(rule, enabled=False)
    for _ in range(100):
        alerts.observe(operator, "card_open")
    assert raised() == []


def test_owners_are_not_watched(owner, clock, hours_watched):
    for _ in range(100):
        alerts.observe(owner, "card_open")
    clock.at = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)  # 02:00 in Moscow
    alerts.observe(owner, "search")
    assert raised() == []


def test_an_honest_pace_raises_nothing(operator, clock, hours_watched):
    # One card every two minutes for an hour, a reveal every ten, a call for each card.
    for minute in range(0, 60, 2):
        alerts.observe(operator, "card_open")
        alerts.observe(operator, "call")
        if minute % 10 == 0:
            alerts.observe(operator, "reveal")
        clock.advance(minutes=2)
    assert raised() == []
    assert not AuditEvent.objects.filter(action="alert.raised").exists()


def test_work_outside_hours_raises_an_alert_with_the_time(operator, clock, hours_watched):
    clock.at = datetime(2026, 11, 25, 19, 30, tzinfo=UTC)  # 22:30 in Moscow
    alerts.observe(operator, "search")
    (notice,) = raised("outside_hours")
    assert notice.params["time"] == "22:30"
    assert notice.params["user"] == "bob"
    with translation.override("en"):
        assert describe(notice).startswith("bob worked outside working hours: ")
    # Once per member per window (an hour by default), whatever they do meanwhile.
    for _ in range(5):
        clock.advance(minutes=5)
        alerts.observe(operator, "card_open")
    assert len(raised("outside_hours")) == 1
    clock.advance(minutes=40)
    alerts.observe(operator, "card_open")
    assert len(raised("outside_hours")) == 2


def test_a_day_off_is_outside_hours(operator, clock, hours_watched):
    clock.at = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)  # Sunday, 12:00 in Moscow
    alerts.observe(operator, "card_open")
    assert raised() == []  # the default week has seven working days
    guard = GuardSettings.objects.get(project=operator.project)
    alerts.do_update_guard_settings(guard, work_days="12345")
    alerts.observe(operator, "card_open")
    assert len(raised("outside_hours")) == 1


def test_a_working_day_may_run_past_midnight(operator, clock, hours_watched):
    guard = GuardSettings.objects.get(project=operator.project)
    alerts.do_update_guard_settings(guard, work_starts=time(20, 0), work_ends=time(4, 0))
    clock.at = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)  # 01:00 in Moscow: at work
    alerts.observe(operator, "card_open")
    assert raised() == []
    clock.at = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # 12:00: outside this shift
    alerts.observe(operator, "card_open")
    assert len(raised("outside_hours")) == 1


def test_the_quota_counting_feeds_the_rules(operator, clock):
    for _ in range(40):
        charge(operator, "card_open")
    (notice,) = raised("cards_burst")
    assert notice.params["count"] == 40


def test_each_member_is_counted_apart(operator, trainee, clock):
    for _ in range(30):
        alerts.observe(operator, "card_open")
        alerts.observe(trainee, "card_open")
    assert raised() == []


def test_rule_and_settings_changes_are_recorded_before_and_after(operator):
    rule = AlertRule.objects.get(project=operator.project, kind="cards_burst")
    alerts.do_update_alert_rule(rule, threshold=25, window_minutes=5, enabled=True)
    event = AuditEvent.objects.filter(action="alert_rule.update").get()
    assert (event.object_type, event.object_id) == ("alert_rule", str(rule.pk))
    assert event.changes == {"threshold": [40, 25], "window_minutes": [10, 5]}
    guard = GuardSettings.objects.get(project=operator.project)
    alerts.do_update_guard_settings(
        guard, webhook_url="https://api.telegram.org/bot123:SECRETTOKEN/sendMessage?chat_id=1"
    )
    event = AuditEvent.objects.filter(action="guard_settings.update").get()
    assert event.changes == {"webhook_url": ["", "https://api.telegram.org/…"]}
    assert "SECRETTOKEN" not in str(event.changes)


def test_a_rule_out_of_bounds_is_refused(operator):
    from callvault.lib.errors import FieldErrors

    rule = AlertRule.objects.get(project=operator.project, kind="cards_burst")
    with pytest.raises(FieldErrors):
        alerts.do_update_alert_rule(rule, window_minutes=alerts.MAX_WINDOW_MINUTES + 1)
    with pytest.raises(FieldErrors):
        alerts.do_update_alert_rule(rule, threshold=0)


def test_the_outside_hours_alert_is_off_until_the_owner_switches_it_on(operator, clock):
    clock.at = datetime(2026, 11, 25, 19, 30, tzinfo=UTC)  # 22:30 in Moscow
    alerts.observe(operator, "search")
    assert raised() == []
