"""Setting telephony up: the project's provider settings, its PBXs (a shared secret each,
shown once) and the operators' SIP accounts (a password each, shown once).

Each change is one action that records itself. Secrets are never recorded: the provider's
secret is sealed with the vault's key ring and recorded as "changed"; a PBX's secret and a
SIP password are kept only as hashes (SHA-256, and the HA1 digest the SIP proxy checks).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from callvault.accounts.allowlist import normalise_network
from callvault.accounts.models import Membership, Project
from callvault.audit.recorder import SEALED_CHANGED, diff, plain, record_event, record_update
from callvault.lib.errors import FieldErrors
from callvault.telephony.models import Pbx, ProviderKind, SipAccount, TelephonySettings
from callvault.telephony.providers.cloud import TemplateError, parse_template
from callvault.vault.logfilter import PHONE_LIKE
from callvault.vault.phones import open_phone, seal

AUDIT_ACTIONS = {
    "telephony_settings.create": _("Telephony set up"),
    "telephony_settings.update": _("Telephony settings changed"),
    "pbx.create": _("PBX added"),
    "pbx.revoke": _("PBX secret revoked"),
    "pbx.refused": _("PBX request refused"),
    "sip_account.create": _("SIP account created"),
    "sip_account.disable": _("SIP account disabled"),
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

HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,198}[A-Za-z0-9])?(:[0-9]{1,5})?$")
CONTEXT = re.compile(r"^[A-Za-z0-9_-]{0,100}$")
CHANNEL = re.compile(r"^[A-Za-z0-9_/@.:-]*\{extension\}[A-Za-z0-9_/@.:-]*$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# Headers callvault sets itself.
OWN_HEADERS = {"content-type", "user-agent", "x-callvault-signature", "x-callvault-timestamp"}


def settings_for(project: Project) -> TelephonySettings:
    """The project's telephony settings; unsaved defaults ("no telephony") until set up."""
    found = TelephonySettings.objects.filter(project_id=project.pk).first()
    return found or TelephonySettings(project=project)


def provider_secret(settings: TelephonySettings) -> str:
    """The provider's secret in the clear, for the provider only ("" when none is set)."""
    if not settings.secret_sealed:
        return ""
    return open_phone(settings.secret_sealed, project_id=settings.project_id, field=SECRET_FIELD)


def url_shown(url: str) -> str:
    """An address as the record shows it: scheme and host (a path or query may hold a key)."""
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


def _check_settings(values: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    unknown = set(values) - set(SETTINGS_FIELDS)
    errors.update({name: "not a telephony setting" for name in sorted(unknown)})
    if "provider" in values and values["provider"] not in ProviderKind.values:
        errors["provider"] = "one of " + ", ".join(ProviderKind.values)
    for name in ("sip_domain", "ami_host"):
        if values.get(name) and not HOST.match(values[name]):
            errors[name] = "a host name or address, optionally with :port"
    ttl = values.get("token_ttl_seconds")
    if ttl is not None and not 10 <= ttl <= 600:
        errors["token_ttl_seconds"] = "10 to 600 seconds"  # noqa: S105
    port = values.get("ami_port")
    if port is not None and not 1 <= port <= 65535:
        errors["ami_port"] = "1 to 65535"
    if "ami_context" in values and not CONTEXT.match(values["ami_context"]):
        errors["ami_context"] = "letters, digits, _ and - only"
    if "ami_channel" in values and not CHANNEL.match(values["ami_channel"]):
        errors["ami_channel"] = "a channel such as PJSIP/{extension}, with {extension} once"
    url = values.get("cloud_url")
    if url and urlsplit(url).scheme not in ("http", "https"):
        errors["cloud_url"] = "an http or https address"
    if "cloud_headers" in values:
        problem = _header_problem(values["cloud_headers"])
        if problem:
            errors["cloud_headers"] = problem
    if values.get("cloud_body_template"):
        try:
            parse_template(values["cloud_body_template"])
        except TemplateError:
            errors["cloud_body_template"] = "a JSON object, placeholders inside its strings"
    caller_name = values.get("unknown_caller_name")
    if caller_name is not None and (
        not caller_name.strip() or len(caller_name) > 100 or PHONE_LIKE.search(caller_name)
    ):
        errors["unknown_caller_name"] = "1 to 100 characters, no phone number"
    days = values.get("recording_retention_days")
    if days is not None and not 1 <= days <= 3650:
        errors["recording_retention_days"] = "1 to 3650 days"
    if len(values.get("review_checklist", "").splitlines()) > 30:
        errors["review_checklist"] = "at most 30 items"
    if errors:
        raise FieldErrors(errors)


def _header_problem(headers: Any) -> str:
    if not isinstance(headers, dict):
        return "name: value pairs"
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            return "header names are letters, digits and dashes"
        if name.lower() in OWN_HEADERS:
            return f"{name} is set by callvault"
        if not isinstance(value, str) or "\r" in value or "\n" in value or len(value) > 1000:
            return "header values are one line of text"
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


@transaction.atomic
def do_update_telephony_settings(
    project: Project, values: dict[str, Any], *, secret: str | None = None
) -> TelephonySettings:
    """Change the project's telephony settings, recorded before -> after. `secret`: None keeps
    the provider's secret, "" clears it, anything else replaces it (recorded as "changed").
    Changing the provider clears the old provider's secret unless a new one comes with it."""
    _check_settings(values)
    if secret is not None and len(secret) > 500:
        raise FieldErrors.one("secret", "at most 500 characters")
    row = TelephonySettings.objects.select_for_update().filter(project_id=project.pk).first()
    if row is None:
        row = _create_settings(project)
    if "provider" in values and values["provider"] != row.provider and secret is None:
        secret = ""
    changes = record_update(
        "telephony_settings.update",
        row,
        values,
        project_id=project.pk,
        object_type="telephony_settings",
        object_repr=str(project),
        changes_of=_settings_changes,
    )
    if secret is not None and (secret or row.secret_sealed):
        row.secret_sealed = (
            seal(secret, project_id=project.pk, field=SECRET_FIELD) if secret else ""
        )
        row.save(update_fields=["secret_sealed"])
        record_event(
            "telephony_settings.update",
            project_id=project.pk,
            object_type="telephony_settings",
            object_id=row.pk,
            object_repr=str(project),
            changes={"secret": SEALED_CHANGED},
            extra={"with": sorted(changes)},
        )
    return row


# --- PBXs -----------------------------------------------------------------------------------

PBX_SECRET_PREFIX = "cvp"  # noqa: S105 (the format's marker, not a secret)


def hash_pbx_secret(secret: str) -> str:
    """SHA-256 of a PBX secret: 256 random bits need no slow hash, and the lookup is hot."""
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()


def _networks(networks: str | list[str]) -> str:
    specs = networks.splitlines() if isinstance(networks, str) else list(networks)
    cleaned = []
    for spec in specs:
        if spec.strip():
            try:
                cleaned.append(normalise_network(spec)[0])
            except FieldErrors as exc:
                raise FieldErrors.one("networks", exc.errors["network"]) from None
    return "\n".join(dict.fromkeys(cleaned))


@transaction.atomic
def do_create_pbx(
    project: Project, name: str, *, networks: str | list[str] = ""
) -> tuple[Pbx, str]:
    """A PBX allowed to ask about the project's calls; its secret is returned once."""
    name = name.strip()
    if not name or len(name) > 100:
        raise FieldErrors.one("name", "a name of 1 to 100 characters is required")
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
    record_event(
        "pbx.create",
        project_id=project.pk,
        object_type="pbx",
        object_id=pbx.pk,
        object_repr=str(pbx),
        changes={"name": [None, name], "networks": [None, allowed.splitlines()]},
    )
    return pbx, secret


@transaction.atomic
def do_revoke_pbx(pbx: Pbx) -> Pbx:
    """Revoke a PBX's secret: its requests answer 401 from then on."""
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
SIP_USER = re.compile(r"^[0-9]{2,6}$")
DEFAULT_REALM = "callvault"


def sip_ha1(username: str, realm: str, password: str) -> str:
    """MD5(username:realm:password): the digest the SIP proxy's auth_db checks (RFC 2617)."""
    text = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(text, usedforsecurity=False).hexdigest()


@transaction.atomic
def do_create_sip_account(
    membership: Membership, username: str, *, realm: str = ""
) -> tuple[SipAccount, str]:
    """A softphone account for a member (or a new one over their disabled one); the password
    is generated and returned once, only its HA1 digest is kept."""
    username = username.strip()
    if not SIP_USER.match(username):
        raise FieldErrors.one("username", "2 to 6 digits (the extension)")
    if membership.pk is None or not membership.is_active:
        raise FieldErrors.one("membership", "an active member of the project")
    # The proxy checks the digest in its domain; an originate provider has no proxy, and the
    # account is then only the extension the PBX rings.
    realm = (realm or settings_for(membership.project).sip_domain or DEFAULT_REALM).strip()
    if not HOST.match(realm):
        raise FieldErrors.one("realm", "a host name, the SIP domain of the proxy")
    taken = SipAccount.objects.filter(username=username).exclude(membership=membership)
    if taken.exists():
        raise FieldErrors.one("username", "this SIP user is taken")
    existing = SipAccount.objects.select_for_update().filter(membership=membership).first()
    if existing is not None and existing.is_active:
        raise FieldErrors.one("membership", "already has an active SIP account: disable it first")
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
def do_disable_sip_account(account: SipAccount) -> SipAccount:
    """The softphone can no longer log in (after the next subscriber export) nor dial tokens."""
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
