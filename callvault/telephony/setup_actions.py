"""Setting telephony up: the project's provider settings, its PBXs (a shared secret each,
shown once) and the operators' SIP accounts (a password each, shown once).

Each change is one action that records itself. Secrets are never recorded: the provider's
secret is sealed with the vault's key ring and recorded as "changed"; a PBX's secret and a
SIP password are kept only as hashes (SHA-256, and the HA1 digest the SIP proxy checks).

Whoever decides where calls go can get the numbers: a PBX's secret resolves call tokens and
looks callers up, a SIP account dials tokens, and the provider's addresses, templates,
headers and secret say where the number is sent. So adding or revoking PBXs and SIP accounts,
and changing the provider's settings, is for members who may see phone numbers
(`may_route_calls`), and the project's owners are told of each new PBX and of each change of
where calls go (accounts/notices.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.accounts.allowlist import normalise_network
from callvault.accounts.models import Membership, Project
from callvault.accounts.notices import notify_owners
from callvault.audit.context import current
from callvault.audit.recorder import SEALED_CHANGED, diff, plain, record_event, record_update
from callvault.lib.errors import FieldErrors
from callvault.telephony import outbound
from callvault.telephony.models import Pbx, ProviderKind, SipAccount, TelephonySettings
from callvault.telephony.providers.cloud import TemplateError, cloud_hosts, parse_template
from callvault.vault.phones import open_phone, seal

AUDIT_ACTIONS = {
    "telephony_settings.create": gettext_lazy("Telephony set up"),
    "telephony_settings.update": gettext_lazy("Telephony settings changed"),
    "pbx.create": gettext_lazy("PBX added"),
    "pbx.revoke": gettext_lazy("PBX secret revoked"),
    "pbx.refused": gettext_lazy("PBX request refused"),
    "sip_account.create": gettext_lazy("SIP account created"),
    "sip_account.disable": gettext_lazy("SIP account disabled"),
}

# The provider's secret is sealed like a phone number (the same key ring, rotation included),
# under a field name of its own in the associated data.
SECRET_FIELD = "telephony_secret"  # noqa: S105 (a field name, not a secret)

SETTINGS_FIELDS = (
    "provider",
    "sip_domain",
    "token_ttl_seconds",
    "trainees_may_call",
    "ami_host",
    "ami_port",
    "ami_username",
    "ami_context",
    "ami_channel",
    "cloud_url",
    "cloud_headers",
    "cloud_body_template",
    "unknown_caller_name",
    "create_order_for_unknown",
    "recording_retention_days",
    "review_checklist",
)
# Where calls go and how the number is sent: for members who may see phone numbers only
# (with the provider's secret), and each change is told to the owners.
ROUTING_FIELDS = (
    "provider",
    "sip_domain",
    "ami_host",
    "ami_port",
    "ami_username",
    "ami_context",
    "ami_channel",
    "cloud_url",
    "cloud_headers",
    "cloud_body_template",
)

# Each pattern must match the whole value (fullmatch): `$` alone also matches before a
# final newline, and a newline in an AMI field or a SIP user starts a line of its own
# (a second AMI action, another row of the proxy's subscriber table).
HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,198}[A-Za-z0-9])?(:[0-9]{1,5})?")
CONTEXT = re.compile(r"[A-Za-z0-9_-]{0,100}")
CHANNEL = re.compile(r"[A-Za-z0-9_/@.:-]*\{extension\}[A-Za-z0-9_/@.:-]*")
AMI_USER = re.compile(r"[A-Za-z0-9_.@-]{0,100}")
HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
MAX_HEADERS = 20
# Headers callvault sets itself, and those that frame the request (a template's header
# could otherwise smuggle a second request or send it elsewhere).
OWN_HEADERS = {"content-type", "user-agent", "x-callvault-signature", "x-callvault-timestamp"}
FRAMING_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-connection",
}
# A name shown on the operator's phone (a SIP display name): letters, spaces and - . '
# only, so no quote, angle bracket or semicolon can end the header's field, and no digit can
# spell a number.
CALLER_NAME_MAX = 40
NAME_PUNCTUATION = "-.'"


def settings_for(project: Project) -> TelephonySettings:
    """The project's telephony settings; unsaved defaults ("no telephony") until set up."""
    found = TelephonySettings.objects.filter(project_id=project.pk).first()
    return found or TelephonySettings(project=project)


def provider_secret(settings: TelephonySettings) -> str:
    """The provider's secret in the clear, for the provider only ("" when none is set)."""
    if not settings.secret_sealed:
        return ""
    return open_phone(settings.secret_sealed, project_id=settings.project_id, field=SECRET_FIELD)


def may_route_calls(member: Membership | None) -> bool:
    """Whether the member may decide where calls go (PBXs, SIP accounts, the provider's
    settings): they must be able to see phone numbers and manage the project. None is the
    command line or a script, which the installation's administrator runs."""
    if member is None:
        return True
    return member.is_active and member.can_manage_project and member.can_see_phones


def _require_routing(member: Membership | None) -> None:
    if not may_route_calls(member):
        raise PermissionDenied("may not decide where calls go")


def url_shown(url: str) -> str:
    """An address as the record shows it: scheme and host (a path or query may hold a key)."""
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


def caller_name_problem(name: str) -> str:
    """Why a name may not be shown as an inbound caller's ("" when it may)."""
    if not name.strip() or len(name) > CALLER_NAME_MAX:
        return _("1 to %(max)s characters.") % {"max": CALLER_NAME_MAX}
    if not all(ch.isalpha() or ch == " " or ch in NAME_PUNCTUATION for ch in name):
        return _("Letters, spaces and - . ' only (no digits, quotes or brackets).")
    return ""


def _check_settings(values: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    unknown = set(values) - set(SETTINGS_FIELDS)
    errors.update({name: _("Not a telephony setting.") for name in sorted(unknown)})
    if "provider" in values and values["provider"] not in ProviderKind.values:
        errors["provider"] = _("One of: %(kinds)s.") % {"kinds": ", ".join(ProviderKind.values)}
    for name in ("sip_domain", "ami_host"):
        if values.get(name) and not _matches(HOST, values[name]):
            errors[name] = _("A host name or address, optionally with :port.")
    ttl = values.get("token_ttl_seconds")
    if ttl is not None and not 10 <= ttl <= 600:
        errors["token_ttl_seconds"] = _("10 to 600 seconds.")
    port = values.get("ami_port")
    if port is not None and not 1 <= port <= 65535:
        errors["ami_port"] = _("1 to 65535.")
    if "ami_username" in values and not _matches(AMI_USER, values["ami_username"]):
        errors["ami_username"] = _("Letters, digits and _ . @ - only.")
    if "ami_context" in values and not _matches(CONTEXT, values["ami_context"]):
        errors["ami_context"] = _("Letters, digits, _ and - only.")
    if "ami_channel" in values and not _matches(CHANNEL, values["ami_channel"]):
        errors["ami_channel"] = _("A channel such as PJSIP/{extension}, with {extension} once.")
    url = values.get("cloud_url")
    if url:
        problem = outbound.url_problem(url, cloud_hosts()) if isinstance(url, str) else "?"
        if problem:
            errors["cloud_url"] = _(
                "An https address on the internet (plain http, or a private address, only to "
                "a host the installation allows)."
            )
    if "cloud_headers" in values:
        problem = _header_problem(values["cloud_headers"])
        if problem:
            errors["cloud_headers"] = problem
    if values.get("cloud_body_template"):
        try:
            parse_template(values["cloud_body_template"])
        except TemplateError:
            errors["cloud_body_template"] = _("A JSON object, placeholders inside its strings.")
    caller_name = values.get("unknown_caller_name")
    if caller_name is not None:
        problem = caller_name_problem(caller_name)
        if problem:
            errors["unknown_caller_name"] = problem
    days = values.get("recording_retention_days")
    if days is not None and not 1 <= days <= 3650:
        errors["recording_retention_days"] = _("1 to 3650 days.")
    if len(values.get("review_checklist", "").splitlines()) > 30:
        errors["review_checklist"] = _("At most 30 items.")
    if errors:
        raise FieldErrors(errors)


def _matches(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _one_line(value: str) -> bool:
    """No control character (CR and LF end an AMI line or an HTTP header)."""
    return not any(ord(ch) < 32 or ord(ch) == 127 for ch in value)


def _header_problem(headers: Any) -> str:
    if not isinstance(headers, dict):
        return _("Name: value pairs.")
    if len(headers) > MAX_HEADERS:
        return _("At most %(count)s headers.") % {"count": MAX_HEADERS}
    for name, value in headers.items():
        if not _matches(HEADER_NAME, name):
            return _("Header names are letters, digits and dashes.")
        lowered = name.lower()
        if lowered in OWN_HEADERS or lowered.startswith("x-callvault-"):
            return _("%(name)s is set by callvault.") % {"name": name}
        if lowered in FRAMING_HEADERS or lowered.startswith("proxy-"):
            return _("%(name)s may not be set: it frames the request.") % {"name": name}
        if not isinstance(value, str) or not value or not _one_line(value) or len(value) > 1000:
            return _("Header values are one line of text.")
    return ""


def _settings_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The diff, with the callback address as its host only and the extra headers by name
    (their values may be an API key: recorded as "changed")."""
    old_url, new_url = before.pop("cloud_url", ""), after.pop("cloud_url", "")
    old_headers = before.pop("cloud_headers", None) or {}
    new_headers = after.pop("cloud_headers", None) or {}
    changes = diff(before, after)
    if old_url != new_url:
        shown = [url_shown(old_url), url_shown(new_url)]
        changes["cloud_url"] = shown if shown[0] != shown[1] else SEALED_CHANGED
    if old_headers != new_headers:
        names = [sorted(old_headers), sorted(new_headers)]
        changes["cloud_headers"] = names if names[0] != names[1] else SEALED_CHANGED
    return changes


def _create_settings(project: Project) -> TelephonySettings:
    """The settings row with its defaults, recorded as created."""
    row = TelephonySettings.objects.create(project=project)
    record_event(
        "telephony_settings.create",
        project_id=project.pk,
        object_type="telephony_settings",
        object_id=row.pk,
        object_repr=str(project),
        changes=_settings_changes({}, {name: getattr(row, name) for name in SETTINGS_FIELDS}),
    )
    return row


def routing_changes(row: TelephonySettings, values: dict[str, Any]) -> list[str]:
    """The settings among `values` that would change where calls go."""
    return [
        name for name in ROUTING_FIELDS if name in values and values[name] != getattr(row, name)
    ]


def _actor_name() -> str:
    return current().actor.name or "?"


@transaction.atomic
def do_update_telephony_settings(
    project: Project,
    values: dict[str, Any],
    *,
    secret: str | None = None,
    acting: Membership | None = None,
) -> TelephonySettings:
    """Change the project's telephony settings, recorded before -> after. `secret`: None keeps
    the provider's secret, "" clears it, anything else replaces it (recorded as "changed").
    Changing the provider clears the old provider's secret unless a new one comes with it.

    Where calls go (ROUTING_FIELDS and the secret) changes only for a member who may see phone
    numbers (PermissionDenied otherwise), and each such change is told to the owners."""
    _check_settings(values)
    if secret is not None and (len(secret) > 500 or not _one_line(secret)):
        raise FieldErrors.one("secret", _("At most 500 characters, on one line."))
    row = TelephonySettings.objects.select_for_update().filter(project_id=project.pk).first()
    if row is None:
        row = _create_settings(project)
    if "provider" in values and values["provider"] != row.provider and secret is None:
        secret = ""
    routed = routing_changes(row, values)
    secret_changes = secret is not None and bool(secret or row.secret_sealed)
    if routed or secret_changes:
        _require_routing(acting)
    changes = record_update(
        "telephony_settings.update",
        row,
        values,
        project_id=project.pk,
        object_type="telephony_settings",
        object_repr=str(project),
        changes_of=_settings_changes,
    )
    event_id = _last_event_id(project.pk) if routed else None
    if secret is not None and secret_changes:
        row.secret_sealed = (
            seal(secret, project_id=project.pk, field=SECRET_FIELD) if secret else ""
        )
        row.save(update_fields=["secret_sealed"])
        event_id = record_event(
            "telephony_settings.update",
            project_id=project.pk,
            object_type="telephony_settings",
            object_id=row.pk,
            object_repr=str(project),
            changes={"secret": SEALED_CHANGED},
            extra={"with": sorted(changes)},
        ).pk
        routed.append("secret")
    if routed:
        notify_owners(
            project.pk,
            "telephony_routing_changed",
            {"user": _actor_name(), "fields": ", ".join(routed)},
            event_id=event_id,
        )
    return row


def _last_event_id(project_id: int) -> int | None:
    """The id of the settings change just recorded (record_update returns the changes)."""
    from callvault.audit.models import AuditEvent

    return (
        AuditEvent.objects.filter(project_id=project_id, action="telephony_settings.update")
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )


# --- PBXs -----------------------------------------------------------------------------------

PBX_SECRET_PREFIX = "cvp"  # noqa: S105 (the format's marker, not a secret)


def hash_pbx_secret(secret: str) -> str:
    """SHA-256 of a PBX secret: 256 random bits need no slow hash, and the lookup is hot."""
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()


def _networks(networks: str | list[str]) -> str:
    """The allowed networks, normalised: at least one, none of them the whole internet."""
    specs = networks.splitlines() if isinstance(networks, str) else list(networks)
    cleaned = []
    for spec in specs:
        if spec.strip():
            try:
                stored = normalise_network(spec)[0]
            except FieldErrors as exc:
                raise FieldErrors.one("networks", exc.errors["network"]) from None
            if stored.endswith("/0"):
                raise FieldErrors.one(
                    "networks",
                    _("%(network)s is every address: name the PBX's own.") % {"network": stored},
                )
            cleaned.append(stored)
    if not cleaned:
        raise FieldErrors.one(
            "networks", _("At least one network the PBX calls from, e.g. 192.0.2.10/32.")
        )
    return "\n".join(dict.fromkeys(cleaned))


@transaction.atomic
def do_create_pbx(
    project: Project,
    name: str,
    *,
    networks: str | list[str],
    acting: Membership | None = None,
) -> tuple[Pbx, str]:
    """A PBX allowed to ask about the project's calls from its networks (at least one); its
    secret is returned once. The owners are told: the secret opens numbers."""
    _require_routing(acting)
    name = name.strip()
    if not name or len(name) > 100 or not _one_line(name):
        raise FieldErrors.one("name", _("A name of 1 to 100 characters is required."))
    allowed = _networks(networks)
    prefix = secrets.token_hex(4)
    secret = f"{PBX_SECRET_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    pbx = Pbx.objects.create(
        project=project,
        name=name,
        prefix=prefix,
        secret_hash=hash_pbx_secret(secret),
        networks=allowed,
    )
    event = record_event(
        "pbx.create",
        project_id=project.pk,
        object_type="pbx",
        object_id=pbx.pk,
        object_repr=str(pbx),
        changes={"name": [None, name], "networks": [None, allowed.splitlines()]},
    )
    notify_owners(
        project.pk,
        "pbx_created",
        {"user": _actor_name(), "name": name, "networks": ", ".join(allowed.splitlines())},
        event_id=event.pk,
    )
    return pbx, secret


@transaction.atomic
def do_revoke_pbx(pbx: Pbx, *, acting: Membership | None = None) -> Pbx:
    """Revoke a PBX's secret: its requests answer 401 from then on."""
    _require_routing(acting)
    if pbx.revoked_at is None:
        pbx.revoked_at = timezone.now()
        pbx.save(update_fields=["revoked_at"])
        record_event(
            "pbx.revoke",
            project_id=pbx.project_id,
            object_type="pbx",
            object_id=pbx.pk,
            object_repr=str(pbx),
            changes={"revoked_at": [None, plain(pbx.revoked_at)]},
        )
    return pbx


# --- SIP accounts ---------------------------------------------------------------------------

# Extensions: short, so no one mistakes one for a phone number (nor does the log filter).
SIP_USER = re.compile(r"[0-9]{2,6}")
DEFAULT_REALM = "callvault"


def sip_ha1(username: str, realm: str, password: str) -> str:
    """MD5(username:realm:password): the digest the SIP proxy's auth_db checks (RFC 2617)."""
    text = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(text, usedforsecurity=False).hexdigest()


@transaction.atomic
def do_create_sip_account(
    membership: Membership,
    username: str,
    *,
    realm: str = "",
    acting: Membership | None = None,
) -> tuple[SipAccount, str]:
    """A softphone account for a member (or a new one over their disabled one); the password
    is generated and returned once, only its HA1 digest is kept."""
    _require_routing(acting)
    username = username.strip()
    if not SIP_USER.fullmatch(username):
        raise FieldErrors.one("username", _("2 to 6 digits (the extension)."))
    if membership.pk is None or not membership.is_active:
        raise FieldErrors.one("membership", _("An active member of the project."))
    if acting is not None and membership.project_id != acting.project_id:
        raise FieldErrors.one("membership", _("An active member of the project."))
    # The proxy checks the digest in its domain; an originate provider has no proxy, and the
    # account is then only the extension the PBX rings.
    realm = (realm or settings_for(membership.project).sip_domain or DEFAULT_REALM).strip()
    if not HOST.fullmatch(realm):
        raise FieldErrors.one("realm", _("A host name, the SIP domain of the proxy."))
    taken = SipAccount.objects.filter(username=username).exclude(membership=membership)
    if taken.exists():
        raise FieldErrors.one("username", _("This SIP user is taken."))
    existing = SipAccount.objects.select_for_update().filter(membership=membership).first()
    if existing is not None and existing.is_active:
        raise FieldErrors.one(
            "membership", _("This member already has an active SIP account: disable it first.")
        )
    password = secrets.token_urlsafe(12)
    values = {
        "username": username,
        "realm": realm,
        "ha1": sip_ha1(username, realm, password),
        "is_active": True,
    }
    if existing is None:
        account = SipAccount.objects.create(
            project_id=membership.project_id, membership=membership, **values
        )
        before: dict[str, Any] = {}
    else:
        account = existing
        before = {"username": account.username, "realm": account.realm, "is_active": False}
        for name, value in values.items():
            setattr(account, name, value)
        account.save(update_fields=list(values))
    changes = diff(before, {k: v for k, v in values.items() if k != "ha1"})
    record_event(
        "sip_account.create",
        project_id=membership.project_id,
        object_type="sip_account",
        object_id=account.pk,
        object_repr=str(account),
        changes={**changes, "password": SEALED_CHANGED},
        extra={"member": membership.user.username},
    )
    return account, password


@transaction.atomic
def do_disable_sip_account(account: SipAccount, *, acting: Membership | None = None) -> SipAccount:
    """The softphone can no longer log in (after the next subscriber export) nor dial tokens."""
    _require_routing(acting)
    if account.is_active:
        account.is_active = False
        account.save(update_fields=["is_active"])
        record_event(
            "sip_account.disable",
            project_id=account.project_id,
            object_type="sip_account",
            object_id=account.pk,
            object_repr=str(account),
            changes={"is_active": [True, False]},
        )
    return account
