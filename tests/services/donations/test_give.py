"""Donation service details that localstripe cannot show: the current API shape of a first invoice."""

from __future__ import annotations

import pytest
import responses
from stripe_world import Renewal, StripeWorld

from admin.services.core.stripe_reader import StripeReader
from admin.services.donations.give import decline_message, first_invoice_intent
from admin.services.settings.processors import gateway


@pytest.mark.parametrize("shape", ["current", "older"])
def test_first_invoice_intent_in_both_api_shapes(app, offline_processor, shape):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        renewal = Renewal(world, shape=shape)
        gw = gateway(offline_processor)
        assert ("payment_intent" in renewal.invoice) == (shape == "older")
        pi = first_invoice_intent(gw, StripeReader(offline_processor, gw), renewal.invoice)
        assert pi["id"] == renewal.intent["id"]
        # the current shape finds it through the invoice's InvoicePayments
        assert world.count("GET", r"/v1/invoice_payments$") == (1 if shape == "current" else 0)


def test_decline_messages_always_say_declined():
    assert decline_message("Your card was declined.") == "Your card was declined."
    assert decline_message("The provided PaymentMethod has failed authentication.") == (
        "Payment declined: The provided PaymentMethod has failed authentication."
    )
    assert decline_message(None) == "Your card was declined."
