"""The only doors through which digits leave the vault: `reveal` for people."""

from __future__ import annotations

from typing import Any, Protocol

from django.core.exceptions import PermissionDenied

from callvault.audit.recorder import record_event
from callvault.lib.errors import FieldErrors
from callvault.vault.logfilter import redact
from callvault.vault.phones import SealedPhone, open_phone


class HoldsPhone(Protocol):
    """Any project-owned row that carries a sealed phone (an order, later a contact)."""

    @property
    def pk(self) -> Any: ...

    @property
    def project_id(self) -> int: ...

    @property
    def phone(self) -> SealedPhone | None: ...


class Revealer(Protocol):
    """Who asks: a membership with a project and the capability flag."""

    @property
    def pk(self) -> Any: ...

    @property
    def project_id(self) -> int: ...

    @property
    def is_active(self) -> bool: ...

    @property
    def can_see_phones(self) -> bool: ...


PHONE_FIELD = "phone"


def reveal(member: Revealer, holder: HoldsPhone, purpose: str, *, field: str = PHONE_FIELD) -> str:
    """The number's E.164 digits, for a member allowed to see them; every use is audited.

    A refused attempt is audited too, so a pattern of tries is visible to the owner.
    """
    object_type = type(holder).__name__.lower()
    allowed = member.is_active and member.can_see_phones and member.project_id == holder.project_id
    purpose = (purpose or "").strip()
    if not allowed:
        # Refusals are recorded too: a pattern of tries is what the owner needs to see.
        record_event(
            "phone.reveal_refused",
            project_id=member.project_id,
            object_type=object_type,
            object_id=holder.pk,
            extra={"purpose": redact(purpose[:200]), "field": field},
        )
        raise PermissionDenied("not permitted to see this number")
    if not purpose or len(purpose) > 200:
        raise FieldErrors.one("purpose", "say why the number is needed (1 to 200 characters)")
    sealed = holder.phone
    if sealed is None:
        raise LookupError("no number stored")
    digits = open_phone(sealed.ciphertext, project_id=holder.project_id, field=field)
    record_event(
        "phone.reveal",
        project_id=holder.project_id,
        object_type=object_type,
        object_id=holder.pk,
        extra={"purpose": redact(purpose), "field": field},
    )
    return digits
