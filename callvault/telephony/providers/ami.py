"""Originate through the Asterisk Manager Interface, with panoramisk (a maintained asyncio
AMI client).

One short connection per call: log in, send `Originate` (asynchronous, so Asterisk answers
"queued" at once and rings the operator's extension through the channel template; when the
operator answers, the dialplan context dials the customer), log off. The operator's phone
shows "Order 1042" as the caller, never the number; the channel variable CALLVAULT_CALL
carries the call id, which the dialplan sends back with the call's events
(`POST /pbx/v1/events`). The number is in the Originate action only: panoramisk's own
logging (which prints whole actions and messages) is silenced here.

There is no Asterisk on the development machines: the tests speak the AMI wire format
against a small asyncio server (telephony/tests/test_provider_ami.py). See docs/telephony.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.telephony.models import CallState, ProviderKind
from callvault.telephony.providers import ProviderError, StartResult, customer_number

if TYPE_CHECKING:
    from callvault.accounts.models import Membership
    from callvault.telephony.models import Call, SipAccount, TelephonySettings

log = logging.getLogger(__name__)

# Connect, log in and have the Originate queued within this many seconds, or give up.
TIMEOUT_SECONDS = 8.0
# How long Asterisk rings the operator's extension (milliseconds, Originate's Timeout).
RING_OPERATOR_MS = 30_000
EXTENSION = "{extension}"


def _quiet_logger() -> logging.Logger:
    """A logger that drops everything: panoramisk logs whole actions (the Exten is the
    number) and messages at debug and error level."""
    quiet = logging.Logger("callvault.telephony.ami.panoramisk", level=logging.CRITICAL + 1)
    quiet.disabled = True
    return quiet


_QUIET = _quiet_logger()


def caller_name(order_number: object) -> str:
    """What the operator's phone shows as the caller: the order, never a customer's digits."""
    name = _("Order %(number)s") % {"number": order_number}
    return name.replace('"', "").replace("<", "").replace(">", "")


def _one_line(*values: str) -> bool:
    """No control characters: AMI is "Key: value" lines, and a CR or LF in a value starts a
    line (another action) of its own."""
    return not any(ord(ch) < 32 or ord(ch) == 127 for value in values for ch in value)


def originate_action(
    settings: TelephonySettings, *, call_id: int, extension: str, number: str, order_number: int
) -> dict[str, Any]:
    """The Originate action's fields (the number only in Exten)."""
    return {
        "Action": "Originate",
        "ActionID": f"callvault-{call_id}-{secrets.token_hex(4)}",
        "Channel": settings.ami_channel.replace(EXTENSION, extension),
        "Context": settings.ami_context,
        "Exten": number,
        "Priority": "1",
        "CallerID": f'"{caller_name(order_number)}" <{order_number}>',
        "Variable": [f"CALLVAULT_CALL={call_id}"],
        "Timeout": str(RING_OPERATOR_MS),
        "Async": "true",
    }


async def _originate(settings: TelephonySettings, secret: str, action: dict[str, Any]) -> str:
    """Log in and send the action; the Originate's own answer ("queued") or a cause code."""
    # panoramisk ships no type information.
    from panoramisk import Manager  # type: ignore[import-untyped]

    manager = Manager(
        loop=asyncio.get_running_loop(),
        host=settings.ami_host,
        port=settings.ami_port,
        username=settings.ami_username,
        secret=secret,
        events="off",
        ping_delay=3600,
        reconnect_timeout=3600,
        log=_QUIET,
    )
    try:
        await manager.connect()
        login = manager.authenticated_future
        if login is None or not (await login).success:
            return "login_failed"
        # as_list=False: done at the first answer. With Async the final word
        # (OriginateResponse) comes when the operator answers; the PBX's events report it.
        response = await manager.send_action(action, as_list=False)
        return "queued" if response.success else "refused"
    finally:
        manager.close()


def _run(coroutine: Coroutine[Any, Any, str]) -> str:
    """Run the exchange to its end with a deadline, in a thread of its own if this one
    already runs an event loop."""
    bounded = asyncio.wait_for(coroutine, TIMEOUT_SECONDS)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, bounded).result()


class AmiProvider:
    """Rings the operator's extension, then the customer, through Asterisk."""

    kind = ProviderKind.AMI.value
    needs_sip_account = True
    remote = True

    def missing(self, settings: TelephonySettings) -> list[str]:
        """Host, user, secret, the customers' context and a channel naming the extension."""
        wanted = [
            (settings.ami_host, gettext_lazy("the AMI host")),
            (settings.ami_username, gettext_lazy("the AMI user")),
            (settings.secret_sealed, gettext_lazy("the AMI secret")),
            (settings.ami_context, gettext_lazy("the dialplan context for customers")),
            (
                EXTENSION in settings.ami_channel,
                gettext_lazy("a channel template with {extension}"),
            ),
        ]
        return [str(label) for value, label in wanted if not value]

    def start(
        self,
        call: Call,
        member: Membership,
        settings: TelephonySettings,
        sip_account: SipAccount | None,
    ) -> StartResult:
        """Originate; the member is told their phone will ring, or why it will not."""
        from callvault.telephony.setup_actions import provider_secret

        if sip_account is None or self.missing(settings):
            raise ProviderError("not_configured")
        secret = provider_secret(settings)
        # Checked when saved (setup_actions); checked again for values stored before that.
        fields = (settings.ami_username, secret, settings.ami_context, settings.ami_channel)
        if not _one_line(*fields, sip_account.username):
            raise ProviderError("ami_bad_settings")
        action = originate_action(
            settings,
            call_id=call.pk,
            extension=sip_account.username,
            number=customer_number(call),
            order_number=call.order.number if call.order else 0,
        )
        action_id = str(action["ActionID"])
        try:
            outcome = _run(_originate(settings, secret, action))
        except (OSError, TimeoutError):
            outcome = "unreachable"
        except Exception:  # the client's own failure: logged without the action in it
            log.warning("AMI originate of call %s failed in the client", call.pk)
            outcome = "client_error"
        del action  # the number goes no further than the PBX
        if outcome == "queued":
            return StartResult(
                ok=True,
                message=_("Your phone will ring: answer it and you are connected."),
                state=CallState.DIALING,
                external_id=action_id,
            )
        log.info("AMI originate of call %s: %s", call.pk, outcome)
        return StartResult(
            ok=False,
            message=_("The phone system did not take the call. Try again, or tell an admin."),
            state=CallState.FAILED,
            result=f"ami_{outcome}",
        )
