"""Demo data for `callvault demo`: a project, its members, products and fake orders."""

from __future__ import annotations

import argparse
import random
from datetime import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from callvault.accounts.actions import (
    do_add_member,
    do_create_api_key,
    do_create_project,
    do_create_user,
)
from callvault.accounts.models import Project, Role, User
from callvault.accounts.passwords import generated_password
from callvault.audit.context import system_run
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.actions import (
    do_assign_order,
    do_change_status,
    do_create_default_statuses,
    do_create_product,
)
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Status, WorkSettings
from callvault.orders.setup_actions import do_update_work_settings

MEMBERS = [
    ("owner", "Olga", "Owner", Role.OWNER),
    ("supervisor", "Sergey", "Supervisor", Role.SUPERVISOR),
    ("operator1", "Anna", "Operator", Role.OPERATOR),
    ("operator2", "Boris", "Operator", Role.OPERATOR),
    ("operator3", "Vera", "Operator", Role.OPERATOR),
    ("trainee", "Timur", "Trainee", Role.TRAINEE),
]
PRODUCTS = [
    ("SLIM-1", "Slim tea, 1 pack", "990.00", False),
    ("SLIM-3", "Slim tea, 3 packs", "2490.00", False),
    ("CREAM", "Joint cream", "1490.00", False),
    ("GIFT", "Gift box", "390.00", True),
    ("VIT", "Vitamins, 60 caps", "690.00", True),
]
NAMES = [
    "Ivan Petrov",
    "Maria Ivanova",
    "Dmitry Smirnov",
    "Elena Kuznetsova",
    "Alexey Popov",
    "Olga Sokolova",
    "Sergey Lebedev",
    "Natalia Kozlova",
    "Pavel Novikov",
    "Irina Morozova",
]
CITIES = [
    "Moscow, Tverskaya 1",
    "Kazan, Baumana 5",
    "Samara, Leninskaya 12",
    "Tver, Sovetskaya 3",
    "Ufa, Lenina 20",
]
DEMO_SCRIPT = """1. Greet: "Good afternoon, this is Anna from Slim Tea. You ordered from us today."
2. Confirm the order and the delivery address.
3. Offer the gift box (390) or vitamins (690) with the order.
4. Confirm the total and the delivery date. Thank the customer."""
SOURCES = ["landing-slim", "landing-cream", "partner-cpa"]


class Command(BaseCommand):
    """Seed the demo project once; later runs only print the logins again."""

    help = "Create the demo project with members, products and fake orders (once)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--orders", type=int, default=300)

    def handle(self, *args: Any, **opts: Any) -> None:
        creds = Path(settings.DATA_DIR) / "demo-credentials.txt"
        if not Project.objects.filter(slug="demo").exists():
            with system_run("seed demo"):
                self._seed(opts["orders"], creds)
        self.stdout.write(
            creds.read_text(encoding="utf-8")
            if creds.exists()
            else "demo project exists, but its credentials file is gone"
        )

    @transaction.atomic
    def _seed(self, n_orders: int, creds: Path) -> None:
        rng = random.Random(20261128)
        project = do_create_project("Demo shop", "demo", default_region="RU")
        do_create_default_statuses(project)
        lines = ["", "callvault demo: http://127.0.0.1:8000/", ""]
        users: dict[str, User] = {}
        for username, first, last, role in MEMBERS:
            password = generated_password()
            user = do_create_user(username, password, first_name=first, last_name=last)
            do_add_member(project, user, role)
            users[username] = user
            lines.append(f"  {role:<11} {username:<11} {password}")
        # The demo's customers live in North American zones and it may be shown at any hour:
        # calls around the clock, so "Next order" always has work.
        do_update_work_settings(
            WorkSettings.objects.get(project=project),
            calling_hours_start=time(0, 0),
            calling_hours_end=time(23, 59),
            script=DEMO_SCRIPT,
        )
        products = [
            do_create_product(project, sku=s, name=n, price=p, is_upsell=u)
            for s, n, p, u in PRODUCTS
        ]
        _, secret = do_create_api_key(
            project,
            "Demo landing",
            created_by=users["owner"],
            can_read_orders=True,
            can_update_orders=True,
        )
        lines += [
            "",
            f"  API key (lead intake, read, status): {secret}",
            "  API docs: http://127.0.0.1:8000/api/v1/docs",
            "",
        ]
        lines += _demo_telephony(project)
        statuses = {s.code: s for s in Status.objects.filter(project=project)}
        operators = [users["operator1"], users["operator2"], users["operator3"]]
        # Numbers from the range reserved for fiction, written the ways people type them;
        # every tenth lead repeats an earlier number, as real duplicate leads do.
        numbers = fake_phone_numbers(n_orders, rng)
        for i in range(n_orders):
            raw = numbers[rng.randrange(i)] if i > 10 and i % 10 == 0 else numbers[i]
            items = [LeadItem(products[rng.randrange(3)].sku, rng.choice([1, 1, 1, 2]))]
            lead = Lead(
                phone=raw,
                name=rng.choice(NAMES),
                address=rng.choice(CITIES),
                items=items,
                source=rng.choice(SOURCES),
                utm_source="demo",
                utm_campaign=f"campaign-{rng.randrange(1, 4)}",
            )
            order = do_create_order(project, lead).order
            roll = rng.random()
            if roll < 0.45:
                do_assign_order(order, rng.choice(operators))
            if 0.2 < roll < 0.45:
                code = rng.choice(["accepted", "accepted", "callback", "no_answer", "cancelled"])
                do_change_status(
                    order,
                    statuses[code],
                    reason="Customer changed their mind" if code == "cancelled" else "",
                )
        creds.write_text("\n".join(lines) + "\n", encoding="utf-8")
        creds.chmod(0o600)


# The demo's telephony: SIP token dialing through the reference Kamailio (deploy/kamailio), a
# PBX entry for it, and a softphone account per member who calls.
DEMO_SIP_DOMAIN = "127.0.0.1"
DEMO_EXTENSIONS = [("operator1", "1001"), ("operator2", "1002"), ("operator3", "1003")]


def _demo_telephony(project: Project) -> list[str]:
    """Set the demo's telephony up; the lines of the credentials file that name its secrets."""
    from callvault.accounts.models import Membership
    from callvault.telephony.setup_actions import (
        do_create_pbx,
        do_create_sip_account,
        do_update_telephony_settings,
    )

    do_update_telephony_settings(project, {"provider": "sip_token", "sip_domain": DEMO_SIP_DOMAIN})
    _, pbx_secret = do_create_pbx(project, "Demo Kamailio", networks=["127.0.0.1/32"])
    lines = [f"  PBX secret (Kamailio's token lookup, /pbx/v1/): {pbx_secret}"]
    for username, extension in [*DEMO_EXTENSIONS, ("trainee", "1009")]:
        member = Membership.objects.get(project=project, user__username=username)
        _, password = do_create_sip_account(member, extension)
        lines.append(f"  SIP {extension}@{DEMO_SIP_DOMAIN} ({username}): {password}")
    return [*lines, ""]
