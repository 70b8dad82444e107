"""Who decides where calls go. A PBX's secret and a SIP account each open numbers, and the
provider's addresses, templates, headers and secret say where a number is sent: an admin who
may not see phone numbers must not be able to set any of them up (they would then have the
number through the PBX API, or at their own server). Members who may see numbers do it after
a step-up; the owners are told of every new PBX and every change of where calls go; every
PBX is allow-listed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from callvault.accounts.actions import do_set_capabilities
from callvault.accounts.models import Membership, Project, Role, SecurityNotice
from callvault.accounts.notices import describe
from callvault.accounts.stepup import SESSION_KEY
from callvault.audit.context import Actor, acting_as
from callvault.lib.errors import FieldErrors
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient
from callvault.telephony.models import Pbx, SipAccount, TelephonySettings
from callvault.telephony.setup_actions import (
    do_create_pbx,
    do_create_sip_account,
    do_disable_sip_account,
    do_revoke_pbx,
    do_update_telephony_settings,
    provider_secret,
)
from callvault.telephony.tests.call_support import (
    LOCAL,
    SIP_DOMAIN,
    press_call,
    sip_account,
    sip_project,
)
from conftest import make_member

__all__ = ["sip_project"]


@pytest.fixture
def admin(project: Project) -> Membership:
    """An admin: manages the project, may not see phone numbers (the role's preset)."""
    member = make_member(project, "adam", Role.ADMIN)
    assert member.can_manage_project and not member.can_see_phones
    return member


def stepped_up(member: Membership) -> HttpsClient:
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(member.user)
    session = client.session
    session[SESSION_KEY] = time.time()
    session.save()
    return client


def page(name: str, *args: Any) -> str:
    return reverse(f"telephony:{name}", args=["alpha", *args])


def notices(kind: str) -> list[str]:
    return [describe(n) for n in SecurityNotice.objects.filter(kind=kind).order_by("pk")]


# --- an admin without "May see phone numbers" ----------------------------------------------


def test_an_admin_who_may_not_see_numbers_cannot_set_up_a_pbx_or_a_sip_account(
    sip_project: Project, admin: Membership, order: Order
) -> None:
    client = stepped_up(admin)
    for name in ("pbxs", "sip_accounts"):
        assert client.get(page(name)).status_code == 404
    made = client.post(page("pbxs"), {"name": "mine", "networks": "127.0.0.1/32"})
    assert made.status_code == 404 and "secret" not in (made.context or {})
    account = client.post(page("sip_accounts"), {"membership": admin.pk, "username": "4242"})
    assert account.status_code == 404
    assert not Pbx.objects.exists() and not SipAccount.objects.exists()
    # So pressing Call gets them no token for an account of their own.
    assert "no active SIP account" in press_call(admin, order).content.decode()


def test_an_admin_who_may_not_see_numbers_cannot_revoke_or_disable_either(
    sip_project: Project, admin: Membership, operator: Membership
) -> None:
    pbx, _secret = do_create_pbx(sip_project, "office", networks=LOCAL)
    account = sip_account(operator, "1001")
    client = stepped_up(admin)
    assert client.post(page("pbx_revoke", pbx.pk)).status_code == 404
    assert client.post(page("sip_account_disable", account.pk)).status_code == 404
    assert Pbx.objects.get().revoked_at is None and SipAccount.objects.get().is_active


def test_the_actions_refuse_such_a_member_whoever_calls_them(
    sip_project: Project, admin: Membership, operator: Membership
) -> None:
    with pytest.raises(PermissionDenied):
        do_create_pbx(sip_project, "mine", networks=LOCAL, acting=admin)
    with pytest.raises(PermissionDenied):
        do_create_sip_account(admin, "4242", acting=admin)
    pbx, _secret = do_create_pbx(sip_project, "office", networks=LOCAL)
    account = sip_account(operator, "1001")
    with pytest.raises(PermissionDenied):
        do_revoke_pbx(pbx, acting=admin)
    with pytest.raises(PermissionDenied):
        do_disable_sip_account(account, acting=admin)
    for values in (
        {"cloud_url": "https://evil.example/call"},
        {"ami_host": "evil.example"},
        {"provider": "cloud"},
        {"sip_domain": "sip.evil.example"},
        {"cloud_headers": {"X-Api-Key": "k"}},
        {"cloud_body_template": '{"to": "{number}"}'},
    ):
        with pytest.raises(PermissionDenied):
            do_update_telephony_settings(sip_project, values, acting=admin)
    with pytest.raises(PermissionDenied):
        do_update_telephony_settings(sip_project, {}, secret="new secret", acting=admin)
    settings = TelephonySettings.objects.get(project=sip_project)
    assert (settings.provider, settings.sip_domain, settings.cloud_url) == (
        "sip_token",
        SIP_DOMAIN,
        "",
    )


def test_such_an_admin_still_changes_the_other_settings_with_the_provider_shown_locked(
    sip_project: Project, admin: Membership
) -> None:
    do_update_telephony_settings(sip_project, {"cloud_headers": {"X-Api-Key": "key-1"}})
    told = notices("telephony_routing_changed")
    client = stepped_up(admin)
    shown = client.get(page("settings"))
    form = shown.context["form"]
    assert form.fields["cloud_url"].disabled and form.fields["secret"].disabled
    assert form.fields["provider"].disabled and form.fields["cloud_headers_text"].disabled
    assert not form.fields["unknown_caller_name"].disabled
    text = shown.content.decode()
    assert "Only members who may see phone numbers change the provider" in text
    assert f'href="{page("pbxs")}"' not in text  # no link to the pages they may not open
    posted = client.post(
        page("settings"),
        {
            "provider": "cloud",  # disabled: the stored value stands
            "cloud_url": "https://evil.example/call",
            "cloud_headers_text": "X-Api-Key: theirs",
            "secret": "their secret",
            "token_ttl_seconds": 60,
            "ami_port": 5038,
            "ami_channel": "PJSIP/{extension}",
            "unknown_caller_name": "Dear caller",
            "recording_retention_days": 30,
        },
    )
    assert posted.status_code == 302
    settings = TelephonySettings.objects.get(project=sip_project)
    assert (settings.provider, settings.cloud_url, settings.sip_domain) == (
        "sip_token",
        "",
        SIP_DOMAIN,
    )
    assert settings.cloud_headers == {"X-Api-Key": "key-1"} and provider_secret(settings) == ""
    assert (settings.unknown_caller_name, settings.recording_retention_days) == ("Dear caller", 30)
    assert notices("telephony_routing_changed") == told


def test_an_admin_given_the_capability_may_and_the_owners_hear_of_it(
    sip_project: Project, admin: Membership, owner: Membership
) -> None:
    do_set_capabilities(admin, {"can_see_phones": True}, acting=owner)
    admin.refresh_from_db()
    client = stepped_up(admin)
    made = client.post(page("pbxs"), {"name": "Edge proxy", "networks": "192.0.2.10"})
    assert made.status_code == 200 and made.context["secret"].startswith("cvp_")
    assert notices("pbx_created") == [
        "adam added the PBX “Edge proxy” (allowed from 192.0.2.10/32): its secret can look up "
        "customers' numbers."
    ]
    account = client.post(page("sip_accounts"), {"membership": admin.pk, "username": "4242"})
    assert account.context["password"]


# --- the owners are told ------------------------------------------------------------------


def test_a_change_of_where_calls_go_or_of_the_secret_is_told_to_the_owners(
    project: Project, owner: Membership
) -> None:
    with acting_as(Actor.member(owner.user)):
        do_update_telephony_settings(project, {"recording_retention_days": 30}, acting=owner)
        assert notices("telephony_routing_changed") == []
        do_update_telephony_settings(
            project,
            {"provider": "ami", "ami_host": "pbx.example", "ami_username": "cv"},
            secret="s3cret",
            acting=owner,
        )
        (told,) = notices("telephony_routing_changed")
        assert told == (
            "alice changed where calls go in the telephony settings: provider, ami_host, "
            "ami_username, secret."
        )
        notice = SecurityNotice.objects.get(kind="telephony_routing_changed")
        assert notice.event_id is not None
        do_update_telephony_settings(project, {}, secret="another", acting=owner)
        assert notices("telephony_routing_changed")[-1].endswith("settings: secret.")


# --- every PBX is allow-listed -------------------------------------------------------------


@pytest.mark.parametrize("networks", ["", [], ["  "], "0.0.0.0/0", ["::/0"]])
def test_a_pbx_needs_the_networks_it_calls_from(sip_project: Project, networks: Any) -> None:
    with pytest.raises(FieldErrors) as refused:
        do_create_pbx(sip_project, "office", networks=networks)
    assert set(refused.value.errors) == {"networks"}
    assert not Pbx.objects.exists()


def test_the_pbx_form_requires_networks(sip_project: Project, owner: Membership) -> None:
    response = stepped_up(owner).post(page("pbxs"), {"name": "office", "networks": ""})
    assert response.status_code == 200 and "networks" in response.context["form"].errors
    assert not response.context["secret"] and not Pbx.objects.exists()


def test_the_command_requires_networks(sip_project: Project) -> None:
    with pytest.raises(CommandError, match="networks"):
        call_command("telephony", "create-pbx", "--project", "alpha", "--name", "k")
    assert not Pbx.objects.exists()
