"""Calls: starting one from the order card, the PBX spending a call token, the PBX reporting
how a call goes, and the PBX asking who an inbound caller is.

Each is one action that records itself (as the member, or as the PBX: `Actor.pbx`). No event,
exception or log line here carries a number: the number is opened only in the providers and
in `do_resolve_token`, and handed straight back to the PBX.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.accounts.models import Membership, Role
from callvault.accounts.notices import notify_owners
from callvault.audit.bypass import ATTESTED_SETTING
from callvault.audit.context import current
from callvault.audit.recorder import diff, record_event, record_update
from callvault.lib.errors import FieldErrors
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order, StatusGroup
from callvault.telephony import throttle
from callvault.telephony.models import (
    FINAL_STATES,
    Call,
    CallDirection,
    CallState,
    CallToken,
    Pbx,
    SipAccount,
    TelephonySettings,
)
from callvault.telephony.pbx_auth import fetch_prepared
from callvault.telephony.providers import (
    Provider,
    ProviderError,
    StartResult,
    provider_for,
)
from callvault.telephony.providers.sip_token import TOKEN_PATTERN, hash_token
from callvault.telephony.setup_actions import NAME_PUNCTUATION, settings_for
from callvault.vault.actions import PHONE_FIELD
from callvault.vault.logfilter import redact
from callvault.vault.phones import PhoneError, blind_index, open_phone, parse_phone

log = logging.getLogger(__name__)

AUDIT_ACTIONS = {
    "call.start": gettext_lazy("Call started"),
    "call.refused": gettext_lazy("Call refused"),
    "call.dial": gettext_lazy("Call token dialled"),
    "call.token_refused": gettext_lazy("Call token refused"),
    "call.state": gettext_lazy("Call state changed"),
    "call.inbound": gettext_lazy("Incoming call"),
    "call.inbound_limited": gettext_lazy("Incoming call lookups limited"),
}


class CallRefused(Exception):
    """The member may not start this call now; `message` says why in plain words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


def _refuse(member: Membership, order: Order, code: str, message: str) -> CallRefused:
    """A refusal on record (a pattern of tries is for the owner to see)."""
    record_event(
        "call.refused",
        project_id=order.project_id,
        object_type="order",
        object_id=order.pk,
        object_repr=str(order),
        extra={"reason": code},
    )
    return CallRefused(code, message)


def _caller_account(
    member: Membership, order: Order, settings: TelephonySettings, provider: Provider
) -> SipAccount | None:
    """The checks before a call; the member's SIP account when the provider needs one."""
    visible = Order.objects.visible_to(member).filter(pk=order.pk).exists()
    if not (member.is_active and member.can_edit_orders and visible):
        raise _refuse(member, order, "forbidden", _("You may not call about this order."))
    if member.role == Role.TRAINEE and not settings.trainees_may_call:
        raise _refuse(member, order, "trainee", _("Trainees may not call in this project."))
    if not order.phone_sealed:
        raise _refuse(member, order, "no_number", _("This order has no phone number to call."))
    if not provider.needs_sip_account:
        return None
    account = (
        SipAccount.objects.filter(membership_id=member.pk, is_active=True).first()
        if member.pk is not None
        else None
    )
    if account is None:
        raise _refuse(
            member,
            order,
            "no_sip_account",
            _("You have no active SIP account: ask an admin to create one."),
        )
    return account


def do_start_call(member: Membership, order: Order) -> tuple[Call, StartResult]:
    """Start a call to the order's customer through the project's provider.

    The caller (the order card's view) has checked access to the card and charged the
    call quota. Refusals raise CallRefused. The call is recorded (`call.start`) before the
    provider is asked; a provider on the network is asked outside that transaction, and
    what it answered is recorded as the call's state (`call.state`).
    """
    settings = settings_for(order.project)
    provider = provider_for(settings.provider)
    if provider is None:
        raise CallRefused("no_provider", _("No telephony provider is configured for this project."))
    if provider.missing(settings):
        raise CallRefused(
            "not_configured", _("Telephony is not completely set up yet: tell an admin.")
        )
    account = _caller_account(member, order, settings, provider)
    with transaction.atomic():
        call = Call.objects.create(
            project_id=order.project_id,
            order=order,
            member=member.user,
            member_name=member.user.get_username(),
            provider=provider.kind,
            direction=CallDirection.OUTBOUND,
        )
        record_event(
            "call.start",
            project_id=order.project_id,
            object_type="call",
            object_id=call.pk,
            object_repr=str(call),
            changes={
                "order": [None, order.number],
                "provider": [None, provider.kind],
                "state": [None, call.state],
            },
            extra={"order_id": order.pk, "sip_account": account.username if account else ""},
        )
        if not provider.remote:
            result = _ask(provider, call, member, settings, account)
            _apply_start(call, result)
    if provider.remote:
        result = _ask(provider, call, member, settings, account)
        with transaction.atomic():
            _apply_start(call, result)
    return call, result


def _ask(
    provider: Provider,
    call: Call,
    member: Membership,
    settings: TelephonySettings,
    account: SipAccount | None,
) -> StartResult:
    try:
        return provider.start(call, member, settings, account)
    except ProviderError as exc:
        log.warning("call %s not started: %s", call.pk, redact(str(exc)))
        return StartResult(
            ok=False,
            message=_("The call could not be started. Try again, or tell an admin."),
            state=CallState.FAILED,
            result=str(exc)[:100],
        )


def _apply_start(call: Call, result: StartResult) -> None:
    locked = Call.objects.select_for_update().get(pk=call.pk)
    transition(
        locked,
        result.state or locked.state,
        cause=result.result,
        external_id=result.external_id,
    )
    call.state = locked.state


# --- The state machine ----------------------------------------------------------------------

# Progress of a call that is not over: a state never goes back to an earlier one.
RANK: dict[str, int] = {
    CallState.NEW: 0,
    CallState.DIALING: 1,
    CallState.RINGING: 2,
    CallState.ANSWERED: 3,
}

EVENT_STATES = {
    "ringing": CallState.RINGING,
    "answered": CallState.ANSWERED,
    "ended": CallState.ENDED,
    "busy": CallState.BUSY,
    "no_answer": CallState.NO_ANSWER,
    "cancelled": CallState.CANCELLED,
    "failed": CallState.FAILED,
}


def _call_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The diff, with PBX-supplied text (cause, the PBX's id) blanked where phone-shaped."""
    changes = diff(before, after)
    for name in ("result", "external_id"):
        if name in changes:
            changes[name] = [redact(v) if isinstance(v, str) else v for v in changes[name]]
    return changes


def transition(
    call: Call,
    state: str,
    *,
    at: datetime | None = None,
    duration: int | None = None,
    cause: str = "",
    external_id: str = "",
) -> dict[str, Any]:
    """Move a call (locked by the caller) forward to `state`, recorded as `call.state`; the
    changes ({} when nothing moved). A call that is over stays over, and a call that is not
    never moves back (a repeated or late event changes nothing)."""
    if call.state in FINAL_STATES:
        return {}
    when = at or timezone.now()
    values: dict[str, Any] = {}
    forward = state in FINAL_STATES or RANK.get(state, 0) > RANK.get(call.state, 0)
    if state != call.state and forward:
        values["state"] = state
        if state == CallState.ANSWERED and call.answered_at is None:
            values["answered_at"] = when
        if state in FINAL_STATES:
            values["ended_at"] = when
            answered = call.answered_at
            if duration is None and answered is not None:
                duration = max(0, int((when - answered).total_seconds()))
            if duration is not None:
                values["duration_seconds"] = duration
        if cause:
            values["result"] = cause[:100]
    if external_id and external_id != call.external_id:
        values["external_id"] = external_id[:200]
    if not values:
        return {}
    return record_update(
        "call.state",
        call,
        values,
        project_id=call.project_id,
        object_type="call",
        object_repr=str(call),
        changes_of=_call_changes,
    )


def do_record_call_event(
    pbx: Pbx,
    call_id: int,
    event: str,
    *,
    at: datetime | None = None,
    duration: int | None = None,
    cause: str = "",
    external_id: str = "",
) -> Call:
    """What the PBX says happened to a call of its project; LookupError for any other call,
    FieldErrors for an unknown event."""
    if event not in EVENT_STATES:
        raise FieldErrors.one("event", "one of " + ", ".join(EVENT_STATES))
    with transaction.atomic():
        call = (
            Call.objects.select_for_update().filter(pk=call_id, project_id=pbx.project_id).first()
        )
        if call is None:
            raise LookupError("no such call")
        transition(
            call,
            EVENT_STATES[event],
            at=at,
            duration=duration,
            cause=cause,
            external_id=external_id,
        )
    return call


def call_id_for_token(pbx: Pbx, token: str) -> int | None:
    """The call a token of the PBX's project was issued for (spent or not, expired or not:
    a proxy reports a call's progress by the token its operator dialled); None if unknown."""
    if not TOKEN_PATTERN.fullmatch(token):
        return None
    found: int | None = (
        CallToken.objects.filter(token_hash=hash_token(token), call__project_id=pbx.project_id)
        .values_list("call_id", flat=True)
        .first()
    )
    return found


# --- Token lookup ---------------------------------------------------------------------------
#
# A SIP proxy worker waits on this, and on a loaded machine each round trip to the database
# costs it about as much as the work it carries (docs/benchmarks.md, "Token resolution"). So
# a lookup is one read (the token and everything that decides it), carried in the statement
# that reads the PBX (`token_read`, pbx_auth.RideAlong); then either the refusal's event, or
# on PostgreSQL one statement that spends the token, moves the call and records the event
# (SQLite, which has no data-modifying WITH, takes those steps one by one).


class TokenRefused(Exception):
    """The token does not open a number: `status` is the HTTP answer, `word` its body."""

    def __init__(self, status: int, word: str) -> None:
        super().__init__(word)
        self.status = status
        self.word = word


UNKNOWN, FORBIDDEN, GONE = (404, "unknown"), (403, "forbidden"), (410, "gone")


@dataclass(frozen=True)
class _Found:
    """What the lookup read of a token: enough to spend it, or to say why not."""

    token_id: int
    call_id: int
    project_id: int
    username: str
    active: bool  # the SIP account and its membership
    used: bool
    expired: bool
    phone_sealed: str  # the order's, "" when the call has no order or the order no number
    order_project_id: int | None


# Plain SQL rather than the ORM: building the joined query cost several times what the
# database spends running it. The database answers "used?" and "expired?" itself, so no
# datetime needs converting on the way back (SQLite returns them naive).
# One row by the token's unique hash: a read that tells nothing by its timing, so it may run
# before the PBX is authenticated, in the PBX's own statement.
_READ_SQL = """
    SELECT t.id, t.call_id, c.project_id, s.username,
           s.is_active AND m.is_active AS active, t.used_at IS NOT NULL AS used,
           t.expires_at <= %(now)s AS expired,
           COALESCE(o.phone_sealed, '') AS phone_sealed, o.project_id AS order_project_id
    FROM telephony_calltoken t
    JOIN telephony_call c ON c.id = t.call_id
    JOIN telephony_sipaccount s ON s.id = t.sip_account_id
    JOIN accounts_membership m ON m.id = s.membership_id
    LEFT JOIN orders_order o ON o.id = c.order_id
    WHERE t.token_hash = %(hash)s
"""


@dataclass(frozen=True)
class TokenRead:
    """The read that decides a token's lookup (a pbx_auth.RideAlong), and its moment."""

    sql: str
    params: dict[str, Any]
    now: datetime


def token_read(token: str) -> TokenRead | None:
    """The read of a lookup of `token`, for the PBX's authentication to carry; None when the
    text is no token (a plain number dialled), which costs no read at all."""
    if not TOKEN_PATTERN.match(token):
        return None
    now = timezone.now()
    params = {"hash": hash_token(token), "now": connection.ops.adapt_datetimefield_value(now)}
    return TokenRead(_READ_SQL, params, now)


# PostgreSQL: spending is one statement, so one round trip and one commit. It names the rows
# the read found by their keys, so its plan never depends on the tables' statistics (naming
# the token by its hash and the project, a generic plan on freshly loaded tables walked every
# call of the project), and checks again on the row it updates what may have changed since:
# of two lookups at once, the second waits for the first's row lock, then finds used_at set
# and spends nothing; an account or member deactivated since spends nothing either. The
# event is written by the same statement as the writes it explains, so the statement attests
# them (audit/bypass.py, ATTESTED_SETTING): the bypass triggers on telephony_calltoken and
# telephony_call drop these two updates at once instead of looking for the event at COMMIT.
# The setting is made in the token's WHERE, before its row is written; the call is moved
# only after the token is spent.
_SPEND_SQL = """
    WITH spent AS (
        UPDATE telephony_calltoken t SET used_at = %(now)s
        WHERE t.id = %(token)s AND t.used_at IS NULL AND t.expires_at > %(now)s
          AND set_config(%(attested)s, 'call:' || t.call_id, true) IS NOT NULL
          AND EXISTS (
            SELECT 1 FROM telephony_sipaccount s
            JOIN accounts_membership m ON m.id = s.membership_id
            WHERE s.id = t.sip_account_id AND s.is_active AND m.is_active
          )
        RETURNING t.call_id
    ), moved AS (
        UPDATE telephony_call SET state = %(dialing)s
        WHERE id = %(call)s AND state = %(new)s AND EXISTS (SELECT 1 FROM spent)
        RETURNING id
    ), recorded AS (
        INSERT INTO audit_auditevent (created_at, project_id, actor_kind, actor_id,
            actor_name, action, object_type, object_id, object_repr, changes, extra, ip,
            user_agent, request_id)
        SELECT %(now)s, %(project)s, %(kind)s, %(actor_id)s, %(actor_name)s, 'call.dial',
            'call', spent.call_id::text, 'call ' || spent.call_id,
            CASE WHEN EXISTS (SELECT 1 FROM moved) THEN %(moved_changes)s::jsonb
                ELSE '{}'::jsonb END,
            %(extra)s::jsonb, %(ip)s::inet, %(ua)s, %(request_id)s
        FROM spent
    )
    SELECT EXISTS (SELECT 1 FROM spent)
"""


def _dial_changes(moved: bool) -> dict[str, Any]:
    return {"state": [str(CallState.NEW), str(CallState.DIALING)]} if moved else {}


def _spend_postgresql(found: _Found, params: dict[str, Any], now: datetime) -> bool:
    ctx = current()
    row = fetch_prepared(
        _SPEND_SQL,
        params
        | {
            "token": found.token_id,
            "call": found.call_id,
            "attested": ATTESTED_SETTING,
            "dialing": str(CallState.DIALING),
            "new": str(CallState.NEW),
            "moved_changes": json.dumps(_dial_changes(True)),
            "kind": str(ctx.actor.kind),
            "actor_id": ctx.actor.id[:64],
            "actor_name": ctx.actor.name[:200],
            "extra": json.dumps({"sip_account": params["operator"]}),
            "ip": ctx.ip,
            "ua": ctx.user_agent[:400],
            "request_id": ctx.request_id,
        },
    )
    return bool(row and row[0])


@transaction.atomic
def _spend_sqlite(found: _Found, params: dict[str, Any], now: datetime) -> bool:
    spent = CallToken.objects.filter(
        pk=found.token_id,
        used_at__isnull=True,
        expires_at__gt=now,
        sip_account__is_active=True,
        sip_account__membership__is_active=True,
    ).update(used_at=now)
    if not spent:
        return False
    moved = Call.objects.filter(pk=found.call_id, state=CallState.NEW).update(
        state=CallState.DIALING
    )
    record_event(
        "call.dial",
        project_id=found.project_id,
        object_type="call",
        object_id=found.call_id,
        object_repr=f"call {found.call_id}",
        changes=_dial_changes(bool(moved)),
        extra={"sip_account": params["operator"]},
    )
    return True


def _why_refused(
    found: _Found | None, project_id: int, operator: str
) -> tuple[tuple[int, str], str] | None:
    """The answer and the recorded reason when the token may not be spent; None if it may."""
    if found is None or found.project_id != project_id:
        return UNKNOWN, "unknown"
    if found.username != operator or not found.active:
        return FORBIDDEN, "other_operator"
    if found.used:
        return GONE, "used"
    if found.expired:
        return GONE, "expired"
    if not found.phone_sealed:  # the order lost its number since the token was issued
        return GONE, "no_number"
    return None


def do_resolve_token(
    pbx: Pbx,
    token: str,
    operator: str,
    read: tuple[TokenRead, tuple[Any, ...] | None] | None = None,
) -> tuple[int, str]:
    """The number a call token stands for, once: (the call's id, its E.164 number).

    The token must be this project's, dialled by the SIP account it was issued to, unused
    and unexpired; it is spent by one conditional UPDATE, so of two lookups at once exactly
    one gets the number. Spending it records `call.dial` (as the PBX) and moves the call to
    dialing. Raises TokenRefused (404 unknown, 403 another operator's, 410 used or expired),
    recorded as `call.token_refused`. `read` is `token_read(token)` already run, with the
    row it found (the resolve endpoint has it carried in the PBX's statement); without it
    the token is read here.
    """
    found = None
    refused = UNKNOWN, "unknown"
    if read is None and (ride := token_read(token)) is not None:
        read = ride, fetch_prepared(ride.sql, ride.params)
    if read is not None:
        ride, row = read
        now = ride.now
        params = ride.params | {"project": pbx.project_id, "operator": operator}
        found = _Found(*row) if row else None
        why = _why_refused(found, pbx.project_id, operator)
        if found is not None and why is None:
            assert found.order_project_id is not None  # spendable only with its number
            # Opened before anything is spent: should the vault fail to open it, the token,
            # the call and the record stay as they were.
            number = open_phone(
                found.phone_sealed, project_id=found.order_project_id, field=PHONE_FIELD
            )
            spend = _spend_postgresql if connection.vendor == "postgresql" else _spend_sqlite
            if spend(found, params, now):
                return found.call_id, number
            why = GONE, "used"  # another lookup spent it since it was read
        refused = why or refused
    answer, reason = refused
    known = found is not None and answer != UNKNOWN
    record_event(
        "call.token_refused",
        project_id=pbx.project_id,
        object_type="call" if known else "pbx",
        object_id=found.call_id if known and found else pbx.pk,
        extra={"reason": reason, "answer": answer[0]},
    )
    raise TokenRefused(*answer)


# --- Inbound ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundAnswer:
    """What the PBX is told about a caller: never the caller's number."""

    display_name: str
    order_number: int | None
    operator: str | None
    call: Call


# The longest display name the PBX is given ("Order 1042 - " and a first name of 40).
DISPLAY_NAME_MAX = 64


def sip_display_name(text: str) -> str:
    """The text as the operator's phone may show it in a SIP header: letters, digits 0-9,
    spaces and - . ' only (no quote, backslash, angle bracket or semicolon to end the
    display name's field and start a URI or a parameter), cut to DISPLAY_NAME_MAX."""
    kept = "".join(
        ch if ch.isalpha() or ch in "0123456789" + NAME_PUNCTUATION else " " for ch in text
    )
    return " ".join(kept.split())[:DISPLAY_NAME_MAX].strip()


def display_name(order: Order) -> str:
    """'Order 1042 - Ivan': the order and the customer's first name, letters only (a name
    comes from a landing page's form: no digit, quote or bracket of it gets through)."""
    words = "".join(
        ch if ch.isalpha() or ch in NAME_PUNCTUATION else " " for ch in order.customer_name
    ).split()
    name = next((w.strip(NAME_PUNCTUATION) for w in words if w.strip(NAME_PUNCTUATION)), "")
    shown = _("Order %(number)s") % {"number": order.number}
    return sip_display_name(f"{shown} - {name[:40]}" if name else shown)


def _newest_open_order(project_id: int, e164: str) -> Order | None:
    return (
        Order.objects.filter(
            project_id=project_id,
            phone_index=blind_index(e164, project_id=project_id),
            status__group=StatusGroup.PROCESSING,
        )
        .order_by("-created_at", "-id")
        .first()
    )


def _operator_of(order: Order) -> SipAccount | None:
    """The assigned operator's active SIP account, to route the caller to."""
    if order.assigned_to_id is None:
        return None
    return (
        SipAccount.objects.select_related("membership__user")
        .filter(
            project_id=order.project_id,
            membership__user_id=order.assigned_to_id,
            membership__is_active=True,
            is_active=True,
        )
        .first()
    )


INBOUND_WINDOW_SECONDS = 60
DEFAULT_INBOUND_PER_MINUTE = 60


def inbound_limit() -> int:
    """How many caller lookups a PBX may make per minute (TELEPHONY_INBOUND_PER_MINUTE)."""
    return int(getattr(django_settings, "TELEPHONY_INBOUND_PER_MINUTE", DEFAULT_INBOUND_PER_MINUTE))


class InboundLimited(Exception):
    """The PBX asked about more callers this minute than the limit allows."""


def _count_inbound(pbx: Pbx) -> None:
    """Count the lookup; past the limit, InboundLimited. The first refusal of a window is
    recorded and told to the owners: a PBX asking about many numbers may be someone trying
    numbers to learn whose they are."""
    limit = inbound_limit()
    count = throttle.count(f"telephony:inbound:{pbx.pk}", INBOUND_WINDOW_SECONDS)
    if count <= limit:
        return
    if count == limit + 1:
        with transaction.atomic():
            event = record_event(
                "call.inbound_limited",
                project_id=pbx.project_id,
                object_type="pbx",
                object_id=pbx.pk,
                object_repr=str(pbx),
                extra={"limit": limit, "window_seconds": INBOUND_WINDOW_SECONDS},
            )
            notify_owners(
                pbx.project_id,
                "inbound_limited",
                {"name": pbx.name, "limit": limit},
                event_id=event.pk,
            )
    raise InboundLimited


def do_inbound_call(pbx: Pbx, caller: str) -> InboundAnswer:
    """Who is calling: the newest open order for the caller's number (by its blind index),
    else a neutral name and, if the project wants it, a new order. Records the inbound call
    (with the new order, in one transaction). InboundLimited past the PBX's lookups a minute."""
    _count_inbound(pbx)
    project = pbx.project
    settings = settings_for(project)
    try:
        e164: str | None = parse_phone(caller, region=project.default_region).e164
    except PhoneError:
        e164 = None
    with transaction.atomic():
        order = _newest_open_order(project.pk, e164) if e164 else None
        known = order is not None
        if order is None and e164 and settings.create_order_for_unknown:
            order = do_create_order(project, Lead(phone=e164, source="inbound call")).order
        account = _operator_of(order) if known and order is not None else None
        call = Call.objects.create(
            project_id=project.pk,
            order=order,
            member=account.membership.user if account else None,
            member_name=account.membership.user.get_username() if account else "",
            provider=settings.provider,
            direction=CallDirection.INBOUND,
            state=CallState.RINGING,
        )
        record_event(
            "call.inbound",
            project_id=project.pk,
            object_type="call",
            object_id=call.pk,
            object_repr=str(call),
            changes={
                "order": [None, order.number if order else None],
                "state": [None, call.state],
            },
            extra={
                "known_caller": known,
                "order_created": order is not None and not known,
                "valid_number": e164 is not None,
                "sip_account": account.username if account else "",
            },
        )
    shown = (
        display_name(order)
        if known and order is not None
        # Checked when saved; cleaned again for a name saved before that check.
        else sip_display_name(settings.unknown_caller_name) or _("New caller")
    )
    return InboundAnswer(
        display_name=shown,
        order_number=order.number if order else None,
        operator=account.username if account else None,
        call=call,
    )
