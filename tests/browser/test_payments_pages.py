"""Chromium: charge a saved customer from the contact page, refund part of a payment from its page, add a
card on a contact page with the Stripe.js test double (real PaymentMethods in localstripe); axe-core clean,
and usable at phone width."""

from __future__ import annotations

import threading
import uuid

import pytest
from conftest import PASSWORD, free_port, make_app
from payments_support import customer_of, paid_one_off, saved_customer
from playwright.sync_api import expect
from stripejs.server import DoubleServer
from werkzeug.serving import make_server

from admin.extensions import db
from admin.services.payments import cards
from admin.services.settings.processors import add_processor

from .conftest import axe_violations, needs_axe, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.localstripe]
OPERATOR = "money.operator@example.org"


class Site:
    def __init__(self, app, url, ppid):
        self.app, self.url, self.ppid = app, url, ppid

    def query(self, fn):
        from admin.models import PaymentProcessor

        with self.app.app_context():
            try:
                return fn(db.session.get(PaymentProcessor, self.ppid))
            finally:
                db.session.remove()


@pytest.fixture(scope="module")
def site(localstripe, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("payments")
    double = DoubleServer(localstripe)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = make_app(
        f"sqlite:///{tmp / 'paydesk.sqlite3'}", tmp, TESTING=False, STRIPE_JS_URL=double.js_url, BASE_URL=url
    )
    with app.app_context():
        db.create_all()
        proc = add_processor(
            name="localstripe",
            secret_key="sk_test_pay_" + uuid.uuid4().hex[:8],
            publishable_key="pk_test_pay",
            webhook_secrets=["whsec_x"],
            api_base=localstripe,
            mode="test",
        )
        from admin.services.staff.users import create_user

        create_user(OPERATOR, PASSWORD, "operator")
        ppid = proc.id
        db.session.remove()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="paydesk-payments-server", daemon=True).start()
    try:
        yield Site(app, url, ppid)
    finally:
        server.shutdown()
        double.stop()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def op(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    sign_in(page, OPERATOR)
    yield page
    context.close()


@needs_axe
def test_charge_a_saved_customer(op, site):
    contact_id = site.query(lambda p: saved_customer(p, name="Grace Giver").id)
    op.goto(f"/contacts/{contact_id}")
    form = op.locator("#contact-charge")
    form.get_by_label("Amount", exact=True).fill("42.00")
    form.get_by_label("Description").fill("Gala table")
    form.get_by_role("button", name="Charge…").click()
    expect(op.get_by_role("dialog")).to_contain_text("Charge 42.00 USD?")
    assert axe_violations(op) == []
    op.get_by_role("button", name="Yes, charge 42.00 USD").click()
    expect(op.locator("#charge-result")).to_contain_text("Charged 42.00 USD")
    op.locator("#charge-result a", has_text="Contribution").click()
    expect(op.locator("h1")).to_contain_text("42.00 USD")
    expect(op.locator("#payment-money")).to_contain_text("Completed")
    assert op.errors == []


@needs_axe
def test_partial_refund_from_the_payment_page(op, site):
    payment_id = site.query(lambda p: paid_one_off(p, 5000)[0].payments[0].id)
    op.goto(f"/payments/{payment_id}")
    box = op.locator("#payment-money")
    box.get_by_label("Amount to refund (USD)").fill("12.50")
    box.get_by_label("Reason").select_option("requested_by_customer")
    assert axe_violations(op) == []
    box.get_by_role("button", name="Refund…").click()
    expect(op.get_by_role("dialog")).to_contain_text("37.50 USD stays refundable")
    op.get_by_role("button", name="Yes, refund 12.50 USD").click()
    expect(op.locator("#payment-money")).to_contain_text("Refunded 12.50 USD")
    expect(op.locator("#payment-money")).to_contain_text("-12.50 USD")
    expect(op.locator("#payment-money summary")).to_contain_text("37.50 USD left to refund")
    op.set_viewport_size({"width": 375, "height": 812})
    op.reload()
    assert op.evaluate("document.documentElement.scrollWidth") <= 380
    assert axe_violations(op) == []
    assert op.errors == []


@needs_axe
def test_add_a_card_on_the_contact_page(op, site):
    contact_id, customer = site.query(lambda p: (lambda c: (c.id, customer_of(c)))(saved_customer(p)))
    loaded: list[str] = []
    op.on("request", lambda req: loaded.append(req.url))
    op.goto(f"/contacts/{contact_id}")
    cards_box = op.locator("#contact-cards")
    expect(cards_box).to_contain_text("4242")
    assert not any("stripe-double" in u for u in loaded), "Stripe.js is loaded only for a card to add"
    cards_box.get_by_role("button", name="Enter a card…").click()
    cards_box.get_by_label("Card number").fill("5555555555554444")
    cards_box.get_by_label("Expiration date (MM / YY)").fill("11 / 31")
    cards_box.get_by_label("Security code (CVC)").fill("123")
    if cards_box.get_by_label("ZIP or postal code").count():
        cards_box.get_by_label("ZIP or postal code").fill("10115")
    cards_box.get_by_label("Make it the default card").check()
    assert axe_violations(op) == []
    cards_box.get_by_role("button", name="Add card").click()
    expect(op.locator(".flash")).to_contain_text("ending 4444")
    listed = site.query(lambda p: cards.list_cards(p, customer)[0])
    assert [(c.last4, c.default) for c in listed] == [("4444", True), ("4242", False)]
    assert op.errors == []
