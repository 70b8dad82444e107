"""Who is acting and from where, for the duration of a request, command or task.

A context variable, so threads and async tasks each see their own. Outside any request the
actor is the system, which is what commands and background tasks record; `system_run` names
the command or task and gives its events one request id.
"""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from callvault.audit.models import ActorKind


@dataclass(frozen=True)
class Actor:
    """An actor as the record keeps it: kind, id and a name that outlives the object."""

    kind: str
    id: str = ""
    name: str = ""

    # One constructor per kind, so every caller names its actors the same way; the name is
    # what the record shows after the user, key, PBX or device is gone.
    @classmethod
    def member(cls, user: Any) -> Actor:
        """A logged-in person, by user id and username."""
        return cls(ActorKind.MEMBER, str(getattr(user, "pk", "")), getattr(user, "username", ""))

    @classmethod
    def api_key(cls, key_id: object, name: str) -> Actor:
        """An integration calling the API with a project's key."""
        return cls(ActorKind.API_KEY, str(key_id), f"API key {name}")

    @classmethod
    def system(cls, job: str = "") -> Actor:
        """The installation itself; `job` names the command or task ("vault rotate")."""
        return cls(ActorKind.SYSTEM, "", f"system: {job}" if job else "system")

    @classmethod
    def pbx(cls, pbx_id: object, name: str) -> Actor:
        """A telephony system asking about a call (token lookup, inbound caller)."""
        return cls(ActorKind.PBX, str(pbx_id), f"PBX {name}")

    @classmethod
    def agent(cls, device_id: object, device_name: str) -> Actor:
        """The monitoring agent on an operator's PC, by its registered device."""
        return cls(ActorKind.AGENT, str(device_id), f"agent {device_name}")

    @classmethod
    def support(cls, grant_id: object, person: str) -> Actor:
        """Support staff working under a time-limited access grant (the grant is the id)."""
        return cls(ActorKind.SUPPORT, str(grant_id), f"support {person}")


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


@contextlib.contextmanager
def system_run(job: str, *, request_id: str = "") -> Iterator[AuditContext]:
    """Run a command or task as the system named after it, its events under one request id."""
    ctx = AuditContext(actor=Actor.system(job), request_id=request_id or new_request_id())
    with use_context(ctx) as opened:
        yield opened


# Tasks: the worker (and the immediate backend in tests) announce each run with django-tasks'
# signals; between them the task's events carry its name and its result id as request id.
_task_tokens: dict[str, contextvars.Token[AuditContext]] = {}


def task_started(sender: object, task_result: Any, **kwargs: Any) -> None:
    """Open the audit context of a task run."""
    name = getattr(task_result.task, "name", "") or "task"
    ctx = AuditContext(actor=Actor.system(f"task {name}"), request_id=str(task_result.id)[:64])
    _task_tokens[str(task_result.id)] = _current.set(ctx)


def task_finished(sender: object, task_result: Any, **kwargs: Any) -> None:
    """Close it again: back to whatever context was in force before the run."""
    token = _task_tokens.pop(str(task_result.id), None)
    if token is None:
        return
    try:
        _current.reset(token)
    except ValueError:  # finished in another context than it started: start afresh
        _current.set(AuditContext())


def connect_task_signals() -> None:
    """Called from the audit app's ready(): tasks record as "system: task <name>"."""
    from django_tasks.signals import task_finished as finished
    from django_tasks.signals import task_started as started

    started.connect(task_started, dispatch_uid="callvault.audit.task_started")
    finished.connect(task_finished, dispatch_uid="callvault.audit.task_finished")
