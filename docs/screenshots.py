"""Screenshots of the main screens for the documentation: `make screenshots`.

Creates a fresh demo database in a temporary data folder (`callvault demo --no-serve`),
serves it with `callvault serve` on a free local port, logs in as the demo members with the
passwords from demo-credentials.txt and drives Debian's Chromium (never a downloaded
browser build) through Playwright, writing PNGs to docs/screenshots/. The pages are in
Russian, the default language. The server is always stopped and the folder removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("CALLVAULT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 20_000
PROJECT = "demo"  # the slug seed_demo gives its project


def callvault_command() -> str:
    """The `callvault` script beside this Python (the virtual environment's), else on PATH."""
    beside = Path(sys.executable).parent / "callvault"
    found = str(beside) if beside.exists() else shutil.which("callvault")
    if not found:
        raise SystemExit("the `callvault` command is not installed (make demo installs it)")
    return found


def demo_environment(data_dir: Path) -> dict[str, str]:
    """This process's environment without any CALLVAULT_* setting (no configured database,
    Redis or key ring may leak into the demo), plus a debug demo in `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(
        CALLVAULT_DEBUG="1",
        CALLVAULT_DATA_DIR=str(data_dir),
        CALLVAULT_DATABASE_URL=f"sqlite:///{data_dir / 'callvault.sqlite3'}",
        CALLVAULT_LANGUAGE="ru",
        CALLVAULT_LOG_LEVEL="WARNING",
    )
    return env


def read_logins(path: Path) -> dict[str, str]:
    """username -> password from demo-credentials.txt ("  <role> <username> <password>")."""
    logins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.lstrip().startswith(("API", "callvault")):
            _role, username, password = parts
            logins[username] = password
    missing = {"owner", "supervisor", "operator1"} - set(logins)
    if missing:
        raise SystemExit(f"{path}: no password for {', '.join(sorted(missing))}")
    return logins


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """`callvault serve` in its own process group, ready to answer; always stopped."""
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 (our own command, fixed arguments)
            [callvault_command(), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: gunicorn's workers stop with it
        )
        try:
            wait_until_up(base + "/healthz", proc, log)
            yield base
        finally:
            stop(proc)


def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"callvault serve exited ({proc.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local URL)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"callvault serve did not answer {url} within 60 s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


@dataclass
class Shot:
    """One picture: who logs in, what they do, and the file it goes to."""

    name: str
    username: str
    steps: Callable[[Any, str], None]
    full_page: bool = False  # the whole page, not only the 1280x800 window


def orders(path: str = "") -> str:
    return f"/p/{PROJECT}/orders/{path}"


def operator_card(page: Any, base: str) -> None:
    """The operator presses Next order on My orders and works on the card."""
    page.goto(base + orders("mine/"))
    with page.expect_navigation():
        page.click("main .heading button.primary")
    if "/orders/mine/" in page.url:
        raise SystemExit("Next order found no due order in the demo data")


def go(path: str) -> Callable[[Any, str], None]:
    def steps(page: Any, base: str) -> None:
        page.goto(base + path)

    return steps


SHOTS = [
    # The card in full: the items, the call's outcome and the comments are the work.
    Shot("operator-card", "operator1", operator_card, full_page=True),
    Shot("my-orders", "operator1", go(orders("mine/"))),  # with the order in hand on top
    Shot("orders-list", "supervisor", go(orders())),
    Shot("dashboard", "supervisor", go(orders("dashboard/"))),
    Shot("members", "owner", go(f"/p/{PROJECT}/settings/members/")),
    Shot("work-rules", "owner", go(f"/p/{PROJECT}/setup/work/")),
]


def log_in(page: Any, base: str, username: str, password: str) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("form[action$='/accounts/login/'] button[type=submit]")
    if "/accounts/login/" in page.url:
        raise SystemExit(f"logging in as {username} failed")


def take(browser: Any, base: str, logins: dict[str, str], out: Path) -> list[Path]:
    """Each shot in its own browser context (one session per member, Russian pages)."""
    written = []
    for shot in SHOTS:
        context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            page = context.new_page()
            failures: list[str] = []
            page.on(
                "response",
                lambda r, failures=failures: (
                    failures.append(f"{r.status} {r.url}") if r.status >= 400 else None
                ),
            )
            log_in(page, base, shot.username, logins[shot.username])
            shot.steps(page, base)
            page.wait_for_load_state("networkidle")
            lang = page.locator("html").get_attribute("lang")
            if failures or lang != "ru":
                raise SystemExit(f"{shot.name}: lang={lang!r}, failed responses {failures}")
            path = out / f"{shot.name}.png"
            page.screenshot(path=str(path), full_page=shot.full_page)
            written.append(path)
            print(f"  {path.relative_to(ROOT)}  ({shot.username}, {page.url[len(base) :]})")
        finally:
            context.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNGs")
    args = parser.parse_args(argv)
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise SystemExit(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="callvault-screenshots-"))
    try:
        env = demo_environment(data_dir)
        seeded = subprocess.run(  # noqa: S603 (our own command, fixed arguments)
            [callvault_command(), "demo", "--no-serve"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if seeded.returncode != 0:  # its output also holds the passwords: shown only here
            raise SystemExit(f"callvault demo failed:\n{seeded.stdout}\n{seeded.stderr}")
        logins = read_logins(data_dir / "demo-credentials.txt")
        with (
            server(env, free_port(), data_dir / "serve.log") as base,
            sync_playwright() as pw,
        ):
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                print(f"screenshots of {base} (a fresh demo in {data_dir}):")
                take(browser, base, logins, out)
            finally:
                browser.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
