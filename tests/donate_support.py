"""Helpers for the donation-form tests: a form on a localstripe processor, PaymentMethods as Stripe.js
makes them, the page's one-time token, a payment request."""

from __future__ import annotations

import io
import json
import re
import urllib.request

import responses

from admin.services.donations.forms import FormSettings, create_form
from admin.services.settings.processors import gateway

CARD_OK = "4242424242424242"
CARD_DECLINED_AT_ATTACH = "4000000000000002"  # localstripe declines it when attached to a customer
CARD_DECLINED_AT_CHARGE = "4000000000000341"
CARD_3DS = "4000002500003155"
CARD_3DS_THEN_DECLINED = "4000008260003178"


def make_form(processor, slug: str = "spring", **overrides):
    settings = dict(
        slug=slug,
        title="Spring appeal",
        processor_id=processor.id,
        currency="usd",
        amounts="10,25,50",
        frequencies=["one-off", "monthly", "yearly"],
        min_amount="5",
        max_amount="10000",
        thank_you_text="Thank you for standing with us.",
    )
    settings.update(overrides)
    return create_form(FormSettings(**settings))


def payment_method(processor, number: str = CARD_OK, postal_code: str | None = "10115") -> str:
    """A PaymentMethod as Stripe.js creates it from the card element (its postcode in billing_details)."""
    params = {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    if postal_code:
        params["billing_details"] = {"address": {"postal_code": postal_code}}
    return gateway(processor).create("payment_methods", params)["id"]


def page_token(client, slug: str = "spring", query: str = "") -> str:
    html = client.get(f"/donate/{slug}{query}").get_data(as_text=True)
    return re.search(r'data-token="([^"]+)"', html)[1]


def gift(token: str, pm: str | None, **fields) -> dict:
    body = {
        "token": token,
        "amount": "2500",
        "frequency": "one-off",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.org",
        "payment_method": pm,
        "postal_code": "10115",
        "website": "",
    }
    body.update(fields)
    return body


def pay(
    client,
    processor,
    slug: str = "spring",
    number: str = CARD_OK,
    headers: dict | None = None,
    environ_base: dict | None = None,
    **fields,
):
    """One full payment request with a fresh token and a new PaymentMethod; the response."""
    pm = payment_method(processor, number)
    return client.post(
        f"/donate/{slug}/pay",
        json=gift(page_token(client, slug), pm, **fields),
        headers=headers,
        **({"environ_base": environ_base} if environ_base else {}),
    )


def subscription_then_stripe_fails(rsps, localstripe: str) -> None:
    """Stripe makes the subscription (and charges its first invoice) but answers with the invoice's id
    only, as it does unless asked to expand it; reading that invoice then fails. Everything else
    reaches localstripe."""

    def create(request):
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("accept-encoding", "content-length")
        }
        body = request.body.encode() if isinstance(request.body, str) else request.body
        forwarded = urllib.request.Request(request.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(forwarded, timeout=10) as answer:  # urllib: past the requests mock
            sub = json.load(answer)
        sub["latest_invoice"] = sub["latest_invoice"]["id"]
        return 200, {"Request-Id": "req_made"}, json.dumps(sub)

    rsps.add_callback(responses.POST, f"{localstripe}/v1/subscriptions", callback=create)
    rsps.add(
        responses.GET,
        re.compile(re.escape(localstripe) + r"/v1/invoices/.*"),
        status=500,
        json={"error": {"type": "api_error", "message": "An unknown error occurred"}},
    )
    rsps.add_passthru(localstripe)


class Endless(io.RawIOBase):
    """A request body that never ends (a chunked upload of any size), counting what was read of it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = len(buffer)
        buffer[:n] = b" " * n
        self.read_bytes += n
        return n

    # The test client measures a body by seeking; a chunked one has no length (CONTENT_LENGTH "" below).
    def seekable(self) -> bool:
        return True

    def seek(self, *_args) -> int:
        return 0

    def tell(self) -> int:
        return 0


def post_chunked(client, path: str, body: Endless, content_type: str = "application/json"):
    """POST ``body`` as a server passes on a chunked request: no Content-Length, the stream terminated by it."""
    return client.post(
        path,
        input_stream=body,
        content_type=content_type,
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
