"""Browser end-to-end fixtures: Debian's Chromium driven by Playwright against `live_server`.

Without Chromium or Playwright the browser tests skip with the reason, unless
CALLVAULT_E2E_STRICT=1 (as in CI), where the same reason fails them instead.
Never run `playwright install`: it downloads a browser build, which this project does not use.
"""

from __future__ import annotations

import importlib.util
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

CHROMIUM = os.environ.get("CALLVAULT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Playwright waits this long (ms) for a page or an element before a test fails.
TIMEOUT_MS = 15_000


def strict() -> bool:
    """CI sets CALLVAULT_E2E_STRICT=1: a missing browser is then a failure, not a skip."""
    return os.environ.get("CALLVAULT_E2E_STRICT", "") == "1"


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (pip install playwright)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (
            f"Chromium not found at {CHROMIUM} "
            "(apt-get install -y --no-install-recommends chromium)"
        )
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session (a new context per test)."""
    reason = browser_unavailable()
    if reason:
        if strict():
            pytest.fail(f"CALLVAULT_E2E_STRICT=1 and {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, so Django would refuse
    # ORM calls from the test body as "async unsafe". Allowed only while the browser is up.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                yield chromium
            finally:
                chromium.close()


@pytest.fixture
def e2e_settings(settings: Any) -> Any:
    """The live server speaks plain HTTP: cookies must not require HTTPS."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    return settings


@dataclass
class Seen:
    """Everything the browser received: one entry per response (url, status, headers, body)."""

    responses: list[tuple[str, int, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Responses whose bodies are still being read; the next page waits for them (see browse).
    reading: int = 0
    # Tests of the harness itself slow every read down by this many ms to widen the race.
    read_delay_ms: int = 0

    def content_types(self) -> set[str]:
        return {ctype.split(";")[0].strip() for _, _, ctype, _ in self.responses}

    def bodies_of(self, content_type: str) -> list[str]:
        return [body for _, _, ctype, body in self.responses if ctype.startswith(content_type)]


class SettledPage:
    """The Playwright page, except that every call first waits until the bodies of the
    responses already received have been read.

    The harness reads a body when Playwright delivers the response event, which can be after
    the test has moved on: a click or goto right after a load. Once the next page commits,
    Chromium drops the old page's bodies, and a body lost that way is a hole in the leak check.
    (Holding the next navigation in a route instead does not work: a body cannot be read while
    a navigation is paused.)"""

    def __init__(self, page: Any, seen: Seen) -> None:
        self._page = page
        self._seen = seen

    @property
    def raw(self) -> Any:
        """The Playwright page itself, for calls that take a page (new_cdp_session)."""
        return self._page

    def settle(self) -> None:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while self._seen.reading and time.monotonic() < deadline:
            self._page.wait_for_timeout(5)  # lets Playwright finish the reads

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._page, name)
        if not callable(attr):
            return attr

        def settled(*args: Any, **kwargs: Any) -> Any:
            self.settle()
            return attr(*args, **kwargs)

        return settled


@dataclass
class Browse:
    """A page in a fresh browser context, with every response it received recorded."""

    page: Any
    base_url: str
    seen: Seen

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def login(self, username: str, password: str) -> None:
        self.goto("/accounts/login/")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", password)
        with self.page.expect_navigation():
            self.page.click("form[action$='/accounts/login/'] button[type=submit]")
        assert "/accounts/login/" not in self.page.url, f"login as {username} failed"


@pytest.fixture
def browse(
    browser: Any, live_server: Any, transactional_db: Any, e2e_settings: Any
) -> Iterator[Callable[..., Browse]]:
    """Factory: browse(locale="en-US") opens a new context and page against the live server."""
    contexts: list[Any] = []

    def open_page(locale: str = "en-US") -> Browse:
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        seen = Seen()

        def on_response(response: Any) -> None:
            seen.reading += 1
            try:
                record(response)
            finally:
                seen.reading -= 1

        def record(response: Any) -> None:
            headers = response.headers
            if seen.read_delay_ms:
                page.wait_for_timeout(seen.read_delay_ms)
            try:
                body = response.body().decode("utf-8", errors="replace")
            except Exception as exc:  # redirects have no body; record that we saw them
                body = ""
                # A static file of the product (the same for everyone, from the repository)
                # whose body Chromium dropped because the page moved on before it was read:
                # nothing of a customer's can be in it, so it is no failure of the check.
                static_gone = "/static/" in response.url and "navigated away" in str(exc)
                if not 300 <= response.status < 400 and not static_gone:
                    seen.errors.append(f"{response.url}: {exc}")
            header_text = "\n".join(f"{k}: {v}" for k, v in headers.items())
            seen.responses.append(
                (
                    response.url,
                    response.status,
                    headers.get("content-type", ""),
                    header_text + "\n\n" + body,
                )
            )

        page.on("response", on_response)
        return Browse(page=SettledPage(page, seen), base_url=live_server.url, seen=seen)

    yield open_page
    for context in contexts:
        context.close()


def phone_forms(e164: str) -> list[str]:
    """The ways a number can be written: E.164 with and without '+', the national significant
    number, the library's formatted forms, and the last 7 digits."""
    number = phonenumbers.parse(e164)
    nsn = phonenumbers.national_significant_number(number)
    fmt = phonenumbers.PhoneNumberFormat
    forms = {
        e164,
        e164.lstrip("+"),
        nsn,
        nsn[-7:],
        phonenumbers.format_number(number, fmt.INTERNATIONAL),
        phonenumbers.format_number(number, fmt.NATIONAL),
        phonenumbers.format_number(number, fmt.RFC3966),
    }
    return sorted(forms, key=len, reverse=True)


_SEPARATORS = r"[\s\-.()/\u00a0]*"


def phone_patterns(e164: str) -> list[re.Pattern[str]]:
    """Exact forms, plus the last 7 digits with any spacing, dashes, dots or brackets between
    them (catches '555-0123', '555 01 23', '(212) 555-0123', ...)."""
    exact = [re.compile(re.escape(form)) for form in phone_forms(e164)]
    tail = phonenumbers.national_significant_number(phonenumbers.parse(e164))[-7:]
    spaced = re.compile(_SEPARATORS.join(re.escape(d) for d in tail))
    return [*exact, spaced]


def find_phone(e164: str, seen: Seen) -> list[str]:
    """Where the number appears in what the browser received: 'url: match' for each hit."""
    hits = []
    for url, _status, _ctype, text in seen.responses:
        for where in (url, text):
            for pattern in phone_patterns(e164):
                match = pattern.search(where)
                if match:
                    start = max(match.start() - 40, 0)
                    hits.append(f"{url}: ...{where[start : match.end() + 40]!r}...")
                    break
    return hits


def check_png(path: Path) -> tuple[int, int]:
    """Validate a PNG file (signature, IHDR, chunk CRCs, IEND); returns (width, height)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, chunks, size = 8, [], (0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + payload) == crc, f"{path}: bad CRC in {kind!r}"
        if kind == b"IHDR":
            size = struct.unpack(">II", payload[:8])
        chunks.append(kind)
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", f"{path}: chunks {chunks[:3]}..."
    assert b"IDAT" in chunks, f"{path}: no image data"
    assert size[0] > 0 and size[1] > 0, f"{path}: empty image"
    return size


@pytest.fixture
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CALLVAULT_E2E_SCREENSHOTS to keep them somewhere, else a pytest temporary folder."""
    keep = os.environ.get("CALLVAULT_E2E_SCREENSHOTS")
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")
