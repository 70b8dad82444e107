"""Shared fixtures: one project with an owner, a supervisor, an operator and a trainee, and an
outsider who is the owner of another project. Phone numbers come from the reserved range."""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.test import Client

from callvault.accounts.actions import (
    do_add_member,
    do_create_api_key,
    do_create_project,
    do_create_user,
)
from callvault.accounts.models import Membership, Project, Role
from callvault.lib.fakephones import fake_phone
from callvault.orders.actions import do_create_default_statuses, do_create_product
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Order

# Transactional tests end with a flush that the append-only audit triggers would refuse.
pytest_plugins = ["callvault.audit.testing"]

PASSWORD = "correct horse battery staple 42"


def make_project(slug: str) -> Project:
    """A project with default statuses and two products."""
    project = do_create_project(f"Shop {slug}", slug)
    do_create_default_statuses(project)
    do_create_product(project, sku="TEA", name="Tea", price="990.00")
    do_create_product(project, sku="GIFT", name="Gift box", price="390.00", is_upsell=True)
    return project


def make_member(project: Project, username: str, role: str) -> Membership:
    """A user with the test password and a membership with the role's presets."""
    user = do_create_user(username, PASSWORD, validate=False)
    return do_add_member(project, user, role)


@pytest.fixture
def project(db: Any) -> Project:
    return make_project("alpha")


@pytest.fixture
def other_project(db: Any) -> Project:
    return make_project("beta")


@pytest.fixture
def owner(project: Project) -> Membership:
    return make_member(project, "alice", Role.OWNER)


@pytest.fixture
def supervisor(project: Project) -> Membership:
    return make_member(project, "sam", Role.SUPERVISOR)


@pytest.fixture
def operator(project: Project) -> Membership:
    return make_member(project, "bob", Role.OPERATOR)


@pytest.fixture
def trainee(project: Project) -> Membership:
    return make_member(project, "tina", Role.TRAINEE)


@pytest.fixture
def outsider(other_project: Project) -> Membership:
    return make_member(other_project, "charlie", Role.OWNER)


@pytest.fixture
def rng() -> random.Random:
    return random.Random()


@pytest.fixture
def phone(rng: random.Random) -> tuple[str, str]:
    """(as typed, E.164) of a number from the reserved range, drawn at test time."""
    return fake_phone(rng, style=1)


@pytest.fixture
def order(project: Project, phone: tuple[str, str]) -> Order:
    lead = Lead(phone=phone[0], name="Ivan Petrov", address="Moscow", items=[LeadItem("TEA", 2)])
    return do_create_order(project, lead).order


@pytest.fixture
def api_key(project: Project) -> str:
    _, secret = do_create_api_key(project, "Landing", can_read_orders=True, can_update_orders=True)
    return secret


def login(member: Membership) -> Client:
    """A test client logged in as the member's user."""
    client = Client()
    client.force_login(member.user)
    return client


def password_login(client: Client, username: str, password: str) -> bool:
    """Log in through the login form, as a person does (django-axes refuses Client.login,
    which authenticates without a request); True when the client is now logged in."""
    from django.urls import reverse

    client.post(reverse("login"), {"username": username, "password": password})
    return "_auth_user_id" in client.session


@pytest.fixture
def own_ring(settings: Any, tmp_path: Any) -> Any:
    """A key ring file of the test's own, so rotating it touches nothing else."""
    from callvault.vault.keyring import create_keyring_file, reset_keyring_cache

    settings.VAULT_KEYRING_FILE = tmp_path / "ring.json"
    settings.VAULT_KEYRING = None
    reset_keyring_cache()
    create_keyring_file(settings.VAULT_KEYRING_FILE)
    yield settings.VAULT_KEYRING_FILE
    reset_keyring_cache()
