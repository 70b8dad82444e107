"""What the quota and suspension tests share."""

from __future__ import annotations

import time
from typing import Any

from callvault.accounts.models import Membership
from callvault.accounts.stepup import SESSION_KEY
from callvault.guard.quotas import do_set_quota
from callvault.orders.tests.support import HttpsClient


def login(member: Membership, *, fresh: bool = False) -> HttpsClient:
    """A client logged in as the member, reading English; `fresh`: just stepped up."""
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(member.user)
    if fresh:
        session = client.session
        session[SESSION_KEY] = time.time()
        session.save()
    return client


def limit_member(member: Membership, kind: str, limit: int, owner: Membership) -> None:
    """Give the member their own quota of `kind`."""
    do_set_quota(member.project, kind, limit, membership=member, acting=owner)


def guard_url(name: str, slug: str = "alpha", *args: Any) -> str:
    """A leak-control page of the project."""
    from django.urls import reverse

    return reverse(f"guard:{name}", args=[slug, *args])
