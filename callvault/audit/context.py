"""Who is acting and from where, for the duration of a request, command or task.

A context variable, so threads and async tasks each see their own. Outside any request the
actor is the system, which is what commands and background tasks record.
"""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

from callvault.audit.models import ActorKind


@dataclass(frozen=True)
class Actor:
    """An actor as the record keeps it: kind, id and a name that outlives the object."""

    kind: str
    id: str = ""
    name: str = ""


SYSTEM = Actor(ActorKind.SYSTEM, "", "system")
ANONYMOUS = Actor(ActorKind.ANONYMOUS, "", "anonymous")


@dataclass(frozen=True)
class AuditContext:
    """The request facts stamped on every event."""

    actor: Actor = SYSTEM
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""


_current: contextvars.ContextVar[AuditContext] = contextvars.ContextVar(
    "callvault_audit_context",
    default=AuditContext(),  # noqa: B039 (frozen, immutable)
)


def current() -> AuditContext:
    """The context in force now."""
    return _current.get()


def new_request_id() -> str:
    """A fresh id that groups the events of one request or run."""
    return uuid.uuid4().hex


@contextlib.contextmanager
def use_context(ctx: AuditContext) -> Iterator[AuditContext]:
    """Run a block under the given context."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


@contextlib.contextmanager
def acting_as(actor: Actor) -> Iterator[AuditContext]:
    """Run a block with a different actor but the same request facts."""
    with use_context(replace(current(), actor=actor)) as ctx:
        yield ctx


def set_actor(actor: Actor) -> None:
    """Replace the actor for the rest of this request (after authentication)."""
    _current.set(replace(current(), actor=actor))
