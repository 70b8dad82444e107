"""`callvault access`: the way back in from the server's shell, recorded as the system."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from callvault.accounts.allowlist import do_add_network
from callvault.accounts.models import AllowedNetwork
from callvault.audit.models import AuditEvent
from conftest import login

MINE = "/p/alpha/orders/mine/"


def run(*args: str) -> str:
    out = StringIO()
    with translation.override("en"):  # the server's language is Russian by default
        call_command("access", *args, stdout=out)
    return out.getvalue()


def test_allow_ip_lets_a_locked_out_owner_back_in_and_is_recorded_as_the_system(owner):
    do_add_network(owner.project, "192.0.2.0/24", "Office")
    assert login(owner).get(
        "/p/alpha/settings/networks/", REMOTE_ADDR="203.0.113.5"
    ).status_code == (403)
    output = run("allow-ip", "alpha", "203.0.113.5", "--label", "Alice at home")
    assert "203.0.113.5/32" in output
    assert login(owner).get(
        "/p/alpha/settings/networks/", REMOTE_ADDR="203.0.113.5"
    ).status_code == (200)
    event = AuditEvent.objects.get(
        action="allowed_network.add", changes__label=[None, "Alice at home"]
    )
    assert (event.actor_kind, event.actor_name) == ("system", "system: access allow-ip")
    assert event.request_id


def test_allow_ip_for_one_member(operator):
    run("allow-ip", "alpha", "2001:db8::/32", "--member", "bob")
    row = AllowedNetwork.objects.get()
    assert (row.membership_id, row.network, row.label) == (
        operator.pk,
        "2001:db8::/32",
        "added on the server",
    )


def test_allow_ip_says_when_host_bits_were_cleared(project):
    assert "saved as 192.0.2.0/24" in run("allow-ip", "alpha", "192.0.2.9/24")


def test_a_bad_cidr_unknown_project_or_member_is_an_error(project):
    with pytest.raises(CommandError, match="network"):
        run("allow-ip", "alpha", "192.0.2.0/33")
    with pytest.raises(CommandError, match="no project"):
        run("allow-ip", "nope", "192.0.2.0/24")
    with pytest.raises(CommandError, match="not a member"):
        run("allow-ip", "alpha", "192.0.2.0/24", "--member", "nobody")
    assert not AllowedNetwork.objects.exists()


def test_list_shows_every_range_with_its_list(project, operator):
    do_add_network(project, "192.0.2.0/24", "Office")
    do_add_network(project, "203.0.113.0/24", "Home", membership=operator)
    output = run("list", "alpha")
    assert "192.0.2.0/24\tproject\tOffice" in output
    assert "203.0.113.0/24\tmember bob\tHome" in output


def test_list_of_an_open_project_says_so(project):
    assert "no ranges" in run("list", "alpha")


def test_remove_takes_a_range_away_and_is_recorded(project):
    do_add_network(project, "192.0.2.0/24", "Office")
    run("remove", "alpha", "192.0.2.0/24")
    assert not AllowedNetwork.objects.exists()
    event = AuditEvent.objects.get(action="allowed_network.remove")
    assert event.actor_name == "system: access remove"
    with pytest.raises(CommandError, match="not in that list"):
        run("remove", "alpha", "192.0.2.0/24")
