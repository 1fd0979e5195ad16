"""The donation form as a stranger uses it, against a real localstripe: a known donor's email gives no
hold on that donor's Stripe customer or stored details; signed donor links are single-use, expire and can
be revoked; a payment method Stripe does not know makes nothing; donors' pages are never cached and
their links expire; a subscription that may exist is never reported as "nothing charged"."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
import requests
import responses
from donate_support import (
    CARD_3DS,
    CARD_DECLINED_AT_ATTACH,
    gift,
    make_form,
    page_token,
    pay,
    payment_method,
)
from sqlalchemy import func, select

from admin.extensions import db
from admin.models import (
    AuditLog,
    Contact,
    Contribution,
    ContributionRecur,
    DonationRefusal,
    DonorLink,
    RateLimit,
    StripeCustomer,
)
from admin.services.donations.forms import donor_link
from admin.services.donations.give import frequency_of, plan_for
from admin.services.settings.processors import gateway
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_once

pytestmark = pytest.mark.localstripe

STORED = ("Mary", "Somerville", "EH1 1AA", "EH1")  # what paydesk and Stripe hold about the real donor


@pytest.fixture
def form(app, processor):
    return make_form(processor)


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _authenticate(localstripe: str, client_secret: str, success: bool = True) -> None:
    pi_id = client_secret.split("_secret_")[0]
    requests.post(
        f"{localstripe}/v1/payment_intents/{pi_id}/_authenticate",
        data={
            "key": "pk_test_paydesk",
            "client_secret": client_secret,
            "success": "true" if success else "false",
        },
        timeout=10,
    ).raise_for_status()


def _real_donor(processor, form):
    """Mary, a donor of long standing: a contact with her details, and in Stripe her customer with a default
    card and a monthly subscription."""
    gw = gateway(processor)
    cus = gw.create(
        "customers",
        {"name": "Mary Somerville", "email": "mary@example.org", "address": {"postal_code": "EH1 1AA"}},
    )
    pm = payment_method(processor, postal_code="EH1 1AA")
    gw.call("payment_methods", "attach", pm, params={"customer": cus["id"]})
    gw.update("customers", cus["id"], {"invoice_settings": {"default_payment_method": pm}})
    sub = gw.create(
        "subscriptions", {"customer": cus["id"], "items": [{"plan": plan_for(gw, form, 1500, "month")}]}
    )
    assert sub["status"] == "active"
    contact = Contact(
        display_name="Mary Somerville", email="mary@example.org", postal_code="EH1 1AA", source="import"
    )
    db.session.add(contact)
    db.session.flush()
    db.session.add(StripeCustomer(customer_id=cus["id"], contact=contact, processor_id=processor.id))
    db.session.commit()
    return contact, cus["id"]


def _stripe_state(processor, customer_id: str) -> dict:
    gw = gateway(processor)
    cus = gw.retrieve("customers", customer_id)
    return {
        "default_payment_method": (cus.get("invoice_settings") or {}).get("default_payment_method"),
        "details": (cus.get("name"), cus.get("email"), cus.get("address")),
        "payment_methods": sorted(
            pm["id"] for pm in gw.list("payment_methods", customer=customer_id, type="card")["data"]
        ),
        "subscriptions": sorted(
            (s["id"], s["status"], s.get("default_payment_method"))
            for s in gw.list("subscriptions", customer=customer_id, status="all")["data"]
        ),
    }


def _leaks(text: str) -> list[str]:
    return [word for word in STORED if re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE)]


# -- a stranger with a donor's email ------------------------------------------------------------

STRANGER = {
    "first_name": "Eve",
    "last_name": "Intruder",
    "email": "MARY@example.org",
    "postal_code": "SW1A 1AA",
}


def test_a_stranger_with_a_donors_email_cannot_touch_her_stripe_customer_or_see_her_details(
    client, form, processor, localstripe
):
    mary, mary_customer = _real_donor(processor, form)
    before = _stripe_state(processor, mary_customer)
    answers = []  # every body a public page or JSON answer gave the stranger

    for fields in ({"frequency": "monthly"}, {"frequency": "yearly"}, {"frequency": "one-off"}):
        resp = pay(client, processor, **STRANGER, **fields)
        answers.append(resp.get_data(as_text=True))
        assert resp.get_json()["status"] == "succeeded", resp.get_json()
        thanks = client.get(resp.get_json()["redirect"])
        answers.append(thanks.get_data(as_text=True))
        assert "Thank you, Eve!" in answers[-1]  # what was typed, as for any donor
        answers.append(client.get(resp.get_json()["redirect"] + "/status").get_data(as_text=True))

    for frequency in ("one-off", "monthly"):  # 3-D Secure: the redirect page is shown before anything is paid
        body = pay(client, processor, number=CARD_3DS, frequency=frequency, **STRANGER).get_json()
        answers.append(json.dumps(body))
        assert body["status"] == "requires_action"
        answers.append(client.get(body["redirect"]).get_data(as_text=True))
        assert "Thank you, Eve!" in answers[-1]
        _authenticate(localstripe, body["client_secret"])
        answers.append(client.post(body["result_url"], json={}).get_data(as_text=True))

    # Stripe: Mary's customer is as it was (default card, cards, subscription, details)
    assert _stripe_state(processor, mary_customer) == before
    gw = gateway(processor)
    for c in db.session.scalars(select(Contribution)):
        assert c.customer_id != mary_customer
        customer = gw.retrieve("customers", c.customer_id)
        assert (customer["name"], customer["email"]) == ("Eve Intruder", "MARY@example.org")  # what was typed

    # No answer shows anything stored about Mary
    for text in answers:
        assert not _leaks(text), (_leaks(text), text)

    # paydesk: matched by email (CiviCRM's rule), her stored details unchanged, the new customers never reused
    db.session.expire_all()
    assert _count(Contact) == 1
    assert (mary.display_name, mary.email, mary.postal_code) == (
        "Mary Somerville",
        "mary@example.org",
        "EH1 1AA",
    )
    links = db.session.scalars(
        select(StripeCustomer).where(StripeCustomer.customer_id != mary_customer)
    ).all()
    assert len(links) == 5 and all(link.unverified and link.contact_id == mary.id for link in links)

    # ... and a gift through a link staff sent her uses her own customer, not one of the stranger's newer ones
    token = donor_link(form, mary).split("donor=", 1)[1]
    body = pay(
        client,
        processor,
        donor=token,
        frequency="monthly",
        first_name="Mary",
        last_name="Somerville",
        email="mary@example.org",
        postal_code="EH1 1AA",
    ).get_json()
    assert body["status"] == "succeeded"
    c = db.session.scalar(select(Contribution).order_by(Contribution.id.desc()).limit(1))
    assert c.customer_id == mary_customer and c.contact_id == mary.id
    after = _stripe_state(processor, mary_customer)
    assert (
        len(after["subscriptions"]) == 2
        and after["default_payment_method"] != before["default_payment_method"]
    )
    assert "Thank you, Mary!" in client.get(body["redirect"]).get_data(as_text=True)


def test_the_thanks_page_shows_what_was_typed_whoever_the_email_belongs_to(client, form, processor):
    """A page that greeted a known email differently would tell a stranger that the email gives here."""
    _mary()
    pages = []
    for email in ("mary@example.org", "someone.new@example.org"):
        body = pay(client, processor, first_name="Eve", last_name="Intruder", email=email).get_json()
        assert "Eve" not in body["redirect"] and "example" not in body["redirect"]  # encrypted in the URL
        c = db.session.scalar(select(Contribution).order_by(Contribution.id.desc()).limit(1))
        c.status = "Completed"  # as the webhook will
        db.session.commit()
        page = client.get(body["redirect"]).get_data(as_text=True)
        pages.append(re.sub(r"<dd>[\d-]+</dd>|thanks/[^/\"]+", "", page.replace(email, "EMAIL")))
        assert "Thank you, Eve!" in page and f"A receipt is on its way to {email}." in page
    assert pages[0] == pages[1]
    assert [
        link.unverified for link in db.session.scalars(select(StripeCustomer).order_by(StripeCustomer.id))
    ] == [True, False]  # Mary's contact existed; the new one is the new contact's own


def test_a_stranger_learns_no_contact_id_from_any_answer_or_the_card_statement(
    client, form, processor, localstripe
):
    """The reference of a gift from the public form is the contribution's id: the contact's id, matched by the
    typed email, would tell a stranger that the email gives here (and which record it is). Staff's Stripe
    description keeps CiviCRM's contactID-contributionID; a gift through a donor link shows it to the donor."""
    mary = Contact(id=4711, display_name="Mary Somerville", email="mary@example.org", postal_code="EH1 1AA")
    db.session.add(mary)
    db.session.commit()
    answers = []
    resp = pay(client, processor, **STRANGER)
    answers += [
        resp.get_data(as_text=True),
        client.get(resp.get_json()["redirect"]).get_data(as_text=True),
        client.get(resp.get_json()["redirect"] + "/status").get_data(as_text=True),
    ]
    c = db.session.scalar(select(Contribution))
    assert f"<dt>Reference</dt><dd>{c.id}</dd>" in answers[1]

    body = pay(client, processor, number=CARD_3DS, **STRANGER).get_json()
    answers += [json.dumps(body), client.get(body["redirect"]).get_data(as_text=True)]
    _authenticate(localstripe, body["client_secret"])
    answers.append(client.post(body["result_url"], json={}).get_data(as_text=True))

    pm, token = (
        payment_method(processor),
        page_token(client),
    )  # a monthly gift Stripe cannot confirm: a message

    def create(request):
        _forward(request)
        return _stripe_error()

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.add_callback(responses.POST, f"{localstripe}/v1/subscriptions", callback=create)
        rsps.add(
            responses.GET,
            re.compile(re.escape(localstripe) + r"/v1/subscriptions\?.*"),
            status=500,
            json={"error": {"type": "api_error", "message": "An unknown error occurred"}},
        )
        rsps.add_passthru(localstripe)
        unconfirmed = client.post("/donate/spring/pay", json=gift(token, pm, frequency="monthly", **STRANGER))
    assert unconfirmed.get_json()["status"] == "unconfirmed"
    answers.append(unconfirmed.get_data(as_text=True))

    gw = gateway(processor)
    for c in db.session.scalars(select(Contribution)):
        assert c.contact_id == 4711 and c.description == f"Spring appeal 4711-{c.id}"  # staff's, as CiviCRM's
        if c.payment_intent_id and not c.recur_id:
            pi = gw.retrieve("payment_intents", c.payment_intent_id)
            assert pi["statement_descriptor_suffix"] == f"{c.id} Spring appeal"
            answers.append(pi["statement_descriptor_suffix"])  # printed on the card statement
            # a browser holding the client secret (3-D Secure) reads the description; the metadata it cannot
            assert pi["description"] == f"Spring appeal {c.id}" and pi["metadata"]["contact_id"] == "4711"
            answers.append(pi["description"])
    for text in answers:
        assert "4711" not in text, text

    token = donor_link(form, mary).split("donor=", 1)[
        1
    ]  # Mary herself, through her link: CiviCRM's reference
    body = pay(
        client, processor, donor=token, first_name="Mary", last_name="Somerville", email="mary@example.org"
    ).get_json()
    c = db.session.scalar(select(Contribution).order_by(Contribution.id.desc()).limit(1))
    assert f"<dt>Reference</dt><dd>4711-{c.id}</dd>" in client.get(body["redirect"]).get_data(as_text=True)
    assert gw.retrieve("payment_intents", c.payment_intent_id)["statement_descriptor_suffix"].startswith(
        f"4711-{c.id} "
    )


# -- payment methods Stripe does not know -------------------------------------------------------


def test_fake_payment_methods_make_no_customer_or_contact_and_count_as_failures(app, client, empty_processor):
    make_form(empty_processor)
    answers = [
        client.post(
            "/donate/spring/pay", json=gift(page_token(client), f"pm_fake{n}x{n}", email=f"x{n}@example.org")
        )
        for n in range(8)
    ]
    assert [a.status_code for a in answers] == [402] * 5 + [429] * 3
    assert answers[0].get_json()["errors"] == {
        "card": "Your card details were not accepted. Please enter them again, or use another card."
    }
    assert answers[0].get_json()["token"]  # the donor may try another card
    for model in (Contact, StripeCustomer, Contribution):
        assert _count(model) == 0, model.__name__
    assert gateway(empty_processor).list("customers", limit=100)["data"] == []
    assert (
        _count(DonationRefusal, DonationRefusal.reason == "payment_failed") == 5
    )  # then the address is blocked
    assert db.session.get(RateLimit, "donate-fail-ip:127.0.0.1").blocked_until is not None


# -- signed donor links --------------------------------------------------------------------------


def _mary(processor=None) -> Contact:
    contact = Contact(display_name="Mary Somerville", email="mary@example.org", postal_code="EH1 1AA")
    db.session.add(contact)
    db.session.commit()
    return contact


def test_a_donor_link_is_good_for_one_gift_and_a_decline_does_not_spend_it(client, form, processor):
    mary = _mary()
    token = donor_link(form, mary).split("donor=", 1)[1]
    html = client.get(f"/donate/spring?donor={token}").get_data(as_text=True)
    assert 'data-known-postcode="EH1 1AA"' in html and 'value="Mary"' in html

    declined = pay(client, processor, number=CARD_DECLINED_AT_ATTACH, donor=token)
    assert declined.status_code == 402
    assert pay(client, processor, donor=token).get_json()["status"] == "succeeded"  # another card, same link
    link = db.session.scalar(select(DonorLink))
    assert link.used_at is not None and link.contribution_id == db.session.scalar(
        select(Contribution.id).where(Contribution.status == "Pending")
    )

    again = pay(client, processor, donor=token)
    assert again.status_code == 409
    assert again.get_json()["error"] == (
        "This personal donation link has been used for a gift already. Reload the page to give."
    )
    page = client.get(f"/donate/spring?donor={token}").get_data(as_text=True)
    assert "has been used for a gift already. You can still give below." in page
    assert not _leaks(page) and 'name="donor"' not in page
    assert _count(Contribution) == 2


def test_donor_links_expire(app, client, form, processor):
    token = donor_link(form, _mary()).split("donor=", 1)[1]
    app.config["DONATE_LINK_MAX_AGE"] = -1  # as if 30 days had passed
    page = client.get(f"/donate/spring?donor={token}").get_data(as_text=True)
    assert "This personal donation link has expired. You can still give below." in page and not _leaks(page)
    resp = pay(client, processor, donor=token)
    assert resp.status_code == 409 and "has expired" in resp.get_json()["error"]
    assert _count(Contribution) == 0


def test_forms_link_is_audited_and_a_link_is_revoked_from_the_contacts_page(
    app, client, runner, auth, form, processor
):
    mary = _mary()
    made = runner.invoke(args=["forms", "link", "--slug", "spring", "--contact-id", str(mary.id)])
    assert made.exit_code == 0, made.output
    token = made.output.strip().split("donor=", 1)[1]
    made_entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "donor_link.create"))
    assert (made_entry.object_type, made_entry.object_id) == ("contact", str(mary.id))

    auth.login("viewer@example.org", role="viewer")
    page = client.get(f"/contacts/{mary.id}").get_data(as_text=True)
    assert "Donor links" in page and "usable" in page and "Revoke" not in page
    auth.logout()
    auth.login("op@example.org", role="operator")
    link = db.session.scalar(select(DonorLink))
    url = f"/contacts/{mary.id}/donor-links/{link.id}/revoke"
    assert client.post(url, data={}).status_code == 400  # no CSRF token
    resp = client.post(
        url, data={"csrf_token": auth.token(f"/contacts/{mary.id}")}, headers={"HX-Request": "true"}
    )
    assert resp.status_code == 200
    assert f"Donor link #{link.id} is revoked" in resp.get_data(as_text=True) and "revoked" in resp.get_data(
        as_text=True
    )
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "donor_link.revoke"))
    assert (entry.actor, entry.object_type, entry.object_id) == ("op@example.org", "contact", str(mary.id))
    auth.logout()

    page = client.get(f"/donate/spring?donor={token}").get_data(as_text=True)
    assert "This personal donation link has been withdrawn." in page and not _leaks(page)
    assert pay(client, processor, donor=token).status_code == 409


def test_a_forged_or_other_forms_link_shows_nothing_stored(client, form, processor):
    make_form(processor, slug="autumn", title="Autumn")
    token = donor_link(form, _mary()).split("donor=", 1)[1]
    for url in ("/donate/autumn?donor=" + token, "/donate/spring?donor=" + token[:-4] + "AAAA"):
        page = client.get(url).get_data(as_text=True)
        assert "This personal donation link is not valid." in page and not _leaks(page)


# -- caching and the donor's own links -----------------------------------------------------------


def test_donors_pages_are_never_cached(client, form, processor):
    token = donor_link(form, _mary()).split("donor=", 1)[1]
    body = pay(client, processor).get_json()
    for resp in (
        client.get("/donate/spring"),
        client.get(f"/donate/spring?donor={token}"),
        client.get(body["redirect"]),
        client.get(body["redirect"] + "/status"),
        client.post("/donate/spring/pay", json={"token": "x"}),
        client.get("/donate/spring/thanks/bogus"),
    ):
        assert resp.headers["Cache-Control"] == "no-store", resp.request.path


def test_a_bogus_or_expired_thanks_link_says_so(app, client, form, processor):
    body = pay(client, processor).get_json()
    bogus = client.get("/donate/spring/thanks/MQ.forged")
    assert bogus.status_code == 404
    text = bogus.get_data(as_text=True)
    assert "This link to a gift is not valid" in text and "no donation form" not in text
    assert client.get(body["redirect"]).status_code == 200

    app.config["DONATE_THANKS_MAX_AGE"] = -1  # as if a day had passed
    expired = client.get(body["redirect"])
    assert expired.status_code == 410 and "This page about your gift has expired" in expired.get_data(
        as_text=True
    )
    status = client.get(body["redirect"] + "/status")
    assert status.status_code == 410 and status.get_json()["status"] == "expired"
    result = client.post(body["result_url"], json={})
    assert result.status_code == 410 and "expired" in result.get_json()["error"]


# -- regular gifts ---------------------------------------------------------------------------------


def _feed_customer_events(processor, customer_id: str) -> None:
    """What Stripe would have sent about this customer, oldest first, through the worker."""
    gw = gateway(processor)
    events = [
        e for e in gw.list("events", limit=100)["data"] if customer_id in json.dumps(e["data"]["object"])
    ]
    for event in reversed(events):
        store_event(processor, event)
    run_once()
    db.session.expire_all()


def test_monthly_gift_after_three_d_secure_is_in_progress_once_its_first_invoice_is_paid(
    client, form, processor, localstripe
):
    body = pay(client, processor, number=CARD_3DS, frequency="monthly").get_json()
    _authenticate(localstripe, body["client_secret"])
    assert client.post(body["result_url"], json={}).get_json()["status"] == "succeeded"
    recur = db.session.scalar(select(ContributionRecur))
    assert gateway(processor).retrieve("subscriptions", recur.subscription_id)["status"] == "active"

    _feed_customer_events(processor, recur.customer_id)  # localstripe sends no customer.subscription.updated
    recur = db.session.scalar(select(ContributionRecur))
    assert (recur.status, recur.stripe_status) == ("In Progress", "active")
    assert recur.next_sched_date is not None
    assert db.session.scalar(select(Contribution.status)) == "Completed"


def test_a_yearly_gift_declined_before_its_subscription_keeps_its_frequency(client, auth, form, processor):
    body = pay(client, processor, number=CARD_DECLINED_AT_ATTACH, frequency="yearly").get_json()
    assert body["status"] == "declined"
    c = db.session.scalar(select(Contribution))
    assert (c.status, c.recur_id, c.frequency) == ("Failed", None, "yearly")
    assert frequency_of(c) == "Yearly"
    auth.login()
    page = client.get(f"/contributions/{c.id}").get_data(as_text=True)
    assert re.search(r"<dt>Type</dt><dd>yearly, not set up", page)


# -- a subscription that may exist -----------------------------------------------------------------


def _forward(request):
    """Send a mocked request on to localstripe (past the requests mock), answer with what it said."""
    headers = {
        k: v for k, v in request.headers.items() if k.lower() not in ("accept-encoding", "content-length")
    }
    body = request.body.encode() if isinstance(request.body, str) else request.body
    forwarded = urllib.request.Request(request.url, data=body, headers=headers, method=request.method)
    with urllib.request.urlopen(forwarded, timeout=10) as answer:
        return json.load(answer)


def _stripe_error(status: int = 500):
    return (
        status,
        {"Request-Id": "req_lost"},
        json.dumps({"error": {"type": "api_error", "message": "An unknown error occurred"}}),
    )


def _subscriptions_of(processor, customer_id: str) -> list[dict]:
    return gateway(processor).list("subscriptions", customer=customer_id, status="all")["data"]


def test_subscription_made_but_its_answer_lost_is_found_and_the_gift_goes_through(
    client, form, processor, localstripe
):
    pm, token = payment_method(processor), page_token(client)
    attempts = []

    def create(
        request,
    ):  # Stripe makes it each time it is asked (once: the same idempotency key); the answer is lost
        attempts.append(request.headers["Idempotency-Key"])
        _forward(request)
        return _stripe_error()

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.add_callback(responses.POST, f"{localstripe}/v1/subscriptions", callback=create)
        rsps.add_passthru(localstripe)
        resp = client.post("/donate/spring/pay", json=gift(token, pm, frequency="monthly"))
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "succeeded", body
    assert len(attempts) >= 2 and len(set(attempts)) == 1  # retried with the same key
    c = db.session.scalar(select(Contribution))
    (sub,) = _subscriptions_of(processor, c.customer_id)
    assert sub["metadata"]["contribution_id"] == str(c.id) and sub["status"] == "active"
    assert c.recur.subscription_id == sub["id"] and c.invoice_id == sub["latest_invoice"]


def test_subscription_made_but_stripe_cannot_say_so_is_never_nothing_charged(
    client, form, processor, localstripe
):
    pm, token = payment_method(processor), page_token(client)

    def create(request):
        _forward(request)
        return _stripe_error()

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.add_callback(responses.POST, f"{localstripe}/v1/subscriptions", callback=create)
        rsps.add(
            responses.GET,
            re.compile(re.escape(localstripe) + r"/v1/subscriptions\?.*"),
            status=500,
            json={"error": {"type": "api_error", "message": "An unknown error occurred"}},
        )
        rsps.add_passthru(localstripe)
        resp = client.post("/donate/spring/pay", json=gift(token, pm, frequency="monthly"))
    body = resp.get_json()
    assert resp.status_code == 202 and body["status"] == "unconfirmed", body
    assert "nothing was charged" not in body["error"] and "Please do not try again" in body["error"]
    assert "could not find out" in body["error"] and "token" not in body
    c = db.session.scalar(select(Contribution))
    assert c.status == "Pending" and f"Your reference is {c.id}." in body["error"]

    # the subscription did exist: its first invoice's webhook completes this contribution, not a new one
    (sub,) = _subscriptions_of(processor, c.customer_id)
    _feed_customer_events(processor, c.customer_id)
    assert _count(Contribution) == 1
    c = db.session.get(Contribution, c.id)
    assert (c.status, c.invoice_id, c.recur.subscription_id) == (
        "Completed",
        sub["latest_invoice"],
        sub["id"],
    )


def test_subscription_request_lost_on_the_way_is_asked_again_with_the_same_key(
    client, form, processor, localstripe
):
    pm, token = payment_method(processor), page_token(client)
    keys = []

    def create(request):  # lost before reaching Stripe, until paydesk asks once more after looking
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) <= app_attempts(client):
            return _stripe_error(503)
        return 200, {"Request-Id": "req_made"}, json.dumps(_forward(request))

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.add_callback(responses.POST, f"{localstripe}/v1/subscriptions", callback=create)
        rsps.add_passthru(localstripe)
        resp = client.post("/donate/spring/pay", json=gift(token, pm, frequency="monthly"))
    assert resp.get_json()["status"] == "succeeded", resp.get_json()
    assert len(set(keys)) == 1 and len(keys) == app_attempts(client) + 1
    c = db.session.scalar(select(Contribution))
    assert len(_subscriptions_of(processor, c.customer_id)) == 1


def app_attempts(client) -> int:
    return int(client.application.config["STRIPE_MAX_ATTEMPTS"])
