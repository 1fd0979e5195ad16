"""The donation form in Chromium, end to end: the Stripe.js test double creates real PaymentMethods and
PaymentIntents in localstripe, paydesk confirms them, localstripe posts signed webhooks to the running
app, and a worker thread completes the contribution, which the thank-you page notices.

Also: the billing-postcode rules (hidden, shown disabled, absent; sent to Stripe), declines keeping the
form, 3-D Secure, a monthly gift, validation errors, keyboard-only completion, axe-core, screenshots.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import responses
from conftest import PASSWORD, ROOT, WEBHOOK_SECRET, free_port, make_app
from donate_support import (
    CARD_3DS,
    CARD_DECLINED_AT_ATTACH,
    CARD_DECLINED_AT_CHARGE,
    CARD_OK,
    make_form,
    subscription_then_stripe_fails,
)
from sqlalchemy import delete, func, select
from stripejs.server import DoubleServer
from werkzeug.serving import make_server

from admin.extensions import db
from admin.models import (
    Contact,
    Contribution,
    ContributionRecur,
    DonationForm,
    LimiterCounter,
    PaymentProcessor,
    RateLimit,
)
from admin.services.donations.forms import donor_link
from admin.services.settings.processors import add_processor, gateway
from admin.worker.loop import run_forever

from .conftest import AXE, axe_violations, needs_axe

pytestmark = [pytest.mark.browser, pytest.mark.localstripe]
DOCS = ROOT / "docs"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


class Site:
    def __init__(self, app, url: str, processor_id: int, double: DoubleServer):
        self.app, self.url, self.processor_id, self.double = app, url, processor_id, double

    def query(self, fn):
        with self.app.app_context():
            try:
                return fn()
            finally:
                db.session.remove()

    def wait_for(self, fn, timeout: float = 25.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.query(fn)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError("timed out waiting for the webhook and the worker")

    def receipt(self, contribution_id: int) -> email.message.EmailMessage | None:
        path = Path(self.app.config["OUTBOX_DIR"]) / f"receipt-{contribution_id}.eml"
        if not path.exists():
            return None
        return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


@pytest.fixture(scope="module")
def site(localstripe, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("donate")
    double = DoubleServer(localstripe)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = make_app(
        f"sqlite:///{tmp / 'paydesk.sqlite3'}",
        tmp,
        TESTING=False,
        STRIPE_JS_URL=double.js_url,
        BASE_URL=url,
        SITE_NAME="Friends of the Library",
        WORKER_IDLE_SLEEP=0.2,
    )
    with app.app_context():
        db.create_all()
        proc = add_processor(
            name="localstripe",
            secret_key="sk_test_donate_" + uuid.uuid4().hex[:8],
            publishable_key="pk_test_donate",
            webhook_secrets=[WEBHOOK_SECRET],
            api_base=localstripe,
            mode="test",
        )
        make_form(proc, slug="spring", intro="Every gift buys books for the children's library.")
        make_form(proc, slug="quick", title="Quick gift", postcode_field=False, frequencies=["one-off"])
        from admin.services.staff.users import create_user

        create_user("admin@example.org", PASSWORD, "admin")
        ppid = proc.id
        db.session.remove()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="paydesk-donate-server", daemon=True).start()
    hook = f"paydesk-donate-{uuid.uuid4().hex[:8]}"
    requests.post(
        f"{localstripe}/_config/webhooks/{hook}",
        timeout=10,
        data={"url": f"{url}/webhooks/stripe/{ppid}", "secret": WEBHOOK_SECRET},
    ).raise_for_status()
    stop = threading.Event()
    worker = threading.Thread(
        target=run_forever, args=(app, 1, stop), name="paydesk-donate-worker", daemon=True
    )
    worker.start()
    try:
        yield Site(app, url, ppid, double)
    finally:
        requests.post(
            f"{localstripe}/_config/webhooks/{hook}",
            data={"url": "http://127.0.0.1:9/", "secret": "x"},
            timeout=10,
        )
        stop.set()
        worker.join(timeout=10)
        server.shutdown()
        double.stop()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(autouse=True)
def fresh_counters(site):
    """Every test gives from 127.0.0.1: start each with no failures or hits counted against it."""

    def clear():
        db.session.execute(delete(RateLimit))
        db.session.execute(delete(LimiterCounter))
        db.session.commit()

    site.query(clear)


@pytest.fixture
def open_page(browser, site):
    contexts = []

    def opener(path: str, viewport: dict = DESKTOP):
        context = browser.new_context(viewport=viewport, base_url=site.url)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.console_errors = []
        page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
        page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
        page.goto(path)
        return page

    yield opener
    for context in contexts:
        context.close()


def fill_card(page, number: str = CARD_OK, postcode: str | None = "10115") -> None:
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration date (MM / YY)").fill("12 / 30")
    page.get_by_label("Security code (CVC)").fill("123")
    if postcode is not None:
        page.get_by_label("ZIP or postal code").fill(postcode)


def fill_donor(
    page,
    amount: str = "25 USD",
    first: str = "Ada",
    last: str = "Lovelace",
    email_address: str = "ada@example.org",
) -> None:
    page.get_by_label(amount, exact=True).check()
    page.get_by_label("First name").fill(first)
    page.get_by_label("Last name").fill(last)
    page.get_by_label("Email").fill(email_address)


def contribution_for(site: Site, email_address: str) -> Contribution | None:
    def find():
        c = db.session.scalar(
            select(Contribution)
            .join(Contact)
            .where(Contact.email == email_address)
            .order_by(Contribution.id.desc())
            .limit(1)
        )
        if c is not None:
            db.session.expunge(c)
        return c

    return site.query(find)


def wait_for_thanks(page) -> None:
    page.wait_for_url(re.compile(r"/donate/\w+/thanks/"))
    page.locator("#thanks-state[data-state=done]").wait_for(timeout=30_000)


def stripe(site: Site):
    return site.query(lambda: gateway(db.session.get(PaymentProcessor, site.processor_id)))


def card_payment_method(site: Site, c: Contribution) -> dict:
    gw = stripe(site)
    pi = gw.retrieve("payment_intents", c.payment_intent_id)
    return gw.retrieve("payment_methods", pi["payment_method"])


# -- gifts ---------------------------------------------------------------------------------------


def test_one_off_gift_is_completed_by_the_webhook_with_a_receipt(open_page, site):
    page = open_page("/donate/spring")
    assert page.locator("h1").inner_text() == "Spring appeal"
    fill_donor(page, email_address="one-off@example.org")
    fill_card(page, postcode="SW1A 1AA")
    assert not page.locator("#postal_code").is_visible()  # unknown postcode: the form's field is hidden ...
    assert page.locator("#postal_code").input_value() == "SW1A 1AA"  # ... and follows the card element
    page.get_by_role("button", name="Donate").click()
    wait_for_thanks(page)
    assert "Thank you, Ada!" in page.locator("h1").inner_text()
    assert "Thank you for standing with us." in page.locator("#thanks-state").inner_text()
    if AXE.exists():
        assert axe_violations(page) == []  # the thank-you page too

    c = contribution_for(site, "one-off@example.org")
    assert (c.status, c.amount, c.trxn_id[:3]) == ("Completed", 2500, "ch_")
    pm = card_payment_method(site, c)
    assert (
        pm["billing_details"]["address"]["postal_code"] == "SW1A 1AA"
    )  # the element's postcode reached Stripe
    assert pm["billing_details"]["name"] == "Ada Lovelace"
    assert site.query(lambda: db.session.get(Contact, c.contact_id).postal_code) == "SW1A 1AA"
    msg = site.wait_for(lambda: site.receipt(c.id))
    assert msg["To"] == "one-off@example.org"
    assert "25.00 USD" in msg.get_body(("html",)).get_content()
    assert "Friends of the Library" in msg.get_body(("plain",)).get_content()
    assert page.console_errors == []


@pytest.mark.parametrize("card", [CARD_DECLINED_AT_ATTACH, CARD_DECLINED_AT_CHARGE])
def test_declined_card_shows_the_message_and_keeps_the_form(open_page, site, card):
    address = f"declined-{card[-4:]}@example.org"
    page = open_page("/donate/spring")
    fill_donor(page, amount="50 USD", first="Grace", last="Hopper", email_address=address)
    page.get_by_label("Street address").fill("1 Navy Way")
    fill_card(page, card)
    page.get_by_role("button", name="Donate").click()
    card_error = page.locator("#err-card")
    card_error.wait_for()
    assert card_error.inner_text() == "Your card was declined."
    assert (
        page.locator("#form-error").inner_text()
        == "Your gift did not go through. Please see the message under Card."
    )
    assert page.locator("body").inner_text().count("declined") == 1, "one decline is said once"
    assert page.url.endswith("/donate/spring")
    # everything typed is still there, the card too, and the button works again
    assert page.get_by_label("First name").input_value() == "Grace"
    assert page.get_by_label("Email").input_value() == address
    assert page.get_by_label("Street address").input_value() == "1 Navy Way"
    assert page.get_by_label("50 USD", exact=True).is_checked()
    assert page.get_by_label("Card number").input_value() == card
    assert page.get_by_role("button", name="Donate").is_enabled()

    c = contribution_for(site, address)
    assert (c.status, c.failure_message) == ("Failed", "Your card was declined.")
    time.sleep(2.5)  # localstripe's own events about the failure arrive and are processed meanwhile
    assert site.receipt(c.id) is None, "no receipt for a declined gift"


@pytest.mark.parametrize("authenticate", [True, False])
def test_three_d_secure(open_page, site, authenticate):
    address = f"3ds-{authenticate}@example.org".lower()
    page = open_page("/donate/spring")
    fill_donor(page, email_address=address)
    fill_card(page, CARD_3DS)
    page.get_by_role("button", name="Donate").click()
    bank = page.frame_locator("iframe[title='3-D Secure authentication']")
    bank.get_by_role(
        "button", name="Complete authentication" if authenticate else "Fail authentication"
    ).click()
    if authenticate:
        wait_for_thanks(page)
        assert contribution_for(site, address).status == "Completed"
    else:
        page.locator("#err-card").filter(has_text="declined").wait_for()
        assert "authentication" in page.locator("#err-card").inner_text()
        assert contribution_for(site, address).status == "Failed"
        assert page.get_by_label("First name").input_value() == "Ada"


def test_monthly_gift_creates_one_subscription_of_the_right_amount(open_page, site):
    page = open_page("/donate/spring")
    fill_donor(page, amount="10 USD", email_address="monthly@example.org")
    page.get_by_label("Monthly").check()
    fill_card(page)
    page.get_by_role("button", name="Donate").click()
    wait_for_thanks(page)
    assert page.locator(".summary dd").nth(1).inner_text() == "Monthly"
    c = contribution_for(site, "monthly@example.org")
    recur = site.query(lambda: db.session.get(ContributionRecur, c.recur_id))
    assert (recur.amount, recur.interval, recur.status) == (1000, "month", "In Progress")
    subs = stripe(site).list("subscriptions", customer=recur.customer_id)["data"]
    assert len(subs) == 1 and subs[0]["plan"]["amount"] == 1000 and subs[0]["plan"]["interval"] == "month"
    assert site.wait_for(lambda: site.receipt(c.id)) is not None


def test_stripe_failing_after_the_subscription_exists_leaves_no_second_try(open_page, site, localstripe):
    page = open_page("/donate/spring")
    fill_donor(page, amount="10 USD", email_address="unconfirmed@example.org")
    page.get_by_label("Monthly").check()
    fill_card(page)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        subscription_then_stripe_fails(rsps, localstripe)
        page.get_by_role("button", name="Donate").click()
        page.locator("#form-error").filter(has_text="do not try again").wait_for()
    assert "could not confirm" in page.locator("#form-error").inner_text()
    assert page.get_by_role("button", name="Donate").is_disabled()  # the donor is not invited to give twice
    assert page.url.endswith("/donate/spring")
    # Stripe did take the first payment: its webhook completes the form's contribution
    c = contribution_for(site, "unconfirmed@example.org")
    assert c.status == "Pending" and c.recur_id
    site.wait_for(lambda: db.session.get(Contribution, c.id).status == "Completed")
    assert (
        site.query(
            lambda: db.session.scalar(
                select(func.count()).select_from(Contribution).where(Contribution.contact_id == c.contact_id)
            )
        )
        == 1
    )
    assert page.console_errors == []


# -- the billing-postcode rules ------------------------------------------------------------------


def _known_donor(site: Site, slug: str, postcode: str) -> str:
    def make():
        contact = Contact(
            display_name="Mary Somerville", email=f"mary-{slug}@example.org", postal_code=postcode
        )
        db.session.add(contact)
        db.session.commit()
        form = db.session.scalar(select(DonationForm).where(DonationForm.slug == slug))
        return donor_link(form, contact).split(site.url, 1)[1]

    return site.query(make)


def test_known_postcode_goes_into_the_card_element_and_the_field_is_disabled(open_page, site):
    page = open_page(_known_donor(site, "spring", "EH1 1AA"))
    field = page.locator("#postal_code")
    assert field.is_visible() and field.is_disabled() and field.input_value() == "EH1 1AA"
    assert page.get_by_label("ZIP or postal code").input_value() == "EH1 1AA"
    assert page.get_by_label("First name").input_value() == "Mary"
    page.get_by_label("10 USD", exact=True).check()
    fill_card(page, postcode=None)
    page.get_by_role("button", name="Donate").click()
    wait_for_thanks(page)
    c = contribution_for(site, "mary-spring@example.org")
    assert card_payment_method(site, c)["billing_details"]["address"]["postal_code"] == "EH1 1AA"


def test_form_without_postcode_field_still_sends_the_elements_postcode(open_page, site):
    page = open_page("/donate/quick")
    assert page.locator("#postal_code").count() == 0 and page.locator("#billing").count() == 0
    assert page.get_by_label("ZIP or postal code").is_visible()  # the element always shows its own
    fill_donor(page, email_address="quick@example.org")
    fill_card(page, postcode="94110")
    page.get_by_role("button", name="Donate").click()
    wait_for_thanks(page)
    c = contribution_for(site, "quick@example.org")
    assert card_payment_method(site, c)["billing_details"]["address"]["postal_code"] == "94110"
    assert site.query(lambda: db.session.get(Contact, c.contact_id).postal_code) == "94110"


def test_form_without_postcode_field_and_a_known_postcode(open_page, site):
    page = open_page(_known_donor(site, "quick", "10115"))
    assert page.locator("#postal_code").count() == 0
    assert page.get_by_label("ZIP or postal code").input_value() == "10115"


# -- validation, keyboard, accessibility, screenshots ---------------------------------------------


def test_every_validation_error_is_shown_next_to_its_field(open_page, site):
    page = open_page("/donate/spring")
    page.get_by_label("Other amount (USD)").fill("2")
    page.get_by_label("Email").fill("ada@nowhere")
    fill_card(page)
    page.get_by_role("button", name="Donate").click()
    page.locator("#err-first_name").filter(has_text="Enter").wait_for()
    assert page.locator("#err-other_amount").inner_text() == "The smallest gift this form takes is 5.00 USD."
    assert page.locator("#err-first_name").inner_text() == "Enter your first name."
    assert page.locator("#err-last_name").inner_text() == "Enter your last name."
    assert page.locator("#err-email").inner_text() == "Enter an email address such as name@example.org."
    assert page.get_by_label("Email").get_attribute("aria-invalid") == "true"
    assert page.locator("#form-error").inner_text() == "Please correct the marked fields."
    assert page.evaluate("document.activeElement.id") == "form-error"
    # an unfinished card: Stripe.js's own message next to the card
    page.get_by_label("Card number").fill("4242")
    page.get_by_role("button", name="Donate").click()
    page.locator("#err-card").filter(has_text="incomplete").wait_for()
    assert page.locator("#err-card").inner_text() == "Your card number is incomplete."


def test_a_decimal_comma_typed_on_the_page_is_charged_as_written(open_page, site):
    """ "12,50" is 12.50 USD, never 1,250.00; "1,250" could be either and is asked about, next to the field."""
    page = open_page("/donate/spring")
    page.get_by_label("Other amount (USD)").fill("1,250")
    page.get_by_label("First name").fill("Emmy")
    page.get_by_label("Last name").fill("Noether")
    page.get_by_label("Email").fill("comma@example.org")
    fill_card(page)
    page.get_by_role("button", name="Donate").click()
    page.locator("#err-other_amount").filter(has_text="Enter").wait_for()
    assert (
        page.locator("#err-other_amount").inner_text()
        == "Enter 1250 or 1.25 as the other amount: we cannot tell which one “1,250” means."
    )
    page.get_by_label("Other amount (USD)").fill("12,50")
    page.get_by_role("button", name="Donate").click()
    wait_for_thanks(page)
    c = contribution_for(site, "comma@example.org")
    assert (c.status, c.amount) == ("Completed", 1250)
    assert stripe(site).retrieve("payment_intents", c.payment_intent_id)["amount"] == 1250


def test_keyboard_only_completion(open_page, site):
    page = open_page("/donate/quick")
    page.locator("body").focus()
    keys = page.keyboard

    def tab_to(label_id: str) -> None:
        for _ in range(25):
            keys.press("Tab")
            if (
                page.evaluate(
                    "document.activeElement.id || document.activeElement.getAttribute('aria-label')"
                )
                == label_id
            ):
                return
        raise AssertionError(f"Tab never reached {label_id}")

    keys.press("Tab")  # the first preset amount
    assert page.evaluate("document.activeElement.name") == "amount"
    keys.press("ArrowRight")  # radio groups: arrows move and select
    assert page.get_by_label("25 USD", exact=True).is_checked()
    for label, text in (
        ("first_name", "Alan"),
        ("last_name", "Turing"),
        ("email", "keyboard@example.org"),
        ("Card number", CARD_OK),
        ("Expiration date (MM / YY)", "1230"),
        ("Security code (CVC)", "123"),
        ("ZIP or postal code", "CB2 1TN"),
    ):
        tab_to(label)
        keys.type(text)
    keys.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Donate"
    keys.press("Enter")
    wait_for_thanks(page)
    assert contribution_for(site, "keyboard@example.org").amount == 2500


@needs_axe
@pytest.mark.parametrize("slug", ["spring", "quick"])
def test_axe_finds_no_serious_or_critical_violations(open_page, site, slug):
    page = open_page(f"/donate/{slug}")
    page.locator("[data-stripe-double=number]").wait_for()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Donate").click()  # with every error showing
    page.locator("#err-first_name").filter(has_text="Enter").wait_for()
    assert axe_violations(page) == []


def test_screenshots_at_phone_and_desktop_width(open_page, site, tmp_path):
    for name, viewport in (("donate-phone.png", PHONE), ("donate-desktop.png", DESKTOP)):
        page = open_page("/donate/spring", viewport)
        page.locator("[data-stripe-double=number]").wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"the form scrolls sideways at {viewport['width']} px"
        page.get_by_label("25 USD", exact=True).check()
        target = DOCS / name
        if target.exists() and os.environ.get("PAYDESK_UPDATE_SCREENSHOT") != "1":
            target = tmp_path / name  # rewritten only on request, so a test run leaves the tree unchanged
        target.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(target), full_page=True)
        assert target.stat().st_size > 10_000
        assert page.console_errors == []
