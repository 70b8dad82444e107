"""Parsing, sealing, indexing and masking phone numbers."""

from __future__ import annotations

import json
import logging
import random

import pytest
from cryptography.exceptions import InvalidTag
from django.template import Context, Template

from callvault.lib.fakephones import AREA_CODES, STYLES
from callvault.vault.keyring import KeyRing
from callvault.vault.logfilter import RedactPhoneDigits, redact
from callvault.vault.phones import (
    PhoneError,
    SealedPhone,
    blind_index,
    key_id_of,
    mask_with,
    open_phone,
    parse_phone,
    seal,
    seal_phone,
)


def digit_forms(e164: str) -> list[str]:
    """Every way the digits of a reserved-range number could show up in text."""
    national = e164[2:]  # +1 and then ten digits
    return [e164, e164[1:], national, national[-7:], f"{national[3:6]}-{national[6:]}"]


@pytest.fixture
def number() -> tuple[str, str]:
    area, line = random.choice(AREA_CODES), random.randrange(100, 200)
    return f"+1 {area} 555 0{line}", f"+1{area}5550{line}"


def test_it_normalises_every_writing_style_to_one_e164(number):
    e164 = number[1]
    area, line = e164[2:5], e164[-3:]
    for style in STYLES:
        assert parse_phone(style.format(a=area, l=line), region="RU").e164 == e164


def test_it_gives_one_blind_index_for_every_writing_style(number, settings):
    ring = KeyRing.generate()
    area, line = number[1][2:5], number[1][-3:]
    indexes = {
        blind_index(
            parse_phone(s.format(a=area, l=line), region="RU").e164, project_id=1, ring=ring
        )
        for s in STYLES
    }
    assert len(indexes) == 1


def test_it_gives_other_projects_another_index(number):
    ring = KeyRing.generate()
    assert blind_index(number[1], project_id=1, ring=ring) != blind_index(
        number[1], project_id=2, ring=ring
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "phone is required"),
        ("call me maybe", "cannot be read"),
        ("+1 212 555", "not a valid number"),
        ("9" * 41, "too long"),
    ],
)
def test_it_rejects_bad_numbers_without_repeating_them(raw, message):
    with pytest.raises(PhoneError) as exc:
        parse_phone(raw, region="RU")
    assert message in str(exc.value)
    if raw:
        assert raw not in str(exc.value)


def test_it_uses_the_project_region_for_numbers_without_a_country_code():
    parsed = parse_phone("(212) 555-0142", region="US")
    assert parsed.e164 == "+12125550142"
    assert parsed.time_zone == "America/New_York"


def test_seal_round_trips_and_names_its_key(number):
    ring = KeyRing.generate()
    ct = seal(number[1], project_id=7, field="phone", ring=ring)
    assert key_id_of(ct) == ring.active
    assert number[1][2:] not in ct
    aead = ring.aead(ring.active)
    import base64

    raw = base64.b64decode(ct.split(":", 2)[2])
    assert aead.decrypt(raw[:12], raw[12:], b"callvault/phone/7/phone").decode() == number[1]


def test_sealing_twice_gives_different_ciphertexts(number):
    ring = KeyRing.generate()
    assert seal(number[1], project_id=1, field="phone", ring=ring) != seal(
        number[1], project_id=1, field="phone", ring=ring
    )


def test_a_ciphertext_moved_to_another_project_or_field_does_not_open(number, db):
    ct = seal(number[1], project_id=1, field="phone")
    assert open_phone(ct, project_id=1, field="phone") == number[1]
    with pytest.raises(InvalidTag):
        open_phone(ct, project_id=2, field="phone")
    with pytest.raises(InvalidTag):
        open_phone(ct, project_id=1, field="other_phone")


def test_the_mask_keeps_the_country_code_and_the_last_digits(number):
    parsed = parse_phone(number[0], region="RU")
    national = number[1][2:]
    assert parsed.mask.startswith("+1 ")
    assert parsed.mask.endswith(national[-2:])
    assert mask_with(parsed.mask, 2) == f"+1 ***-***-**{national[-2:]}"
    assert mask_with(parsed.mask, 0) == "+1 ***-***-****"
    assert mask_with(parsed.mask, 4).endswith(national[-4:])
    # More than the stored four cannot be shown: the mask never held them.
    assert mask_with(parsed.mask, 9) == mask_with(parsed.mask, 4)


def sealed_value(number) -> SealedPhone:
    parsed = parse_phone(number[0], region="RU")
    return SealedPhone(mask_with(parsed.mask, 2), "cv1:k1:AAAA", "f" * 64)


def test_a_sealed_phone_renders_masked_everywhere(number):
    sealed = sealed_value(number)
    texts = [
        str(sealed),
        repr(sealed),
        f"{sealed}",
        "%s" % sealed,  # noqa: UP031
        json.dumps({"phone": sealed}),
        Template("{{ phone }}").render(Context({"phone": sealed})),
    ]
    for text in texts:
        for form in digit_forms(number[1]):
            assert form not in text, (form, text)
        assert "***" in text


def test_a_sealed_phone_in_a_log_record_is_masked(number, caplog):
    sealed = sealed_value(number)
    with caplog.at_level(logging.INFO):
        logging.getLogger("callvault.test").info("calling %s (%r)", sealed, sealed)
    for form in digit_forms(number[1]):
        assert form not in caplog.text


def test_the_log_filter_blanks_digits_that_slipped_into_a_message(number):
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad phone %s", (number[0],), None)
    RedactPhoneDigits().filter(record)
    assert record.getMessage() == "bad phone [redacted]"
    assert redact(f"call {number[1]} now") == "call [redacted] now"


def test_seal_phone_keeps_mask_ciphertext_and_index_together(number, db):
    parsed = parse_phone(number[0], region="RU")
    sealed = seal_phone(parsed, project_id=3, field="phone")
    assert str(sealed) == parsed.mask
    assert open_phone(sealed.ciphertext, project_id=3, field="phone") == number[1]
    assert sealed.blind_index == blind_index(number[1], project_id=3)


@pytest.mark.parametrize("name", ["", "django", "django.request", "django.server"])
def test_every_configured_log_handler_blanks_digits(name, number):
    logger = logging.getLogger(name)
    while logger.handlers == [] and logger.propagate and logger.parent is not None:
        logger = logger.parent
    assert logger.handlers
    for handler in logger.handlers:
        if type(handler).__module__.startswith("_pytest"):  # pytest's capture handlers
            continue
        assert any(isinstance(f, RedactPhoneDigits) for f in handler.filters), handler
