"""The usual pace, read off the record, and the anomaly alert it explains."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import translation

from callvault.accounts.models import SecurityNotice
from callvault.accounts.notices import describe
from callvault.audit.models import ActorKind, AuditEvent
from callvault.guard import alerts, baseline
from callvault.guard.models import MemberBaseline
from callvault.guard.tests.test_alerts import NOON, Clock
from callvault.maintenance import periodic_tasks


@pytest.fixture
def clock(monkeypatch):
    c = Clock(NOON)
    monkeypatch.setattr(alerts, "now", c)
    return c


def seed(member, action: str, per_hour: list[int], end: datetime = NOON) -> None:
    """Events of the member in the hours before `end`: per_hour[i] in the i-th hour back,
    made with the model directly (the recorder stamps the present)."""
    events = [
        AuditEvent(
            created_at=end - timedelta(hours=back) + timedelta(minutes=7, seconds=n),
            project_id=member.project_id,
            actor_kind=ActorKind.MEMBER,
            actor_id=str(member.user_id),
            actor_name=member.user.username,
            action=action,
            object_type="order",
            object_id=str(n),
        )
        for back, count in enumerate(per_hour, start=1)
        for n in range(count)
    ]
    AuditEvent.objects.bulk_create(events)


def test_the_baseline_is_the_mean_stdev_and_p95_of_active_hours(operator):
    # 20 active hours with 10 cards each and one with 30; the quiet hours in between
    # (none at all) do not count.
    seed(operator, "order.view", [10] * 10 + [0, 0, 0] + [10] * 10 + [30])
    seed(operator, "phone.reveal", [2, 0, 4])
    found = baseline.compute_baseline(operator, "card_open", NOON)
    assert found.hours == 21
    assert found.mean == pytest.approx((10 * 20 + 30) / 21)
    assert found.stdev == pytest.approx(4.259, abs=0.001)
    assert found.p95 == 10  # nearest rank: the 20th of 21 sorted counts
    reveals = baseline.compute_baseline(operator, "reveal", NOON)
    assert (reveals.hours, reveals.mean, reveals.p95) == (2, 3.0, 4.0)


def test_only_the_last_four_weeks_and_the_members_own_events_count(operator, trainee):
    seed(operator, "order.view", [5], end=NOON - timedelta(weeks=4))
    seed(trainee, "order.view", [50])
    seed(operator, "order.view", [7])
    found = baseline.compute_baseline(operator, "card_open", NOON)
    assert (found.hours, found.mean) == (1, 7.0)


def test_the_current_hour_is_left_out(operator):
    seed(operator, "order.view", [3], end=NOON + timedelta(hours=1))  # 12:07 to now
    assert baseline.compute_baseline(operator, "card_open", NOON + timedelta(minutes=30)).hours == 0


def test_the_worker_recomputes_every_watched_member(owner, operator, trainee):
    assert baseline.compute_baselines in periodic_tasks()
    seed(operator, "order.view", [4, 6])
    baseline.compute_baselines.enqueue()  # the immediate backend runs it now
    rows = {(b.membership.user.username, b.kind): b.mean for b in MemberBaseline.objects.all()}
    assert rows[("bob", "card_open")] == 5.0
    assert ("tina", "reveal") in rows
    assert not any(name == "alice" for name, _ in rows)  # owners are not watched


def usual(operator, mean_per_hour: int = 10, hours: int = 25) -> MemberBaseline:
    seed(operator, "order.view", [mean_per_hour] * hours)
    return baseline.compute_baseline(operator, "card_open", NOON)


def test_an_hour_far_above_the_usual_pace_raises_an_anomaly_with_the_numbers(operator, clock):
    usual(operator)  # 10 an hour for 25 hours: mean 10, stdev 0, p95 10
    # The limit: max(4 x 10, 10 + 4 x 0, 10 + 10, 20) = 40 cards in the hour. Two cards a
    # minute stays under the 40-in-10-minutes burst rule.
    for _ in range(39):
        alerts.observe(operator, "card_open")
        clock.advance(seconds=30)
    assert not SecurityNotice.objects.filter(kind="anomaly").exists()
    alerts.observe(operator, "card_open")
    (notice,) = SecurityNotice.objects.filter(kind="anomaly")
    assert notice.params["count"] == 40
    assert (notice.params["mean"], notice.params["p95"], notice.params["limit"]) == (10, 10, 40)
    assert notice.params["hours"] == 25
    with translation.override("en"):
        assert describe(notice) == (
            "bob: 40 order cards opened this hour; usually 10 an hour, and 95% of hours at most 10."
        )
    assert not SecurityNotice.objects.filter(kind="cards_burst").exists()
    for _ in range(20):
        clock.advance(seconds=30)
        alerts.observe(operator, "card_open")
    assert SecurityNotice.objects.filter(kind="anomaly").count() == 1  # once an hour


def test_a_busy_but_usual_hour_raises_nothing(operator, clock):
    usual(operator, mean_per_hour=30)
    for _ in range(35):
        alerts.observe(operator, "card_open")
        clock.advance(minutes=1)
    assert not SecurityNotice.objects.exists()


def test_no_anomaly_without_enough_history(operator, clock):
    usual(operator, hours=alerts.ANOMALY_MIN_HOURS - 1)
    for _ in range(45):
        alerts.observe(operator, "card_open")
        clock.advance(seconds=50)
    assert not SecurityNotice.objects.filter(kind="anomaly").exists()


def test_no_anomaly_below_the_floor_whatever_the_baseline(operator, clock):
    seed(operator, "order.view", [1] * 30)
    baseline.compute_baseline(operator, "card_open", NOON)
    for _ in range(alerts.ANOMALY_MIN_COUNT - 1):
        alerts.observe(operator, "card_open")
        clock.advance(minutes=2)
    assert not SecurityNotice.objects.exists()


def test_the_statistics_read_as_people_read_them(operator, clock):
    seed(operator, "order.view", [7, 8] * 12)
    baseline.compute_baseline(operator, "card_open", NOON)
    for _ in range(40):
        alerts.observe(operator, "card_open")
        clock.advance(seconds=40)
    (notice,) = SecurityNotice.objects.filter(kind="anomaly")
    assert (notice.params["mean"], notice.params["p95"], notice.params["count"]) == (7.5, 8, 30)


def test_the_limit_is_the_highest_of_the_four(operator):
    row = MemberBaseline(hours=30, mean=10, stdev=8, p95=35)
    assert alerts.anomaly_limit(row, 4) == 45  # p95 + 10
    row = MemberBaseline(hours=30, mean=10, stdev=12, p95=30)
    assert alerts.anomaly_limit(row, 4) == 58  # mean + 4 stdev
    row = MemberBaseline(hours=30, mean=2, stdev=1, p95=3)
    assert alerts.anomaly_limit(row, 4) == 20  # the floor
    assert alerts.anomaly_limit(MemberBaseline(hours=19, mean=2, stdev=1, p95=3), 4) is None
