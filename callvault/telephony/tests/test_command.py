"""`callvault manage telephony`: the SIP proxy's subscriber table and scripted setup."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.telephony.models import Pbx, SipAccount
from callvault.telephony.setup_actions import do_disable_sip_account, hash_pbx_secret, sip_ha1
from callvault.telephony.tests.call_support import SIP_DOMAIN, sip_project

__all__ = ["sip_project"]


def run(*args: str) -> str:
    out = StringIO()
    call_command("telephony", *args, stdout=out)
    return out.getvalue()


def test_create_pbx_prints_the_secret_once(sip_project: Project) -> None:
    out = run("create-pbx", "--project", "alpha", "--name", "Kamailio", "--networks", "127.0.0.1")
    secret = out.strip().splitlines()[-1]
    pbx = Pbx.objects.get()
    assert pbx.secret_hash == hash_pbx_secret(secret) and pbx.networks == "127.0.0.1/32"
    event = AuditEvent.objects.get(action="pbx.create")
    assert event.actor_name == "system: telephony create-pbx"


def test_create_sip_account_prints_the_password_once(
    sip_project: Project, operator: Membership
) -> None:
    out = run("create-sip-account", "--project", "alpha", "--username", "bob", "--sip-user", "1001")
    password = out.strip().splitlines()[-1]
    account = SipAccount.objects.get()
    assert account.ha1 == sip_ha1("1001", SIP_DOMAIN, password)


def test_unknown_projects_members_and_bad_extensions_are_errors(
    sip_project: Project, operator: Membership
) -> None:
    with pytest.raises(CommandError, match="no project"):
        run("create-pbx", "--project", "nope", "--name", "x", "--networks", "192.0.2.1")
    with pytest.raises(CommandError, match="not an active member"):
        run("create-sip-account", "--project", "alpha", "--username", "zed", "--sip-user", "10")
    with pytest.raises(CommandError, match="username"):
        run("create-sip-account", "--project", "alpha", "--username", "bob", "--sip-user", "x1")


def test_the_subscriber_table_holds_active_accounts_with_their_ha1_only(
    sip_project: Project, operator: Membership, trainee: Membership, tmp_path: Path
) -> None:
    run("create-sip-account", "--project", "alpha", "--username", "bob", "--sip-user", "1001")
    out = run(
        "create-sip-account", "--project", "alpha", "--username", "tina", "--sip-user", "1009"
    )
    trainee_password = out.strip().splitlines()[-1]
    do_disable_sip_account(SipAccount.objects.get(username="1009"))
    table = tmp_path / "dbtext" / "subscriber"
    assert "1 SIP account(s)" in run("kamailio-subscribers", "--out", str(table))
    lines = table.read_text().splitlines()
    assert lines[0] == (
        "id(int,auto) username(string) domain(string) password(string,null) ha1(string) "
        "ha1b(string,null) "
    )
    bob = SipAccount.objects.get(username="1001")
    assert lines[1:] == [f"{bob.pk}:1001:{SIP_DOMAIN}::{bob.ha1}:"]
    assert trainee_password not in table.read_text()
    assert oct(table.stat().st_mode)[-3:] == "640"
