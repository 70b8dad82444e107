"""SIP token dialing: the operator's softphone dials a one-time token instead of the number.

The token (`ct-` and 128 random bits in hex) is bound to the call, and so to the order, and
to the operator's SIP account; only its SHA-256 is stored. The SIP proxy asks
`POST /pbx/v1/resolve` what the token stands for (telephony/pbx_views.py) and sends the call
on to the carrier with the number; the browser and the softphone only ever hold the token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.telephony.models import CallToken, ProviderKind
from callvault.telephony.providers import ProviderError, StartResult

if TYPE_CHECKING:
    from callvault.accounts.models import Membership
    from callvault.telephony.models import Call, SipAccount, TelephonySettings

TOKEN_PREFIX = "ct-"  # noqa: S105 (the format's marker, not a secret)
TOKEN_PATTERN = re.compile(r"^ct-[0-9a-f]{32}$")
# A softphone dials within seconds; a token older than this is of no use to anyone.
MIN_TTL_SECONDS, MAX_TTL_SECONDS = 10, 600


def new_token() -> str:
    """A fresh token: `ct-` and 32 lowercase hex characters (128 bits)."""
    return TOKEN_PREFIX + secrets.token_hex(16)


def hash_token(token: str) -> str:
    """What is stored and looked up: SHA-256 hex (a 128-bit random token needs no slow hash)."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class SipTokenProvider:
    """Issues the token and hands the member the `sip:` URI that dials it."""

    kind = ProviderKind.SIP_TOKEN.value
    needs_sip_account = True
    remote = False

    def missing(self, settings: TelephonySettings) -> list[str]:
        """The proxy's SIP domain is needed to build the URI."""
        return [] if settings.sip_domain else [str(gettext_lazy("the SIP domain of the proxy"))]

    def start(
        self,
        call: Call,
        member: Membership,
        settings: TelephonySettings,
        sip_account: SipAccount | None,
    ) -> StartResult:
        """Store the token's hash; the URI with the token goes to the member's browser."""
        if sip_account is None or not settings.sip_domain:
            raise ProviderError("not_configured")
        token = new_token()
        ttl = min(max(settings.token_ttl_seconds, MIN_TTL_SECONDS), MAX_TTL_SECONDS)
        CallToken.objects.create(
            call=call,
            sip_account=sip_account,
            token_hash=hash_token(token),
            expires_at=timezone.now() + timedelta(seconds=ttl),
        )
        return StartResult(
            ok=True,
            message=_("Dialing: your softphone places the call. The number stays hidden."),
            sip_uri=f"sip:{token}@{settings.sip_domain}",
        )
