"""The phone number as a secret: parse, seal (AES-256-GCM), blind index, mask.

A number is normalised to E.164 with `phonenumbers`, sealed with a random nonce under the
active key with associated data binding it to project and field, indexed with a keyed HMAC
(its own key) for exact search and duplicate detection, and kept beside a mask so lists can
show it without decrypting anything. Only `open_phone` yields digits, and only the vault's
`reveal` and the telephony path may call it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import available_timezones

import phonenumbers
from phonenumbers import timezone as phone_timezone

from callvault.vault.keyring import KeyRing, UnknownKeyError, get_keyring, refresh_keyring

FORMAT = "cv1"
# The mask keeps at most this many trailing digits; a project shows fewer if it likes.
MASK_KEEP_MAX = 4


class PhoneError(ValueError):
    """A number that cannot be used; the message never repeats the input."""


class SealedPhone(str):
    """A sealed number. As a string it IS its mask, so str(), repr(), templates, JSON and
    logs can only ever show the masked form; the digits need `vault.reveal`.
    """

    ciphertext: str
    blind_index: str

    def __new__(cls, mask: str, ciphertext: str, blind_index: str) -> SealedPhone:
        obj = super().__new__(cls, mask)
        obj.ciphertext = ciphertext
        obj.blind_index = blind_index
        return obj

    def __repr__(self) -> str:
        return f"SealedPhone({str.__str__(self)!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (SealedPhone, (str.__str__(self), self.ciphertext, self.blind_index))

    def masked(self, visible: int) -> str:
        """The mask with only `visible` trailing digits left showing."""
        return mask_with(str.__str__(self), visible)


@dataclass(frozen=True)
class ParsedPhone:
    """A validated number: its E.164 form and what can be said of it without the digits."""

    e164: str
    mask: str
    time_zone: str | None


_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def parse_phone(raw: str, *, region: str, prefer_tz: str | None = None) -> ParsedPhone:
    """Validate and normalise; `region` is the project's for numbers without a country code."""
    if not isinstance(raw, str) or not raw.strip():
        raise PhoneError("phone is required")
    if len(raw) > 40:
        raise PhoneError("phone is too long (at most 40 characters)")
    try:
        number = phonenumbers.parse(raw, region.upper() or None)
    except phonenumbers.NumberParseException:
        raise PhoneError("phone cannot be read as a telephone number") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError("phone is not a valid number for its country")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not _E164.match(e164):
        raise PhoneError("phone is not a valid number for its country")
    pretty = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    # Only names the system zone database knows: PostgreSQL computes the customer's local
    # time from this name in the queue, and an unknown name there would be an error.
    zones = [z for z in phone_timezone.time_zones_for_number(number) if z in _known_zones()]
    tz = prefer_tz if prefer_tz in zones else (zones[0] if zones else None)
    return ParsedPhone(e164=e164, mask=_mask_pretty(pretty, number.country_code or 0), time_zone=tz)


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _mask_pretty(pretty: str, country_code: int) -> str:
    """'+7 916 123-45-67' -> '+7 *** ***-45-67': the country code and MASK_KEEP_MAX digits."""
    head = f"+{country_code}"
    body = pretty[len(head) :]
    total = sum(ch.isdigit() for ch in body)
    keep_from = total - MASK_KEEP_MAX
    out, seen = [], 0
    for ch in body:
        if ch.isdigit():
            out.append(ch if seen >= keep_from else "*")
            seen += 1
        else:
            out.append(ch)
    return head + "".join(out)


def mask_with(mask: str, visible: int) -> str:
    """Hide all but `visible` (0..MASK_KEEP_MAX) trailing digits of a stored mask."""
    visible = max(0, min(visible, MASK_KEEP_MAX))
    head, _, body = mask.partition(" ")
    digits = sum(ch.isdigit() for ch in body)
    hide = digits - visible
    out = []
    for ch in body:
        if ch.isdigit() and hide > 0:
            out.append("*")
            hide -= 1
        else:
            out.append(ch)
    return f"{head} {''.join(out)}" if body else head


@lru_cache(maxsize=4096)
def _aad(project_id: int, field: str) -> bytes:
    return f"callvault/phone/{project_id}/{field}".encode()


@lru_cache(maxsize=8)
def _index_mac(index_key: bytes) -> hmac.HMAC:
    # Keying HMAC costs about as much as hashing a number: key once, copy per number.
    return hmac.new(index_key, digestmod=hashlib.sha256)


def blind_index(e164: str, *, project_id: int, ring: KeyRing | None = None) -> str:
    """Keyed HMAC of the E.164 form, per project: equal numbers match, nothing else leaks."""
    ring = ring or get_keyring()
    mac = _index_mac(ring.index_key).copy()
    mac.update(f"{project_id}:{e164}".encode())
    return mac.hexdigest()


def seal(e164: str, *, project_id: int, field: str, ring: KeyRing | None = None) -> str:
    """AES-256-GCM under the active key: 'cv1:<key id>:<base64(nonce + ciphertext)>'."""
    ring = ring or get_keyring()
    nonce = os.urandom(12)
    ct = ring.aead(ring.active).encrypt(nonce, e164.encode(), _aad(project_id, field))
    return f"{FORMAT}:{ring.active}:{base64.b64encode(nonce + ct).decode('ascii')}"


def key_id_of(ciphertext: str) -> str:
    """The key id a ciphertext was sealed under."""
    fmt, kid, _ = ciphertext.split(":", 2)
    if fmt != FORMAT:
        raise ValueError("unknown ciphertext format")
    return kid


def open_phone(ciphertext: str, *, project_id: int, field: str) -> str:
    """Decrypt to E.164. Private to the vault and telephony: everyone else calls `reveal`."""
    fmt, kid, body = ciphertext.split(":", 2)
    if fmt != FORMAT:
        raise ValueError("unknown ciphertext format")
    ring = get_keyring()
    try:
        aead = ring.aead(kid)
    except UnknownKeyError:
        # Another process may have rotated: re-read the ring file once before failing.
        aead = refresh_keyring().aead(kid)
    raw = base64.b64decode(body)
    return aead.decrypt(raw[:12], raw[12:], _aad(project_id, field)).decode()


def seal_phone(parsed: ParsedPhone, *, project_id: int, field: str) -> SealedPhone:
    """Seal and index a parsed number."""
    ring = get_keyring()
    return SealedPhone(
        parsed.mask,
        seal(parsed.e164, project_id=project_id, field=field, ring=ring),
        blind_index(parsed.e164, project_id=project_id, ring=ring),
    )
