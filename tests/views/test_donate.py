"""The public donation form's server side, against a real localstripe: the page, the JSON payment
endpoint, 3-D Secure results, declines, and every card-testing defence (each refusal recorded)."""

from __future__ import annotations

import json
import re

import pytest
import requests
import responses
from donate_support import (
    CARD_3DS,
    CARD_3DS_THEN_DECLINED,
    CARD_DECLINED_AT_ATTACH,
    CARD_DECLINED_AT_CHARGE,
    gift,
    make_form,
    page_token,
    pay,
    payment_method,
    subscription_then_stripe_fails,
)
from sqlalchemy import func, select

from admin.extensions import db
from admin.models import (
    Contact,
    Contribution,
    ContributionRecur,
    DonationPlan,
    DonationRefusal,
    RateLimit,
    StripeCustomer,
    StripePaymentIntent,
    TriggerFeed,
)
from admin.services.settings.processors import gateway
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_once

pytestmark = pytest.mark.localstripe
REFUSED = "We could not accept this form. Reload the page and try again."


@pytest.fixture
def form(app, processor):
    return make_form(processor)


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _refusals(reason: str) -> int:
    """Refusals counted for ``reason``, the tallied ones written first."""
    from admin.services.donations.guard import flush_refusals

    flush_refusals()
    db.session.rollback()  # see what the flush wrote
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(DonationRefusal.count), 0)).where(DonationRefusal.reason == reason)
        )
    )


def _authenticate(localstripe: str, client_secret: str, success: bool) -> requests.Response:
    """What the donor's bank page does in 3-D Secure (localstripe's stand-in for it)."""
    pi_id = client_secret.split("_secret_")[0]
    return requests.post(
        f"{localstripe}/v1/payment_intents/{pi_id}/_authenticate",
        data={
            "key": "pk_test_paydesk",
            "client_secret": client_secret,
            "success": "true" if success else "false",
        },
        timeout=10,
    )


# -- the page ----------------------------------------------------------------------------------


def test_page_is_public_labelled_and_widens_the_csp_only_there(client, form):
    resp = client.get("/donate/spring")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    csp = resp.headers["Content-Security-Policy"]
    assert (
        "script-src 'self' https://js.stripe.com" in csp and "connect-src 'self' https://js.stripe.com" in csp
    )
    assert "frame-src 'self' https://js.stripe.com" in csp
    assert "stripe" not in client.get("/login").headers["Content-Security-Policy"]
    assert '<script src="https://js.stripe.com/v3/" defer></script>' in html
    # preset amounts as radio buttons whose label carries the amount; every input has a label
    for value, label in (("1000", "10 USD"), ("2500", "25 USD"), ("5000", "50 USD")):
        assert re.search(rf'<input type="radio" name="amount" value="{value}">\s*{label}</label>', html)
    for label in ("One-off", "Monthly", "Yearly"):
        assert re.search(rf'name="frequency" value="[a-z-]+"( checked)?>\s*{label}</label>', html)
    ids = set(re.findall(r'<input id="([^"]+)"', html))
    labelled = set(re.findall(r'<label for="([^"]+)"', html))
    assert ids <= labelled, f"inputs without a label: {ids - labelled}"
    assert {"other_amount", "first_name", "last_name", "email", "postal_code", "website"} <= ids
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) and " style=" not in html


def test_preset_labels_read_like_every_other_amount(client, processor):
    make_form(processor, slug="big", amounts="10,12.50,1000", max_amount=None)
    html = client.get("/donate/big").get_data(as_text=True)
    for value, label in (("1000", "10 USD"), ("1250", "12.50 USD"), ("100000", "1,000 USD")):
        assert re.search(
            rf'<input type="radio" name="amount" value="{value}">\s*{re.escape(label)}</label>', html
        ), label


def test_unknown_or_inactive_form_is_404(client, form, processor):
    assert client.get("/donate/nope").status_code == 404
    make_form(processor, slug="closed", active=False)
    resp = client.get("/donate/closed")
    assert resp.status_code == 404 and "closed" in resp.get_data(as_text=True)
    assert client.post("/donate/closed/pay", json={}).get_json()["status"] == "not_found"


def test_without_javascript_the_form_is_checked_and_keeps_what_was_typed(client, form):
    resp = client.post(
        "/donate/spring",
        data={
            "amount": "2500",
            "first_name": "Ada",
            "last_name": "",
            "email": "not-an-email",
            "frequency": "monthly",
        },
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "Enter your last name." in html and "Enter an email address such as name@example.org." in html
    assert 'value="Ada"' in html and 'value="not-an-email"' in html
    assert re.search(r'value="2500" checked', html) and re.search(r'value="monthly" checked', html)


# -- one-off gifts -----------------------------------------------------------------------------


def test_one_off_gift_makes_a_pending_contribution_and_a_described_intent(app, client, form, processor):
    resp = pay(
        client,
        processor,
        first_name="Grace",
        last_name="Hopper",
        email="grace@example.org",
        address_line1="1 Navy Way",
        city="Arlington",
    )
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "succeeded", body
    assert body["redirect"].startswith("/donate/spring/thanks/") and "token" not in body

    c = db.session.scalar(select(Contribution))
    contact = c.contact
    assert (c.status, c.amount, c.currency, c.source, c.donation_form_id) == (
        "Pending",
        2500,
        "usd",
        "donation form",
        form.id,
    )
    assert (contact.display_name, contact.email, contact.postal_code) == (
        "Grace Hopper",
        "grace@example.org",
        "10115",
    )
    assert c.description == f"Spring appeal {contact.id}-{c.id}"

    gw = gateway(processor)
    pi = gw.retrieve("payment_intents", c.payment_intent_id)
    assert (pi["status"], pi["amount"], pi["currency"]) == ("succeeded", 2500, "usd")
    assert pi["description"] == f"Spring appeal {c.id}"  # a client secret reads it: the donor's reference
    assert (
        pi["statement_descriptor_suffix"] == f"{c.id} Spring appeal"
    )  # the donor's reference: no contact id
    assert pi["metadata"] == {
        "contact_id": str(contact.id),
        "contribution_id": str(c.id),
        "form": "spring",
        "source": "paydesk donation form",
    }
    customer = gw.retrieve("customers", pi["customer"])
    assert customer["name"] == "Grace Hopper" and customer["email"] == "grace@example.org"
    run_once()  # the worker pushes the new contact's id into the customer's metadata
    assert gw.retrieve("customers", pi["customer"])["metadata"]["contact_id"] == str(contact.id)
    assert customer["address"] == {"line1": "1 Navy Way", "city": "Arlington", "postal_code": "10115"}
    assert (
        db.session.scalar(
            select(StripeCustomer.contact_id).where(StripeCustomer.customer_id == pi["customer"])
        )
        == contact.id
    )
    tracked = db.session.scalar(
        select(StripePaymentIntent).where(StripePaymentIntent.stripe_intent_id == pi["id"])
    )
    assert (tracked.contribution_id, tracked.contact_id, tracked.identifier) == (c.id, contact.id, "spring")
    link_id = db.session.scalar(select(StripeCustomer.id).where(StripeCustomer.customer_id == pi["customer"]))
    fed = db.session.execute(select(TriggerFeed.topic, TriggerFeed.object_id, TriggerFeed.record_id)).all()
    assert fed == [("customer", pi["customer"], link_id)]  # the new-customers trigger sees it, once

    thanks_page = client.get(body["redirect"])
    assert "stripe" not in thanks_page.headers["Content-Security-Policy"]  # no Stripe.js there
    thanks = thanks_page.get_data(as_text=True)
    assert "Thank you, Grace!" in thanks and "25.00 USD" in thanks
    assert f"<dt>Reference</dt><dd>{c.id}</dd>" in thanks
    assert "waiting for our card processor" in thanks  # the webhook completes it, not the form
    assert client.get(body["redirect"] + "/status").get_json() == {"state": "waiting", "status": "Pending"}


def test_an_intent_the_worker_tracked_first_is_completed_not_tracked_twice(
    client, form, processor, monkeypatch
):
    """payment_intent.created may reach the worker before the form records the intent it made: the form
    then completes the worker's row (one row per intent) as it would have written its own."""
    from sqlalchemy import insert

    from admin.stripe_gateway import Gateway
    from admin.timeutil import utcnow

    create = Gateway.create

    def create_then_the_worker_tracks_it(self, resource, params, idempotency_key=None):
        made = create(self, resource, params, idempotency_key=idempotency_key)
        if resource == "payment_intents":
            with db.engine.begin() as conn:  # the worker's transaction, committed before the form's
                conn.execute(
                    insert(StripePaymentIntent.__table__).values(
                        stripe_intent_id=made["id"],
                        processor_id=processor.id,
                        status="requires_payment_method",
                        created_date=utcnow(),
                    )
                )
        return made

    monkeypatch.setattr(Gateway, "create", create_then_the_worker_tracks_it)
    assert pay(client, processor).get_json()["status"] == "succeeded"
    c = db.session.scalar(select(Contribution))
    row = db.session.scalars(select(StripePaymentIntent)).one()
    assert (row.stripe_intent_id, row.contribution_id, row.contact_id, row.identifier) == (
        c.payment_intent_id,
        c.id,
        c.contact_id,
        "spring",
    )
    assert (row.status, row.amount, row.currency, row.customer_id, row.description) == (
        "requires_confirmation",
        2500,
        "usd",
        c.customer_id,
        f"Spring appeal {c.id}",
    )


def test_stripe_sends_the_receipt_when_the_form_says_so(app, client, processor):
    """The form option "Stripe sends the receipt": the payment carries receipt_email, paydesk builds none."""
    from admin.services.donations.receipts import build_receipt

    make_form(processor, slug="stripe-receipt", stripe_receipt=True)
    resp = pay(client, processor, slug="stripe-receipt", email="ada@example.org")
    assert resp.status_code == 200 and resp.get_json()["status"] == "succeeded", resp.get_json()
    c = db.session.scalar(select(Contribution))
    pi = gateway(processor).retrieve("payment_intents", c.payment_intent_id)
    assert pi["receipt_email"] == "ada@example.org"
    assert build_receipt(c) is None


def test_a_returning_donor_reuses_the_contact_but_never_its_stripe_customer(client, form, processor):
    """Contacts are matched by email (CiviCRM's rule); nothing proves the second giver is the first, so the
    second gift gets a Stripe customer of its own, marked as matched by email only."""
    for _ in range(2):
        assert pay(client, processor, email="ADA@example.org").get_json()["status"] == "succeeded"
    assert _count(Contact) == 1 and _count(Contribution) == 2
    links = db.session.scalars(select(StripeCustomer).order_by(StripeCustomer.id)).all()
    assert [link.unverified for link in links] == [False, True]
    assert len({link.customer_id for link in links}) == 2


def test_other_amount_wins_and_is_checked_against_the_range(client, form, processor):
    assert pay(client, processor, other_amount="12.50").get_json()["status"] == "succeeded"
    assert db.session.scalar(select(Contribution.amount)) == 1250
    too_big = pay(client, processor, other_amount="20000").get_json()
    assert too_big["errors"] == {"other_amount": "The largest gift this form takes is 10,000.00 USD."}


@pytest.mark.parametrize(
    "fields, errors",
    [
        (
            {"amount": "", "other_amount": "4"},
            {"other_amount": "The smallest gift this form takes is 5.00 USD."},
        ),
        (
            {"amount": "", "other_amount": "lots"},
            {"other_amount": "Enter the other amount as a number, such as 15 or 15.50."},
        ),
        ({"amount": "777"}, {"amount": "Choose an amount or enter another amount."}),
        ({"email": "ada@nowhere"}, {"email": "Enter an email address such as name@example.org."}),
        (
            {"first_name": " ", "last_name": ""},
            {"first_name": "Enter your first name.", "last_name": "Enter your last name."},
        ),
        ({"frequency": "weekly"}, {"frequency": "Choose how often to give."}),
        ({"payment_method": ""}, {"card": "Enter your card details."}),
    ],
)
def test_validation_errors_name_the_field_and_give_a_new_token(client, form, processor, fields, errors):
    resp = client.post(
        "/donate/spring/pay", json=gift(page_token(client), payment_method(processor), **fields)
    )
    body = resp.get_json()
    assert resp.status_code == 422 and body["errors"] == errors and body["token"]
    assert _count(Contribution) == 0 and _count(Contact) == 0
    assert _refusals("below_minimum") == (1 if "smallest" in str(errors) else 0)


# -- declines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("card", [CARD_DECLINED_AT_ATTACH, CARD_DECLINED_AT_CHARGE])
def test_declined_card_is_a_failed_contribution_and_a_counted_failure(client, form, processor, card):
    resp = pay(client, processor, number=card)
    body = resp.get_json()
    assert resp.status_code == 402 and body["status"] == "declined"
    assert body["errors"] == {"card": "Your card was declined."}  # said once, under the card field
    assert body["error"] == "Your gift did not go through. Please see the message under Card."
    assert body["token"]  # the donor can try another card without reloading
    c = db.session.scalar(select(Contribution))
    assert (c.status, c.failure_message, c.donation_form_id) == ("Failed", "Your card was declined.", form.id)
    assert _refusals("payment_failed") == 1
    assert db.session.get(RateLimit, "donate-fail-ip:127.0.0.1").count == 1


def _stripe_calls(during) -> dict[str, int]:
    """The requests sent to Stripe while ``during()`` ran, by operation."""
    from admin.stripe_gateway import call_counts

    before = call_counts()
    during()
    return {op: n - before.get(op, 0) for op, n in call_counts().items() if n > before.get(op, 0)}


def test_a_one_off_gift_is_four_stripe_requests_the_card_attached_as_its_customer_is_made(
    client, form, processor
):
    pm = payment_method(processor)
    answers = []
    calls = _stripe_calls(
        lambda: answers.append(client.post("/donate/spring/pay", json=gift(page_token(client), pm)))
    )
    assert answers[0].get_json()["status"] == "succeeded"
    assert calls == {
        "payment_methods.retrieve": 1,
        "customers.create": 1,
        "payment_intents.create": 1,
        "payment_intents.confirm": 1,
    }
    customer_id = db.session.scalar(select(Contribution.customer_id))
    assert gateway(processor).retrieve("payment_methods", pm)["customer"] == customer_id


def test_a_card_declined_as_its_customer_is_made_is_recorded_with_that_customer(client, form, processor):
    """The customer is then made without the card (a second request): the records are those of a card
    declined at attach, a Failed contribution linked to its customer."""
    pm, answers = payment_method(processor, CARD_DECLINED_AT_ATTACH), []
    calls = _stripe_calls(
        lambda: answers.append(client.post("/donate/spring/pay", json=gift(page_token(client), pm)))
    )
    assert answers[0].status_code == 402
    assert calls == {"payment_methods.retrieve": 1, "customers.create": 2}
    c = db.session.scalar(select(Contribution))
    link = db.session.scalar(select(StripeCustomer))
    assert (c.status, c.customer_id, link.customer_id, link.contact_id) == (
        "Failed",
        link.customer_id,
        c.customer_id,
        c.contact_id,
    )
    assert gateway(processor).retrieve("customers", c.customer_id)["id"] == c.customer_id


def test_stripe_failing_as_the_customer_is_made_records_nothing(app, client, form, processor, localstripe):
    pm, token = payment_method(processor), page_token(client)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.add(
            responses.POST, f"{localstripe}/v1/customers", status=503, json={"error": {"type": "api_error"}}
        )
        rsps.add_passthru(localstripe)
        resp = client.post("/donate/spring/pay", json=gift(token, pm))
        made = [c for c in rsps.calls if c.request.url.endswith("/v1/customers")]
    assert resp.status_code == 503 and resp.get_json()["status"] == "unavailable"
    assert len(made) == app.config["STRIPE_MAX_ATTEMPTS"], "retried, then not asked again without the card"
    for model in (Contact, StripeCustomer, Contribution, StripePaymentIntent):
        assert _count(model) == 0, model.__name__


def test_the_sixth_failed_payment_from_one_address_within_the_hour_is_refused(client, form, processor):
    for _ in range(5):
        assert pay(client, processor, number=CARD_DECLINED_AT_CHARGE).status_code == 402
    sixth = pay(client, processor)  # even with a good card: the address is blocked for two hours
    assert sixth.status_code == 429 and "Too many failed payments" in sixth.get_json()["error"]
    assert (
        "Please try again in 2 hours." in sixth.get_json()["error"] and sixth.headers["Retry-After"] == "7200"
    )
    assert _count(Contribution) == 5 and _refusals("ip_blocked") == 1
    other_ip = client.post(
        "/donate/spring/pay",
        json=gift(page_token(client), payment_method(processor)),
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert other_ip.get_json()["status"] == "succeeded"


# -- 3-D Secure ---------------------------------------------------------------------------------


@pytest.mark.parametrize("success", [True, False])
def test_three_d_secure_goes_back_to_the_browser_and_the_result_is_checked(
    client, form, processor, localstripe, success
):
    body = pay(client, processor, number=CARD_3DS).get_json()
    assert body["status"] == "requires_action" and body["client_secret"].startswith("pi_")
    assert "token" not in body
    _authenticate(localstripe, body["client_secret"], success)
    result = client.post(body["result_url"], json={})
    c = db.session.scalar(select(Contribution))
    if success:
        assert result.status_code == 200 and result.get_json()["status"] == "succeeded"
        assert c.status == "Pending"  # completed by the webhook
    else:
        assert result.status_code == 402 and "declined" in result.get_json()["errors"]["card"]
        assert c.status == "Failed" and _refusals("payment_failed") == 1
        assert client.post(body["result_url"], json={}).status_code == 402  # asked again: counted once
        assert _refusals("payment_failed") == 1


def test_three_d_secure_then_declined(client, form, processor, localstripe):
    body = pay(client, processor, number=CARD_3DS_THEN_DECLINED).get_json()
    _authenticate(localstripe, body["client_secret"], True)
    result = client.post(body["result_url"], json={}).get_json()
    assert result["errors"] == {"card": "Your card was declined."}


def test_odd_requests_get_a_clear_refusal_not_a_traceback(client, form):
    assert (
        client.post("/donate/spring/pay", data="not json", content_type="application/json").status_code == 400
    )
    assert client.post("/donate/spring/pay", json=["a", "list"]).status_code == 400
    assert client.post("/donate/spring/pay", json={"token": "x", "pad": "x" * 20000}).status_code == 413
    numbers = client.post(
        "/donate/spring/pay", json=gift(page_token(client), None, amount=2500, first_name=7)
    )
    assert numbers.status_code == 422 and numbers.get_json()["errors"] == {"card": "Enter your card details."}


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read(client, form):
    """No Content-Length (chunked): the pay endpoint still reads at most 16 KiB (+1) and answers 413."""
    from donate_support import Endless, post_chunked

    body = Endless()
    resp = post_chunked(client, "/donate/spring/pay", body)
    assert resp.status_code == 413 and resp.get_json() == {"status": "invalid", "error": REFUSED}
    assert body.read_bytes <= 16 * 1024 + 1
    page = Endless()
    assert (
        post_chunked(client, "/donate/spring", page, "application/x-www-form-urlencoded").status_code == 413
    )
    assert page.read_bytes <= 16 * 1024 + 1


NOT_AN_AMOUNT = "Enter the other amount as a number, such as 15 or 15.50."
CRAFTED_AMOUNTS = [  # each once made the form answer 500
    ({"amount": "", "other_amount": "Infinity"}, "other_amount", NOT_AN_AMOUNT),
    ({"amount": "", "other_amount": "sNaN"}, "other_amount", NOT_AN_AMOUNT),
    ({"amount": "", "other_amount": "NaN"}, "other_amount", NOT_AN_AMOUNT),
    ({"amount": "", "other_amount": "1e999999"}, "other_amount", NOT_AN_AMOUNT),
    (
        {"amount": "", "other_amount": "99999999999999999999"},
        "other_amount",
        "The largest gift this form takes is 999,999.99 USD.",
    ),
    ({"amount": "\u00b2"}, "amount", "Choose an amount or enter another amount."),
    ({"amount": "\u0661\u0660\u0660\u0660"}, "amount", "Choose an amount or enter another amount."),
    ({"amount": "9" * 30}, "amount", "Choose an amount or enter another amount."),
]


@pytest.fixture
def open_form(app, processor):
    """A form that sets no largest gift: Stripe's largest charge bounds it."""
    return make_form(processor, slug="open", max_amount=None)


@pytest.mark.parametrize("fields, name, message", CRAFTED_AMOUNTS)
def test_crafted_amounts_are_a_field_error_without_javascript(client, open_form, fields, name, message):
    resp = client.post(
        "/donate/open",
        data={
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.org",
            "frequency": "one-off",
            **fields,
        },
    )
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    assert _count(Contribution) == 0


@pytest.mark.parametrize("fields, name, message", CRAFTED_AMOUNTS)
def test_crafted_amounts_are_a_field_error_from_the_payment_endpoint(
    client, open_form, fields, name, message
):
    resp = client.post("/donate/open/pay", json=gift(page_token(client, "open"), "pm_card_visa", **fields))
    assert resp.status_code == 422 and resp.get_json()["errors"] == {name: message}
    assert _count(Contribution) == 0


def test_json_infinity_and_nan_literals_are_a_field_error(client, open_form):
    for literal in ("Infinity", "-Infinity", "NaN", "1e400"):
        fields = gift(page_token(client, "open"), "pm_card_visa", amount="", other_amount="@")
        body = json.dumps(fields).replace('"@"', literal)  # a bare literal, as Python's json module reads it
        resp = client.post("/donate/open/pay", data=body, content_type="application/json")
        assert resp.status_code == 422, literal
        assert resp.get_json()["errors"] == {"other_amount": NOT_AN_AMOUNT}


# -- amounts typed by donors: a decimal comma is a decimal comma; every form has a largest gift ---------


def _no_js(client, slug: str, **fields):
    return client.post(
        f"/donate/{slug}",
        data={
            "first_name": "Ada",
            "last_name": "Lovelace",
            "amount": "",
            "email": "ada@example.org",
            "frequency": "one-off",
            **fields,
        },
    )


@pytest.mark.parametrize("typed", ["12,50", "12.50", "12,5", "€12,50", "12,50 USD"])
def test_a_decimal_comma_is_charged_as_written_not_a_hundred_times_more(
    client, open_form, processor, localstripe, typed
):
    body = pay(client, processor, slug="open", amount="", other_amount=typed).get_json()
    assert body["status"] == "succeeded"
    c = db.session.scalar(select(Contribution))
    assert c.amount == 1250
    assert (
        gateway(processor).retrieve("payment_intents", c.payment_intent_id)["amount"] == 1250
    )  # what Stripe took
    assert "12.50 USD" not in _no_js(client, "open", other_amount=typed).get_data(as_text=True)  # no error


AMBIGUOUS = "Enter 1250 or 1.25 as the other amount: we cannot tell which one “1,250” means."


def test_an_amount_that_reads_two_ways_is_refused_on_the_page_and_the_endpoint(client, open_form, processor):
    page = _no_js(client, "open", other_amount="1,250")
    assert page.status_code == 422 and AMBIGUOUS in page.get_data(as_text=True)
    assert 'value="1,250"' in page.get_data(as_text=True)  # what was typed stays, to be corrected
    resp = client.post(
        "/donate/open/pay",
        json=gift(page_token(client, "open"), payment_method(processor), amount="", other_amount="1,250"),
    )
    assert resp.status_code == 422 and resp.get_json()["errors"] == {"other_amount": AMBIGUOUS}
    assert _count(Contribution) == 0 and _count(Contact) == 0


@pytest.mark.parametrize("typed", ["99999999999", "1000000", "1.000.000,00", "1 000 000"])
def test_more_than_stripes_largest_charge_is_refused_naming_it(client, open_form, processor, typed):
    largest = "The largest gift this form takes is 999,999.99 USD."
    resp = client.post(
        "/donate/open/pay",
        json=gift(page_token(client, "open"), payment_method(processor), amount="", other_amount=typed),
    )
    assert resp.status_code == 422 and resp.get_json()["errors"] == {"other_amount": largest}
    assert largest in _no_js(client, "open", other_amount=typed).get_data(as_text=True)
    assert _count(Contribution) == 0
    assert "Gifts of 5.00 USD to 999,999.99 USD." in client.get("/donate/open").get_data(as_text=True)
    assert (
        pay(client, processor, slug="open", amount="", other_amount="999 999,99").get_json()["status"]
        == "succeeded"
    )


def test_a_form_in_a_currency_stripe_does_not_take_is_refused(app, processor):
    from admin.errors import ServiceError

    with pytest.raises(ServiceError, match="Currency: “XYZ” is not a currency Stripe charges in"):
        make_form(processor, slug="xyz", currency="xyz")
    jpy = make_form(
        processor, slug="yen", currency="jpy", amounts="1000,5000", min_amount="500", max_amount=None
    )
    assert (jpy.amounts, jpy.min_amount) == ([1000, 5000], 500)


def test_a_zero_decimal_form_groups_thousands_and_takes_no_decimals(client, processor):
    make_form(processor, slug="yen", currency="jpy", amounts="1000,5000", min_amount="500", max_amount=None)
    assert (
        pay(client, processor, slug="yen", amount="", other_amount="1,500").get_json()["status"]
        == "succeeded"
    )
    assert db.session.scalar(select(Contribution.amount)) == 1500
    resp = client.post(
        "/donate/yen/pay",
        json=gift(page_token(client, "yen"), payment_method(processor), amount="", other_amount="1500,50"),
    )
    assert resp.get_json()["errors"] == {
        "other_amount": "JPY amounts are whole numbers: enter the other amount without decimals."
    }
    assert "Gifts of 500 JPY to 99,999,999 JPY." in client.get("/donate/yen").get_data(as_text=True)


def test_result_needs_a_genuine_reference(client, form):
    assert client.post("/donate/spring/pay/MQ.forged/result", json={}).status_code == 404
    assert client.get("/donate/spring/thanks/MQ.forged").status_code == 404


# -- monthly and yearly -------------------------------------------------------------------------


def test_monthly_gift_subscribes_on_a_plan_made_once_and_reused(client, form, processor):
    first = pay(client, processor, frequency="monthly", amount="2500", email="mary@example.org").get_json()
    second = pay(client, processor, frequency="monthly", amount="2500", email="ada@example.org").get_json()
    assert first["status"] == second["status"] == "succeeded"
    assert _count(DonationPlan) == 1
    plan = db.session.scalar(select(DonationPlan))
    assert (plan.amount, plan.currency, plan.interval) == (2500, "usd", "month")

    gw = gateway(processor)
    recurs = db.session.scalars(select(ContributionRecur).order_by(ContributionRecur.id)).all()
    assert len(recurs) == 2
    for recur in recurs:
        sub = gw.retrieve("subscriptions", recur.subscription_id)
        assert (
            sub["plan"]["id"] == plan.plan_id and sub["plan"]["amount"] == 2500 and sub["status"] == "active"
        )
        assert len(gw.list("subscriptions", customer=sub["customer"])["data"]) == 1  # one subscription each
        assert (recur.amount, recur.interval, recur.donation_form_id) == (2500, "month", form.id)
        c = db.session.scalar(select(Contribution).where(Contribution.recur_id == recur.id))
        assert c.invoice_id == c.trxn_id == sub["latest_invoice"] and c.status == "Pending"
        assert sub["metadata"]["contribution_id"] == str(c.id)
        customer = gw.retrieve("customers", sub["customer"])
        assert customer["invoice_settings"]["default_payment_method"]


def test_yearly_gift_declined_at_charge_cancels_its_subscription(client, form, processor):
    body = pay(client, processor, number=CARD_DECLINED_AT_CHARGE, frequency="yearly").get_json()
    assert body["status"] == "declined" and body["errors"]["card"] == "Your card was declined."
    recur = db.session.scalar(select(ContributionRecur))
    assert recur.interval == "year"
    assert gateway(processor).retrieve("subscriptions", recur.subscription_id)["status"] == "canceled"
    assert db.session.scalar(select(Contribution.status)) == "Failed"


def test_monthly_gift_with_three_d_secure(client, form, processor, localstripe):
    body = pay(client, processor, number=CARD_3DS, frequency="monthly").get_json()
    assert body["status"] == "requires_action"
    _authenticate(localstripe, body["client_secret"], True)
    assert client.post(body["result_url"], json={}).get_json()["status"] == "succeeded"
    recur = db.session.scalar(select(ContributionRecur))
    assert gateway(processor).retrieve("subscriptions", recur.subscription_id)["status"] == "active"


# -- Stripe unreachable ------------------------------------------------------------------------


def test_stripe_unreachable_says_try_again_and_records_nothing(client, offline_processor):
    make_form(offline_processor)
    resp = client.post("/donate/spring/pay", json=gift(page_token(client), "pm_card_visa"))
    body = resp.get_json()
    assert resp.status_code == 503 and "try again" in body["error"] and body["token"]
    for model in (Contact, StripeCustomer, Contribution, StripePaymentIntent):
        assert _count(model) == 0, model.__name__


def test_stripe_unreachable_after_the_customer_exists_withdraws_the_contribution(client, form, processor):
    assert pay(client, processor).get_json()["status"] == "succeeded"
    pm = payment_method(processor)
    processor.api_base = "http://127.0.0.1:9"  # Stripe goes away between the two gifts
    db.session.commit()
    resp = client.post("/donate/spring/pay", json=gift(page_token(client), pm))
    assert resp.status_code == 503
    assert _count(Contribution) == 1 and _count(StripePaymentIntent) == 1


def test_stripe_failing_after_the_subscription_exists_says_do_not_try_again(
    client, form, processor, localstripe
):
    pm, token = payment_method(processor), page_token(client)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        subscription_then_stripe_fails(rsps, localstripe)
        resp = client.post("/donate/spring/pay", json=gift(token, pm, frequency="monthly"))
    body = resp.get_json()
    assert resp.status_code == 202 and body["status"] == "unconfirmed", body
    assert "could not confirm" in body["error"] and "do not try again" in body["error"]
    assert "nothing was charged" not in body["error"]
    assert "token" not in body  # no fresh token: submitting again needs a reload
    again = client.post(
        "/donate/spring/pay", json=gift(token, payment_method(processor), frequency="monthly")
    )
    assert again.status_code == 400 and _count(ContributionRecur) == 1

    # Stripe did charge the donor: the contribution stays Pending, linked to the subscription and its invoice
    gw = gateway(processor)
    c = db.session.scalar(select(Contribution))
    recur = db.session.scalar(select(ContributionRecur))
    sub = gw.retrieve("subscriptions", recur.subscription_id)
    assert sub["status"] == "active" and sub["metadata"]["contribution_id"] == str(c.id)
    assert (c.status, c.recur_id, c.invoice_id, recur.donation_form_id) == (
        "Pending",
        recur.id,
        sub["latest_invoice"],
        form.id,
    )

    # ... and the webhook completes that contribution, not a second one
    for ev in gw.list("events", type="invoice.payment_succeeded", limit=100)["data"]:
        if ev["data"]["object"]["id"] == sub["latest_invoice"]:
            store_event(processor, ev)
    run_once()
    db.session.expire_all()
    assert _count(Contribution) == 1
    assert db.session.get(Contribution, c.id).status == "Completed"


# -- card-testing defences ------------------------------------------------------------------------


def test_form_token_is_one_time(client, form, processor):
    token = page_token(client)
    assert client.post("/donate/spring/pay", json=gift(token, payment_method(processor))).status_code == 200
    replay = client.post("/donate/spring/pay", json=gift(token, payment_method(processor)))
    assert replay.status_code == 400 and "Reload the page" in replay.get_json()["error"]
    assert "token" not in replay.get_json()
    missing = client.post("/donate/spring/pay", json=gift("", payment_method(processor)))
    forged = client.post("/donate/spring/pay", json=gift(token[:-3] + "abc", payment_method(processor)))
    assert missing.status_code == forged.status_code == 400
    assert _refusals("token_replayed") == 1 and _refusals("token_missing") == 2
    assert _count(Contribution) == 1


def test_a_token_is_good_for_its_own_form_only(client, form, processor):
    make_form(processor, slug="autumn", title="Autumn")
    token = page_token(client, "autumn")
    assert client.post("/donate/spring/pay", json=gift(token, payment_method(processor))).status_code == 400


def test_honeypot_and_captcha_refuse_before_stripe(app, client, form, processor):
    resp = client.post("/donate/spring/pay", json=gift(page_token(client), "pm_x", website="http://spam"))
    assert resp.status_code == 400 and _refusals("honeypot") == 1
    app.config["DONATE_CAPTCHA_VERIFY"] = lambda response, ip: response == "human" and ip == "127.0.0.1"
    robot = client.post("/donate/spring/pay", json=gift(page_token(client), payment_method(processor)))
    assert robot.status_code == 400 and robot.get_json()["errors"] == {"captcha": robot.get_json()["error"]}
    human = client.post(
        "/donate/spring/pay",
        json=gift(page_token(client), payment_method(processor), captcha_response="human"),
    )
    assert human.get_json()["status"] == "succeeded"
    assert _refusals("captcha") == 1 and _count(Contribution) == 1


def test_captcha_hook_by_dotted_path(app, client, form, processor):
    app.config["DONATE_CAPTCHA_VERIFY"] = "donate_support:never_human"
    import donate_support

    donate_support.never_human = lambda response, ip: False
    assert client.post("/donate/spring/pay", json=gift(page_token(client), "pm_x")).status_code == 400


def test_rate_limits_per_client_and_per_form_are_refusals(app, client, form, processor):
    app.config.update(DONATE_RATE_LIMIT_IP="3 per minute", DONATE_RATE_LIMIT_FORM="4 per minute")
    for _ in range(3):
        client.post("/donate/spring/pay", json={"token": ""})
    limited = client.post("/donate/spring/pay", json={"token": ""})
    assert limited.status_code == 429 and limited.get_json() == {
        "status": "refused",
        "error": "Too many attempts from your connection. Please try again in 1 minute.",
    }
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert _refusals("rate_limit_ip") == 1

    make_form(
        processor, slug="autumn", title="Autumn"
    )  # a form of its own: requests with a token, from elsewhere
    answers = [
        client.post(
            "/donate/autumn/pay",
            json=gift(page_token(client, "autumn"), "pm_x", website="spam"),
            environ_base={"REMOTE_ADDR": f"192.0.2.{n}"},
        )
        for n in range(1, 6)
    ]
    assert [r.status_code for r in answers] == [400, 400, 400, 400, 429] and _refusals("rate_limit_form") == 1
    assert (
        answers[-1].get_json()["error"]
        == "This form is taking too many gifts at once. Please try again in 1 minute."
    )
    assert answers[-1].get_json()["token"]  # the spent token is replaced, for the try after the wait

    app.config["DONATE_RATE_LIMIT_PAGE"] = "1 per minute"
    client.get("/donate/spring", environ_base={"REMOTE_ADDR": "192.0.2.50"})
    page = client.get("/donate/spring", environ_base={"REMOTE_ADDR": "192.0.2.50"})
    assert page.status_code == 429 and "Please try again in 1 minute." in page.get_data(as_text=True)


def test_every_payment_request_counts_against_the_clients_limit(app, client, form):
    """The per-client count is written in the transaction that spends the token: answers given before that
    (no such form, a body that is no JSON object, a forged token) are counted all the same."""
    app.config.update(DONATE_RATE_LIMIT_IP="3 per minute")
    assert client.post("/donate/nowhere/pay", json={}).status_code == 404
    assert client.post("/donate/spring/pay", json=["a list"]).status_code == 400
    assert client.post("/donate/spring/pay", json={"token": "forged"}).status_code == 400
    limited = client.post("/donate/spring/pay", json={"token": "forged"})
    assert limited.status_code == 429 and _refusals("rate_limit_ip") == 1


def test_the_hourly_limit_says_how_long_it_refuses_for(app, client, form):
    """Once the hour's budget is spent, the refusal says how long is left of that hour, not "a minute"."""
    app.config.update(DONATE_RATE_LIMIT_IP="10 per minute;3 per hour")
    for _ in range(3):
        client.post("/donate/spring/pay", json={"token": ""})
    limited = client.post("/donate/spring/pay", json={"token": ""})
    assert limited.status_code == 429
    assert (
        limited.get_json()["error"]
        == "Too many attempts from your connection. Please try again in 60 minutes."
    )
    assert 3540 < int(limited.headers["Retry-After"]) <= 3600


def test_an_honest_donor_is_served_after_a_flood_without_tokens(app, client, form, processor):
    """130 empty POSTs from 13 addresses (10 each, within the per-address limit) once made the form answer
    429 to everyone: requests without a valid one-time token never count against the limit donors share."""
    flood = [
        client.post(
            "/donate/spring/pay", json={}, environ_base={"REMOTE_ADDR": f"198.51.100.{n}"}
        ).status_code
        for n in range(1, 14)
        for _ in range(10)
    ]
    assert flood == [400] * 130
    honest = client.post(
        "/donate/spring/pay",
        json=gift(page_token(client), payment_method(processor)),
        environ_base={"REMOTE_ADDR": "192.0.2.77"},
    )
    assert honest.status_code == 200 and honest.get_json()["status"] == "succeeded"
    assert _refusals("rate_limit_form") == 0 and _refusals("token_missing") == 130


def test_an_ipv6_64_shares_one_budget_across_its_addresses(app, client, form, processor):
    """Every address of one /64 counts as one client: payment requests, failed payments, sign-in guesses."""
    net = "2001:db8:5:6:"
    answers = [
        client.post("/donate/spring/pay", json={}, environ_base={"REMOTE_ADDR": f"{net}:{n:x}"}).status_code
        for n in range(1, 16)
    ]
    assert answers == [400] * 10 + [429] * 5  # 10 per minute for the whole /64
    assert (
        client.post(
            "/donate/spring/pay", json={}, environ_base={"REMOTE_ADDR": "2001:db8:5:7::1"}
        ).status_code
        == 400
    )  # the next /64 is another client

    app.config.update(DONATE_RATE_LIMIT_IP="100 per minute")
    other = "2001:db8:9:9:"
    for n in range(1, 6):  # five declines, each from another address of the /64
        resp = pay(
            client, processor, number=CARD_DECLINED_AT_CHARGE, environ_base={"REMOTE_ADDR": f"{other}:{n}"}
        )
        assert resp.status_code == 402
    blocked = [
        pay(client, processor, environ_base={"REMOTE_ADDR": f"{other}:{n:x}"}).status_code
        for n in range(6, 16)
    ]
    assert blocked == [429] * 10
    assert pay(client, processor, environ_base={"REMOTE_ADDR": "2001:db8:9:a::1"}).status_code == 200


def test_refusals_are_logged(client, form, caplog):
    caplog.set_level("WARNING", logger="admin.services.donations.guard")
    client.post("/donate/spring/pay", json={"token": "nope"})
    assert "donation form spring: refused (token_missing) from 127.0.0.1" in caplog.text


def test_a_flood_of_refusals_is_tallied_not_a_row_and_a_log_line_each(app, client, form, caplog):
    """3,470 refusals once took 3,470 rows and log lines in 25 s: the first is written and logged at once,
    the rest together, as the webhook endpoint does."""
    import time

    app.config.update(DONATE_RATE_LIMIT_IP="1000 per minute", DONATE_REFUSAL_FLUSH_SECONDS=0.5)
    caplog.set_level("WARNING", logger="admin.services.donations.guard")
    started = time.monotonic()
    assert client.post("/donate/spring/pay", json={"token": "forged"}).status_code == 400
    # the first, at once: the dashboard and the alarm see it (read before the flood: on a loaded machine the
    # flood outlasts a flush interval, and the rows that interval writes are checked below)
    assert _count(DonationRefusal) == 1
    for _ in range(199):
        assert client.post("/donate/spring/pay", json={"token": "forged"}).status_code == 400
    took = time.monotonic() - started
    time.sleep(1.0)
    db.session.rollback()
    rows = db.session.scalars(select(DonationRefusal)).all()
    assert sum(r.count for r in rows) == 200
    assert 2 <= len(rows) <= 2 + took / 0.5  # the first, then one row per interval of the flood
    assert {(r.reason, r.client_ip) for r in rows} == {("token_missing", "127.0.0.1")}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(rows)
    assert lines[0] == "donation form spring: refused (token_missing) from 127.0.0.1"
    assert all(
        re.fullmatch(
            r"donation forms: \d+ more refusals since the last report: "
            r"\d+ x token_missing on spring from 127.0.0.1",
            line,
        )
        for line in lines[1:]
    )


def test_the_card_testing_banner_names_refusals_in_words(app, client, auth, form):
    app.config.update(
        CARD_TESTING_ALARM_CACHE_SECONDS=0,
        CARD_TESTING_ALARM_THRESHOLD=20,
        DONATE_RATE_LIMIT_IP="1000 per minute",
    )
    for _ in range(26):
        client.post("/donate/spring/pay", json={})
    _refusals("token_missing")  # written
    auth.login("viewer@example.org", "viewer")
    html = " ".join(client.get("/").get_data(as_text=True).split())
    assert (
        "26 failed payments in the last 60 minutes (alarm at 20: 26 refused donation-form requests)" in html
    )
    assert "form_refusals" not in html


def test_proxy_x_for_gives_the_donors_address(tmp_path, localstripe):
    from conftest import make_app

    from admin.services.settings.processors import add_processor

    app = make_app(f"sqlite:///{tmp_path / 'proxy.sqlite3'}", tmp_path, TRUSTED_PROXIES=1)
    with app.app_context():
        db.create_all()
        proc = add_processor(
            name="p",
            secret_key="sk_test_proxy",
            publishable_key="pk_test_proxy",
            webhook_secrets=["whsec_p"],
            api_base=localstripe,
        )
        make_form(proc)
        client = app.test_client()
        client.post("/donate/spring/pay", json={"token": "x"}, headers={"X-Forwarded-For": "203.0.113.5"})
        assert db.session.scalar(select(DonationRefusal.client_ip)) == "203.0.113.5"
        db.session.remove()
        db.engine.dispose()


# -- signed donor links: a known contact and postcode ----------------------------------------------


def test_signed_donor_link_fills_in_the_known_donor(app, client, form, processor):
    from admin.services.donations.forms import donor_link

    contact = Contact(display_name="Mary Somerville", email="mary@example.org", postal_code="EH1 1AA")
    db.session.add(contact)
    db.session.commit()
    link = donor_link(form, contact)
    assert link.startswith("http://127.0.0.1:5000/donate/spring?donor=")
    html = client.get(link.split("5000", 1)[1]).get_data(as_text=True)
    assert 'data-known-postcode="EH1 1AA"' in html and 'value="Mary"' in html and 'value="Somerville"' in html
    assert 'name="donor"' in html
    assert 'data-known-postcode=""' in client.get("/donate/spring?donor=forged").get_data(as_text=True)
    token = link.split("donor=", 1)[1]
    body = pay(client, processor, email="other@example.org", donor=token).get_json()
    assert body["status"] == "succeeded"
    assert (
        db.session.scalar(select(Contribution.contact_id)) == contact.id
    )  # the linked contact, not a new one
