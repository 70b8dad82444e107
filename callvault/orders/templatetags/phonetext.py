"""Template filters for free text that may quote a phone number."""

from __future__ import annotations

from django import template

from callvault.accounts.models import Membership
from callvault.vault.logfilter import redact

register = template.Library()


@register.filter
def phones_hidden_from(text: str, member: Membership | None) -> str:
    """The text with phone-shaped digit runs blanked, unless the member may see numbers.

    Customers type numbers into names and comments, and operators quote them in status
    reasons: free text would otherwise carry the digits past the vault.
    """
    if member is not None and member.can_see_phones:
        return text
    return redact(text or "")
