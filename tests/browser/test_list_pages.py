"""Every list page and the record pages in Chromium, on a desktop (1280 px) and a phone (375 px): no page
is wider than the screen, on a phone each row is a card whose status and amount are visible without
scrolling sideways, long text people typed wraps instead of widening the page, and axe-core finds no
serious or critical violation (WCAG 2.2 AA).

Screenshots go to ``test-results/screens/lists`` (or ``$PAYDESK_SCREENSHOTS``) to look at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import responses
from conftest import PASSWORD, make_app
from sqlalchemy import select
from stripe_world import BASE, OneOff, Renewal, StripeWorld

from admin.extensions import db

from .conftest import OPERATOR, VIEWER, axe_violations, needs_axe, serve, sign_in

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("PAYDESK_SCREENSHOTS") or ROOT / "test-results" / "screens" / "lists")
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 860}
ADMIN = "admin@example.org"
LONG_NAME = "Bartholomew" * 12  # one unbroken word, far wider than a phone


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A paydesk with a row on every list: one-off gifts (one refunded in part, one failed), a subscription,
    intents, a job, audit entries, a donation form, a failed receipt, and a payment that drifted from Stripe
    (for /reconcile). Stripe is a ``StripeWorld`` behind ``responses``."""
    from admin.models import Contact, Contribution, OutboxTask, Payment, StripePaymentIntent
    from admin.services.core import audit, jobs
    from admin.services.donations.forms import FormSettings, create_form
    from admin.services.reconcile import scan as rc_scan
    from admin.services.reconcile.filter import ReconcileFilter
    from admin.services.settings.processors import add_processor
    from admin.services.staff.users import create_user
    from admin.webhooks.ingest import store_event
    from admin.worker.loop import run_once

    tmp = tmp_path_factory.mktemp("lists")
    app = make_app(f"sqlite:///{tmp / 'paydesk.sqlite3'}", tmp, TESTING=False)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        with app.app_context():
            db.create_all()
            create_user(VIEWER, PASSWORD, "viewer")
            create_user(OPERATOR, PASSWORD, "operator")
            create_user(ADMIN, PASSWORD, "admin")
            proc = add_processor(
                name="Stripe (test)",
                secret_key="sk_test_lists",
                publishable_key="pk_test_lists",
                webhook_secrets=["whsec_lists"],
                api_base=BASE,
                mode="test",
                default=True,
            )
            gifts = [OneOff(world, amount=2500 + 1000 * n) for n in range(3)]
            for n, g in enumerate(gifts):
                g.customer.update(name=LONG_NAME if n == 0 else f"Donor {n}", email=f"donor{n}@example.org")
            for g in gifts:
                store_event(proc, g.event("charge.succeeded"))
            gifts[2].refund(world, 1000)
            store_event(proc, gifts[2].event("charge.refunded", created=gifts[2].now + 5))
            renewal = Renewal(world, amount=1500)
            store_event(proc, renewal.events["invoice.paid"])
            run_once()
            donor = db.session.scalar(select(Contact).order_by(Contact.id.desc()))
            db.session.add(
                Contribution(
                    processor_id=proc.id,
                    contact_id=donor.id,
                    amount=4000,
                    currency="usd",
                    status="Failed",
                    trxn_id="ch_failed_lists",
                    failure_message="Your card was declined.",
                )
            )
            for n, status in enumerate(["requires_payment_method", "succeeded"]):
                db.session.add(
                    StripePaymentIntent(
                        stripe_intent_id=f"pi_lists{n}",
                        processor_id=proc.id,
                        status=status,
                        amount=1200,
                        currency="usd",
                        description="Spring appeal",
                    )
                )
            db.session.add(
                OutboxTask(
                    kind="receipt",
                    key="receipt:lists",
                    processor_id=proc.id,
                    status="error",
                    attempts=5,
                    last_error="The mail server refused the message",
                )
            )
            audit.record(
                "contact.update",
                object_type="contact",
                object_id=str(donor.id),
                processor_id=proc.id,
                parameters={"fields": ["display_name", "email"], "email": "a@example.org"},
            )
            jobs.start("events.cleanup", {"older_than": "3 months"}, processor_id=proc.id)
            create_form(
                FormSettings(
                    slug="spring",
                    title="Spring appeal",
                    processor_id=proc.id,
                    amounts="10,25,50,100,250",
                    frequencies=("one-off", "monthly", "yearly"),
                )
            )
            db.session.delete(
                db.session.scalar(select(Payment).where(Payment.trxn_id == gifts[1].charge["id"]))
            )
            db.session.commit()
            rc_scan.take(proc, ReconcileFilter())  # /reconcile shows the kept scan (an operator's job)
            db.session.remove()
        with serve(app) as live:
            live.world = world
            yield live


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport=DESKTOP, base_url=site.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()


def _first_id(site, model) -> int:
    with site.app.app_context():
        value = db.session.scalar(select(model.id).order_by(model.id))
        db.session.remove()
    return value


# Each list: its address, and the column headings of its status and its amount (None: it has no amount).
LISTS = [
    ("events", "/events", "Status, attempts, reason or last error", "Amount"),
    ("subscriptions", "/subscriptions", "Status", "Amount"),
    ("customers", "/customers", "Contributions", "Given"),
    ("contributions", "/contributions", "Status", "Amount"),
    ("payments", "/payments", "Status", "Amount"),
    ("intents", "/intents", "Status", "Amount"),
    ("jobs", "/jobs", "Status", None),
    ("audit", "/audit", "Result", None),
    ("reconcile", "/reconcile?matching=1", "Difference", "In Stripe"),
    ("forms", "/forms", "Status", None),
    ("outbox", "/jobs/outbox", "Status", None),
]


def _overflow(page) -> tuple[int, list[str]]:
    """How many pixels the page is wider than the screen, and the first elements that stick out."""
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    wide = page.evaluate("""() => { const w = document.documentElement.clientWidth + 1;
        return [...document.querySelectorAll('body *')].filter(el => el.getBoundingClientRect().right > w
            && el.parentElement.getBoundingClientRect().right <= w).slice(0, 5)
            .map(el => el.tagName + '.' + el.className + ' in ' + el.parentElement.className); }""")
    return overflow, wide


def _cell(page, heading: str):
    """The first row's cell under the column ``heading`` (found by the heading's position)."""
    table = page.locator("main table:not(.totals-table)").first
    headings = [t.strip() for t in table.locator("thead th").all_inner_texts()]
    assert heading in headings, f"no column {heading!r} in {headings}"
    return table.locator("tbody tr").first.locator("td, th").nth(headings.index(heading))


VISIBLE = """el => {  /* inside the screen, and not cut off by a box that scrolls sideways */
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.left < 0 || r.right > document.documentElement.clientWidth + 1) return false;
    for (let p = el.parentElement; p; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (s.overflowX !== 'visible') {
            const b = p.getBoundingClientRect();
            if (r.left < b.left - 1 || r.right > b.right + 1) return false;
        }
    }
    return true;
}"""


@pytest.mark.parametrize("name, path, status, amount", LISTS, ids=[n for n, *_ in LISTS])
def test_a_row_is_a_card_with_status_and_amount_first_on_a_phone(page, name, path, status, amount):
    sign_in(page, ADMIN)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size(PHONE)
    page.goto(path)
    page.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
    overflow, wide = _overflow(page)
    assert overflow <= 0, f"{path} on a phone is {overflow}px wider than the screen: {wide}"
    first_row = page.locator("main table:not(.totals-table) tbody tr").first
    top = first_row.bounding_box()["y"]
    for heading in (status, amount):
        if heading is None:
            continue
        cell = _cell(page, heading)
        assert cell.evaluate(VISIBLE), f"{path} on a phone: the {heading} of a row is off the screen"
        # labelled (the column heading is not on screen), and near the top of its card
        assert cell.get_attribute("data-label") == heading
        assert cell.bounding_box()["y"] - top < 60, f"{path}: {heading} is not at the top of the row's card"
    # every other value of the row says what it is
    cells = first_row.locator("td")
    for i in range(cells.count()):
        cell = cells.nth(i)
        if cell.evaluate("el => el.innerText.trim() !== '' && !el.matches('.select, .action')"):
            assert cell.get_attribute("data-label"), (
                f"{path}: a value without its label: {cell.inner_text()!r}"
            )
    assert page.errors == []


def _record_pages(site) -> list[tuple[str, str]]:
    from admin.models import Contact, Contribution, ContributionRecur, StripeEvent

    with site.app.app_context():
        contribution = db.session.scalar(select(Contribution.id).where(Contribution.refunded_amount > 0))
        contact = db.session.scalar(select(Contact.id).where(Contact.display_name == LONG_NAME))
        sub = db.session.scalar(select(ContributionRecur.subscription_id))
        event = db.session.scalar(select(StripeEvent.id).order_by(StripeEvent.id))
        db.session.remove()
    return [
        ("contribution", f"/contributions/{contribution}"),
        ("contact", f"/contacts/{contact}"),
        ("subscription", f"/subscriptions/{sub}"),
        ("event", f"/events/{event}"),
        ("intent", "/intents/pi_lists0"),
        ("dashboard", "/"),
        ("not-found", "/contributions/99999"),
        ("form-edit", "/forms/1/edit"),
        ("api-tokens", "/settings/tokens"),
        ("api-docs", "/api/docs"),
    ]


@needs_axe
def test_every_page_fits_and_passes_axe_on_desktop_and_phone(page, site):
    sign_in(page, ADMIN)
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = [(name, path) for name, path, *_ in LISTS] + _record_pages(site)
    problems = []
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for name, path in pages:
            page.goto(path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
            overflow, wide = _overflow(page)
            if overflow > 0:
                problems.append(f"{path} at {label}: {overflow}px wider than the screen: {wide}")
            clipped = page.evaluate("""() => [...document.querySelectorAll('.table-wrap')]
                .filter(w => w.scrollWidth > w.clientWidth + 1).map(w => w.parentElement.id || w.parentElement.className)""")
            if label == "desktop" and clipped:
                problems.append(f"{path} at {label}: a table is cut off (scrolls sideways) in {clipped}")
            for v in axe_violations(page):
                problems.append(
                    f"{path} at {label}: axe {v['id']} ({v['impact']}): {v['help']}: "
                    f"{[n['target'] for n in v['nodes']][:3]}"
                )
    assert problems == [], json.dumps(problems, indent=1)
    assert page.errors == []


@pytest.mark.parametrize(
    "path",
    [
        "/events?subscription=sub_" + "x" * 3000,
        "/events?q=" + "y" * 3000,
        "/contributions?trxn_id=" + "z" * 3000,
        "/customers?customer=cus_" + "w" * 3000,
        "/jobs?kind=" + "v" * 3000,
        "/audit?q=" + "u" * 3000,
    ],
    ids=[
        "events-subscription",
        "events-q",
        "contributions-trxn",
        "customers-customer",
        "jobs-kind",
        "audit-q",
    ],
)
def test_a_long_id_is_refused_without_widening_the_page(page, path):
    """3,000 characters pasted into a filter: refused with a message (ids are at most 255 characters), and the
    page stays as wide as the screen (it was 23,480 px)."""
    sign_in(page, ADMIN)
    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport)
        page.goto(path)
        overflow, wide = _overflow(page)
        assert overflow <= 0, f"{path[:40]}… is {overflow}px wider than the screen: {wide}"
        assert "at most 255 characters" in page.locator(".form-error").inner_text()


def test_a_donor_with_one_long_first_name_fits_the_phone_thanks_page(browser, site):
    from admin.models import Contact, Contribution, DonationForm
    from admin.services.donations.give import Gift, ref_of

    with site.app.app_context():
        form = db.session.scalar(select(DonationForm).where(DonationForm.slug == "spring"))
        donor = Contact(display_name="Maximiliane" * 8 + " Okafor", email="max@example.org")
        db.session.add(donor)
        db.session.flush()
        gift = Contribution(
            processor_id=form.processor_id,
            contact_id=donor.id,
            amount=2500,
            currency="usd",
            status="Completed",
            donation_form_id=form.id,
            trxn_id="ch_thanks_long",
        )
        db.session.add(gift)
        db.session.commit()
        typed = Gift(
            amount=2500,
            frequency="one-off",
            first_name="Maximiliane" * 8,
            last_name="Okafor",
            email="max@example.org",
        )
        url = f"/donate/spring/thanks/{ref_of(gift, typed)}"
        db.session.remove()
    context = browser.new_context(viewport=PHONE, base_url=site.url)
    page = context.new_page()
    try:
        page.goto(url)
        assert page.locator("h1").inner_text().startswith("Thank you, Maximiliane")
        page.screenshot(path=str(SHOTS / "thanks-long-name-phone.png"), full_page=True)
        overflow, wide = _overflow(page)
        assert overflow <= 0, f"the thanks page is {overflow}px wider than a phone: {wide}"
    finally:
        context.close()


def test_saving_a_contact_renames_the_page_heading(page, site):
    from admin.models import Contact

    with site.app.app_context():
        contact = Contact(display_name="Katherine Johnson", email="kj@example.org")
        db.session.add(contact)
        db.session.commit()
        url = f"/contacts/{contact.id}"
        db.session.remove()
    sign_in(page, ADMIN)
    page.goto(url)
    assert page.locator("h1").inner_text().startswith("Katherine Johnson")
    page.click("summary:has-text('Change name or email')")
    page.fill("#contact-name", "Katherine G. Johnson")
    page.click("#contact-details button:has-text('Save')")
    page.locator("#contact-details .flash").wait_for()
    assert "Saved" in page.locator("#contact-details .flash").inner_text()
    assert page.locator("h1").inner_text().startswith("Katherine G. Johnson")  # not the old name
    assert page.locator("h1").count() == 1
    assert page.errors == []
