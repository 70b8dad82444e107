"""`audit verify` on an intact trail, and against someone with rights on the database who
drops the triggers and edits, deletes, inserts, reorders or cuts events with raw SQL."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from callvault.audit import chain, checkpoints, signing
from callvault.audit.models import AuditEvent, ChainHead, ChainLink, Checkpoint
from callvault.audit.recorder import record_event
from callvault.audit.testing import drop_triggers, make_event, sql
from callvault.audit.verify import Report, trusted_keys, verify

pytestmark = pytest.mark.django_db


def verified(*files: Path) -> Report:
    return verify(keys=trusted_keys([]), checkpoint_files=list(files))


@pytest.fixture
def trail() -> list[AuditEvent]:
    """Six sealed events: five in the system chain and one in project 7's."""
    events = [record_event(f"e{n}", project_id=None, extra={"n": n}) for n in range(5)]
    events.append(record_event("p", project_id=7))
    chain.seal_pending()
    drop_triggers()  # from here on the test is the attacker
    return events


def only_problem(report: Report) -> tuple[int, int | None, int | None, str]:
    assert len(report.problems) == 1, report.problems
    p = report.problems[0]
    return p.chain_key, p.seq, p.event_id, p.message


def test_an_intact_trail_verifies(trail: list[AuditEvent]) -> None:
    report = verified()
    assert report.ok
    assert (report.chains, report.links) == (2, 6)


def test_an_edited_field_is_named_at_its_event(trail: list[AuditEvent]) -> None:
    sql("UPDATE audit_auditevent SET actor_name = 'someone else' WHERE id = %s", [trail[2].pk])
    key, seq, event_id, message = only_problem(verified())
    assert (key, seq, event_id) == (0, 3, trail[2].pk)
    assert "changed" in message


def test_an_edited_json_value_is_detected(trail: list[AuditEvent]) -> None:
    AuditEvent.objects.filter(pk=trail[1].pk).update(extra={"n": 99})
    assert only_problem(verified())[1:3] == (2, trail[1].pk)


def test_a_moved_event_is_detected(trail: list[AuditEvent]) -> None:
    sql("UPDATE audit_auditevent SET project_id = 7 WHERE id = %s", [trail[0].pk])
    assert only_problem(verified())[1:3] == (1, trail[0].pk)


def test_a_deleted_event_is_named(trail: list[AuditEvent]) -> None:
    sql("DELETE FROM audit_auditevent WHERE id = %s", [trail[3].pk])
    _key, seq, event_id, message = only_problem(verified())
    assert (seq, event_id) == (4, trail[3].pk)
    assert "missing" in message


def test_a_deleted_event_and_its_link_leave_a_hole_in_the_seqs(trail: list[AuditEvent]) -> None:
    sql("DELETE FROM audit_auditevent WHERE id = %s", [trail[1].pk])
    sql("DELETE FROM audit_chainlink WHERE event_id = %s", [trail[1].pk])
    _key, seq, _event, message = only_problem(verified())
    assert seq == 3 and "seqs 2..2 are missing" in message


def test_a_forged_event_inserted_into_the_past_is_detected() -> None:
    old = timezone.now() - timedelta(hours=1)
    first = make_event(created_at=old)
    make_event(id=first.pk + 10, created_at=old)  # a rolled-back id range between them
    chain.seal_pending()
    drop_triggers()
    forged = make_event(id=first.pk + 5, created_at=old, action="order.refund")
    key, seq, event_id, message = only_problem(verified())
    assert (key, seq, event_id) == (0, None, forged.pk)
    assert "not in the chain" in message


def test_swapped_events_are_detected_at_the_first_of_them(trail: list[AuditEvent]) -> None:
    a, b = trail[1].pk, trail[3].pk
    sql("UPDATE audit_auditevent SET id = -1 WHERE id = %s", [a])
    sql("UPDATE audit_auditevent SET id = %s WHERE id = %s", [a, b])
    sql("UPDATE audit_auditevent SET id = %s WHERE id = -1", [b])
    assert only_problem(verified())[1:3] == (2, a)


def test_reordered_links_are_detected(trail: list[AuditEvent]) -> None:
    sql("UPDATE audit_chainlink SET seq = -seq WHERE chain_key = 0 AND seq IN (2, 3)")
    sql("UPDATE audit_chainlink SET seq = 3 WHERE chain_key = 0 AND seq = -2")
    sql("UPDATE audit_chainlink SET seq = 2 WHERE chain_key = 0 AND seq = -3")
    _key, seq, event_id, message = only_problem(verified())
    assert (seq, event_id) == (2, trail[2].pk)
    assert "chain hash" in message


def test_only_the_first_broken_event_of_a_chain_is_named(trail: list[AuditEvent]) -> None:
    sql("UPDATE audit_auditevent SET action = 'x' WHERE id IN (%s, %s)", [trail[1].pk, trail[4].pk])
    sql("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [trail[5].pk])
    report = verified()
    assert [(p.chain_key, p.seq) for p in report.problems] == [(0, 2), (7, 1)]


def cut_tail(trail: list[AuditEvent], keep: int) -> None:
    """Delete the system chain's events after `keep` with their links, checkpoints and head."""
    last = ChainLink.objects.get(chain_key=0, seq=keep)
    doomed = list(
        ChainLink.objects.filter(chain_key=0, seq__gt=keep).values_list("event_id", flat=True)
    )
    AuditEvent.objects.filter(pk__in=doomed).delete()
    ChainLink.objects.filter(event_id__in=doomed).delete()
    Checkpoint.objects.all().delete()
    ChainHead.objects.filter(chain_key=0).update(seq=keep, hash=last.chain_hash)


def test_a_cut_tail_shows_against_an_exported_checkpoint(
    trail: list[AuditEvent], tmp_path: Path
) -> None:
    checkpoints.write_checkpoints()
    exported = tmp_path / "checkpoint.json"
    checkpoints.save_document(checkpoints.export_document(), exported)
    cut_tail(trail, keep=3)
    assert verified().ok  # a thorough cut leaves nothing inside the database to see
    key, seq, _event, message = only_problem(verified(exported))
    assert (key, seq) == (0, 4)
    assert "signed up to seq 5" in message and "tail was cut" in message


def test_a_cut_tail_shows_against_a_stored_checkpoint(trail: list[AuditEvent]) -> None:
    checkpoints.write_checkpoints()
    sql("DELETE FROM audit_chainlink WHERE chain_key = 0 AND seq = 5")
    sql("DELETE FROM audit_auditevent WHERE id = %s", [trail[4].pk])
    assert only_problem(verified())[:2] == (0, 5)


def test_a_rewritten_chain_shows_against_a_checkpoint(
    trail: list[AuditEvent], tmp_path: Path
) -> None:
    """The attacker edits an event and recomputes every link and head after it."""
    checkpoints.write_checkpoints()
    exported = tmp_path / "checkpoint.json"
    checkpoints.save_document(checkpoints.export_document(), exported)
    sql("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [trail[1].pk])
    sql("DELETE FROM audit_chainlink")
    sql("DELETE FROM audit_checkpoint")
    sql("DELETE FROM audit_chainhead")
    chain.seal_pending()
    assert verified().ok
    _key, seq, _event, message = only_problem(verified(exported))
    assert seq == 5 and "rewritten" in message


def test_a_checkpoint_with_a_forged_signature_is_refused(trail: list[AuditEvent]) -> None:
    head = ChainHead.objects.get(chain_key=0)
    now = timezone.now()
    stranger = Ed25519PrivateKey.generate()
    text = checkpoints.checkpoint_text(0, head.seq, head.hash, now)
    Checkpoint.objects.create(
        chain_key=0,
        seq=head.seq,
        hash=head.hash,
        created_at=now,
        key_fingerprint=signing.fingerprint(signing.load_private_key().public_key()),
        signature=base64.b64encode(stranger.sign(text.encode())).decode(),
    )
    _key, seq, _event, message = only_problem(verified())
    assert seq == head.seq and "not signed by a trusted key" in message


def test_a_checkpoint_file_signed_by_another_key_is_refused(
    trail: list[AuditEvent], tmp_path: Path, monkeypatch: Any
) -> None:
    checkpoints.write_checkpoints()
    document = checkpoints.export_document()
    stranger = Ed25519PrivateKey.generate()
    for item in document["checkpoints"]:
        item["seq"] += 10  # pretend the chain was longer
        created = datetime.fromisoformat(item["created_at"])
        text = checkpoints.checkpoint_text(item["chain_key"], item["seq"], item["hash"], created)
        item["signature"] = base64.b64encode(stranger.sign(text.encode())).decode()
        item["key_fingerprint"] = signing.fingerprint(stranger.public_key())
    forged = tmp_path / "forged.json"
    checkpoints.save_document(document, forged)
    report = verified(forged)
    assert {p.chain_key for p in report.problems} == {0, 7}
    assert all("not signed by a trusted key" in p.message for p in report.problems)


def test_a_checkpoint_edited_in_the_database_is_refused(trail: list[AuditEvent]) -> None:
    checkpoints.write_checkpoints()
    sql("UPDATE audit_checkpoint SET seq = seq + 1 WHERE chain_key = 0")
    assert "not signed" in only_problem(verified())[3]


def test_a_cut_tail_shows_against_the_head_when_the_head_was_left(
    trail: list[AuditEvent],
) -> None:
    sql("DELETE FROM audit_chainlink WHERE chain_key = 0 AND seq = 5")
    sql("DELETE FROM audit_auditevent WHERE id = %s", [trail[4].pk])
    _key, seq, _event, message = only_problem(verified())
    assert seq == 5 and "head says 5" in message


def test_the_sealer_moving_on_during_verify_is_not_a_problem(trail: list[AuditEvent]) -> None:
    sql("UPDATE audit_chainhead SET seq = seq - 1 WHERE chain_key = 0")  # as read before a seal
    assert verified().ok
