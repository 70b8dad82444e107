"""The telephony pages for members who may manage the project: settings with the checklist,
PBXs with a secret shown once, SIP accounts with a password shown once. Each page: anonymous,
outsider, a member without the capability, and one with it (after a step-up)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.urls import reverse

from callvault.accounts.models import Membership, Project
from callvault.accounts.stepup import SESSION_KEY
from callvault.audit.models import AuditEvent
from callvault.orders.tests.support import HttpsClient
from callvault.telephony.models import Pbx, SipAccount, TelephonySettings
from callvault.telephony.setup_actions import (
    SECRET_FIELD,
    do_create_pbx,
    do_update_telephony_settings,
    hash_pbx_secret,
    provider_secret,
    sip_ha1,
)
from callvault.telephony.tests.call_support import LOCAL, SIP_DOMAIN, sip_account, sip_project

__all__ = ["sip_project"]

PAGES = ["settings", "pbxs", "sip_accounts"]


def client_of(member: Membership | None, *, stepped_up: bool = True) -> HttpsClient:
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    if member is not None:
        client.force_login(member.user)
        if stepped_up:
            session = client.session
            session[SESSION_KEY] = time.time()
            session.save()
    return client


def page(name: str, *args: Any, slug: str = "alpha") -> str:
    return reverse(f"telephony:{name}", args=[slug, *args])


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_visitors_go_to_the_login(project: Project, name: str) -> None:
    assert client_of(None).get(page(name))["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("name", PAGES)
def test_an_outsider_gets_404(project: Project, outsider: Membership, name: str) -> None:
    client = client_of(outsider)
    assert client.get(page(name)).status_code == 404
    assert client.get(page(name, slug="beta")).status_code == 200  # their own project's


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("role", ["operator", "trainee", "supervisor"])
def test_members_without_the_capability_get_404(
    request: pytest.FixtureRequest, project: Project, name: str, role: str
) -> None:
    member = request.getfixturevalue(role)
    assert client_of(member).get(page(name)).status_code == 404


@pytest.mark.parametrize("name", PAGES)
def test_the_owner_sees_each_page_after_a_step_up(
    project: Project, owner: Membership, name: str
) -> None:
    first = client_of(owner, stepped_up=False).get(page(name))
    assert first.status_code == 302 and "/step-up/" in first["Location"]
    assert client_of(owner).get(page(name)).status_code == 200


def test_the_posts_are_refused_to_members_without_the_capability(
    sip_project: Project, operator: Membership, supervisor: Membership
) -> None:
    pbx, _ = do_create_pbx(sip_project, "office", networks=LOCAL)
    account = sip_account(operator, "1001")
    client = client_of(operator)
    assert client.post(page("settings"), {"provider": "none"}).status_code == 404
    assert client.post(page("pbxs"), {"name": "mine"}).status_code == 404
    assert client.post(page("pbx_revoke", pbx.pk)).status_code == 404
    assert client.post(page("sip_account_disable", account.pk)).status_code == 404
    assert client.post(page("sip_accounts"), {"membership": supervisor.pk, "username": "77"})
    assert Pbx.objects.get().revoked_at is None and SipAccount.objects.get().is_active
    assert SipAccount.objects.count() == 1


def settings_form(**changes: Any) -> dict[str, Any]:
    data = {
        "provider": "sip_token",
        "sip_domain": SIP_DOMAIN,
        "token_ttl_seconds": 60,
        "trainees_may_call": "on",
        "ami_port": 5038,
        "ami_channel": "PJSIP/{extension}",
        "unknown_caller_name": "New caller",
        "recording_retention_days": 180,
        "review_checklist": "Greeted",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_saving_the_settings_records_before_and_after(project: Project, owner: Membership) -> None:
    response = client_of(owner).post(page("settings"), settings_form())
    assert response.status_code == 302
    settings = TelephonySettings.objects.get(project=project)
    assert (settings.provider, settings.sip_domain) == ("sip_token", SIP_DOMAIN)
    created = AuditEvent.objects.get(action="telephony_settings.create")
    assert created.changes["provider"] == [None, "none"]
    update = AuditEvent.objects.get(action="telephony_settings.update")
    assert update.changes["provider"] == ["none", "sip_token"]
    assert update.changes["sip_domain"] == ["", SIP_DOMAIN]
    assert update.changes["review_checklist"][1] == "Greeted"
    assert (update.actor_kind, update.actor_name) == ("member", "alice")


def test_a_secret_is_sealed_recorded_as_changed_and_never_shown(
    project: Project, owner: Membership
) -> None:
    client = client_of(owner)
    form = settings_form(provider="ami", ami_host="pbx.local", ami_username="cv", ami_context="c")
    client.post(page("settings"), {**form, "secret": "amisecret-123"})
    settings = TelephonySettings.objects.get(project=project)
    assert settings.secret_sealed.startswith("cv1:") and "amisecret" not in settings.secret_sealed
    assert provider_secret(settings) == "amisecret-123"
    assert SECRET_FIELD == "telephony_secret"
    shown = client.get(page("settings")).content.decode()
    assert "amisecret" not in shown and "A secret is stored" in shown
    events = AuditEvent.objects.filter(action="telephony_settings.update")
    assert {"secret": "changed"} in [e.changes for e in events]
    assert "amisecret" not in json.dumps([e.changes for e in events] + [e.extra for e in events])
    # An empty field keeps it; switching the provider clears it.
    client.post(page("settings"), form)
    assert provider_secret(TelephonySettings.objects.get(project=project)) == "amisecret-123"
    client.post(page("settings"), settings_form())
    assert TelephonySettings.objects.get(project=project).secret_sealed == ""


def test_bad_settings_are_refused_field_by_field(project: Project, owner: Membership) -> None:
    response = client_of(owner).post(
        page("settings"),
        settings_form(
            ami_channel="PJSIP/1001",
            cloud_body_template="[1, 2]",
            cloud_headers_text="Content-Type: text/plain",
            sip_domain="not a host",
        ),
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) >= {"ami_channel", "cloud_body_template", "cloud_headers_text", "sip_domain"}
    assert not TelephonySettings.objects.exists()


def test_the_checklist_says_what_is_missing(
    sip_project: Project, owner: Membership, operator: Membership
) -> None:
    text = client_of(owner).get(page("settings")).content.decode()
    assert "✗ A PBX or SIP proxy with a secret" in text
    assert "✗ Every member who calls has a SIP account" in text
    do_create_pbx(sip_project, "office", networks=LOCAL)
    for member in Membership.objects.filter(project=sip_project, can_edit_orders=True):
        sip_account(member, str(1000 + member.pk))
    text = client_of(owner).get(page("settings")).content.decode()
    assert "✗" not in text


def test_a_new_pbx_shows_its_secret_once(sip_project: Project, owner: Membership) -> None:
    client = client_of(owner)
    response = client.post(page("pbxs"), {"name": "Kamailio", "networks": "192.0.2.0/24"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    secret = response.context["secret"]
    assert secret.startswith("cvp_") and secret in response.content.decode()
    pbx = Pbx.objects.get()
    assert pbx.secret_hash == hash_pbx_secret(secret) and pbx.networks == "192.0.2.0/24"
    assert secret not in client.get(page("pbxs")).content.decode()
    created = AuditEvent.objects.get(action="pbx.create")
    assert created.changes == {"name": [None, "Kamailio"], "networks": [None, ["192.0.2.0/24"]]}
    assert secret not in json.dumps([created.changes, created.extra])
    assert client.post(page("pbx_revoke", pbx.pk)).status_code == 302
    assert Pbx.objects.get().revoked_at is not None
    assert AuditEvent.objects.filter(action="pbx.revoke").count() == 1


def test_a_pbx_with_a_bad_network_is_refused(sip_project: Project, owner: Membership) -> None:
    response = client_of(owner).post(page("pbxs"), {"name": "x", "networks": "nonsense"})
    assert "is not a network" in response.content.decode()
    assert not Pbx.objects.exists()


def test_another_projects_pbx_cannot_be_revoked(
    sip_project: Project, owner: Membership, other_project: Project
) -> None:
    theirs, _ = do_create_pbx(other_project, "theirs", networks=LOCAL)
    assert client_of(owner).post(page("pbx_revoke", theirs.pk)).status_code == 404
    assert Pbx.objects.get().revoked_at is None


def test_a_new_sip_account_shows_its_password_once(
    sip_project: Project, owner: Membership, operator: Membership
) -> None:
    client = client_of(owner)
    response = client.post(page("sip_accounts"), {"membership": operator.pk, "username": "1001"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    password = response.context["password"]
    assert len(password) >= 16 and password in response.content.decode()
    account = SipAccount.objects.get()
    assert (account.username, account.realm, account.membership) == ("1001", SIP_DOMAIN, operator)
    assert account.ha1 == sip_ha1("1001", SIP_DOMAIN, password)
    assert password not in client.get(page("sip_accounts")).content.decode()
    created = AuditEvent.objects.get(action="sip_account.create")
    assert created.changes["password"] == "changed" and created.changes["username"] == [
        None,
        "1001",
    ]
    assert password not in json.dumps([created.changes, created.extra])
    assert account.ha1 not in json.dumps([created.changes, created.extra])
    # Taken, then disabled and made anew.
    again = client.post(page("sip_accounts"), {"membership": operator.pk, "username": "1002"})
    assert "already has an active SIP account" in again.content.decode()
    assert client.post(page("sip_account_disable", account.pk)).status_code == 302
    assert not SipAccount.objects.get().is_active
    anew = client.post(page("sip_accounts"), {"membership": operator.pk, "username": "1002"})
    assert anew.context["password"] and SipAccount.objects.get().username == "1002"


def test_a_sip_user_is_a_short_extension(
    sip_project: Project, owner: Membership, operator: Membership
) -> None:
    response = client_of(owner).post(
        page("sip_accounts"), {"membership": operator.pk, "username": "1234567"}
    )
    assert response.status_code == 200 and not response.context["password"]
    assert "username" in response.context["form"].errors
    assert not SipAccount.objects.exists()


def test_the_settings_area_links_the_telephony_pages_for_managers_only(
    project: Project, owner: Membership, operator: Membership
) -> None:
    # Reached from the settings area like the other project settings, not the top bar.
    link = f'href="{page("settings")}"'
    assert link in client_of(owner).get(reverse("setup:statuses", args=["alpha"])).content.decode()
    for where in ("orders:mine", "setup:statuses"):
        response = client_of(operator).get(reverse(where, args=["alpha"]))
        assert link not in response.content.decode()


def test_the_settings_update_checks_every_value_again(project: Project) -> None:
    from callvault.lib.errors import FieldErrors

    with pytest.raises(FieldErrors) as refused:
        do_update_telephony_settings(
            project,
            {"provider": "fax", "token_ttl_seconds": 5, "unknown_caller_name": "x", "nope": 1},
        )
    assert set(refused.value.errors) == {"provider", "token_ttl_seconds", "nope"}
