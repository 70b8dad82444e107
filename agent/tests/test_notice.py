"""The notice reaches the operator while the agent runs: the console line and a desktop
notification at start, at every policy change and at every reminder (security review: started
from XDG autostart, the console goes to a log nobody reads). notify-send is exercised as a
real process: a stand-in script that records its arguments, or one that hangs."""

from __future__ import annotations

import io
import stat
import time
from pathlib import Path

from callvault_agent.notice import SUMMARY, Notifier, NotifySend
from callvault_agent.policy import parse_policy
from scripted import POLICY


def test_the_desktop_notification_repeats_with_the_console_line() -> None:
    shown: list[tuple[str, str]] = []
    out = io.StringIO()
    notifier = Notifier(every_seconds=1800, out=out, desktop=lambda s, b: shown.append((s, b)))
    policy = parse_policy(POLICY)
    notifier.tick(policy, "https://crm.example", 0)
    notifier.tick(policy, "https://crm.example", 1799)
    assert len(shown) == 1
    notifier.tick(policy, "https://crm.example", 1800)  # the reminder
    notifier.tick(parse_policy({**POLICY, "version": 2}), "https://crm.example", 1900)
    assert len(shown) == 3
    assert all(summary == SUMMARY for summary, _ in shown)
    assert "every 5 seconds" in shown[1][1] and "Monitoring is on (test)" in shown[2][1]
    text = out.getvalue()
    assert text.count("Monitoring is ON") == 3
    assert "(reminder)" in text and "(policy changed)" in text


def test_the_notice_says_phone_numbers_are_masked_here() -> None:
    shown: list[str] = []
    notifier = Notifier(out=io.StringIO(), desktop=lambda s, b: shown.append(b))
    notifier.tick(parse_policy({**POLICY, "redact_patterns": []}), "https://crm.example", 0)
    assert "with phone numbers masked on this PC" in shown[0]


def script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def wait_for_file(path: Path, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.05)
    return path.read_text()


def test_notify_send_gets_summary_and_body(tmp_path: Path) -> None:
    record = tmp_path / "args"
    tool = script(tmp_path / "notify-send", f'printf "%s\\n" "$@" > "{record}"')
    send = NotifySend(tool)
    send(SUMMARY, "line one\nline two")
    args = wait_for_file(record)
    assert args == f"--app-name=callvault-agent\n{SUMMARY}\nline one\nline two\n"
    send.close()


def test_a_hanging_notify_send_neither_blocks_nor_piles_up(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    tool = script(tmp_path / "notify-send", f'echo $$ >> "{pids}"\nexec sleep 60')
    send = NotifySend(tool)
    started = time.monotonic()
    send(SUMMARY, "first")
    assert time.monotonic() - started < 1.0  # the agent's loop goes on
    first = send.proc
    assert first is not None
    wait_for_file(pids)
    send(SUMMARY, "second")  # the first one still hangs: it is ended, not left behind
    assert first.poll() is not None
    assert send.proc is not None and send.proc.poll() is None
    send.close()
    assert send.proc is None


def test_without_notify_send_nothing_happens() -> None:
    send = NotifySend("")
    send(SUMMARY, "body")
    assert send.proc is None
