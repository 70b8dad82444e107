"""The browser tests' own tools, checked without a browser: the digit detector finds every
way a number can be written and nothing in a mask; the PNG check rejects broken files."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import pytest

from callvault.lib.fakephones import STYLES, fake_phone
from callvault.vault.phones import parse_phone
from tests.e2e.conftest import Seen, check_png, find_phone, phone_forms


def seen_with(body: str, url: str = "http://localhost/p/alpha/orders/1/") -> Seen:
    return Seen(responses=[(url, 200, "text/html", body)])


@pytest.mark.parametrize(
    "text",
    [
        "+12125550123",
        "12125550123",
        "2125550123",
        "5550123",
        "+1 212-555-0123",
        "(212) 555-0123",
        "tel:+1-212-555-0123",
        "555-0123",
        "555 01 23",
        "212.555.0123",
        '{"phone": "+1 (212) 555-0123"}',
        "8 10 1 212 555 0123",
        "+1\u00a0212\u00a0555\u00a00123",
    ],
)
def test_detector_finds_every_written_form(text: str) -> None:
    assert find_phone("+12125550123", seen_with(f"<td>{text}</td>"))


def test_detector_looks_at_urls_and_headers_too() -> None:
    assert find_phone("+12125550123", seen_with("", url="http://localhost/?q=%2B12125550123"))
    assert find_phone("+12125550123", seen_with("x-debug: 2125550123\n\n<html></html>"))


@pytest.mark.parametrize("style", range(len(STYLES)))
def test_detector_ignores_the_mask(style: int) -> None:
    typed, e164 = fake_phone(random.Random(style), style=style)
    parsed = parse_phone(typed, region="RU")
    assert parsed.e164 == e164
    assert not find_phone(e164, seen_with(f"<td class=phone>{parsed.mask}</td>"))
    assert e164 in phone_forms(e164) and e164[-7:] in phone_forms(e164)


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"".join(b"\x00" + b"\xff\xff\xff" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_png_check(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(_png(3, 2))
    assert check_png(good) == (3, 2)
    broken = tmp_path / "broken.png"
    data = bytearray(_png(3, 2))
    data[40] ^= 0xFF  # inside IDAT: the CRC no longer matches
    broken.write_bytes(bytes(data))
    with pytest.raises(AssertionError):
        check_png(broken)
    not_png = tmp_path / "page.png"
    not_png.write_bytes(b"<html></html>")
    with pytest.raises(AssertionError):
        check_png(not_png)
