"""Who reaches the project setup pages: members who may manage the project, nobody else."""

from __future__ import annotations

import pytest
from django.test import Client

from callvault.accounts.actions import do_set_capabilities
from callvault.audit.models import AuditEvent
from callvault.orders.models import Product, Status, WorkSettings
from conftest import login

BASE = "/p/alpha/setup/"


def pages(project) -> list[tuple[str, dict[str, str]]]:
    """Each page with a POST that would change something if it were accepted."""
    status = Status.objects.get(project=project, code="accepted")
    product = Product.objects.get(project=project, sku="TEA")
    return [
        ("statuses/", {"code": "hacked", "name": "Hacked", "group": "accepted"}),
        (f"statuses/{status.pk}/", {"name": "Hacked", "group": "accepted", "position": "1"}),
        ("products/", {"sku": "HACK", "name": "Hack", "price": "1"}),
        (f"products/{product.pk}/", {"name": "Hacked", "price": "1", "is_active": "on"}),
        (
            "work/",
            {
                "calling_hours_start": "00:00",
                "calling_hours_end": "23:59",
                "lock_minutes": "5",
                "priority_1": "retry",
                "priority_2": "callback",
                "priority_3": "new",
                "no_answer_backoff": "1",
                "max_attempts": "1",
            },
        ),
        ("script/", {"script": "Hacked"}),
    ]


def assert_unchanged(project) -> None:
    assert not Status.objects.filter(name="Hacked").exists()
    assert not Status.objects.filter(code="hacked").exists()
    assert not Product.objects.filter(name__in=["Hack", "Hacked"]).exists()
    work = WorkSettings.objects.get(project=project)
    assert (work.script, work.lock_minutes) == ("", 15)
    assert not AuditEvent.objects.filter(
        action__in=["status.update", "product.update", "work_settings.update"]
    ).exists()


def test_anonymous_is_sent_to_login(project):
    for path, data in pages(project):
        for response in (Client().get(BASE + path), Client().post(BASE + path, data)):
            assert response.status_code == 302, path
            assert "/accounts/login/" in response["Location"]
    assert_unchanged(project)


def test_an_outsider_gets_404(outsider, project):
    client = login(outsider)
    for path, data in pages(project):
        assert client.get(BASE + path).status_code == 404, path
        assert client.post(BASE + path, data).status_code == 404, path
    assert_unchanged(project)


@pytest.mark.parametrize("who", ["supervisor", "operator", "trainee"])
def test_members_without_the_capability_get_404(who, request, project):
    client = login(request.getfixturevalue(who))
    for path, data in pages(project):
        assert client.get(BASE + path).status_code == 404, path
        assert client.post(BASE + path, data).status_code == 404, path
    assert_unchanged(project)


def test_an_owner_sees_every_page(owner, project):
    client = login(owner)
    for path, _ in pages(project):
        assert client.get(BASE + path).status_code == 200, path


def test_the_capability_not_the_role_opens_the_pages(supervisor, project):
    do_set_capabilities(supervisor, {"can_manage_project": True})
    client = login(supervisor)
    for path, _ in pages(project):
        response = client.get(BASE + path)
        assert response.status_code == 200, path
        # The sub-navigation offers what this member may open, and no more.
        assert "/setup/products/" in response.content.decode()
        assert "/settings/members/" not in response.content.decode()


def test_ids_of_another_project_are_404(owner, other_project):
    status = Status.objects.get(project=other_project, code="accepted")
    product = Product.objects.get(project=other_project, sku="TEA")
    client = login(owner)
    for path in (f"statuses/{status.pk}/", f"products/{product.pk}/"):
        assert client.get(BASE + path).status_code == 404
        assert client.post(BASE + path, {"name": "Hacked", "price": "1"}).status_code == 404
    status.refresh_from_db()
    product.refresh_from_db()
    assert status.name == "Accepted" and product.name == "Tea"
