"""A member's day for the timeline page: activity spans, programs, screenshots and the
member's CRM actions from the audit trail, on one axis of the local day.

The axis is drawn as SVG in real minutes since local midnight (x and width are attributes,
which the strict content security policy allows, unlike inline styles): a day on which the
clocks change is 23 or 25 hours long, and its hour lines stand where those hours really
begin. All arithmetic is on UTC moments: Python subtracts two datetimes of the same zone by
their wall clocks, which is an hour off across a change. Consecutive spans with the same
state (or program) are drawn as one bar; what is not covered by any span is offline.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, QuerySet
from django.db.models.functions import TruncMinute
from django.utils import timezone
from django.utils.translation import gettext as _

from callvault.accounts.models import Membership
from callvault.audit.labels import action_label
from callvault.audit.models import ActorKind
from callvault.audit.queries import in_time, project_events
from callvault.monitoring.heartbeats import LONGEST_SPAN
from callvault.monitoring.models import ActivitySpan, ActivityState, Screenshot

APP_COLOURS = 8
# The span table below the axis; the axis itself shows every span.
SPAN_ROWS = 400
PROGRAM_ROWS = 15
TITLES_PER_PROGRAM = 3


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The start of the day on the viewer's clock, as a UTC moment."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def spans_between(member: Membership, start: datetime, end: datetime) -> QuerySet[ActivitySpan]:
    """The member's spans touching [start, end), oldest first. Spans are at most
    LONGEST_SPAN long (heartbeats.py), so the index range starts that much before `start`."""
    return ActivitySpan.objects.filter(
        project_id=member.project_id,
        membership_id=member.pk,
        started_at__gte=start - LONGEST_SPAN,
        started_at__lt=end,
        ended_at__gte=start,
    ).order_by("started_at", "id")


@dataclass
class Bar:
    """A stretch on the axis: x and width in minutes since midnight."""

    x: float
    width: float
    css: str
    label: str
    start: datetime
    end: datetime


@dataclass
class ActionMinute:
    """The member's CRM actions in one minute: "opened 300 order cards at 14:02"."""

    at: datetime
    x: float
    total: int
    items: list[tuple[str, int]]
    css: str
    # The bar's height on the 26-unit lane: a few actions low, hundreds full.
    height: int = 8

    @property
    def y(self) -> int:
        """The bar's top: bars stand on the axis's bottom edge."""
        return 100 - self.height


@dataclass
class Program:
    """Time in front of one program that day, with its longest window titles."""

    app: str
    seconds: float
    titles: list[tuple[str, float]]

    @property
    def css(self) -> str:
        """The program's colour on the axis."""
        return app_colour(self.app)

    @property
    def shown(self) -> str:
        """Its time, as people read it."""
        return duration(self.seconds)


@dataclass
class Day:
    """Everything the timeline page draws for one member and day."""

    day: date
    zone: ZoneInfo
    start: datetime
    end: datetime
    minutes: float
    states: list[Bar] = field(default_factory=list)
    apps: list[Bar] = field(default_factory=list)
    offline: list[Bar] = field(default_factory=list)
    spans: list[ActivitySpan] = field(default_factory=list)
    more_spans: int = 0
    programs: list[Program] = field(default_factory=list)
    shots: list[tuple[float, Screenshot]] = field(default_factory=list)
    # Screenshots taken that day that this viewer may not see (access.may_see_screens).
    hidden_shots: int = 0
    actions: list[ActionMinute] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)

    @property
    def hours(self) -> list[tuple[int, float]]:
        """(hour on the local clock, x) of the hour lines and labels, one per real hour:
        23 on the day the clocks go forward (no 02), 25 on the day they go back (02 twice)."""
        count = int(self.minutes // 60)
        moments = (self.start + timedelta(hours=n) for n in range(count))
        return [(m.astimezone(self.zone).hour, _minutes(m, self.start)) for m in moments]

    def shown_totals(self) -> list[tuple[str, str, str]]:
        """(css, label, duration) of the day's active, idle, locked and offline time."""
        labels = {**dict(ActivityState.choices), "offline": _("Offline")}
        return [
            (f"s-{name}", str(labels[name]), duration(self.totals.get(name, 0.0)))
            for name in (*ActivityState.values, "offline")
        ]

    def counts(self) -> dict[str, int]:
        """What the page showed, for its audit event."""
        shown = {
            "spans": len(self.spans) + self.more_spans,
            "screenshots": len(self.shots),
            "actions": sum(m.total for m in self.actions),
        }
        if self.hidden_shots:
            shown["screenshots_hidden"] = self.hidden_shots
        return shown


def duration(seconds: float) -> str:
    """A length of time as people read it: "5 h 12 min", "7 min", "40 s"."""
    whole = int(seconds)
    hours, minutes = whole // 3600, whole % 3600 // 60
    if hours:
        return _("%(h)s h %(m)s min") % {"h": hours, "m": minutes}
    if minutes:
        return _("%(m)s min") % {"m": minutes}
    return _("%(s)s s") % {"s": whole}


def _clip(span: ActivitySpan, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    return max(span.started_at, start), min(span.ended_at, end)


def _minutes(moment: datetime, start: datetime) -> float:
    """Real minutes from start to moment (through UTC: see the module's docstring)."""
    return round((moment.astimezone(UTC) - start.astimezone(UTC)).total_seconds() / 60, 2)


def app_colour(app: str | None) -> str:
    """A stable colour class per program name (the same program, the same colour daily)."""
    if not app:
        return "app-none"
    return f"app-{zlib.crc32(app.encode()) % APP_COLOURS}"


def _bars(
    spans: Iterable[ActivitySpan],
    start: datetime,
    end: datetime,
    key: Any,
    css: Any,
    label: Any,
) -> list[Bar]:
    """Spans as bars, touching spans with the same key drawn as one."""
    bars: list[Bar] = []
    last_key: Any = object()
    for span in spans:
        left, right = _clip(span, start, end)
        if bars and key(span) == last_key and left <= bars[-1].end:
            if right > bars[-1].end:
                bars[-1].end = right
            continue
        bars.append(Bar(0, 0, css(span), label(span), left, right))
        last_key = key(span)
    for bar in bars:
        bar.x = _minutes(bar.start, start)
        # Never thinner than a minute: a lone heartbeat is still seen.
        bar.width = max(_minutes(bar.end, start) - bar.x, 1.0)
    return bars


def _union(bars: Iterable[Bar]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for bar in sorted(bars, key=lambda b: b.start):
        if merged and bar.start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], bar.end))
        else:
            merged.append((bar.start, bar.end))
    return merged


def _offline(
    covered: list[tuple[datetime, datetime]], start: datetime, until: datetime
) -> list[Bar]:
    """The gaps between covered stretches, up to `until` (now, on today's timeline)."""
    gaps: list[Bar] = []
    cursor = start
    for left, right in [*covered, (until, until)]:
        if left > cursor and cursor < until:
            gap_end = min(left, until)
            x = _minutes(cursor, start)
            gaps.append(Bar(x, _minutes(gap_end, start) - x, "offline", "", cursor, gap_end))
        cursor = max(cursor, right)
    return gaps


def _programs(spans: list[ActivitySpan], start: datetime, end: datetime) -> list[Program]:
    seconds: dict[str, float] = defaultdict(float)
    titles: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for span in spans:
        if not span.app:
            continue
        left, right = _clip(span, start, end)
        length = max((right - left).total_seconds(), 0.0)
        seconds[span.app] += length
        if span.title:
            titles[span.app][span.title] += length
    top = sorted(seconds.items(), key=lambda item: -item[1])[:PROGRAM_ROWS]
    return [
        Program(
            app,
            total,
            sorted(titles[app].items(), key=lambda item: -item[1])[:TITLES_PER_PROGRAM],
        )
        for app, total in top
    ]


ACTION_LEVELS = ((50, "a-4", 26), (10, "a-3", 20), (3, "a-2", 14), (1, "a-1", 8))


def _action_level(total: int) -> tuple[str, int]:
    return next((css, height) for limit, css, height in ACTION_LEVELS if total >= limit)


def crm_actions(
    member: Membership, start: datetime, end: datetime, zone: ZoneInfo
) -> list[ActionMinute]:
    """The member's own audit events of [start, end) counted per minute and action (one
    grouped query over the actor index). Minutes are cut in UTC: cut on the local clock,
    the hour that repeats when the clocks go back would fold two real hours into one."""
    events = project_events(member.project_id).filter(
        actor_kind=ActorKind.MEMBER, actor_id=str(member.user_id)
    )
    rows = (
        in_time(events, start, end)
        .annotate(minute=TruncMinute("created_at", tzinfo=UTC))
        .values("minute", "action")
        .annotate(n=Count("id"))
        .order_by("minute", "action")
    )
    minutes: dict[datetime, list[tuple[str, int]]] = defaultdict(list)
    for row in rows:
        minutes[row["minute"]].append((str(action_label(row["action"])), int(row["n"])))
    out = []
    for at, items in sorted(minutes.items()):
        items.sort(key=lambda item: -item[1])
        total = sum(n for _label, n in items)
        css, height = _action_level(total)
        out.append(ActionMinute(at, _minutes(at, start), total, items, css, height))
    return out


def member_day(member: Membership, day: date, zone: ZoneInfo, *, screenshots: bool = True) -> Day:
    """The member's day on the viewer's clock (five queries: spans, screenshots, actions);
    without `screenshots`, they are only counted."""
    start = local_midnight(day, zone)
    end = local_midnight(day + timedelta(days=1), zone)
    result = Day(day, zone, start, end, _minutes(end, start))
    spans = list(spans_between(member, start, end))
    result.states = _bars(
        spans,
        start,
        end,
        key=lambda s: s.state,
        css=lambda s: f"s-{s.state}",
        label=lambda s: str(ActivityState(s.state).label),
    )
    result.apps = _bars(
        [s for s in spans if s.app],
        start,
        end,
        key=lambda s: s.app,
        css=lambda s: app_colour(s.app),
        label=lambda s: s.app or "",
    )
    covered = _union(result.states)
    until = min(end, max(start, timezone.now()))
    result.offline = _offline(covered, start, until)
    result.totals = {
        state: sum(
            (b.end - b.start).total_seconds() for b in result.states if b.css == f"s-{state}"
        )
        for state in ActivityState.values
    }
    result.totals["offline"] = sum((b.end - b.start).total_seconds() for b in result.offline)
    result.programs = _programs(spans, start, end)
    result.spans, result.more_spans = spans[:SPAN_ROWS], max(0, len(spans) - SPAN_ROWS)
    shots = Screenshot.objects.filter(
        project_id=member.project_id,
        membership_id=member.pk,
        taken_at__gte=start,
        taken_at__lt=end,
    ).order_by("taken_at", "pk")
    if screenshots:
        result.shots = [(_minutes(shot.taken_at, start), shot) for shot in shots]
    else:
        result.hidden_shots = shots.count()
    result.actions = crm_actions(member, start, end, zone)
    return result
