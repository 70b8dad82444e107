"""Heartbeats merged into spans (heartbeats.merge): the unit tests of the pure merge, and
the batch action on a real database."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from callvault.monitoring.heartbeats import (
    MAX_SPAN,
    Heartbeat,
    Span,
    do_ingest_heartbeats,
    merge,
    parse_heartbeats,
)
from callvault.monitoring.models import ActivitySpan
from callvault.monitoring.tests.support import enrol

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PULSE = timedelta(seconds=15)  # a 5-second heartbeat: two periods and 5 s of slack


def hb(
    seq: int,
    second: float,
    state: str = "active",
    app: str | None = "crm",
    title: str | None = "Orders",
) -> Heartbeat:
    return Heartbeat(seq, T0 + timedelta(seconds=second), state, app, title)


def shape(spans: list[Span]) -> list[tuple[float, float, str, str | None]]:
    """(start, end) in seconds after T0, the state and the title of each span."""
    return [
        ((s.start - T0).total_seconds(), (s.end - T0).total_seconds(), s.state, s.title)
        for s in spans
    ]


def test_same_heartbeats_within_the_pulse_make_one_span():
    spans = merge(None, [hb(1, 0), hb(2, 5), hb(3, 10), hb(4, 15)], PULSE)
    assert shape(spans) == [(0, 15, "active", "Orders")]


def test_a_single_heartbeat_is_a_span_of_no_length():
    assert shape(merge(None, [hb(1, 0)], PULSE)) == [(0, 0, "active", "Orders")]


def test_a_gap_longer_than_the_pulse_starts_a_new_span_and_leaves_the_gap():
    spans = merge(None, [hb(1, 0), hb(2, 5), hb(3, 60), hb(4, 65)], PULSE)
    assert shape(spans) == [(0, 5, "active", "Orders"), (60, 65, "active", "Orders")]


def test_a_gap_exactly_the_pulse_still_continues():
    assert shape(merge(None, [hb(1, 0), hb(2, 15)], PULSE)) == [(0, 15, "active", "Orders")]
    assert len(merge(None, [hb(1, 0), hb(2, 15.001)], PULSE)) == 2


def test_a_change_of_state_starts_a_span_and_the_old_one_reaches_the_change():
    beats = [hb(1, 0), hb(2, 5), hb(3, 10, "idle", None, None), hb(4, 15, "idle", None, None)]
    spans = merge(None, beats, PULSE)
    assert shape(spans) == [(0, 10, "active", "Orders"), (10, 15, "idle", None)]


def test_a_change_of_title_or_program_starts_a_span():
    beats = [hb(1, 0), hb(2, 5, title="Order 17"), hb(3, 10, app="mail", title="Order 17")]
    spans = merge(None, beats, PULSE)
    assert [(s.app, s.title) for s in spans] == [
        ("crm", "Orders"),
        ("crm", "Order 17"),
        ("mail", "Order 17"),
    ]
    assert shape(spans)[0][:2] == (0, 5)


def test_a_change_after_a_gap_does_not_bridge_the_gap():
    spans = merge(None, [hb(1, 0), hb(2, 100, "locked", None, None)], PULSE)
    assert shape(spans) == [(0, 0, "active", "Orders"), (100, 100, "locked", None)]


def test_out_of_order_heartbeats_in_a_batch_are_merged_in_seq_order():
    beats = [hb(i + 1, 5 * i, "idle" if 6 <= i < 9 else "active") for i in range(12)]
    expected = shape(merge(None, beats, PULSE))
    for seed in range(5):
        shuffled = beats[:]
        random.Random(seed).shuffle(shuffled)
        assert shape(merge(None, shuffled, PULSE)) == expected
    assert [s[2] for s in expected] == ["active", "idle", "active"]


def test_the_open_span_is_extended_across_batches_and_marked():
    first = merge(None, [hb(1, 0), hb(2, 5)], PULSE)
    stored = Span(first[0].start, first[0].end, "active", "crm", "Orders", pk=7)
    spans = merge(stored, [hb(3, 10), hb(4, 15, "idle", None, None)], PULSE)
    assert spans[0].pk == 7 and spans[0].extended
    assert shape(spans) == [(0, 15, "active", "Orders"), (15, 15, "idle", None)]
    untouched = merge(stored, [hb(3, 500)], PULSE)
    assert not untouched[0].extended
    assert stored.end == T0 + timedelta(seconds=5)  # the caller's span is not changed


def test_a_heartbeat_inside_the_open_span_changes_nothing():
    stored = Span(T0, T0 + timedelta(seconds=30), "active", "crm", "Orders", pk=1)
    spans = merge(stored, [hb(9, 10)], PULSE)
    assert len(spans) == 1 and not spans[0].extended


def test_a_clock_that_went_back_starts_a_new_span():
    stored = Span(T0 + timedelta(seconds=60), T0 + timedelta(seconds=90), "active", "crm",
                  "Orders", pk=1)  # fmt: skip
    spans = merge(stored, [hb(9, 10)], PULSE)
    assert shape(spans)[1] == (10, 10, "active", "Orders")


def test_a_span_is_cut_at_the_longest_length_and_goes_on_in_the_next():
    beats = [hb(i + 1, 5 * i) for i in range(int(MAX_SPAN.total_seconds() // 5) + 3)]
    spans = merge(None, beats, PULSE)
    assert len(spans) == 2
    assert spans[0].end == spans[1].start
    assert spans[0].end - spans[0].start <= MAX_SPAN + PULSE
    assert spans[1].end - spans[0].start > MAX_SPAN


def test_the_batch_is_written_with_a_fixed_number_of_statements(operator):
    device, _token = enrol(operator)
    device.refresh_from_db()
    device = type(device).objects.select_related("project__monitoring_policy").get(pk=device.pk)
    few = [hb(1, 0), hb(2, 5), hb(3, 10, "idle", None, None)]
    do_ingest_heartbeats(device, few)
    many = [hb(i, 5 * i, "idle" if i % 7 else "active", None, None) for i in range(4, 500)]
    # The same for 3 heartbeats as for 496, but for the bulk insert, which Django cuts into
    # pieces of the database's parameter limit.
    with CaptureQueriesContext(connection) as done:
        do_ingest_heartbeats(device, many)
    spans = ActivitySpan.objects.filter(device=device).count() - 2
    assert spans > 100
    inserts = [q for q in done.captured_queries if q["sql"].startswith("INSERT")]
    fields = [f for f in ActivitySpan._meta.concrete_fields if not f.primary_key]
    batch = connection.ops.bulk_batch_size(fields, [None] * spans)
    assert len(inserts) == -(-spans // batch)
    # The savepoint, the lock with the newest span, the span's update, the device's, release.
    assert len(done.captured_queries) - len(inserts) <= 5


def test_parse_names_the_first_bad_field():
    from callvault.lib.errors import FieldErrors

    good = {"seq": 1, "at": "2026-11-20T09:00:00.120Z", "state": "active", "app": None}
    assert parse_heartbeats({"heartbeats": [good]})[0].at == T0 + timedelta(milliseconds=120)
    with pytest.raises(FieldErrors) as bad:
        parse_heartbeats({"heartbeats": [good, good, {**good, "state": "away"}]})
    assert bad.value.errors == {"heartbeats[2].state": "one of active, idle, locked"}
    with pytest.raises(FieldErrors):
        parse_heartbeats({"heartbeats": [{**good, "seq": True}]})
    with pytest.raises(FieldErrors):
        parse_heartbeats({"beats": []})


def test_batches_continue_the_span_the_last_batch_left_open(operator):
    device, _token = enrol(operator)
    device = type(device).objects.select_related("project__monitoring_policy").get(pk=device.pk)
    do_ingest_heartbeats(device, [hb(1, 0), hb(2, 5)])
    do_ingest_heartbeats(device, [hb(3, 10), hb(4, 15)])
    do_ingest_heartbeats(device, [hb(5, 20, "idle", None, None)])
    do_ingest_heartbeats(device, [hb(6, 25, "idle", None, None)])
    rows = list(
        ActivitySpan.objects.filter(device=device)
        .order_by("id")
        .values_list("started_at", "ended_at", "state")
    )
    assert rows == [
        (T0, T0 + timedelta(seconds=20), "active"),
        (T0 + timedelta(seconds=20), T0 + timedelta(seconds=25), "idle"),
    ]
    device.refresh_from_db()
    assert device.open_span_id == ActivitySpan.objects.filter(device=device).latest("id").pk
