"""The operator workspace in a real browser: Next order, the card's forms (HTMX and plain
POSTs), two operators claiming at the same moment, a trainee's whole pass through the queue
without the digits, and a supervisor's filters and search.

Claims depend on calling hours, so every test that claims opens them around the clock.
"""

from __future__ import annotations

import re
import time
from contextlib import ExitStack
from datetime import time as clock
from decimal import Decimal
from typing import Any

import pytest

from callvault.accounts.models import Membership, Project, Role
from callvault.audit.models import AuditEvent
from callvault.lib.fakephones import STYLES
from callvault.orders.actions import do_assign_order, do_change_status
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Comment, Order, Status, WorkSettings
from conftest import PASSWORD, make_member
from tests.e2e.conftest import TIMEOUT_MS, Browse, Seen, find_phone

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEXT_BUTTON = "main .heading button.primary"  # the header has a second "Next order" button
CARD_PATH = re.compile(r"/p/[\w-]+/orders/(\d+)/$")


def whole_day(project: Project) -> None:
    """Calling hours around the clock, so claims do not depend on when the tests run."""
    WorkSettings.objects.filter(project=project).update(
        calling_hours_start=clock(0, 0), calling_hours_end=clock(23, 59, 59)
    )


def written_as(e164: str, style: int) -> str:
    """A reserved +1 number written in one of fakephones' STYLES."""
    assert e164.startswith("+1") and len(e164) == 12, e164
    return STYLES[style].format(a=e164[2:5], l=e164[-3:])


def new_order(project: Project, phone: str, name: str, address: str = "Moscow") -> Order:
    lead = Lead(phone=phone, name=name, address=address, items=[LeadItem("TEA", 2)])
    return do_create_order(project, lead).order


def other_numbers(taken: str, count: int) -> list[str]:
    """`count` reserved numbers (E.164), all different from `taken` and each other."""
    area, line = taken[2:5], int(taken[-3:])
    lines = [n for n in range(100, 200) if n != line][:count]
    return [f"+1{area}5550{n}" for n in lines]


def mine_path(project: Project) -> str:
    return f"/p/{project.slug}/orders/mine/"


def card_path(order: Order) -> str:
    return f"/p/{order.project.slug}/orders/{order.pk}/"


def order_id_in(url: str) -> int | None:
    """The id of the order whose card the address is, None for any other page."""
    match = CARD_PATH.search(url.split("#")[0])
    return int(match.group(1)) if match else None


def order_on(page: Any) -> int | None:
    """The id of the order whose card the page shows, None when it is not a card."""
    return order_id_in(page.url)


def messages_on(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("ul.messages li").all_inner_texts()]


def events(order: Order, action: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(action=action, object_type="order", object_id=str(order.pk))
    )


def by_member(event: AuditEvent, member: Membership) -> bool:
    return (event.actor_kind, event.actor_id) == ("member", str(member.user_id))


def press_next(b: Browse) -> None:
    """From My orders, press Next order and wait for wherever it leads."""
    with b.page.expect_navigation():
        b.page.click(NEXT_BUTTON)


# --- a. an operator takes an order, sells the gift box in place and approves ------------------


def test_operator_takes_next_order_upsells_in_place_and_approves(
    browse: Any, operator: Membership, project: Project, order: Order
) -> None:
    whole_day(project)
    b = browse()
    b.login(operator.user.username, PASSWORD)
    assert b.page.url.endswith(mine_path(project)), b.page.url
    press_next(b)
    assert order_on(b.page) == order.pk, b.page.url
    assert b.page.locator("main h1").inner_text().startswith(f"Order {order.number}")
    assert Order.objects.get(pk=order.pk).locked_by_id == operator.user_id

    total = b.page.locator("#items tfoot th:nth-child(2)")  # after "Total" (colspan 3)
    assert Decimal(total.inner_text().strip()) == Decimal("1980.00")  # two teas at 990
    assert b.page.locator("#items tbody tr").count() == 1

    # The gift box through HTMX: the items block is swapped, the page itself stays.
    navigations: list[str] = []
    b.page.on(
        "framenavigated",
        lambda frame: navigations.append(frame.url) if frame == b.page.main_frame else None,
    )
    b.page.evaluate("() => { window.__sameDocument = 'still here'; }")
    url_before = b.page.url
    add_form = b.page.locator("#items form.add-item")
    add_form.locator("select[name=product]").select_option(label="Gift box, 390.00")
    add_form.locator("input[name=quantity]").fill("1")
    with b.page.expect_response(lambda r: r.url.endswith(f"/orders/{order.pk}/items/")) as got:
        add_form.locator("button[type=submit]").click()
    response = got.value
    assert response.request.method == "POST"
    assert response.request.headers.get("hx-request") == "true", response.request.headers
    assert response.status == 200
    fragment = response.text()
    assert fragment.lstrip().startswith('<section id="items">'), fragment[:200]
    assert "<html" not in fragment.lower()
    gift_row = b.page.locator("#items tbody tr", has_text="Gift box")
    gift_row.wait_for()
    assert "upsell" in gift_row.inner_text()
    assert b.page.locator("#items tbody tr").count() == 2
    assert Decimal(total.inner_text().strip()) == Decimal("2370.00")
    assert b.page.evaluate("() => window.__sameDocument") == "still here"
    assert b.page.url == url_before
    assert navigations == [], navigations
    assert b.page.locator("section#items").count() == 1  # swapped, not nested

    # Approve: the status form still carries the right version (items do not bump it).
    status_form = b.page.locator("form[action$='/status/']")
    status_form.locator("select[name=status]").select_option(label="Accepted")
    with b.page.expect_navigation():
        status_form.locator("button[name=then][value=mine]").click()
    assert b.page.url.endswith(mine_path(project)), b.page.url
    assert f"Order {order.number}: Accepted." in messages_on(b.page)
    assert b.page.locator("ul.errorlist").count() == 0

    fresh = Order.objects.select_related("status").get(pk=order.pk)
    assert fresh.status.code == "accepted"
    assert fresh.locked_by_id is None and not fresh.in_queue
    items = {
        (i.product.sku, i.quantity, i.is_upsell) for i in fresh.items.select_related("product")
    }
    assert items == {("TEA", 2, False), ("GIFT", 1, True)}
    for action in ("order.claim", "order.item_add", "order.status"):
        recorded = events(order, action)
        assert len(recorded) == 1, (action, recorded)
        assert by_member(recorded[0], operator), (action, recorded[0].actor_id)
    assert events(order, "order.status")[0].changes["status"] == ["new", "accepted"]


# --- b. two operators press Next order at the same moment --------------------------------------


class HeldRequests:
    """Holds every Next order POST of some pages until all have left their browsers, then
    lets them go together: the claims reach the server at the same moment."""

    def __init__(self, pages: list[Any]) -> None:
        self.pages = pages
        self.routes: list[Any] = []
        for page in pages:
            page.route("**/orders/next/", self.hold)

    def hold(self, route: Any) -> None:
        self.routes.append(route)

    def release_when_all_sent(self) -> None:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while len(self.routes) < len(self.pages):
            assert time.monotonic() < deadline, f"only {len(self.routes)} requests were sent"
            self.pages[0].wait_for_timeout(5)  # lets Playwright deliver the route events
        for route in self.routes:
            route.continue_()
        for page in self.pages:
            page.unroute("**/orders/next/")


@pytest.fixture
def two_operators(
    browse: Any, operator: Membership, project: Project
) -> list[tuple[Membership, Browse]]:
    """(member, Browse) for two operators, each logged in in their own browser context."""
    olga = make_member(project, "olga", Role.OPERATOR)
    pairs = []
    for member in (operator, olga):
        b = browse()
        b.login(member.user.username, PASSWORD)
        assert b.page.url.endswith(mine_path(project)), b.page.url
        pairs.append((member, b))
    return pairs


def press_next_together(pairs: list[tuple[Membership, Browse]]) -> None:
    pages = [b.page for _, b in pairs]
    held = HeldRequests(pages)
    with ExitStack() as stack:
        for page in pages:
            stack.enter_context(page.expect_navigation())
        for page in pages:
            # Both clicks before either request is answered (the click must not wait for it).
            page.click(NEXT_BUTTON, no_wait_after=True)
        held.release_when_all_sent()


def test_two_operators_pressing_at_once_get_different_orders(
    two_operators: list[tuple[Membership, Browse]], project: Project, phone: tuple[str, str]
) -> None:
    whole_day(project)
    first = new_order(project, phone[0], "First Customer")
    second = new_order(project, other_numbers(phone[1], 1)[0], "Second Customer")

    press_next_together(two_operators)

    landed = {member.user_id: order_on(b.page) for member, b in two_operators}
    assert set(landed.values()) == {first.pk, second.pk}, {m: b.page.url for m, b in two_operators}
    for member, b in two_operators:
        order_id = landed[member.user_id]
        assert order_id is not None
        assert Order.objects.get(pk=order_id).locked_by_id == member.user_id
        assert b.page.locator("main h1").inner_text().startswith("Order ")
        claims = AuditEvent.objects.filter(action="order.claim", object_id=str(order_id))
        assert [by_member(e, member) for e in claims] == [True]


def test_two_operators_pressing_at_once_for_one_order_only_one_gets_it(
    two_operators: list[tuple[Membership, Browse]], project: Project, order: Order
) -> None:
    whole_day(project)

    press_next_together(two_operators)

    winners = [(m, b) for m, b in two_operators if order_on(b.page) == order.pk]
    losers = [(m, b) for m, b in two_operators if order_on(b.page) is None]
    assert len(winners) == 1 and len(losers) == 1, [b.page.url for _, b in two_operators]
    (winner, _), (loser, lost) = winners[0], losers[0]
    assert lost.page.url.endswith(mine_path(project)), lost.page.url
    assert "No orders are due now." in messages_on(lost.page)
    assert lost.page.locator(f"table.orders a[href$='/orders/{order.pk}/']").count() == 0
    held_by = Order.objects.get(pk=order.pk).locked_by_id
    assert held_by == winner.user_id != loser.user_id
    claims = events(order, "order.claim")
    assert len(claims) == 1 and by_member(claims[0], winner), claims


# --- c. a trainee's pass through the queue never carries the digits ---------------------------


def test_trainee_works_an_order_and_no_response_carries_the_number(
    browse: Any, trainee: Membership, project: Project, phone: tuple[str, str]
) -> None:
    whole_day(project)
    # The customer also typed their number into the address, in yet another way.
    typed_again = written_as(phone[1], 2)
    order = new_order(project, phone[0], "Ivan Petrov", address=f"Tver, call {typed_again}")
    masked = order.phone_masked()
    # The detector sees the number written as the address has it (not vacuous by design).
    assert find_phone(phone[1], Seen(responses=[("x", 200, "text/plain", typed_again)]))

    b = browse()
    b.login(trainee.user.username, PASSWORD)
    press_next(b)
    assert order_on(b.page) == order.pk, b.page.url
    assert b.page.locator("dd.phone").inner_text().strip() == masked
    assert b.page.locator("input[name=purpose]").count() == 0  # no "Show number"

    # The Call placeholder answers with an HTMX fragment.
    with b.page.expect_response(lambda r: r.url.endswith(f"/orders/{order.pk}/call/")) as got:
        b.page.click("dd.call button[type=submit]")
    assert got.value.request.headers.get("hx-request") == "true"
    b.page.locator("#call-result .notice").wait_for()
    # An HTMX item change as well: another fragment.
    quantity = b.page.locator("#items form.quantity").first
    quantity.locator("input[name=quantity]").fill("3")
    with b.page.expect_response(lambda r: "/quantity/" in r.url):
        quantity.locator("button[type=submit]").click()
    b.page.locator("#items tbody tr", has_text="Tea").locator("input[value='3']").wait_for()

    # The edit form for the details shows the address blanked, not with the digits.
    b.page.click("details.edit summary")
    shown_address = b.page.locator("textarea[name=address]").input_value()
    assert "[redacted]" in shown_address, shown_address

    b.page.fill("textarea[name=text]", "Customer asked to call after lunch.")
    with b.page.expect_navigation():
        b.page.click("form[action$='/comments/'] button[type=submit]")
    assert "Customer asked to call after lunch." in b.page.locator("ul.comments").inner_text()

    with b.page.expect_navigation():
        b.page.click("form[action$='/no-answer/'] button[name=then][value=mine]")
    assert b.page.url.endswith(mine_path(project)), b.page.url
    assert f"Order {order.number}: no answer (attempt 1)." in messages_on(b.page)
    # And the API's documentation with its schema: JSON and scripts in the record too.
    b.goto("/api/v1/docs")
    b.page.locator("#swagger-ui .info .title").wait_for()
    b.page.wait_for_load_state("networkidle")

    fresh = Order.objects.select_related("status").get(pk=order.pk)
    assert (fresh.status.code, fresh.attempts, fresh.locked_by_id) == ("no_answer", 1, None)
    assert Comment.objects.filter(order=order, author=trainee.user).count() == 1
    assert fresh.items.get().quantity == 3

    seen = b.seen
    assert not seen.errors, seen.errors
    urls = [url for url, *_ in seen.responses]
    assert len(urls) >= 12, urls
    types = seen.content_types()
    assert {"text/html", "text/css", "application/json"} <= types, types
    assert any("javascript" in t for t in types), types
    fragments = [
        body
        for url, _, ctype, body in seen.responses
        if ctype.startswith("text/html") and re.search(r"/(call|quantity)/$", url)
    ]
    assert len(fragments) == 2 and all("<html" not in f for f in fragments), urls
    html = seen.bodies_of("text/html")
    assert sum(masked in body for body in html) >= 2, "the card should show the mask"
    assert sum("[redacted]" in body for body in html) >= 2, "the address should be blanked"
    leaks = find_phone(phone[1], seen)
    assert not leaks, "the number reached the browser:\n" + "\n".join(leaks)


# --- d. a supervisor filters the list and finds the order by its number -----------------------


def test_supervisor_filters_by_group_and_operator_then_finds_by_number(
    browse: Any,
    supervisor: Membership,
    operator: Membership,
    project: Project,
    phone: tuple[str, str],
) -> None:
    olga = make_member(project, "olga", Role.OPERATOR)
    accepted = Status.objects.get(project=project, code="accepted")
    numbers = other_numbers(phone[1], 3)
    target = new_order(project, phone[0], "Target Customer")
    done = new_order(project, numbers[0], "Done Customer")  # bob's, but accepted
    hers = new_order(project, numbers[1], "Her Customer")  # processing, but olga's
    nobodys = new_order(project, numbers[2], "Nobody Customer")  # processing, unassigned
    for o, member in ((target, operator), (done, operator), (hers, olga)):
        do_assign_order(o, member.user)
    do_change_status(Order.objects.get(pk=done.pk), accepted)
    everyone = {o.pk for o in (target, done, hers, nobodys)}

    b = browse()
    b.login(supervisor.user.username, PASSWORD)
    b.goto(f"/p/{project.slug}/orders/")
    rows = b.page.locator("table.orders tbody tr")

    def listed() -> set[int]:
        hrefs = rows.locator("td:first-child a").evaluate_all("as => as.map(a => a.href)")
        ids = [order_id_in(href) for href in hrefs]
        assert None not in ids, hrefs  # every row links to its card
        return {i for i in ids if i is not None}

    assert listed() == everyone

    filters = b.page.locator("form.order-filters")
    filters.locator("select[name=group]").select_option("processing")
    with b.page.expect_navigation():
        filters.locator("button[type=submit]").click()
    assert "group=processing" in b.page.url
    assert listed() == {target.pk, hers.pk, nobodys.pk}

    filters.locator("select[name=operator]").select_option(label=operator.user.username)
    with b.page.expect_navigation():
        filters.locator("button[type=submit]").click()
    assert f"operator={operator.user_id}" in b.page.url and "group=processing" in b.page.url
    assert listed() == {target.pk}
    assert filters.locator("select[name=group]").input_value() == "processing"
    assert rows.first.locator("td.phone").inner_text().strip() == target.phone_masked()

    # The exact number, typed another way than the landing page sent it.
    typed = written_as(phone[1], 4)  # "8 10 1 212 555 0123"; intake had "+1 (212) 555-0123"
    b.page.fill("input[name=q]", typed)
    with b.page.expect_navigation():
        b.page.click("form.search button[type=submit]")
    assert b.page.locator("p.error").count() == 0, b.page.locator("p.error").all_inner_texts()
    assert listed() == {target.pk}
    assert "Target Customer" in rows.first.inner_text()
    # The box shows the number back only masked, and no address carries it.
    assert b.page.locator("input[name=q]").input_value() == target.phone_masked()
    assert "q=" not in b.page.url
    leaks = find_phone(phone[1], b.seen)
    assert not leaks, "the number came back to the browser:\n" + "\n".join(leaks)
    search = AuditEvent.objects.get(action="order.search", project_id=project.pk)
    assert by_member(search, supervisor)
    assert search.extra == {"kind": "phone", "results": 1}
