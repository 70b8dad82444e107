"""Telling owners what needs their attention: a notice on their page and, where mail is
configured, an email. Each notice is a copy of an audit event, kept for the owner to read."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from callvault.accounts.models import Membership, Role, SecurityNotice

log = logging.getLogger(__name__)

# What each kind of notice says; the params are filled in at display time, in the reader's
# language. Params never hold phone numbers or secrets (they come from audit events).
KINDS: dict[str, Any] = {
    "refused_address": _("%(user)s was refused: access from %(ip)s is not allowed."),
    "lockout": _("%(who)s is locked out for %(duration)s after repeated failed logins."),
    "new_address": _("%(user)s logged in from an address not seen before: %(ip)s."),
    "new_device": _("%(user)s logged in from a device not seen before: %(device)s."),
    "support_used": _("Support access of %(person)s was used from %(ip)s."),
}


def describe(notice: SecurityNotice) -> str:
    """The notice in the reader's language."""
    template = KINDS.get(notice.kind)
    if template is None:
        return notice.kind
    try:
        return str(str(template) % notice.params)
    except (KeyError, TypeError, ValueError):
        return notice.kind


def notify_owners(
    project_id: int, kind: str, params: dict[str, Any], *, event_id: int | None = None
) -> SecurityNotice:
    """Keep a notice for the project's owners and mail it to those with an address, after
    the transaction commits (a rolled-back refusal sends nothing)."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    notice = SecurityNotice.objects.create(
        project_id=project_id, kind=kind, params=params, event_id=event_id
    )
    if settings.EMAIL_HOST:
        transaction.on_commit(lambda: _mail(notice))
    return notice


def _mail(notice: SecurityNotice) -> None:
    recipients = list(
        Membership.objects.active()
        .filter(project_id=notice.project_id, role=Role.OWNER)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    if not recipients:
        return
    try:
        send_mail(
            subject=f"[callvault] {notice.project}",
            message=describe(notice),
            from_email=None,
            recipient_list=recipients,
        )
    except OSError:
        # The notice is on the owner's page either way; a mail server being down must not
        # turn a refusal or a lockout into an error page.
        log.warning("could not mail security notice %s", notice.pk, exc_info=True)
