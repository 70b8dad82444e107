"""The reference SIP proxy's accounts: Kamailio's db_text `subscriber` table, written from the
active SIP accounts (deploy/kamailio reads it; auth_db checks the HA1 digest, so no password
is in the file)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from callvault.telephony.models import SipAccount

# Kamailio's subscriber table (version 7) with the columns callvault leaves empty nullable:
# db_text refuses an empty value in a column that is not (deploy/kamailio/dbtext/subscriber).
SUBSCRIBER_HEADER = (
    "id(int,auto) username(string) domain(string) password(string,null) ha1(string) "
    "ha1b(string,null) "
)


def _field(value: str) -> str:
    """A db_text value: colons, backslashes and line breaks escaped."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n").replace("\r", "\\r")


def subscriber_table(project_slug: str | None = None) -> str:
    """The table's text: active accounts of active members (of one project, or all)."""
    accounts = SipAccount.objects.filter(
        is_active=True, membership__is_active=True, membership__user__is_active=True
    )
    if project_slug:
        accounts = accounts.filter(project__slug=project_slug)
    rows = [
        ":".join([str(a.pk), _field(a.username), _field(a.realm), "", _field(a.ha1), ""])
        for a in accounts.order_by("pk")
    ]
    return "\n".join([SUBSCRIBER_HEADER, *rows]) + "\n"


def write_subscriber_table(path: Path, project_slug: str | None = None) -> int:
    """Replace the file at once (Kamailio re-reads a changed table): how many accounts."""
    text = subscriber_table(project_slug)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".subscriber-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o640)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return text.count("\n") - 1
