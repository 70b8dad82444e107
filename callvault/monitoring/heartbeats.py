"""Heartbeats into activity spans, the ActivityWatch way, one batch at a time.

A heartbeat says "at this moment the state, program and title were these". Consecutive
heartbeats of a device that say the same thing within the pulse time (two heartbeat periods
and some slack) extend one span; anything else starts a new one. When the state changes
within the pulse time, the old span is carried up to the new heartbeat: the old state held
until the change was seen, so an agent that is running leaves no gaps, and a gap on the
timeline means the agent was not reporting (offline).

Unlike ActivityWatch, which writes every heartbeat as it comes, a batch is merged in memory
and written with a fixed handful of statements however long it is: the device row locked
and read with its newest span (its last accepted seq makes retries harmless), that span
updated if the batch extended it, one bulk insert of the new spans, and the device's seq
and newest span moved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from callvault.lib.errors import FieldErrors
from callvault.monitoring.models import ActivitySpan, ActivityState, Device, MonitoringPolicy
from callvault.monitoring.policy import REDACTED, in_working_hours, pulse_seconds
from callvault.vault.logfilter import redact

MAX_BATCH = 500
# A span is cut after this long (and goes on in a new one): the timeline then finds a
# day's spans from an index range that starts at most this much before midnight.
MAX_SPAN = timedelta(hours=1)
# ...and carried at most one pulse (two minutes at the longest heartbeat) beyond that.
LONGEST_SPAN = MAX_SPAN + timedelta(minutes=5)
MAX_APP = 200
MAX_TITLE = 500
# Heartbeats further in the future than this (a PC's clock far ahead) are refused, with
# how far ahead the clock is: the agent corrects its clock from the answer's Date header.
CLOCK_SKEW = timedelta(minutes=10)


@dataclass(frozen=True)
class Heartbeat:
    """One heartbeat as the agent sent it (checked)."""

    seq: int
    at: datetime
    state: str
    app: str | None
    title: str | None


@dataclass
class Span:
    """A span being merged: `pk` is set for the stored span the batch may extend."""

    start: datetime
    end: datetime
    state: str
    app: str | None
    title: str | None
    pk: int | None = None
    extended: bool = False

    def says(self, beat: Heartbeat) -> bool:
        """Whether the heartbeat reports the same as this span."""
        return (self.state, self.app, self.title) == (beat.state, beat.app, beat.title)


def parse_time(value: Any) -> datetime:
    """An ISO 8601 moment; naive ones are UTC (the agent sends UTC with Z)."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("not a time")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def clock_ahead(seconds: float) -> str:
    """The error for a time in the future: how far the PC's clock is ahead of the server's."""
    return f"in the future: the PC's clock is {int(seconds)} s ahead"


def parse_heartbeats(payload: Any, *, now: datetime | None = None) -> list[Heartbeat]:
    """The batch of a request body, checked; FieldErrors naming the first bad field as
    heartbeats[3].state."""
    if not isinstance(payload, dict) or not isinstance(payload.get("heartbeats"), list):
        raise FieldErrors.one("heartbeats", "a list of heartbeats is required")
    items = payload["heartbeats"]
    if len(items) > MAX_BATCH:
        raise FieldErrors.one("heartbeats", f"at most {MAX_BATCH} heartbeats per batch")
    now = now or timezone.now()
    latest = now + CLOCK_SKEW
    beats = []
    for i, item in enumerate(items):
        where = f"heartbeats[{i}]"
        if not isinstance(item, dict):
            raise FieldErrors.one(where, "an object")
        seq = item.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq < 2**63:
            raise FieldErrors.one(f"{where}.seq", "a positive whole number")
        try:
            at = parse_time(item.get("at"))
        except ValueError:
            raise FieldErrors.one(f"{where}.at", "an ISO 8601 time") from None
        if at > latest:
            raise FieldErrors.one(f"{where}.at", clock_ahead((at - now).total_seconds()))
        state = item.get("state")
        if state not in ActivityState.values:
            raise FieldErrors.one(f"{where}.state", "one of active, idle, locked")
        app, title = item.get("app"), item.get("title")
        for name, value in (("app", app), ("title", title)):
            if value is not None and not isinstance(value, str):
                raise FieldErrors.one(f"{where}.{name}", "text or null")
        beats.append(Heartbeat(seq, at, str(state), app or None, title or None))
    return beats


def merge(open_span: Span | None, beats: Iterable[Heartbeat], pulse: timedelta) -> list[Span]:
    """The spans a batch leaves: the open span (extended or not) first when given, then the
    new ones, in seq order. Pure: the unit tests call it directly."""
    current = replace(open_span) if open_span else None
    spans = [current] if current else []
    for beat in sorted(beats, key=lambda b: b.seq):
        if current is not None:
            within = current.start <= beat.at <= current.end + pulse
            if within and current.says(beat) and beat.at - current.start <= MAX_SPAN:
                if beat.at > current.end:
                    current.end = beat.at
                    current.extended = True
                continue
            if current.end < beat.at <= current.end + pulse:
                # The old state held until the change was seen.
                current.end = beat.at
                current.extended = True
        current = Span(beat.at, beat.at, beat.state, beat.app, beat.title)
        spans.append(current)
    return spans


class Redactor:
    """What the server does to a program name and title before keeping it: the project's
    patterns again (an old agent may not know the newest), phone-shaped runs always (a
    window title of a CRM page may carry a number, and the timeline's readers need not have
    the right to see numbers), and the policy's "no titles"."""

    def __init__(self, policy: MonitoringPolicy) -> None:
        self.titles = policy.window_titles
        self.patterns = [re.compile(p) for p in policy.redact_patterns or []]

    def clean(self, text: str | None, limit: int) -> str | None:
        """The text as stored, or None."""
        if not self.titles or not text:
            return None
        for pattern in self.patterns:
            text = pattern.sub(REDACTED, text)
        return redact(text)[:limit] or None

    def beat(self, beat: Heartbeat) -> Heartbeat:
        """The heartbeat with its program and title cleaned."""
        return replace(
            beat, app=self.clean(beat.app, MAX_APP), title=self.clean(beat.title, MAX_TITLE)
        )


@dataclass(frozen=True)
class Ingested:
    """What a batch did: how many heartbeats were new, and the device's last seq."""

    accepted: int
    last_seq: int


def _as_span(row: ActivitySpan | None) -> Span | None:
    if row is None:
        return None
    return Span(row.started_at, row.ended_at, row.state, row.app, row.title, pk=row.pk)


def _newest_id(device: Device) -> int | None:
    """The device's newest span, for a database that does not return inserted ids."""
    newest = ActivitySpan.objects.filter(device_id=device.pk).order_by("-id")
    return newest.values_list("id", flat=True).first()


@transaction.atomic
def do_ingest_heartbeats(
    device: Device, beats: Sequence[Heartbeat], *, ip: str | None = None
) -> Ingested:
    """Merge a checked batch into the device's spans. Heartbeats at or below the device's
    last accepted seq are ignored (a retry after a lost answer adds nothing); those outside
    the policy's working hours are accepted and dropped (nothing is kept outside them)."""
    project = device.project
    policy = project.monitoring_policy
    # The lock makes a retry arriving while its first attempt still runs wait, then find
    # its heartbeats accepted; the device's newest span comes with it in the same query.
    locked = (
        Device.objects.select_for_update(of=("self",))
        .select_related("open_span")
        .only("last_seq", "open_span")
        .get(pk=device.pk)
    )
    fresh: dict[int, Heartbeat] = {}
    for beat in beats:
        if beat.seq > locked.last_seq and beat.seq not in fresh:
            fresh[beat.seq] = beat
    now = timezone.now()
    if not fresh:
        # A retry of a batch already taken: the agent is alive and its clock is fine.
        Device.objects.filter(pk=device.pk).update(last_heartbeat_at=now)
        return Ingested(0, locked.last_seq)
    last_seq = max(fresh)
    newest = locked.open_span_id
    redactor = Redactor(policy)
    kept = [redactor.beat(b) for b in fresh.values() if in_working_hours(policy, project, b.at)]
    if kept:
        spans = merge(_as_span(locked.open_span), kept, timedelta(seconds=pulse_seconds(policy)))
        for span in spans:
            if span.pk is not None and span.extended:
                ActivitySpan.objects.filter(pk=span.pk).update(ended_at=span.end)
        created = ActivitySpan.objects.bulk_create(
            [
                ActivitySpan(
                    device_id=device.pk,
                    membership_id=device.membership_id,
                    project_id=device.project_id,
                    started_at=s.start,
                    ended_at=s.end,
                    state=s.state,
                    app=s.app,
                    title=s.title,
                )
                for s in spans
                if s.pk is None
            ]
        )
        if created:
            # PostgreSQL and SQLite 3.35+ return the new ids from the bulk insert.
            newest = created[-1].pk or _newest_id(device)
    Device.objects.filter(pk=device.pk).update(
        last_seq=last_seq,
        last_seen_at=now,
        last_heartbeat_at=now,
        last_ip=ip,
        open_span_id=newest,
    )
    device.last_seq, device.last_seen_at, device.last_ip = last_seq, now, ip
    device.last_heartbeat_at = now
    return Ingested(len(fresh), last_seq)
