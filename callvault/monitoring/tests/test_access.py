"""Whose activity and screens a member may see: the members page's ladder (owners above
everyone, nobody but owners above an owner or an owner-like member, others only above lower
roles), and screens of members who may see numbers only for viewers who may too. The same
ladder decides who may enrol whom."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from callvault.accounts.actions import may_manage
from callvault.accounts.models import Membership, Role
from callvault.audit.models import AuditEvent
from callvault.monitoring.access import may_see_screens, may_watch
from callvault.monitoring.actions import may_enrol
from callvault.monitoring.models import Device, Screenshot
from callvault.monitoring.screenshots import do_receive_screenshot
from callvault.monitoring.tests.support import enrol, image_bytes
from conftest import make_member


def client_of(member: Membership) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(member.user)
    return client


def shot_of(member: Membership) -> Screenshot:
    """A screenshot of the member's, from a device of theirs."""
    device, _ = enrol(member, hostname=f"pc-{member.user.username}")
    device = Device.objects.select_related("project__monitoring_policy").get(pk=device.pk)
    return do_receive_screenshot(
        device, client_id=uuid.uuid4(), taken_at=timezone.now(), content=image_bytes()
    ).screenshot


def opens(viewer: Membership, member: Membership, shot: Screenshot) -> tuple[int, int, int]:
    """The viewer's answers for the member's timeline, full screenshot and thumbnail."""
    client = client_of(viewer)
    base = "/p/alpha/monitoring"
    return (
        client.get(f"{base}/timeline/{member.user_id}/").status_code,
        client.get(f"{base}/screenshots/{shot.pk}/").status_code,
        client.get(f"{base}/screenshots/{shot.pk}/thumb/").status_code,
    )


@pytest.fixture
def admin(project: Any) -> Membership:
    return make_member(project, "adam", Role.ADMIN)


def test_a_supervisor_sees_neither_the_owners_timeline_nor_their_screen(owner, supervisor):
    """The review's finding: an owner (who may see numbers) enrolled their own PC, and a
    supervisor without numbers saw the owner's day and full screenshots."""
    assert owner.can_see_phones and not supervisor.can_see_phones
    shot = shot_of(owner)
    assert opens(supervisor, owner, shot) == (404, 404, 404)
    assert not AuditEvent.objects.filter(action__in=["timeline.view", "screenshot.view"]).exists()


def test_a_supervisor_sees_the_roles_below_only(supervisor, operator, trainee, admin, project):
    other = make_member(project, "sue", Role.SUPERVISOR)
    for below in (operator, trainee):
        assert opens(supervisor, below, shot_of(below)) == (200, 200, 200)
    for beside_or_above in (other, admin):
        assert opens(supervisor, beside_or_above, shot_of(beside_or_above)) == (404, 404, 404)


def test_nobody_watches_their_own_timeline_but_an_owner(supervisor, admin, owner):
    for member in (supervisor, admin):
        assert opens(member, member, shot_of(member)) == (404, 404, 404)
        assert client_of(member).get("/p/alpha/monitoring/me/").status_code == 200
    assert opens(owner, owner, shot_of(owner)) == (200, 200, 200)


def test_an_admin_sees_supervisors_but_not_owners_or_owner_like_members(
    admin, supervisor, owner, operator, project
):
    assert opens(admin, supervisor, shot_of(supervisor)) == (200, 200, 200)
    assert opens(admin, owner, shot_of(owner)) == (404, 404, 404)
    # An operator an owner trusted with numbers stands above an admin (as on the members
    # page, where only an owner may change them).
    Membership.objects.filter(pk=operator.pk).update(can_see_phones=True)
    assert opens(admin, operator, shot_of(operator)) == (404, 404, 404)


def test_owners_see_everyone_but_screens_with_numbers_only_with_numbers(owner, operator, project):
    second = make_member(project, "olive", Role.OWNER)
    assert opens(owner, second, shot_of(second)) == (200, 200, 200)
    # An owner who gave up seeing numbers still watches the operator who may see them, but
    # not their screens: a revealed number may be on one.
    Membership.objects.filter(pk=owner.pk).update(can_see_phones=False)
    Membership.objects.filter(pk=operator.pk).update(can_see_phones=True)
    shot = shot_of(operator)
    assert opens(owner, operator, shot) == (200, 404, 404)
    page = client_of(owner).get(f"/p/alpha/monitoring/timeline/{operator.user_id}/")
    html = page.content.decode()
    assert f"/screenshots/{shot.pk}/" not in html
    assert "1 screenshot this day is not shown" in html
    event = AuditEvent.objects.filter(action="timeline.view").latest("id")
    assert event.extra["screenshots"] == 0 and event.extra["screenshots_hidden"] == 1


def test_the_devices_page_lists_only_members_below(supervisor, operator, owner, admin):
    for member in (operator, owner, admin):
        enrol(member, hostname=f"pc-of-{member.user.username}")
    html = client_of(supervisor).get("/p/alpha/monitoring/").content.decode()
    assert "pc-of-bob" in html
    assert "pc-of-alice" not in html and "pc-of-adam" not in html
    assert f"/timeline/{operator.user_id}/" in html
    everything = client_of(owner).get("/p/alpha/monitoring/").content.decode()
    assert all(f"pc-of-{name}" in everything for name in ("bob", "alice", "adam"))


def test_who_may_enrol_whom_follows_the_same_ladder(owner, admin, supervisor, operator, project):
    second_admin = make_member(project, "ada", Role.ADMIN)
    Membership.objects.filter(pk=second_admin.pk).update(can_export=False, can_manage_members=False)
    second_admin.refresh_from_db()
    assert may_enrol(owner, operator) and may_enrol(owner, admin) and may_enrol(owner, owner)
    assert may_enrol(admin, operator) and may_enrol(admin, supervisor) and may_enrol(admin, admin)
    assert not may_enrol(admin, owner)
    # may_manage alone would allow this one (no owner-only capability is left to them),
    # but an admin does not stand above another admin.
    assert may_manage(admin, second_admin)
    assert not may_watch(admin, second_admin) and not may_enrol(admin, second_admin)
    assert not may_enrol(supervisor, operator)  # watches, but does not manage members
    response = client_of(admin).post(
        "/p/alpha/monitoring/codes/", {"membership": second_admin.pk, "hours": 2}
    )
    assert "Select a valid choice" in response.content.decode()


def test_may_see_screens_needs_may_watch_first(owner, outsider, operator):
    assert not may_watch(outsider, operator) and not may_see_screens(outsider, operator)
    assert may_see_screens(owner, operator)
