"""The password policy of a user's projects, the generator, and the maximum password age."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone, translation

from callvault.accounts.actions import (
    do_change_password,
    do_create_user,
    do_deactivate_member,
    do_reset_password,
)
from callvault.accounts.models import Membership, Role, User
from callvault.accounts.passwords import generated_password, password_expired, password_rules
from callvault.accounts.policy import do_update_security_policy, policy_for
from conftest import PASSWORD, login, make_member, password_login

STRONG16 = "qK7#vLp2-xW9zR4m"  # 16 characters, random: strong by any measure


def refusals(password: str, user: User | None) -> set[str]:
    """The codes of every rule the password breaks for the user (empty: accepted)."""
    try:
        validate_password(password, user)
    except ValidationError as exc:
        return {error.code for error in exc.error_list if error.code}
    return set()


def set_policy(member: Membership, **values: object) -> None:
    do_update_security_policy(policy_for(member.project_id), **values)


def test_a_strong_password_of_the_default_length_is_accepted(operator):
    assert refusals(STRONG16, operator.user) == set()


def test_a_password_shorter_than_twelve_characters_is_refused_by_default(operator):
    assert "password_too_short" in refusals("qK7#vLp2-xW", operator.user)
    with translation.override("en"), pytest.raises(ValidationError, match="at least 12 char"):
        validate_password("qK7#vLp2-xW", operator.user)


def test_a_project_may_ask_for_longer_passwords(operator):
    set_policy(operator, password_min_length=20)
    assert refusals(STRONG16, operator.user) == {"password_too_short"}
    assert refusals(STRONG16 + "Tz8!", operator.user) == set()


def test_an_easily_guessed_password_is_refused_by_its_strength(operator):
    assert "password_too_weak" in refusals("abcabcabcabcabc1", operator.user)
    assert "password_too_weak" in refusals("qwertyuiop123456", operator.user)


def test_a_project_that_asks_for_no_strength_accepts_a_weak_but_long_password(operator):
    set_policy(operator, password_min_score=0)
    assert "password_too_weak" not in refusals("abcabcabcabcabc1", operator.user)


def test_a_password_from_the_common_list_is_refused_even_when_it_looks_random(operator):
    assert "password_too_common" in refusals("pe#5gz29ptzmse", operator.user)


def test_a_password_like_the_username_or_the_email_is_refused(project):
    user = do_create_user("alexander.petrov", PASSWORD, validate=False, email="sasha@example.com")
    assert "password_too_similar" in refusals("alexander.petrov7", user)
    assert "password_too_similar" in refusals("sasha@example.co", user)


def test_a_password_like_the_project_name_is_refused(operator):
    assert operator.project.name == "Shop alpha"
    assert "password_too_similar" in refusals("Shopalpha2026!", operator.user)
    with translation.override("en"), pytest.raises(ValidationError, match="name of your project"):
        validate_password("Shopalpha2026!", operator.user)


def test_the_strictest_policy_of_the_users_projects_applies(operator, other_project):
    from callvault.accounts.actions import do_add_member

    elsewhere = do_add_member(other_project, operator.user, Role.OPERATOR)
    set_policy(elsewhere, password_min_length=20, password_max_age_days=90)
    set_policy(operator, password_max_age_days=30)
    rules = password_rules(operator.user)
    assert (rules.min_length, rules.max_age_days) == (20, 30)
    assert refusals(STRONG16, operator.user) == {"password_too_short"}
    do_deactivate_member(elsewhere)
    assert refusals(STRONG16, operator.user) == set()


def test_someone_in_no_project_gets_the_default_policy(db):
    user = User(username="newcomer")
    rules = password_rules(user)
    assert (rules.min_length, rules.min_score, rules.max_age_days) == (12, 3, None)


def test_a_ten_thousand_character_password_is_judged_by_its_beginning(operator):
    varied = secrets.token_urlsafe(7500)[:10_000]
    assert len(varied) == 10_000
    assert refusals(varied, operator.user) == set()
    assert "password_too_weak" in refusals("ab" * 5000, operator.user)


def test_the_generated_password_passes_the_strictest_policy_a_project_can_set(operator):
    assert refusals(generated_password(), operator.user) == set()
    set_policy(operator, password_min_length=128, password_min_score=4)
    password = generated_password(128)
    assert len(password) >= 128
    assert refusals(password, operator.user) == set()


def test_setting_a_password_through_the_actions_records_when(operator):
    user = do_create_user("nina", STRONG16)
    assert user.password_changed_at is not None
    user.password_changed_at = None
    user.save(update_fields=["password_changed_at"])
    do_change_password(user, STRONG16 + "x")
    user.refresh_from_db()
    assert user.password_changed_at is not None
    operator.user.password_changed_at = None
    operator.user.save(update_fields=["password_changed_at"])
    do_reset_password(operator, generated_password())
    operator.user.refresh_from_db()
    assert operator.user.password_changed_at is not None


# --- the maximum age ------------------------------------------------------------------------


def age_password(user: User, days: int) -> None:
    user.password_changed_at = timezone.now() - timedelta(days=days)
    user.save(update_fields=["password_changed_at"])


def test_without_a_maximum_age_an_old_password_is_kept(operator):
    age_password(operator.user, 3650)
    assert not password_expired(operator.user)
    assert login(operator).get("/p/alpha/orders/mine/").status_code == 200


def test_a_password_older_than_the_maximum_age_sends_the_member_to_the_change_page(operator):
    set_policy(operator, password_max_age_days=30)
    age_password(operator.user, 29)
    client = Client()
    assert password_login(client, "bob", PASSWORD)
    assert client.get("/p/alpha/orders/mine/").status_code == 200
    age_password(operator.user, 31)
    client = Client()
    assert password_login(client, "bob", PASSWORD)
    response = client.get("/p/alpha/orders/mine/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password_change/"
    client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": STRONG16, "new_password2": STRONG16},
    )
    assert client.get("/p/alpha/orders/mine/").status_code == 200


def test_a_password_set_before_its_age_was_recorded_counts_from_joining(operator):
    set_policy(operator, password_max_age_days=30)
    operator.user.password_changed_at = None
    operator.user.date_joined = timezone.now() - timedelta(days=40)
    operator.user.save(update_fields=["password_changed_at", "date_joined"])
    assert password_expired(operator.user)


def test_the_strictest_maximum_age_of_several_projects_applies(operator, other_project):
    elsewhere = make_member(other_project, "bob2", Role.OPERATOR)
    Membership.objects.filter(pk=elsewhere.pk).update(user=operator.user)
    set_policy(elsewhere, password_max_age_days=10)
    age_password(operator.user, 11)
    assert password_expired(operator.user)
