"""The audit search page /p/<slug>/audit/: who may read it, what filters do, paging, privacy."""

from __future__ import annotations

import re

import pytest
from pytest_django import DjangoAssertNumQueries

from callvault.accounts.models import Membership, Project
from callvault.audit.models import ActorKind, AuditEvent
from callvault.audit.tests.viewer_support import SEARCH, english, event
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.tests.support import HttpsClient, assert_no_digits, login, styles_of

Phone = tuple[str, str]
URL = SEARCH.format(slug="alpha")


def test_it_sends_anonymous_visitors_to_login(project: Project) -> None:
    response = HttpsClient().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("role", ["operator", "trainee", "outsider"])
def test_it_is_not_found_for_members_who_may_not_read_the_record(
    role: str, request: pytest.FixtureRequest, project: Project
) -> None:
    member: Membership = request.getfixturevalue(role)
    assert login(member).get(URL).status_code == 404
    assert login(member).get(URL, {"action": "order."}).status_code == 404
    assert not AuditEvent.objects.filter(action="audit.search").exists()


def test_an_outsider_does_not_read_it_under_their_own_project_either(
    outsider: Membership, project: Project
) -> None:
    event(project.pk, actor_name="alpha-only-actor")
    page = login(outsider).get(SEARCH.format(slug="beta")).content.decode()
    assert "alpha-only-actor" not in page


@pytest.mark.parametrize("role", ["supervisor", "owner"])
def test_a_supervisor_or_owner_reads_the_projects_events(
    role: str, request: pytest.FixtureRequest, project: Project, other_project: Project
) -> None:
    member: Membership = request.getfixturevalue(role)
    event(
        project.pk,
        action="order.status",
        actor_name="bob",
        ip="203.0.113.9",
        changes={"status": ["new", "accepted"]},
    )
    event(other_project.pk, actor_name="beta-only-actor")
    response = english(member).get(URL)
    page = response.content.decode()
    assert response.status_code == 200
    assert "Status changed" in page and "bob" in page and "203.0.113.9" in page
    assert "new → accepted" in page
    assert "beta-only-actor" not in page


def test_the_nav_shows_audit_only_to_readers(supervisor: Membership, operator: Membership) -> None:
    assert 'href="/p/alpha/audit/"' in english(supervisor).get(URL).content.decode()
    page = english(operator).get("/p/alpha/orders/mine/").content.decode()
    assert 'href="/p/alpha/audit/"' not in page


def test_searching_is_recorded_with_its_filters(supervisor: Membership) -> None:
    english(supervisor).get(URL, {"action": "order.", "ip": "10.0.0.0/8"})
    recorded = AuditEvent.objects.get(action="audit.search")
    assert recorded.actor_id == str(supervisor.user_id)
    assert recorded.extra["filters"] == {"action": "order.", "ip": "10.0.0.0/8"}


def test_the_filters_narrow_the_rows(supervisor: Membership, operator: Membership) -> None:
    project_id = supervisor.project_id
    event(
        project_id,
        actor_id=str(operator.user_id),
        actor_name="bob",
        ip="10.9.1.1",
        object_repr="mark-bob",
    )
    event(
        project_id,
        actor_id=str(supervisor.user_id),
        actor_name="sam",
        ip="192.0.2.1",
        object_repr="mark-sam",
    )
    event(
        project_id, actor_name="v6", ip="2001:db8::7", object_repr="mark-v6", action="phone.reveal"
    )
    client = english(supervisor)

    def shown(**params: str) -> set[str]:
        page = client.get(URL, params).content.decode()
        return set(re.findall(r"mark-[a-z0-9]+", page))

    assert shown() == {"mark-bob", "mark-sam", "mark-v6"}
    assert shown(member=str(operator.user_id)) == {"mark-bob"}
    assert shown(ip="10.0.0.0/8") == {"mark-bob"}
    assert shown(ip="2001:db8::/32") == {"mark-v6"}
    assert shown(ip="192.0.2.1") == {"mark-sam"}
    assert shown(action="phone.") == {"mark-v6"}
    assert shown(action="order.view", member=str(supervisor.user_id)) == {"mark-sam"}


def test_a_bad_address_is_an_error_not_a_crash(supervisor: Membership) -> None:
    response = english(supervisor).get(URL, {"ip": "10.0.0.999"})
    assert response.status_code == 200
    assert "Enter an IP address or a network" in response.content.decode()


def test_the_pager_walks_every_event_exactly_once(supervisor: Membership) -> None:
    for i in range(120):
        event(supervisor.project_id, object_type="thing", object_id=str(i))
    client = english(supervisor)
    seen: list[int] = []
    params: dict[str, str] = {"object_type": "thing"}
    for _ in range(5):
        response = client.get(URL, params)
        seen += [e.pk for e in response.context["rows"]]
        cursor = response.context["next_before"]
        if cursor is None:
            break
        assert f"before={cursor}" in response.content.decode()
        params = {"object_type": "thing", "before": str(cursor)}
    expected = AuditEvent.objects.filter(object_type="thing").order_by("-id")
    assert seen == [e.pk for e in expected]
    assert len(seen) == 120


def test_a_page_costs_the_same_queries_with_few_events_or_many(
    supervisor: Membership, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    client = english(supervisor)
    client.get(URL)  # warm the session
    for _ in range(3):
        event(supervisor.project_id)
    with django_assert_max_num_queries(8):
        client.get(URL)
    for i in range(60):
        event(supervisor.project_id, action="order.status", changes={"status": ["a", str(i)]})
    with django_assert_max_num_queries(8):
        assert len(client.get(URL).context["rows"]) == 50


def test_unattributed_events_stand_out(supervisor: Membership) -> None:
    event(supervisor.project_id, actor_kind=ActorKind.UNATTRIBUTED, actor_id="", actor_name="")
    page = english(supervisor).get(URL).content.decode()
    assert 'class="unattributed' in page and "unattributed!" in page


def test_no_page_carries_the_digits_of_a_number(
    supervisor: Membership, project: Project, phone: Phone
) -> None:
    order = do_create_order(project, Lead(phone=phone[0], name=f"Ivan {phone[0]}")).order
    # An event written before free text was redacted at write time, in every writing.
    for typed in styles_of(phone[1]):
        event(
            project.pk,
            action="order.update",
            object_id=str(order.pk),
            changes={"customer_name": ["Ivan", f"Ivan {typed}"], "phone": "changed"},
        )
    page = english(supervisor).get(URL).content.decode()
    assert "changed (hidden)" in page and "Ivan [redacted]" in page
    assert_no_digits(page, phone[1])
