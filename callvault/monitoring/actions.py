"""Enrolling and revoking the agents' devices; each change atomic and recorded."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from callvault.accounts.actions import may_manage
from callvault.accounts.models import Membership, User
from callvault.audit.context import Actor, acting_as
from callvault.audit.recorder import record_event
from callvault.lib.errors import FieldErrors
from callvault.monitoring import throttle
from callvault.monitoring.access import may_watch
from callvault.monitoring.models import Device, EnrolmentCode, Platform

# Codes are read off one screen and typed on another PC: Crockford's base32 (no I, L, O,
# U), ten characters in two groups, 50 bits. They live a day at most, work once, and
# wrong guesses are throttled per address (agent_views.py).
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10
# What people mistype for what they meant.
CODE_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1", "U": "V"})
DEFAULT_CODE_HOURS = 24
MAX_CODE_HOURS = 24 * 7
DEVICE_TOKEN_PREFIX = "cvd"  # noqa: S105 (a prefix, not a secret)
# How often the device's "last seen" is written by requests that write nothing else.
LAST_SEEN_GRANULARITY = timedelta(seconds=60)
# Refused agent requests are recorded at most once per address, device and reason in this
# many seconds; the ones in between are counted into the next event for up to a day.
REFUSAL_WINDOW_SECONDS = 10 * 60
UNRECORDED_SECONDS = 24 * 3600


def new_code() -> str:
    """A fresh code as shown: XXXXX-XXXXX."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_code(code: str) -> str:
    """The code as typed, without spaces and dashes, lookalikes mapped, upper case."""
    text = "".join(ch for ch in str(code).upper() if ch.isalnum())
    return text.translate(CODE_LOOKALIKES)


def hash_code(code: str) -> str:
    """A keyed hash (HMAC-SHA256 under SECRET_KEY): 50 bits would fall to an offline guess
    from a plain hash in a stolen database within the code's lifetime."""
    key = str(settings.SECRET_KEY).encode()
    return hmac.new(key, normalise_code(code).encode(), hashlib.sha256).hexdigest()


def hash_token(token: str) -> str:
    """SHA-256 of a device token: tokens are 256-bit random, a slow hash would add nothing."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def may_enrol(acting: Membership, target: Membership) -> bool:
    """Whether the acting member may put an agent on the target's PC (or take it off):
    someone who watches activity and manages members, for themselves or for a member they
    both may manage and may watch (the same ladder as the timeline: access.may_watch)."""
    if not (acting.is_active and acting.can_view_activity and acting.can_manage_members):
        return False
    if acting.pk is None or acting.project_id != target.project_id or not target.is_active:
        return False
    return acting.pk == target.pk or (may_manage(acting, target) and may_watch(acting, target))


@transaction.atomic
def do_create_enrolment_code(
    target: Membership,
    *,
    acting: Membership | None = None,
    created_by: User | None = None,
    hours: int = DEFAULT_CODE_HOURS,
) -> tuple[EnrolmentCode, str]:
    """A one-time code for the target's PC; the code is returned once, only its hash kept."""
    if acting is not None:
        if not may_enrol(acting, target):
            raise FieldErrors.one("member", _("You may not enrol a device for this member."))
        created_by = acting.user
    if not target.is_active or target.pk is None:
        raise FieldErrors.one("member", _("The member is not active."))
    if not 1 <= hours <= MAX_CODE_HOURS:
        raise FieldErrors.one("hours", _("Between 1 and %(max)s hours.") % {"max": MAX_CODE_HOURS})
    code = new_code()
    row = EnrolmentCode.objects.create(
        project_id=target.project_id,
        membership=target,
        code_hash=hash_code(code),
        expires_at=timezone.now() + timedelta(hours=hours),
        created_by=created_by,
    )
    record_event(
        "enrolment_code.create",
        project_id=target.project_id,
        object_type="enrolment_code",
        object_id=row.pk,
        object_repr=f"code for {target.user.username}",
        changes={
            "member": [None, target.user.username],
            "expires_at": [None, row.expires_at.isoformat()],
            "code": "changed",
        },
    )
    return row, code


class EnrolmentRefused(Exception):
    """A code that cannot enrol: unknown, used or expired (the answer is the same for all)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Enrolled:
    """A new device and its token (shown to the agent once)."""

    device: Device
    token: str


def find_code(code: str) -> EnrolmentCode | None:
    """The code row a typed code names (used or not), or None."""
    if len(normalise_code(code)) != CODE_LENGTH:
        return None
    return (
        EnrolmentCode.objects.select_related("membership__user", "membership__project")
        .filter(code_hash=hash_code(code))
        .first()
    )


def refuse_code(row: EnrolmentCode | None, reason: str) -> None:
    """Record a refused enrolment (the code itself never)."""
    record_event(
        "enrolment_code.refused",
        project_id=row.project_id if row else None,
        object_type="enrolment_code" if row else "",
        object_id=row.pk if row else "",
        extra={"reason": reason},
    )


@transaction.atomic
def do_enrol_device(
    row: EnrolmentCode, *, hostname: str, platform: str, agent_version: str
) -> Enrolled:
    """Consume the code (one conditional UPDATE: of two agents with the same code, one
    wins) and register the device, recorded with the agent as the actor."""
    hostname, agent_version = hostname.strip(), agent_version.strip()
    if not hostname or len(hostname) > 200:
        raise FieldErrors.one("hostname", "a host name of 1 to 200 characters")
    if platform not in Platform.values:
        raise FieldErrors.one("platform", f"one of {', '.join(Platform.values)}")
    if not agent_version or len(agent_version) > 40:
        raise FieldErrors.one("agent_version", "a version of 1 to 40 characters")
    now = timezone.now()
    claimed = EnrolmentCode.objects.filter(
        pk=row.pk, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    if not claimed:
        raise EnrolmentRefused("used" if row.used_at or row.expires_at > now else "expired")
    member = row.membership
    if not member.is_active or not member.user.is_active:
        raise EnrolmentRefused("inactive member")
    token = f"{DEVICE_TOKEN_PREFIX}_{secrets.token_urlsafe(32)}"
    device = Device.objects.create(
        project_id=row.project_id,
        membership=member,
        hostname=hostname,
        platform=platform,
        agent_version=agent_version,
        token_hash=hash_token(token),
    )
    # The agent is the actor of both: the code was its credential.
    with acting_as(Actor.agent(device.pk, hostname)):
        record_event(
            "enrolment_code.use",
            project_id=row.project_id,
            object_type="enrolment_code",
            object_id=row.pk,
            object_repr=f"code for {member.user.username}",
            changes={"used_at": [None, now.isoformat()]},
            extra={"device": device.pk},
        )
        record_event(
            "device.register",
            project_id=row.project_id,
            object_type="device",
            object_id=device.pk,
            object_repr=hostname,
            changes={
                "member": [None, member.user.username],
                "hostname": [None, hostname],
                "platform": [None, platform],
                "agent_version": [None, agent_version],
            },
            extra={"enrolment_code": row.pk},
        )
    return Enrolled(device, token)


@transaction.atomic
def do_revoke_device(device: Device, *, acting: Membership | None = None) -> Device:
    """Revoke a device: its token answers 401 from now on and the agent stops."""
    if acting is not None and not may_enrol(acting, device.membership):
        raise FieldErrors.one("member", _("You may not revoke this member's device."))
    device = Device.objects.select_for_update().get(pk=device.pk)
    if device.revoked_at is None:
        device.revoked_at = timezone.now()
        device.save(update_fields=["revoked_at"])
        record_event(
            "device.revoke",
            project_id=device.project_id,
            object_type="device",
            object_id=device.pk,
            object_repr=device.hostname,
            changes={"revoked_at": [None, device.revoked_at.isoformat()]},
        )
    return device


def authenticate_device(raw: str | None, *, ip: str | None = None) -> tuple[Device | None, str]:
    """The device a token belongs to and "" (with its member and project, and the
    project's policy), or None and why: unknown, revoked, inactive member. The refusal is
    recorded (refuse_device; an unknown token by nothing of the token)."""
    token = (raw or "").strip()
    device = None
    if token.startswith(f"{DEVICE_TOKEN_PREFIX}_"):
        device = (
            Device.objects.select_related("membership__user", "project__monitoring_policy")
            .filter(token_hash=hash_token(token))
            .first()
        )
    if device is None:
        reason = "unknown"
    elif device.revoked_at is not None:
        reason = "revoked"
    elif not (device.membership.is_active and device.membership.user.is_active):
        reason = "inactive member"
    else:
        return device, ""
    refuse_device(device, reason, ip=ip)
    return None, reason


def refuse_device(
    device: Device | None, reason: str, *, ip: str | None = None, **extra: Any
) -> bool:
    """Record a refused agent request, at most once per address, device and reason in each
    window: anyone can send bad tokens as fast as the network allows, and the record must
    not become the flood. The event says how many refusals it stands for (this one and
    those of the same kind not recorded since the previous event). True if recorded."""
    who = f"{reason.replace(' ', '-')}:{device.pk if device else '-'}:{ip or '-'}"
    unrecorded = f"monitoring:refused-unrecorded:{who}"
    if not throttle.first_in_window(f"monitoring:refused:{who}", REFUSAL_WINDOW_SECONDS):
        throttle.tally(unrecorded, 1, UNRECORDED_SECONDS)
        return False
    record_event(
        "device.refused",
        project_id=device.project_id if device else None,
        object_type="device" if device else "",
        object_id=device.pk if device else "",
        object_repr=device.hostname if device else "",
        extra={
            "reason": reason,
            **({"ip": ip} if ip else {}),
            **extra,
            "refusals": 1 + throttle.take(unrecorded),
        },
    )
    return True


def touch_device(device: Device, ip: str | None) -> None:
    """Move "last seen" (and the address) at most once a minute: bookkeeping, not recorded."""
    now = timezone.now()
    stale = device.last_seen_at is None or now - device.last_seen_at >= LAST_SEEN_GRANULARITY
    if stale or device.last_ip != ip:
        Device.objects.filter(pk=device.pk).update(last_seen_at=now, last_ip=ip)
        device.last_seen_at, device.last_ip = now, ip
