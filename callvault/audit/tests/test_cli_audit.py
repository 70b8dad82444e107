"""`callvault audit ...`: in process on the test database, and once as a real process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from callvault.audit import signing
from callvault.audit.models import ChainLink, Checkpoint
from callvault.audit.recorder import record_event
from callvault.audit.testing import drop_triggers, sql


def audit(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("audit", *args, stdout=out, stderr=out)
    return out.getvalue()


@pytest.fixture
def events(db: Any) -> None:
    for n in range(3):
        record_event(f"e{n}", project_id=None)


def test_seal_links_the_waiting_events(events: None) -> None:
    assert "sealed 3 events" in audit("seal")
    assert ChainLink.objects.count() == 3


def test_checkpoint_signs_and_writes_a_file_that_verify_uses(events: None, tmp_path: Path) -> None:
    out = tmp_path / "cp.json"
    assert "1 new checkpoints" in audit("checkpoint", "--out", str(out))
    document = json.loads(out.read_text())
    assert document["checkpoints"][0]["seq"] == 3
    assert Checkpoint.objects.count() == 1
    assert "audit trail OK" in audit("verify", "--checkpoint", str(out))


def test_verify_fails_and_names_the_broken_event(events: None, capsys: Any) -> None:
    audit("seal")
    drop_triggers()
    link = ChainLink.objects.get(seq=2)
    sql("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [link.event_id])
    with pytest.raises(CommandError, match="does not verify"):
        call_command("audit", "verify")
    assert f"BROKEN chain 0 seq 2 event {link.event_id}" in capsys.readouterr().err


def test_verify_checks_against_a_given_public_key(events: None, tmp_path: Path) -> None:
    audit("checkpoint", "--out", str(tmp_path / "cp.json"))
    pem = tmp_path / "public.pem"
    pem.write_text(signing.public_key_pem(signing.load_private_key().public_key()))
    assert "OK" in audit("verify", "--public-key", str(pem))


def test_keygen_refuses_to_overwrite_the_key(db: Any) -> None:
    signing.ensure_key_file()
    with pytest.raises(CommandError, match="already exists"):
        audit("keygen")
    assert "BEGIN PUBLIC KEY" in audit("keygen", "--show")


class _Witness(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_checkpoint_posts_the_file_to_a_witness(events: None) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Witness)
    threading.Thread(target=server.handle_request, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/checkpoints"
    try:
        assert "HTTP 201" in audit("checkpoint", "--post", url)
    finally:
        server.server_close()
    [document] = _Witness.received
    assert document["format"] == "callvault-audit-checkpoint/1"
    assert document["public_key"] == signing.public_key_text(
        signing.load_private_key().public_key()
    )


def test_archive_names_an_unknown_project(db: Any) -> None:
    with pytest.raises(CommandError, match="no project"):
        audit("archive", "--project", "nope")


def run(args: list[str], data: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "DJANGO_"))}
    clean.update({"CALLVAULT_DATA_DIR": str(data), "CALLVAULT_DEBUG": "1"})
    return subprocess.run(  # noqa: S603 (this interpreter, our own arguments)
        [sys.executable, "-m", "callvault.cli", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_audit_commands_as_a_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seeded = run(["demo", "--no-serve", "--orders", "5"], data)
    assert seeded.returncode == 0, seeded.stderr
    assert (data / "audit-signing.key").stat().st_mode & 0o777 == 0o600
    assert run(["audit", "keygen"], data).returncode != 0
    cp = run(["audit", "checkpoint", "--out", str(tmp_path / "cp.json")], data)
    assert cp.returncode == 0, cp.stderr
    ok = run(["audit", "verify", "--checkpoint", str(tmp_path / "cp.json")], data)
    assert ok.returncode == 0 and "audit trail OK" in ok.stdout, ok.stderr
    with sqlite3.connect(data / "callvault.sqlite3") as db:
        db.execute("DROP TRIGGER audit_auditevent_no_delete")
        db.execute("DELETE FROM audit_auditevent WHERE id = (SELECT MAX(id) FROM audit_auditevent)")
    broken = run(["audit", "verify"], data)
    assert broken.returncode != 0
    assert "BROKEN" in broken.stderr and "the event is missing" in broken.stderr


def test_the_worker_seals_and_writes_a_checkpoint_once_per_interval(
    events: None, settings: Any, tmp_path: Path
) -> None:
    from callvault.maintenance import AuditSealer

    settings.AUDIT_CHECKPOINT_DIR = tmp_path
    settings.AUDIT_CHECKPOINT_INTERVAL = 3600
    sealer = AuditSealer()
    sealer.run_once()
    assert ChainLink.objects.count() == 3
    document = json.loads((tmp_path / "checkpoint-latest.json").read_text())
    assert [c["seq"] for c in document["checkpoints"]] == [3]
    record_event("later", project_id=None)
    sealer.run_once()
    assert ChainLink.objects.count() == 4
    assert Checkpoint.objects.count() == 1  # the next one is due in an hour
