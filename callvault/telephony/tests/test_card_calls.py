"""The order card's call history: state, times, talk time and operator of each call, the
recording's player where there is one, in one query however many calls there are."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from callvault.accounts.models import Membership, Project
from callvault.orders.models import Order
from callvault.telephony.models import Call, CallDirection, CallState, Recording
from callvault.telephony.tests.call_support import card_client, mine

__all__ = ["mine"]


def a_call(order: Order, member: Membership | None, **fields: Any) -> Call:
    return Call.objects.create(
        project_id=order.project_id,
        order=order,
        member=member.user if member else None,
        member_name=member.user.username if member else "",
        provider="sip_token",
        **fields,
    )


def card(member: Membership, order: Order) -> str:
    response = card_client(member).get(reverse("orders:card", args=["alpha", order.pk]))
    text = response.content.decode()
    return text[text.index('id="calls"') :]


def test_a_card_without_calls_says_so(operator: Membership, mine: Order) -> None:
    assert "No calls yet." in card(operator, mine)


def test_each_call_shows_its_state_times_talk_time_and_operator(
    project: Project, operator: Membership, supervisor: Membership, mine: Order
) -> None:
    now = timezone.now()
    a_call(
        mine, operator, state=CallState.ENDED, answered_at=now, ended_at=now, duration_seconds=61
    )
    a_call(mine, None, direction=CallDirection.INBOUND, state=CallState.RINGING)
    old = a_call(mine, operator)
    Call.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=1))
    section = card(supervisor, mine)
    assert "61 seconds" in section and "Ended" in section
    assert "Incoming" in section and "Ringing" in section
    assert "Not dialled" in section  # a token nobody dialled, long expired
    assert section.count("<td>bob</td>") == 2


def test_a_recorded_call_offers_the_player_to_listeners_only(
    project: Project, operator: Membership, supervisor: Membership, mine: Order
) -> None:
    call = a_call(mine, operator, state=CallState.ENDED, duration_seconds=5)
    Recording.objects.create(
        call=call, project=project, storage_name="x", content_type="audio/wav", size=10
    )
    assert "<audio" in card(supervisor, mine)  # may listen to recordings
    listed = card(operator, mine)
    assert "<audio" not in listed and "Recorded" in listed


def test_the_history_is_one_query_however_many_calls(
    project: Project, supervisor: Membership, mine: Order
) -> None:
    client = card_client(supervisor)

    def queries() -> int:
        with CaptureQueriesContext(connection) as seen:
            client.get(reverse("orders:card", args=["alpha", mine.pk]))
        return len(seen)

    a_call(mine, None)
    queries()  # the session's and the counters' first writes
    one = queries()
    for _ in range(5):
        call = a_call(mine, None, state=CallState.ENDED)
        Recording.objects.create(
            call=call, project=project, storage_name=f"r{call.pk}", content_type="audio/wav", size=1
        )
    # Five more calls with recordings; a per-call query would add five or ten. (A cache
    # counter that rolls over to a new minute between the two may add one or two.)
    assert queries() <= one + 2
