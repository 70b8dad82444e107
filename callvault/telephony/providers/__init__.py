"""How a call is started: one small interface, one module per provider kind.

A provider gets the recorded Call, the calling member and the project's settings, and answers
with what the member's browser may be told: a message in plain words and, for SIP token
dialing, the `sip:ct-...@domain` URI. The customer's number is opened only inside a provider
(or the token lookup) and goes only to the PBX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from callvault.accounts.models import Membership
    from callvault.telephony.models import Call, SipAccount, TelephonySettings


@dataclass(frozen=True)
class StartResult:
    """What starting a call came to; everything here may reach the member's browser."""

    ok: bool
    # For the member, in plain words (already translated).
    message: str
    # SIP token dialing: the URI the softphone dials (the token, never the number).
    sip_uri: str = ""
    # The call's state afterwards ("" leaves it as it is) and the PBX's id for it.
    state: str = ""
    external_id: str = ""
    # A short cause code when it failed ("unreachable", "refused", "http 500").
    result: str = ""


class ProviderError(Exception):
    """The provider could not start the call; the message is a short code, never a number."""


class Provider(Protocol):
    """A way of starting calls (telephony/providers/<kind>.py)."""

    kind: str
    # The operator must have an active SIP account: its user name is the extension rung or
    # the account a token is bound to.
    needs_sip_account: bool
    # Talks to the network: started outside the database transaction that records the call
    # (a slow PBX must not hold the database's write lock).
    remote: bool

    def missing(self, settings: TelephonySettings) -> list[str]:
        """What the settings still lack for this provider (labels for the checklist)."""
        ...

    def start(
        self,
        call: Call,
        member: Membership,
        settings: TelephonySettings,
        sip_account: SipAccount | None,
    ) -> StartResult:
        """Start the call (or hand the member what starts it)."""
        ...


def customer_number(call: Call) -> str:
    """The customer's number in E.164, opened for the PBX only: never logged, never shown,
    never put in an exception or an audit record."""
    from callvault.vault.actions import PHONE_FIELD
    from callvault.vault.phones import open_phone

    order = call.order
    if order is None or not order.phone_sealed:
        raise ProviderError("no_number")
    return open_phone(order.phone_sealed, project_id=order.project_id, field=PHONE_FIELD)


def provider_for(kind: str) -> Provider | None:
    """The provider of a kind; None for "no telephony" or an unknown kind."""
    from callvault.telephony.providers import ami, cloud, sip_token

    registry: dict[str, Provider] = {
        sip_token.SipTokenProvider.kind: sip_token.SipTokenProvider(),
        ami.AmiProvider.kind: ami.AmiProvider(),
        cloud.CloudProvider.kind: cloud.CloudProvider(),
    }
    return registry.get(kind)
