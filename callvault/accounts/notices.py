"""Telling owners what needs their attention: a notice on their page and, where mail is
configured, an email. Each notice is a copy of an audit event, kept for the owner to read."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils.translation import gettext
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
    # Leak controls (callvault/guard).
    "quota_reached": _("%(user)s reached a quota: %(quota)s, %(count)s of %(limit)s."),
    "suspended": _(
        "%(user)s was suspended after going on past a quota (%(quota)s) until an owner reviews it."
    ),
    "cards_burst": _(
        "%(user)s opened %(count)s order cards within %(minutes)s minutes (alert at %(threshold)s)."
    ),
    "reveals_burst": _(
        "%(user)s revealed %(count)s phone numbers within %(minutes)s minutes "
        "(alert at %(threshold)s)."
    ),
    "exports_burst": _(
        "%(user)s made %(count)s exports within %(minutes)s minutes (alert at %(threshold)s)."
    ),
    "outside_hours": _("%(user)s worked outside working hours: %(what)s at %(time)s."),
    "anomaly": _(
        "%(user)s: %(count)s %(what)s this hour; usually %(mean)s an hour, "
        "and 95%% of hours at most %(p95)s."
    ),
    # Monitoring (callvault/monitoring/silence.py).
    "agent_silent": _(
        "%(user)s is working in callvault but the monitoring agent on %(device)s has been "
        "silent for %(minutes)s minutes (last seen %(last_seen)s)."
    ),
    # Telephony (callvault/telephony): whoever sets these can get customers' numbers.
    "pbx_created": _(
        "%(user)s added the PBX “%(name)s” (allowed from %(networks)s): its secret can "
        "look up customers' numbers."
    ),
    "telephony_routing_changed": _(
        "%(user)s changed where calls go in the telephony settings: %(fields)s."
    ),
    "inbound_limited": _(
        "The PBX “%(name)s” asked who is calling more than %(limit)s times within a minute: "
        "its further lookups are refused until the minute is over."
    ),
}


# Params stored as an English phrase (a quota's or an activity's label, itself a msgid):
# translated for each reader, so an owner reads the alert in their own language whatever the
# language of the request that raised it.
TRANSLATED_PARAMS = ("quota", "what")


def describe(notice: SecurityNotice) -> str:
    """The notice in the reader's language."""
    template = KINDS.get(notice.kind)
    if template is None:
        return notice.kind
    params = dict(notice.params)
    for name in TRANSLATED_PARAMS:
        if isinstance(params.get(name), str):
            params[name] = gettext(params[name])
    try:
        return str(str(template) % params)
    except (KeyError, TypeError, ValueError):
        return notice.kind


# Other ways of delivering a notice (the guard's signed webhook), registered by the apps
# that provide them: accounts does not import them.
Deliverer = Callable[[SecurityNotice], None]
DELIVERERS: list[Deliverer] = []


def add_deliverer(deliver: Deliverer) -> None:
    """Call `deliver(notice)` after the commit of every notice."""
    if deliver not in DELIVERERS:
        DELIVERERS.append(deliver)


def notify_owners(
    project_id: int,
    kind: str,
    params: dict[str, Any],
    *,
    event_id: int | None = None,
    user_id: int | None = None,
) -> SecurityNotice:
    """Keep a notice for the project's owners, and after the transaction commits (a
    rolled-back refusal sends nothing) mail it to those with an address and hand it to the
    other deliverers."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    notice = SecurityNotice.objects.create(
        project_id=project_id, kind=kind, params=params, event_id=event_id, user_id=user_id
    )
    transaction.on_commit(lambda: _deliver(notice))
    return notice


def _deliver(notice: SecurityNotice) -> None:
    if settings.EMAIL_HOST:
        _mail(notice)
    for deliver in DELIVERERS:
        try:
            deliver(notice)
        except Exception:  # one failing channel must not stop the others
            log.exception("could not deliver security notice %s", notice.pk)


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
