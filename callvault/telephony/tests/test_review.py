"""Call quality review: a supervisor scores a call against the project's checklist."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.intake import Lead, do_create_order
from callvault.telephony.models import CallReview
from callvault.telephony.recordings import do_create_call_review, score_of
from callvault.telephony.setup_actions import do_update_telephony_settings
from callvault.telephony.tests.recording_support import (
    make_call,
    own_media,
    store,
    wav_bytes,
)
from conftest import login


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    return own_media(settings, tmp_path)


DEFAULT_ITEMS = ["Greeted the customer", "Confirmed the order", "Offered an upsell", "Said goodbye"]


@pytest.fixture
def call(project, order, operator):
    return make_call(project, order, operator)


def review_url(call):
    return f"/p/{call.project.slug}/calls/{call.pk}/review/"


def reviews_url(project):
    return f"/p/{project.slug}/calls/reviews/"


def en(member):
    client = login(member)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.mark.parametrize(
    ("checked", "total", "score"),
    [(0, 4, 0), (1, 4, 25), (3, 4, 75), (4, 4, 100), (1, 3, 33), (2, 3, 67), (1, 8, 13)],
)
def test_the_score_is_the_percent_of_items_checked(checked, total, score):
    answers = {f"item {i}": i < checked for i in range(total)}
    assert score_of(answers) == score


def test_a_supervisor_reviews_a_call(supervisor, call):
    response = en(supervisor).post(
        review_url(call),
        {"checked": DEFAULT_ITEMS[:3], "comment": "Friendly, but forgot the goodbye."},
    )
    assert response.status_code == 302
    assert response["Location"] == reviews_url(call.project)
    review = CallReview.objects.get(call=call)
    assert review.score == 75
    assert review.checklist == {item: item != "Said goodbye" for item in DEFAULT_ITEMS}
    assert (review.reviewer_id, review.reviewer_name) == (supervisor.user_id, "sam")
    event = AuditEvent.objects.get(action="call_review.create")
    assert (event.actor_name, event.object_type, event.object_id) == ("sam", "call", str(call.pk))
    assert event.changes == {
        f"review {review.pk}": [None, "75%: Friendly, but forgot the goodbye."]
    }
    assert event.extra == {"checked": 3, "items": 4}


def test_the_review_uses_the_projects_own_checklist(supervisor, call, project):
    do_update_telephony_settings(project, {"review_checklist": "Named the price\n\nAsked why\n"})
    page = en(supervisor).get(review_url(call))
    assert "Named the price" in page.content.decode() and "Greeted" not in page.content.decode()
    en(supervisor).post(review_url(call), {"checked": ["Asked why"]})
    assert CallReview.objects.get().checklist == {"Named the price": False, "Asked why": True}


def test_a_number_in_the_comment_is_redacted_in_the_record(supervisor, call, rng):
    (number,) = fake_phone_numbers(1, rng)
    en(supervisor).post(review_url(call), {"comment": f"customer asked to call {number}"})
    event = AuditEvent.objects.get(action="call_review.create")
    assert "[redacted]" in str(event.changes)
    digits = "".join(ch for ch in number if ch.isdigit())
    assert digits[-7:] not in str(event.changes)


def test_an_item_not_on_the_checklist_is_refused(supervisor, call):
    response = en(supervisor).post(review_url(call), {"checked": ["Made it up"]})
    assert response.status_code == 422
    assert "not on the checklist" in response.content.decode()
    assert not CallReview.objects.exists()


def test_without_a_checklist_there_is_nothing_to_score(supervisor, call, project):
    do_update_telephony_settings(project, {"review_checklist": ""})
    page = en(supervisor).get(review_url(call))
    assert "no review checklist" in page.content.decode()
    assert en(supervisor).post(review_url(call), {}).status_code == 422
    with pytest.raises(FieldErrors):
        do_create_call_review(call, checked=[], comment="", acting=supervisor)


def test_a_long_comment_is_refused(supervisor, call):
    response = en(supervisor).post(review_url(call), {"comment": "x" * 2001})
    assert response.status_code == 422
    assert not CallReview.objects.exists()


def test_the_form_shows_the_call_its_recording_and_earlier_reviews(media, supervisor, call):
    store(call, wav_bytes(0.2))
    do_create_call_review(call, checked=DEFAULT_ITEMS, comment="Perfect", acting=supervisor)
    html = en(supervisor).get(review_url(call)).content.decode()
    assert f'src="/p/{call.project.slug}/calls/{call.pk}/recording/"' in html
    assert str(call.order.number) in html
    assert "bob" in html  # the operator
    assert "100%" in html and "Perfect" in html


# --- who may review -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "trainee"])
def test_members_without_the_capability_get_404(request, call, role):
    client = login(request.getfixturevalue(role))
    assert client.get(review_url(call)).status_code == 404
    assert client.post(review_url(call), {"checked": DEFAULT_ITEMS}).status_code == 404
    assert client.get(reviews_url(call.project)).status_code == 404
    assert not CallReview.objects.exists()


def test_an_outsider_gets_404(outsider, call):
    client = login(outsider)
    assert client.get(review_url(call)).status_code == 404
    assert client.post(review_url(call), {"checked": DEFAULT_ITEMS}).status_code == 404
    assert client.get(reviews_url(call.project)).status_code == 404


def test_anonymous_is_sent_to_the_login(call):
    for url in (review_url(call), reviews_url(call.project)):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_a_listener_who_may_not_see_the_order_may_not_review_its_call(operator, call):
    operator.can_listen_recordings = True
    operator.save()
    assert login(operator).get(review_url(call)).status_code == 404


def test_the_action_refuses_a_member_without_the_capability(operator, call):
    from django.http import Http404

    with pytest.raises(Http404):
        do_create_call_review(call, checked=[], comment="", acting=operator)


# --- the list -------------------------------------------------------------------------------


def test_the_list_shows_recent_reviews_and_filters_by_operator(
    supervisor, operator, trainee, project, call, rng
):
    (phone,) = fake_phone_numbers(1, rng)
    other_order = do_create_order(project, Lead(phone=phone, name="Olga")).order
    trainees_call = make_call(project, other_order, trainee)
    do_create_call_review(call, checked=DEFAULT_ITEMS[:1], comment="bob's", acting=supervisor)
    do_create_call_review(trainees_call, checked=DEFAULT_ITEMS, comment="tina's", acting=supervisor)
    client = en(supervisor)
    everything = client.get(reviews_url(project)).content.decode()
    assert "bob&#x27;s" in everything and "tina&#x27;s" in everything
    assert "2 reviews, average score 63%." in everything  # (25 + 100) / 2, rounded
    only_bob = client.get(reviews_url(project), {"operator": operator.user_id}).content.decode()
    assert "bob&#x27;s" in only_bob and "tina&#x27;s" not in only_bob
    assert "1 review, average score 25%." in only_bob


def test_the_list_leaves_out_calls_the_listener_may_not_see(operator, supervisor, project, call):
    do_create_call_review(call, checked=[], comment="hidden one", acting=supervisor)
    operator.can_listen_recordings = True
    operator.save()
    html = en(operator).get(reviews_url(project)).content.decode()
    assert "hidden one" not in html and "No reviews yet." in html


def test_the_list_costs_the_same_queries_for_one_review_or_twenty(
    supervisor, operator, project, order
):
    client = en(supervisor)

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reviews_url(project)).status_code == 200
        return len(captured)

    do_create_call_review(
        make_call(project, order, operator), checked=[], comment="", acting=supervisor
    )
    queries()  # the session's first request does its own bookkeeping
    one = queries()
    for _ in range(19):
        call = make_call(project, order, operator)
        do_create_call_review(call, checked=[], comment="", acting=supervisor)
    assert queries() == one
