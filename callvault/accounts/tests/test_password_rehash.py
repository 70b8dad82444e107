"""A correct password stored under an older hasher is upgraded at login, and that write is
recorded by the application, not left to the database's triggers as "unattributed"."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client

from callvault.accounts.models import User
from callvault.audit.models import ActorKind, AuditEvent
from callvault.audit.parked import sweep_pending_changes
from conftest import PASSWORD, password_login

# Real commits, so PostgreSQL's deferred triggers fire.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def argon2_first(settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]


def test_a_hash_upgrade_at_login_is_recorded_and_nothing_is_unattributed(operator, argon2_first):
    User.objects.filter(pk=operator.user_id).update(password=make_password(PASSWORD, hasher="md5"))
    before = set(AuditEvent.objects.values_list("id", flat=True))

    password_login(Client(), "bob", PASSWORD)

    operator.user.refresh_from_db()
    assert operator.user.password.startswith("argon2$")
    event = AuditEvent.objects.get(action="user.password_rehash")
    assert event.changes == {"password": "changed"}
    assert event.extra == {"algorithm": "argon2"}
    assert (event.actor_kind, event.actor_name) == (ActorKind.MEMBER, "bob")
    sweep_pending_changes()
    new = AuditEvent.objects.exclude(id__in=before)
    stray = new.filter(actor_kind=ActorKind.UNATTRIBUTED, object_type="user")
    assert list(stray.values_list("object_id", "changes")) == []


def test_a_password_already_under_the_first_hasher_is_not_written_again(operator, argon2_first):
    User.objects.filter(pk=operator.user_id).update(
        password=make_password(PASSWORD, hasher="argon2")
    )
    password_login(Client(), "bob", PASSWORD)
    assert not AuditEvent.objects.filter(action="user.password_rehash").exists()
