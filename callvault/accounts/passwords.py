"""Passwords: the projects' policy as Django password validators, the generator, the age limit
and the owner's "choose a new password" request.

A user may belong to several projects; the strictest policy of their active memberships
applies (a password must be good enough for every door it opens), and the model's defaults
apply to someone who belongs to none yet (a member being created).
"""

from __future__ import annotations

import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from difflib import SequenceMatcher
from typing import Any, cast

from django.contrib.auth.password_validation import UserAttributeSimilarityValidator
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from zxcvbn import zxcvbn

from callvault.accounts.actions import _check_manages
from callvault.accounts.models import Membership, Project, SecurityPolicy, User
from callvault.audit.recorder import diff, record_event, snapshot

# zxcvbn's own limit: it refuses longer input, and its matching grows fast with length. Only
# this many characters are scored; a longer password is judged by its first 72 characters,
# which for anything but a repeated pattern already score "very unguessable".
STRENGTH_SCORED_CHARS = 72


def _default(field: str) -> Any:
    return cast(models.Field[Any, Any], SecurityPolicy._meta.get_field(field)).get_default()


@dataclass(frozen=True)
class PasswordRules:
    """The password rules that apply to one user."""

    min_length: int
    min_score: int
    max_age_days: int | None
    project_names: tuple[str, ...]


def password_rules(user: Any) -> PasswordRules:
    """The strictest rules among the user's active memberships; the defaults without any."""
    policies: list[SecurityPolicy] = []
    names: list[str] = []
    if user is not None and getattr(user, "pk", None):
        projects = Project.objects.filter(
            memberships__user_id=user.pk, memberships__is_active=True
        ).select_related("security_policy")
        for project in projects:
            names.append(project.name)
            policy = getattr(project, "security_policy", None)
            if policy is not None:
                policies.append(policy)
    if not policies:
        return PasswordRules(
            min_length=int(_default("password_min_length")),
            min_score=int(_default("password_min_score")),
            max_age_days=None,
            project_names=tuple(names),
        )
    ages = [p.password_max_age_days for p in policies if p.password_max_age_days]
    return PasswordRules(
        min_length=max(p.password_min_length for p in policies),
        min_score=max(p.password_min_score for p in policies),
        max_age_days=min(ages) if ages else None,
        project_names=tuple(names),
    )


class ProjectMinimumLengthValidator:
    """At least the minimum length of the strictest of the user's projects."""

    def validate(self, password: str, user: Any = None) -> None:
        """Refuse a password shorter than the policy's minimum."""
        minimum = password_rules(user).min_length
        if len(password) < minimum:
            raise ValidationError(
                ngettext(
                    "This password is too short: use at least %(min_length)d character.",
                    "This password is too short: use at least %(min_length)d characters.",
                    minimum,
                )
                % {"min_length": minimum},
                code="password_too_short",
            )

    def get_help_text(self) -> str:
        """Shown next to the password fields."""
        return _("Your password must be long enough for the policy of your projects.")


def _user_inputs(user: Any, rules: PasswordRules) -> list[str]:
    values = [getattr(user, name, "") or "" for name in ("username", "first_name", "last_name")]
    email = getattr(user, "email", "") or ""
    values += [email, email.partition("@")[0], *rules.project_names]
    return [value for value in values if value]


def _much_longer(password: str, value: str, max_similarity: float) -> bool:
    """Django's shortcut: a password ten times longer than the name cannot be "like" it (and
    comparing a very long password would only cost time)."""
    return len(password) >= 10 * len(value) and len(value) < max_similarity / 2 * len(password)


class StrengthValidator:
    """zxcvbn's estimate, at least the policy's minimum score (the user's own names and their
    projects' names count as known words)."""

    def validate(self, password: str, user: Any = None) -> None:
        """Refuse a password that is too easy to guess."""
        rules = password_rules(user)
        if rules.min_score <= 0 or not password:
            return
        result = zxcvbn(password[:STRENGTH_SCORED_CHARS], user_inputs=_user_inputs(user, rules))
        if int(result["score"]) < rules.min_score:
            raise ValidationError(
                _(
                    "This password is too easy to guess. Use several unrelated words or a "
                    "longer mix of characters, without names, dates or keyboard patterns."
                ),
                code="password_too_weak",
            )

    def get_help_text(self) -> str:
        """Shown next to the password fields."""
        return _("Your password must be hard to guess: no names, dates or keyboard patterns.")


class SimilarityValidator(UserAttributeSimilarityValidator):
    """Django's check against the username, names and email, plus the names of the user's
    projects (a shop's name is among the first things an attacker tries)."""

    def validate(self, password: str, user: Any = None) -> None:
        """Refuse a password too much like the user's names or their projects' names."""
        super().validate(password, user)
        lowered = password.lower()
        for name in password_rules(user).project_names:
            value = name.lower()
            for part in [*re.split(r"\W+", value), value]:
                if len(part) < 3 or _much_longer(lowered, part, self.max_similarity):
                    continue
                if SequenceMatcher(a=lowered, b=part).quick_ratio() >= self.max_similarity:
                    raise ValidationError(
                        _("This password is too similar to the name of your project."),
                        code="password_too_similar",
                    )


# Groups of 8 characters from the URL-safe alphabet (48 bits each), joined by "-".
GENERATED_GROUP_CHARS = 8
GENERATED_MIN_GROUPS = 4


def generated_password(min_length: int = 0) -> str:
    """A strong password a person can still type: groups of eight random characters (at
    least four, about 190 bits), enough groups for `min_length`. It passes every policy a
    project can set: zxcvbn scores random groups as very unguessable, no list holds them,
    and they resemble no name."""
    groups = max(GENERATED_MIN_GROUPS, math.ceil((min_length + 1) / (GENERATED_GROUP_CHARS + 1)))
    return "-".join(secrets.token_urlsafe(6) for _ in range(groups))


def password_expires_at(user: Any) -> datetime | None:
    """When the user's password passes the strictest maximum age of their projects (None
    when no project sets one). A password set before its age was recorded counts from when
    the user joined."""
    max_age = password_rules(user).max_age_days
    if not max_age:
        return None
    changed: datetime = user.password_changed_at or user.date_joined
    return changed + timedelta(days=max_age)


def password_expired(user: Any, now: datetime | None = None) -> bool:
    """Whether the user's password is older than their projects allow."""
    expires = password_expires_at(user)
    return expires is not None and expires <= (now or timezone.now())


# Until when (epoch seconds) a session's password is known to be young enough: the age is
# looked up at login and then at most every few minutes, not with a query on every request
# (a policy change reaches open sessions within that time).
AGE_CHECKED_KEY = "cv_password_ok_until"
AGE_RECHECK_SECONDS = 300


def password_age_ok(session: Any, user: Any) -> bool:
    """Whether the session's user may go on with their password's age, noting for a while
    that it may."""
    now = time.time()
    if float(session.get(AGE_CHECKED_KEY, 0)) > now:
        return True
    expires = password_expires_at(user)
    if expires is not None and expires.timestamp() <= now:
        return False
    recheck = now + AGE_RECHECK_SECONDS
    session[AGE_CHECKED_KEY] = min(recheck, expires.timestamp()) if expires else recheck
    return True


@receiver(user_logged_in, dispatch_uid="cv.password_age")
def note_password_age_at_login(sender: object, request: Any, user: Any, **kwargs: Any) -> None:
    """Look the age up once at login, so the requests that follow need no query for it."""
    if request is not None and hasattr(request, "session"):
        password_age_ok(request.session, user)


@transaction.atomic
def do_require_password_change(
    target: Membership, *, acting: Membership | None = None
) -> Membership:
    """Make the member choose a new password at their next request, without anyone seeing a
    password (unlike a reset). The same rules as a reset decide who may ask it of whom."""
    _check_manages(acting, target)
    user = User.objects.select_for_update().get(pk=target.user_id)
    if not user.must_change_password:
        before = snapshot(user, ["must_change_password"])
        user.must_change_password = True
        user.save(update_fields=["must_change_password"])
        record_event(
            "user.password_change_required",
            project_id=target.project_id,
            object_type="user",
            object_id=user.pk,
            object_repr=user.username,
            changes=diff(before, snapshot(user, ["must_change_password"])),
        )
    target.user = user
    return target
