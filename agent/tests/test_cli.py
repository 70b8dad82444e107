"""The command: enroll stores the token privately and never prints it; status and forget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callvault_agent.cli import main
from callvault_agent.config import Store
from callvault_agent.queue import Outbox
from scripted import Answer, Script, scripted_server


def enroll(url: str, *extra: str) -> int:
    return main(["enroll", "--server", url, "--code", "CODE-1", "--hostname", "pc-7", *extra])


def test_enroll_stores_a_private_token_and_the_policy(
    agent_dirs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script()
    with scripted_server(script) as url:
        assert enroll(url) == 0
    out = capsys.readouterr()
    assert "cvd_test_token" not in out.out + out.err
    assert "device 7" in out.out and "Monitoring is ON" in out.out
    token_file = agent_dirs / "config" / "token"
    assert token_file.read_text().strip() == "cvd_test_token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert (agent_dirs / "config" / "config.json").stat().st_mode & 0o777 == 0o600
    assert "cvd_" not in (agent_dirs / "config" / "config.json").read_text()
    policy = json.loads((agent_dirs / "state" / "policy.json").read_text())
    assert policy["version"] == 1
    enrolment = Store().load()
    assert enrolment is not None and enrolment.device_id == 7
    assert "cvd_test_token" not in repr(enrolment)


def test_a_refused_code_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    script = Script()
    script.then("/agent/v1/enrol", Answer(400, {"detail": "code: unknown, used or expired code"}))
    with scripted_server(script) as url:
        assert enroll(url) == 2
    assert "unknown, used or expired" in capsys.readouterr().err
    assert Store().load() is None


def test_enrolling_again_starts_a_new_queue(agent_dirs: Path) -> None:
    with scripted_server(Script()) as url:
        assert enroll(url) == 0
        box = Outbox(agent_dirs / "state" / "queue.sqlite3")
        box.add_heartbeat({"at": "t", "state": "active", "app": None, "title": None})
        box.close()
        assert enroll(url) == 0
    assert not (agent_dirs / "state" / "queue.sqlite3").exists()


def test_status_shows_enrolment_and_queue_but_not_the_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with scripted_server(Script()) as url:
        enroll(url)
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "enrolled: device 7" in out and "policy: version 1" in out
    assert "no X display" in out
    assert "cvd_test_token" not in out


def test_forget_removes_token_queue_and_policy(
    agent_dirs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with scripted_server(Script()) as url:
        enroll(url)
    Outbox(agent_dirs / "state" / "queue.sqlite3").close()
    assert main(["forget"]) == 0
    assert Store().load() is None
    assert not (agent_dirs / "config" / "token").exists()
    assert not (agent_dirs / "state" / "queue.sqlite3").exists()
    assert "revokes it" in capsys.readouterr().out


def test_run_without_enrolment_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "callvault-agent enroll" in capsys.readouterr().err


def test_plain_http_to_another_machine_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enroll", "--server", "http://crm.example", "--code", "X"]) == 2
    assert "https" in capsys.readouterr().err
