"""A write to the leak controls from outside the application is recorded without the
webhook address: its path may hold a chat bot's token. Transactional: on PostgreSQL the
triggers fire only at a real COMMIT."""

from __future__ import annotations

import pytest
from django.db import connection

from callvault.audit.models import ActorKind, AuditEvent
from callvault.audit.parked import sweep_pending_changes
from callvault.guard.models import GuardSettings

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "123456:AAbbCCddEEffGGhh"


@pytest.mark.parametrize("with_other_column", [True, False])
def test_a_raw_change_of_the_webhook_address_shows_changed_and_not_the_address(
    project, with_other_column: bool
):
    guard = GuardSettings.objects.get(project=project)
    url = f"https://api.telegram.org/bot{TOKEN}/sendMessage?chat_id=1"
    other = ", watermark = NOT watermark" if with_other_column else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE guard_guardsettings SET webhook_url = %s{other} WHERE id = %s",  # noqa: S608
            [url, guard.pk],
        )
    sweep_pending_changes()
    (event,) = AuditEvent.objects.filter(
        actor_kind=ActorKind.UNATTRIBUTED, object_type="guard_settings"
    )
    assert event.changes["webhook_url"] == "changed"
    assert TOKEN not in str(event.changes) and TOKEN not in str(event.extra)
