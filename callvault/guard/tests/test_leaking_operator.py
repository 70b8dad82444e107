"""The issue's scenarios, end to end through the pages and the API: a leaking operator (and a
leaking integration key) going as fast as they can is stopped at the quota, the owner is told
with the right figures through the alerts and a signed webhook (a local receiver), and the
audit trail shows it all; an honest operator working the queue for an hour raises nothing.

Transactional: notices reach the webhook after the commit, as in production. The guard's
clocks (quota windows, alert buckets) are set to a working morning, so the figures do not
depend on when the suite runs; everything else keeps the real time.
"""

from __future__ import annotations

import json
import random
from datetime import time
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Q
from django.test import Client
from django.urls import reverse
from django.utils import translation

from callvault.accounts.actions import do_set_capabilities
from callvault.accounts.models import Membership, Project, SecurityNotice
from callvault.accounts.notices import describe
from callvault.audit.models import AuditEvent
from callvault.guard import alerts, quotas
from callvault.guard.alerts import (
    do_generate_webhook_secret,
    do_update_guard_settings,
    settings_for,
)
from callvault.guard.models import ExportJob
from callvault.guard.tests.conftest import GuardClock, WebhookReceiver, signed_json
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.actions import do_assign_order
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Order, Status, WorkSettings
from callvault.orders.setup_actions import do_update_work_settings
from callvault.orders.tests.support import HttpsClient

pytestmark = pytest.mark.django_db(transaction=True)

# The defaults a new project gets (quotas.DEFAULT_QUOTAS, alerts.DEFAULT_ALERT_RULES).
CARDS_PER_HOUR = 60
SEARCHES_PER_HOUR = 20
API_READS_PER_MINUTE = 600
BURST_CARDS, BURST_MINUTES = 40, 10
GUARD_KINDS = {"quota_reached", "suspended", "cards_burst", "reveals_burst", "exports_burst"}
GUARD_KINDS |= {"outside_hours", "anomaly"}


@pytest.fixture
def hooked(project: Project, webhook_receiver: WebhookReceiver, monkeypatch: Any) -> str:
    """The owner has pointed the alerts at a webhook (the local receiver); the secret."""
    monkeypatch.setattr(alerts, "RETRY_DELAYS", ())
    guard = do_update_guard_settings(settings_for(project), webhook_url=webhook_receiver.url)
    return do_generate_webhook_secret(guard)


def english(client: Client) -> Client:
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def as_member(member: Membership) -> Client:
    client = english(HttpsClient())
    client.force_login(member.user)
    return client


def make_orders(project: Project, count: int, rng: random.Random) -> list[Order]:
    """`count` new orders, each with its own reserved number drawn now."""
    return [
        do_create_order(
            project,
            Lead(phone=phone, name=f"Customer {i}", address="Moscow", items=[LeadItem("TEA", 1)]),
        ).order
        for i, phone in enumerate(fake_phone_numbers(count, rng))
    ]


def card_url(order: Order) -> str:
    return f"/p/{order.project.slug}/orders/{order.pk}/"


def by(member: Membership, action: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            action=action, actor_kind="member", actor_id=str(member.user_id)
        ).order_by("pk")
    )


def guard_notices(project: Project) -> list[SecurityNotice]:
    return list(SecurityNotice.objects.filter(project=project, kind__in=GUARD_KINDS).order_by("pk"))


# --- The leaking operator, through the pages -------------------------------------------------


def test_a_leaking_operator_is_stopped_at_the_card_quota_and_the_owner_is_told(
    project: Project,
    owner: Membership,
    operator: Membership,
    clock: GuardClock,
    hooked: str,
    webhook_receiver: WebhookReceiver,
    rng: random.Random,
) -> None:
    orders = make_orders(project, CARDS_PER_HOUR + 6, rng)
    for order in orders:
        do_assign_order(order, operator.user)
    leaker = as_member(operator)

    answers = [leaker.get(card_url(order)) for order in orders]

    statuses = [a.status_code for a in answers]
    assert statuses == [200] * CARDS_PER_HOUR + [429] * 6
    refused = answers[CARDS_PER_HOUR]
    # Until the end of the clock hour (the guard clock stands at 10:00:00).
    assert refused["Retry-After"] == "3600"
    assert b"Order cards opened per hour" in refused.content
    assert f"Customer {CARDS_PER_HOUR}" not in refused.content.decode()  # no card shown

    # The audit trail: every card seen, every refusal with its figures, the burst alert.
    viewed = by(operator, "order.view")
    assert [e.object_id for e in viewed] == [str(o.pk) for o in orders[:CARDS_PER_HOUR]]
    refusals = by(operator, "quota.refused")
    assert [e.extra for e in refusals] == [
        {"quota": "card_open", "count": CARDS_PER_HOUR + n, "limit": CARDS_PER_HOUR}
        for n in range(1, 7)
    ]
    (raised,) = AuditEvent.objects.filter(action="alert.raised")
    assert raised.extra == {
        "kind": "cards_burst",
        "user": "bob",
        "count": BURST_CARDS,
        "minutes": BURST_MINUTES,
        "threshold": BURST_CARDS,
    }
    assert (raised.object_type, raised.object_id) == ("user", str(operator.user_id))

    # The owner's notices: the burst at the 40th card, the quota once, both about bob.
    burst, reached = guard_notices(project)
    assert (burst.kind, burst.user_id, burst.event_id) == (
        "cards_burst",
        operator.user_id,
        raised.pk,
    )
    assert burst.params == {"user": "bob", "count": 40, "minutes": 10, "threshold": 40}
    assert (reached.kind, reached.user_id) == ("quota_reached", operator.user_id)
    assert reached.params == {
        "user": "bob",
        "quota": "Order cards opened per hour",
        "count": CARDS_PER_HOUR + 1,
        "limit": CARDS_PER_HOUR,
    }
    assert reached.event_id == refusals[0].pk

    # The webhook got both, signed, with the figures and a link to bob's timeline.
    posts = [signed_json(r, hooked) for r in webhook_receiver.wait_for(2)]
    assert [(p["kind"], p["params"]) for p in posts] == [
        ("cards_burst", burst.params),
        ("quota_reached", reached.params),
    ]
    assert all(p["member"] == "bob" and p["project"] == "alpha" for p in posts)
    assert all("/p/alpha/audit/" in p["timeline_url"] for p in posts)
    # The text is the alert in the installation's language (Russian by default).
    with translation.override(settings.LANGUAGE_CODE):
        assert posts[0]["text"] == describe(burst)
    with translation.override("en"):
        assert "opened 40 order cards within 10 minutes" in describe(burst)


def test_the_quota_resets_with_the_next_hour(
    project: Project, operator: Membership, clock: GuardClock, hooked: str, rng: random.Random
) -> None:
    orders = make_orders(project, CARDS_PER_HOUR + 1, rng)
    for order in orders:
        do_assign_order(order, operator.user)
    leaker = as_member(operator)
    for order in orders[:CARDS_PER_HOUR]:
        assert leaker.get(card_url(order)).status_code == 200
    assert leaker.get(card_url(orders[-1])).status_code == 429
    clock.advance(hours=1)
    assert leaker.get(card_url(orders[-1])).status_code == 200


def test_an_owner_who_chose_suspension_stops_the_leaker_until_they_review_it(
    project: Project,
    owner: Membership,
    operator: Membership,
    clock: GuardClock,
    hooked: str,
    webhook_receiver: WebhookReceiver,
    rng: random.Random,
) -> None:
    do_update_guard_settings(settings_for(project), suspend_on_breach=True)
    margin = quotas.breach_margin(CARDS_PER_HOUR)
    orders = make_orders(project, CARDS_PER_HOUR + margin + 1, rng)
    for order in orders:
        do_assign_order(order, operator.user)
    leaker = as_member(operator)
    statuses = [leaker.get(card_url(order)).status_code for order in orders]
    # Refused past the quota until the hard breach; from then on the project is closed.
    assert statuses == [200] * CARDS_PER_HOUR + [429] * margin + [403]
    assert leaker.get(f"/p/{project.slug}/orders/mine/").status_code == 403
    assert as_member(owner).get(card_url(orders[0])).status_code == 200

    kinds = [n.kind for n in guard_notices(project)]
    assert kinds == ["cards_burst", "quota_reached", "suspended"]
    suspended = guard_notices(project)[-1]
    assert suspended.params == {"user": "bob", "quota": "Order cards opened per hour"}
    assert AuditEvent.objects.filter(action="suspension.create", object_repr="bob").count() == 1
    posts = [signed_json(r, hooked) for r in webhook_receiver.wait_for(3)]
    assert [p["kind"] for p in posts] == kinds


def test_an_operator_may_not_search_the_base_by_guessed_numbers(
    project: Project, operator: Membership, clock: GuardClock, rng: random.Random
) -> None:
    make_orders(project, 3, rng)
    leaker = as_member(operator)
    for guess in fake_phone_numbers(25, rng):
        answer = leaker.post(f"/p/{project.slug}/orders/", {"q": guess})
        assert answer.status_code == 403
    # Refused before anything was looked up: no search happened, none was counted.
    assert not AuditEvent.objects.filter(action="order.search").exists()
    assert not by(operator, "quota.refused")


def test_an_operator_allowed_to_search_is_stopped_at_the_search_quota(
    project: Project,
    owner: Membership,
    operator: Membership,
    clock: GuardClock,
    hooked: str,
    webhook_receiver: WebhookReceiver,
    rng: random.Random,
) -> None:
    do_set_capabilities(operator, {"can_view_all_orders": True}, acting=owner)
    make_orders(project, 3, rng)
    leaker = as_member(operator)
    guesses = fake_phone_numbers(SEARCHES_PER_HOUR + 3, rng)
    statuses = [leaker.post(f"/p/{project.slug}/orders/", {"q": g}).status_code for g in guesses]
    assert statuses == [200] * SEARCHES_PER_HOUR + [429] * 3
    searches = by(operator, "order.search")
    assert len(searches) == SEARCHES_PER_HOUR
    # The record says how a search went, never what was typed.
    assert all(event.extra["kind"] == "phone" for event in searches)
    recorded = json.dumps(
        [[e.extra, e.changes, e.object_repr] for e in searches], ensure_ascii=False
    )
    for guess in guesses:  # none of the guesses in any of the searches' events
        assert guess not in recorded
        assert guess.lstrip("+") not in recorded
    assert [e.extra["count"] for e in by(operator, "quota.refused")] == [21, 22, 23]
    (reached,) = guard_notices(project)
    assert reached.params == {
        "user": "bob",
        "quota": "Searches per hour",
        "count": SEARCHES_PER_HOUR + 1,
        "limit": SEARCHES_PER_HOUR,
    }
    (post,) = [signed_json(r, hooked) for r in webhook_receiver.wait_for(1)]
    assert post["kind"] == "quota_reached" and post["params"] == reached.params


def test_an_operator_cannot_export_and_one_allowed_to_is_sent_to_the_step_up(
    project: Project, owner: Membership, operator: Membership, clock: GuardClock
) -> None:
    exports = f"/p/{project.slug}/guard/exports/"
    leaker = as_member(operator)
    assert leaker.get(exports).status_code == 404
    assert leaker.post(exports, {"kind": "orders", "reason": "backup"}).status_code == 404

    do_set_capabilities(operator, {"can_export": True}, acting=owner)
    answer = leaker.post(exports, {"kind": "orders", "reason": "backup"})
    assert answer.status_code == 302
    assert answer["Location"].startswith(reverse("account:step_up") + "?next=")
    assert not ExportJob.objects.exists()
    # order.export / audit.export / report.export, and export.download
    exported = Q(action__endswith=".export") | Q(action__startswith="export.")
    assert not AuditEvent.objects.filter(exported).exists()


# --- The leaking integration key, through the API --------------------------------------------


def test_a_leaking_api_key_is_stopped_at_the_read_quota_and_the_owner_is_told(
    project: Project,
    owner: Membership,
    api_key: str,
    clock: GuardClock,
    hooked: str,
    webhook_receiver: WebhookReceiver,
    rng: random.Random,
) -> None:
    orders = make_orders(project, 5, rng)
    client = Client()
    answers = [
        client.get(f"/api/v1/orders/{orders[n % 5].pk}", HTTP_X_API_KEY=api_key)
        for n in range(API_READS_PER_MINUTE + 3)
    ]
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * API_READS_PER_MINUTE + [429] * 3
    refused = answers[API_READS_PER_MINUTE]
    assert refused["Retry-After"] == "60"  # the end of the guard clock's minute
    assert refused.json()["limit"] == API_READS_PER_MINUTE
    assert "phone" not in refused.json()

    refusals = AuditEvent.objects.filter(action="quota.refused").order_by("pk")
    assert [(e.object_type, e.extra["count"]) for e in refusals] == [
        ("api_key", API_READS_PER_MINUTE + n) for n in (1, 2, 3)
    ]
    (reached,) = guard_notices(project)
    assert reached.kind == "quota_reached" and reached.user_id is None
    assert reached.params["count"] == API_READS_PER_MINUTE + 1
    assert reached.params["limit"] == API_READS_PER_MINUTE
    assert "Landing" in reached.params["user"]
    (post,) = [signed_json(r, hooked) for r in webhook_receiver.wait_for(1)]
    assert post["kind"] == "quota_reached" and post["params"] == reached.params
    assert post["member"] is None and post["timeline_url"] == ""

    # The next minute the key reads again.
    clock.advance(minutes=1)
    assert client.get(f"/api/v1/orders/{orders[0].pk}", HTTP_X_API_KEY=api_key).status_code == 200


# --- The honest operator ---------------------------------------------------------------------


def test_an_honest_operator_working_the_queue_for_an_hour_raises_nothing(
    project: Project,
    owner: Membership,
    operator: Membership,
    clock: GuardClock,
    hooked: str,
    webhook_receiver: WebhookReceiver,
    rng: random.Random,
) -> None:
    work = WorkSettings.objects.get(project=project)
    do_update_work_settings(
        work, calling_hours_start=time(0, 0), calling_hours_end=time(23, 59, 59)
    )
    orders = make_orders(project, 20, rng)
    accepted = Status.objects.get(project=project, code="accepted")
    honest = as_member(operator)
    worked = []
    for _n in range(20):  # one order every three minutes, from 10:00 to 11:00
        taken = honest.post(f"/p/{project.slug}/orders/next/")
        assert taken.status_code == 302 and "/orders/" in taken["Location"]
        card = honest.get(taken["Location"])
        assert card.status_code == 200
        order = Order.objects.get(pk=int(taken["Location"].rstrip("/").rsplit("/", 1)[1]))
        clock.advance(minutes=1)
        commented = honest.post(
            f"{card_url(order)}comments/",
            {"text": "Confirmed the address", "version": order.version},
        )
        assert commented.status_code == 302
        assert honest.get(commented["Location"]).status_code == 200
        order.refresh_from_db()
        clock.advance(minutes=2)
        done = honest.post(
            f"{card_url(order)}status/", {"status": accepted.pk, "version": order.version}
        )
        assert done.status_code == 302, done.content.decode()[:500]
        worked.append(order.pk)

    assert sorted(worked) == sorted(o.pk for o in orders)
    assert Order.objects.filter(project=project, status=accepted).count() == 20
    assert len(by(operator, "order.view")) == 40
    assert not AuditEvent.objects.filter(action__in=["quota.refused", "alert.raised"]).exists()
    assert guard_notices(project) == []
    assert webhook_receiver.wait_for(1, timeout=0.5) == []
