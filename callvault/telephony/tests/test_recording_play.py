"""Playing a recording from the order card: through the server, with Range requests, for
members who may listen and may see the order; each listening recorded once."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.template.loader import render_to_string
from django.test import Client
from django.utils import translation

from callvault.audit.models import AuditEvent
from callvault.orders.actions import do_assign_order
from callvault.telephony.models import Recording
from callvault.telephony.recording_views import RangeNotSatisfiable, parse_range
from callvault.telephony.tests.recording_support import (
    make_call,
    own_media,
    play_url,
    store,
    wav_bytes,
)
from callvault.vault.files import SEGMENT_SIZE
from conftest import login


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    return own_media(settings, tmp_path)


AUDIO = wav_bytes(5.0)  # 80 KB: two sealed segments


@pytest.fixture
def call(project, order, operator):
    call = make_call(project, order, operator)
    store(call, AUDIO)
    return call


def body(response):
    return b"".join(response.streaming_content)


def play(member, call, range_header=None):
    headers = {"Range": range_header} if range_header else {}
    return login(member).get(play_url(call.project, call.pk), headers=headers)


# --- the answer -----------------------------------------------------------------------------


def test_a_supervisor_plays_the_whole_recording(media, supervisor, call):
    response = play(supervisor, call)
    assert response.status_code == 200
    assert body(response) == AUDIO
    assert response["Content-Type"] == "audio/wav"
    assert response["Content-Length"] == str(len(AUDIO))
    assert response["Accept-Ranges"] == "bytes"
    assert response["Cache-Control"] == "private, no-store"
    assert response["Content-Disposition"] == f'inline; filename="call-{call.pk}.wav"'
    assert "Content-Range" not in response


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=0-", 0, len(AUDIO)),
        (f"bytes={SEGMENT_SIZE - 10}-{SEGMENT_SIZE + 9}", SEGMENT_SIZE - 10, SEGMENT_SIZE + 10),
        ("bytes=1000-1999", 1000, 2000),
        ("bytes=-500", len(AUDIO) - 500, len(AUDIO)),
        (f"bytes={len(AUDIO) - 1}-", len(AUDIO) - 1, len(AUDIO)),
        ("bytes=70000-999999999", 70000, len(AUDIO)),
        ("bytes=-999999999", 0, len(AUDIO)),
    ],
    ids=["first", "open", "segment-edge", "middle", "suffix", "last-byte", "past-end", "all"],
)
def test_a_range_is_answered_with_206_and_exactly_those_bytes(
    media, supervisor, call, header, start, end
):
    response = play(supervisor, call, header)
    assert response.status_code == 206
    assert body(response) == AUDIO[start:end]
    assert response["Content-Range"] == f"bytes {start}-{end - 1}/{len(AUDIO)}"
    assert response["Content-Length"] == str(end - start)
    assert response["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize(
    "header",
    [
        f"bytes={len(AUDIO)}-",
        f"bytes={len(AUDIO) + 10}-{len(AUDIO) + 20}",
        "bytes=-0",
        "bytes=500-100",
        "bytes=abc",
        "bytes=-",
        # Past 4300 digits Python refuses to make an int of them: still a 416, not a 500.
        "bytes=" + "9" * 5000 + "-",
        "bytes=0-" + "9" * 5000,
        "bytes=-" + "9" * 5000,
        "bytes=" + "1" * 20 + "-",
    ],
)
def test_a_range_the_recording_cannot_satisfy_is_416(media, supervisor, call, header):
    response = play(supervisor, call, header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(AUDIO)}"
    assert response.content == b""
    assert not AuditEvent.objects.filter(action="recording.play").exists()


@pytest.mark.parametrize("header", ["items=0-10", "bytes=0-10,20-30"])
def test_other_units_and_several_ranges_get_the_whole_file(media, supervisor, call, header):
    response = play(supervisor, call, header)
    assert response.status_code == 200
    assert body(response) == AUDIO


def test_parse_range_reads_the_header_forms():
    assert parse_range(None, 100) is None
    assert parse_range("bytes=5-9", 100) == (5, 10)
    assert parse_range("bytes=90-", 100) == (90, 100)
    assert parse_range("bytes=-10", 100) == (90, 100)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-0", 0)


def test_only_get_is_answered(media, supervisor, call):
    response = login(supervisor).post(play_url(call.project, call.pk))
    assert response.status_code == 405


# --- who may play -----------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login(media, call):
    response = Client().get(play_url(call.project, call.pk))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("role", ["operator", "trainee"])
def test_members_without_the_capability_get_404(media, request, call, role):
    member = request.getfixturevalue(role)
    assert member.can_listen_recordings is False
    assert play(member, call).status_code == 404


def test_the_operator_of_the_call_without_the_capability_gets_404(media, operator, call, order):
    do_assign_order(order, operator.user)
    assert play(operator, call).status_code == 404


def test_a_listener_who_may_not_see_the_order_gets_404(media, operator, call):
    operator.can_listen_recordings = True
    operator.save()
    assert play(operator, call).status_code == 404


def test_a_listener_who_may_see_the_order_plays_it(media, operator, call, order):
    operator.can_listen_recordings = True
    operator.save()
    do_assign_order(order, operator.user)
    assert play(operator, call).status_code == 200


def test_an_outsider_gets_404_even_with_the_capability(media, outsider, call):
    assert outsider.can_listen_recordings
    response = login(outsider).get(play_url(call.project, call.pk))
    assert response.status_code == 404
    # Nor through their own project's address.
    response = login(outsider).get(play_url(outsider.project, call.pk))
    assert response.status_code == 404


def test_a_call_without_a_recording_is_404(media, supervisor, project, order, operator):
    bare = make_call(project, order, operator)
    assert play(supervisor, bare).status_code == 404


def test_a_deactivated_member_gets_404(media, supervisor, call):
    supervisor.is_active = False
    supervisor.save()
    assert play(supervisor, call).status_code == 404


def test_refused_plays_are_not_recorded_as_plays(media, operator, trainee, call):
    play(operator, call)
    play(trainee, call)
    assert not AuditEvent.objects.filter(action="recording.play").exists()


# --- each listening on record, once ---------------------------------------------------------


def test_one_listening_is_one_event_however_many_ranges_it_asks_for(media, supervisor, call):
    client = login(supervisor)
    url = play_url(call.project, call.pk)
    for header in ("bytes=0-", "bytes=70000-", "bytes=0-1000", None):
        headers = {"Range": header} if header else {}
        assert client.get(url, headers=headers).status_code in (200, 206)
    (event,) = AuditEvent.objects.filter(action="recording.play")
    recording = Recording.objects.get(call=call)
    assert (event.actor_kind, event.actor_name) == ("member", supervisor.user.username)
    assert (event.object_type, event.object_id) == ("call", str(call.pk))
    assert event.extra == {"recording": recording.pk}


def test_each_member_listening_is_recorded(media, supervisor, owner, call):
    play(supervisor, call)
    play(owner, call)
    events = AuditEvent.objects.filter(action="recording.play")
    assert sorted(e.actor_name for e in events) == ["alice", "sam"]


def test_a_listening_after_the_window_is_recorded_again(media, supervisor, call):
    play(supervisor, call)
    cache.clear()  # the window (recordings.PLAY_WINDOW) has passed
    play(supervisor, call, "bytes=0-")
    assert AuditEvent.objects.filter(action="recording.play").count() == 2


# --- the player in the order card -------------------------------------------------------------


def render_player(member, call):
    with translation.override("en"):
        return render_to_string(
            "telephony/_recording.html",
            {"member": member, "project": call.project, "call": call},
        )


def test_the_card_shows_a_listener_the_player_and_the_review_link(media, supervisor, call):
    html = render_player(supervisor, call)
    assert f'<audio controls preload="none" src="{play_url(call.project, call.pk)}">' in html
    assert f"/p/{call.project.slug}/calls/{call.pk}/review/" in html


def test_the_card_shows_others_only_that_there_is_a_recording(media, operator, call):
    html = render_player(operator, call)
    assert "<audio" not in html and "/review/" not in html
    assert "Recorded" in html
