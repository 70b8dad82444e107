"""Two requests with the same code at the same moment: only one gets in (the device row is
locked while the code is checked). Needs real concurrency, so PostgreSQL only."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from callvault.accounts import twofactor
from callvault.accounts.models import Membership
from callvault.accounts.tests.test_two_factor_totp import code_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="row locks need PostgreSQL to be seen"
    ),
]


def race(check: Callable[[], bool]) -> list[bool]:
    """Run `check` in two transactions: the second starts while the first, having checked,
    has not committed yet."""
    checked = threading.Event()
    results: dict[str, bool] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = check()
                checked.set()
                time.sleep(0.5)
        finally:
            checked.set()
            connection.close()

    def second() -> None:
        try:
            checked.wait(5)
            with transaction.atomic():
                results["second"] = check()
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    return sorted(results.values())


def test_an_app_code_sent_twice_at_once_lets_only_one_request_in(operator: Membership):
    user = operator.user
    device = TOTPDevice.objects.create(user=user, name="TOTP", confirmed=True)
    code = code_for(device)
    assert race(lambda: twofactor.check_code(user, code) is not None) == [False, True]


def test_a_recovery_code_sent_twice_at_once_lets_only_one_request_in(operator: Membership):
    user = operator.user
    TOTPDevice.objects.create(user=user, name="TOTP", confirmed=True)
    code = twofactor.do_generate_recovery_codes(user)[0]
    assert race(lambda: twofactor.check_code(user, code) is not None) == [False, True]
    assert twofactor.recovery_codes_left(user) == twofactor.RECOVERY_CODE_COUNT - 1


def test_new_recovery_codes_made_twice_at_once_leave_one_set(operator: Membership):
    user = operator.user
    TOTPDevice.objects.create(user=user, name="TOTP", confirmed=True)
    race(lambda: bool(twofactor.do_generate_recovery_codes(user)))
    assert twofactor.recovery_codes_left(user) == twofactor.RECOVERY_CODE_COUNT
    assert StaticDevice.objects.filter(user=user).count() == 1
