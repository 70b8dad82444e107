"""Who is asking on /pbx/v1/: a PBX, by its shared secret and from its allowed networks.

`Authorization: Bearer cvp_<prefix>_<random>`; the prefix finds the PBX, the SHA-256 of the
whole secret must match, the PBX must not be revoked (else 401), and the client address
(`callvault.lib.clientip`) must be inside the PBX's networks (else 403; a PBX saved without
any, before they were required, is refused too). The request then runs as the PBX
(`Actor.pbx`) with CSRF off: a secret in a header, not a cookie, is the credential.
Refusals are recorded by prefix and reason, never the secret, at most once per client
address and minute (`_refused`): anyone can send bad requests, and each must not cost a row
of the audit trail.

This runs before every request of a SIP proxy that waits on the answer (the token lookup,
docs/benchmarks.md "Token resolution"), so it reads the PBX with one plain statement, which
also proves a reused connection alive (no health check's `SELECT 1` before it), and an
endpoint may have its own first read carried in that statement (`RideAlong`): the lookup
reads the PBX and the token in one round trip.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import lru_cache, wraps
from typing import Any, Protocol, overload

from django.core.cache import cache
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from callvault.accounts.allowlist import IPNetwork, address_in, parse_networks
from callvault.audit.context import Actor, acting_as
from callvault.audit.recorder import record_event
from callvault.lib.clientip import client_ip
from callvault.telephony import throttle
from callvault.telephony.models import Pbx
from callvault.telephony.setup_actions import PBX_SECRET_PREFIX, hash_pbx_secret

LAST_USED_GRANULARITY_SECONDS = 60
# Refusals from one address: the first of each minute is recorded; the others are counted,
# and the count (kept a day) goes with the address's next event.
REFUSALS_WINDOW_SECONDS = 60
REFUSALS_KEPT_SECONDS = 24 * 3600

PbxView = Callable[..., HttpResponse]

# The PBX by its unique prefix, as plain SQL (prepared on PostgreSQL): building the
# equivalent ORM query (with the project joined) cost more than PostgreSQL's work for it.
# The database answers "revoked?" and "last use older than a minute?" itself, so no
# datetime needs converting here.
_FIELDS = ("id", "project_id", "name", "prefix", "secret_hash", "networks")
_PBX_SQL = (
    f"SELECT {', '.join(_FIELDS)}, revoked_at IS NOT NULL, "  # noqa: S608 (constants)
    "last_used_at IS NULL OR last_used_at < %(stale_before)s "
    "FROM telephony_pbx WHERE prefix = %(prefix)s"
)
_PBX_COLUMNS = len(_FIELDS) + 2


class RideAlong(Protocol):
    """An endpoint's first read, carried in the PBX's statement: `sql` a SELECT of at most
    one row whose first column is never NULL, with named parameters other than the PBX
    read's (`prefix`, `stale_before`). It runs whoever asks; what it found reaches the view
    only once the PBX is authenticated, so a read that reveals nothing by its timing (one
    row by a unique key) is what belongs here."""

    @property
    def sql(self) -> str: ...

    @property
    def params(self) -> Mapping[str, Any]: ...


@lru_cache(maxsize=16)
def _with_ride(sql: str) -> str:
    # Joined on nothing: the PBX's row (or none) and the ride's (or NULLs) side by side, so
    # neither read's plan depends on the other's.
    return f"SELECT pbx.*, ride.* FROM ({_PBX_SQL}) pbx LEFT JOIN ({sql}) ride ON 1 = 1"  # noqa: S608


# "Last used" needs no more precision than a minute: at most one write a minute per PBX,
# and the condition keeps several workers that saw it stale at once from writing it again.
# (last_used_at is bookkeeping for the bypass triggers: audit/bypass.py.)
_TOUCH_SQL = (
    "UPDATE telephony_pbx SET last_used_at = %s "
    "WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)"
)


def fetch_prepared(
    sql: str, params: Mapping[str, Any] | Sequence[Any], *, checks_connection: bool = False
) -> tuple[Any, ...] | None:
    """The first row of a statement PostgreSQL prepares once per connection (on its fifth
    run: psycopg's threshold), the server binding the parameters; elsewhere a plain query.

    For the few statements every PBX request runs: parsing and planning them cost
    PostgreSQL more than running them (docs/benchmarks.md, "Token resolution"). Django
    opens connections with prepare_threshold None (psycopg then never prepares) and its
    own cursors bind on the client and are never prepared, so lifting the threshold changes
    nothing else (orders/queue.py does the same for the claim). The cursor is wrapped as
    Django wraps its own, so query logging, assertNumQueries and execute wrappers see it.

    `checks_connection`: the statement only reads, so it may run twice, and as a request's
    first statement it stands in for Django's health check of a reused connection (a
    `SELECT 1` round trip of its own, CONN_HEALTH_CHECKS): should the connection have died
    since the last request, it is replaced and the read runs again on the new one.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()  # type: ignore[no-any-return]
    # What Django's own cursor() does first: a connection that died since the last request
    # is replaced rather than failing this one (by the health check, or by this read run
    # again), and no thread uses another's connection. (The health check's flags are set on
    # every connection by BaseDatabaseWrapper.connect; django-stubs do not list them.)
    db: Any = connection
    unchecked = db.connection is not None and db.health_check_enabled and not db.health_check_done
    standing_in = checks_connection and unchecked
    if not standing_in:
        connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    try:
        row = _run_prepared(sql, params)
    except (InterfaceError, OperationalError):
        # Inside a transaction nothing can be run again (nor by the health check's way).
        if not standing_in or connection.in_atomic_block or connection.is_usable():
            raise  # the statement failed, not the connection
        connection.close()
        connection.ensure_connection()  # a new connection: no health check is due
        row = _run_prepared(sql, params)
    db.health_check_done = True
    return row


def _run_prepared(sql: str, params: Mapping[str, Any] | Sequence[Any]) -> tuple[Any, ...] | None:
    # django-stubs do not know psycopg 3's server-binding cursor (Django 5.2 has it).
    from django.db.backends.postgresql.base import (  # type: ignore[attr-defined]
        ServerBindingCursor,
    )

    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = 5
    logged = connection.queries_logged
    wrap = connection.make_debug_cursor if logged else connection.make_cursor
    with wrap(ServerBindingCursor(raw)) as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if logged and connection.queries_log and connection.queries_log[-1]["sql"] is None:
        # psycopg keeps no text of a prepared execution: log what Django logs otherwise.
        compose = connection.ops.compose_sql  # type: ignore[attr-defined]  # PostgreSQL's own
        connection.queries_log[-1]["sql"] = compose(sql, params)
    return row  # type: ignore[no-any-return]


@lru_cache(maxsize=256)
def _networks(text: str) -> tuple[IPNetwork, ...]:
    return tuple(parse_networks(line for line in text.splitlines() if line.strip()))


def _bearer(request: HttpRequest) -> str:
    # META rather than request.headers, which copies every header on first use.
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _refused(pbx: Pbx | None, prefix: str, reason: str, ip: str, now: float | None = None) -> None:
    """Record a refusal, unless one from this address is already recorded this minute (then
    it is only counted); the event says how many went unrecorded since the address's last."""
    key = f"telephony:pbx-refused:{ip}"
    now = throttle.now() if now is None else now
    window = REFUSALS_WINDOW_SECONDS
    if throttle.count(key, window, now, keep=REFUSALS_KEPT_SECONDS) > 1:
        return
    extra: dict[str, Any] = {"prefix": prefix[:12], "reason": reason, "ip": ip}
    # The window of this address's last event: its count less the one recorded.
    last = cache.get(f"{key}:last")
    earlier = int(cache.get(last) or 0) if isinstance(last, str) else 0
    if earlier > 1:
        extra["unrecorded_before"] = earlier - 1
    cache.set(f"{key}:last", throttle.window_key(key, window, now), REFUSALS_KEPT_SECONDS)
    record_event(
        "pbx.refused",
        project_id=pbx.project_id if pbx else None,
        object_type="pbx",
        object_id=pbx.pk if pbx else "",
        extra=extra,
    )


def _find(
    prefix: str, stale_before: Any, ride: RideAlong | None
) -> tuple[Pbx, bool, bool, tuple[Any, ...] | None] | None:
    """The PBX with this prefix (fields other than _FIELDS load when first read), whether it
    is revoked, whether its last use is older than `stale_before`, and the ride's row (None
    when it found none or there is no ride); None if the PBX is unknown."""
    params = {"prefix": prefix, "stale_before": stale_before}
    if ride is None:
        row = fetch_prepared(_PBX_SQL, params, checks_connection=True)
    else:
        sql, both = _with_ride(ride.sql), {**ride.params, **params}
        row = fetch_prepared(sql, both, checks_connection=True)
    if row is None:
        return None
    pbx = Pbx.from_db(connection.alias, _FIELDS, row[: len(_FIELDS)])
    ridden = row[_PBX_COLUMNS:] if ride is not None and row[_PBX_COLUMNS] is not None else None
    return pbx, bool(row[len(_FIELDS)]), bool(row[len(_FIELDS) + 1]), ridden


def authenticate_pbx(request: HttpRequest) -> Pbx | HttpResponse:
    """The PBX behind the request, or the 401/403 answer (recorded)."""
    found = authenticate_pbx_with(request, None)
    return found if isinstance(found, HttpResponse) else found[0]


RideFor = Callable[[HttpRequest], RideAlong | None]


def authenticate_pbx_with(
    request: HttpRequest, ride_for: RideFor | None
) -> tuple[Pbx, RideAlong | None, tuple[Any, ...] | None] | HttpResponse:
    """The PBX behind the request, the ride `ride_for` built from the request and what it
    read in the same statement (None: no ride, or no row), or the 401/403 answer (recorded).
    A request without a PBX secret's shape is refused before its body is read."""
    raw = _bearer(request)
    parts = raw.split("_", 2)
    prefix = parts[1] if len(parts) == 3 and parts[0] == PBX_SECRET_PREFIX else ""
    ride = ride_for(request) if ride_for is not None and prefix else None
    now = timezone.now()
    ops = connection.ops
    stale_before = ops.adapt_datetimefield_value(
        now - timedelta(seconds=LAST_USED_GRANULARITY_SECONDS)
    )
    found = _find(prefix, stale_before, ride) if prefix else None
    pbx, revoked, stale, ridden = found if found is not None else (None, False, False, None)
    ip = client_ip(request)
    valid = (
        pbx is not None
        and not revoked
        and secrets.compare_digest(pbx.secret_hash, hash_pbx_secret(raw))
    )
    if not valid:
        reason = "missing" if not raw else "unknown" if pbx is None else "wrong secret"
        if revoked:
            reason = "revoked"
        _refused(pbx, prefix, reason, ip)
        response = HttpResponse("unauthorized", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="callvault-pbx"'
        return response
    assert pbx is not None
    networks = _networks(pbx.networks)
    if not networks or not address_in(ip, networks):
        _refused(pbx, prefix, "address" if networks else "no networks", ip)
        return HttpResponse("forbidden", status=403, content_type="text/plain")
    if stale:
        with connection.cursor() as cursor:
            cursor.execute(_TOUCH_SQL, [ops.adapt_datetimefield_value(now), pbx.pk, stale_before])
    return pbx, ride, ridden


@overload
def pbx_endpoint(view: PbxView) -> PbxView: ...


@overload
def pbx_endpoint(*, ride: RideFor) -> Callable[[PbxView], PbxView]: ...


def pbx_endpoint(
    view: PbxView | None = None, *, ride: RideFor | None = None
) -> PbxView | Callable[[PbxView], PbxView]:
    """Decorator: POST only, CSRF-exempt, authenticated as a PBX, run as that PBX; the view
    gets the PBX after the request. With `ride`, the endpoint's first read (built from the
    request; None for none) travels with the PBX's, and the view gets what it found (a row,
    or None) and the ride after the PBX: `@pbx_endpoint(ride=...)`."""

    def decorate(view: PbxView) -> PbxView:
        @csrf_exempt
        @require_POST
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            found = authenticate_pbx_with(request, ride)
            if isinstance(found, HttpResponse):
                return found
            pbx, read, row = found
            extra = (row, read) if ride is not None else ()
            with acting_as(Actor.pbx(pbx.pk, pbx.name)):
                response = view(request, pbx, *extra, *args, **kwargs)
            response["Cache-Control"] = "no-store"
            return response

        return wrapper

    return decorate(view) if view is not None else decorate
