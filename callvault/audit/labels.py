"""Human names for what the record stores, supplied by the apps that write it.

The record keeps actions and fields as codes ("order.status", "customer_name"). Turning
them into "Status changed" and "Customer" needs knowledge that belongs to the domain apps,
and `audit` imports none of them: so each app registers its texts here in its
AppConfig.ready, and the viewers fall back to the raw code for anything unregistered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from django.utils.translation import gettext_lazy as _

from callvault.vault.logfilter import redact

# gettext_lazy promises: translated when shown, in the viewer's language.
Label = Any

_ACTIONS: dict[str, Label] = {
    "audit.view": _("Audit trail viewed"),
    "audit.search": _("Audit trail searched"),
    "audit.export": _("Audit trail exported"),
}
_FIELDS: dict[tuple[str, str], Label] = {}
_FREE_TEXT: dict[str, set[str]] = {}


def register_actions(labels: Mapping[str, Label]) -> None:
    """Names for action codes, e.g. {"order.status": _("Status changed")}."""
    _ACTIONS.update(labels)


def register_fields(
    object_type: str, labels: Mapping[str, Label], *, free_text: Iterable[str] = ()
) -> None:
    """Names for an object type's fields, and which of them people type freely (those may
    quote a phone number, so viewers without the phone permission get them redacted)."""
    for name, label in labels.items():
        _FIELDS[(object_type, name)] = label
    _FREE_TEXT.setdefault(object_type, set()).update(free_text)


def action_label(action: str) -> Label:
    """The action's name, or its code when no app named it."""
    return _ACTIONS.get(action, action)


def known_actions() -> dict[str, Label]:
    """Every registered action code with its name."""
    return dict(_ACTIONS)


def _split(key: str) -> tuple[str, str]:
    # Per-row keys such as "item 12" or "comment 7" name a kind and a row id.
    kind, _sep, rest = key.partition(" ")
    return kind, rest


def field_label(object_type: str, key: str) -> str:
    """The field's name ("Item 12" for a per-row key), or the key when unregistered."""
    label = _FIELDS.get((object_type, key))
    if label is not None:
        return str(label)
    kind, rest = _split(key)
    label = _FIELDS.get((object_type, kind))
    if label is not None and rest:
        return f"{label} {rest}"
    return key


def is_free_text(object_type: str, key: str) -> bool:
    """Whether the field holds typed text (its values may quote phone numbers)."""
    kinds = _FREE_TEXT.get(object_type, set())
    return key in kinds or _split(key)[0] in kinds


# What a sealed value looks like in a diff (recorder.SEALED_CHANGED).
SEALED = "changed"
EMPTY = "∅"


@dataclass(frozen=True)
class Change:
    """One field of a diff as people read it."""

    field: str
    label: str
    before: str
    after: str
    hidden: bool = False  # a sealed value: the record knows only that it changed


def _shown(value: Any, zone: tzinfo | None, redacting: bool) -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    if zone is not None and _ISO_MOMENT.match(text):
        try:
            return datetime.fromisoformat(text).astimezone(zone).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            pass
    return redact(text) if redacting else text


_ISO_MOMENT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)$")


def readable_changes(
    object_type: str,
    changes: Mapping[str, Any],
    *,
    may_see_phones: bool,
    zone: tzinfo | None = None,
) -> list[Change]:
    """The diff {field: [before, after]} with field names, moments on the viewer's clock,
    sealed values as hidden, and free text redacted for viewers who may not see numbers
    (events written before free text was redacted at write time may quote one)."""
    out = []
    for key, change in changes.items():
        label = field_label(object_type, key)
        if change == SEALED or not isinstance(change, list | tuple) or len(change) != 2:
            out.append(Change(key, label, "", "", hidden=True))
            continue
        redacting = not may_see_phones and is_free_text(object_type, key)
        before, after = (_shown(v, zone, redacting) for v in change)
        out.append(Change(key, label, before, after))
    return out


def readable_details(
    extra: Mapping[str, Any], *, zone: tzinfo | None = None
) -> list[tuple[str, str]]:
    """The event's details (purpose, reason, filters, ...) as (key, text) pairs; free text in
    them is redacted when it is recorded."""
    return [(str(key), _shown(value, zone, False)) for key, value in extra.items()]
