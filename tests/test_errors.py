"""admin.errors.stripe_failure: the one translation of a failed Stripe request into what staff read."""

from __future__ import annotations

from admin.errors import ServiceError, StripeFailure, stripe_failure
from admin.stripe_gateway import GatewayError


def _missing() -> GatewayError:
    return GatewayError(
        "No such charge: 'ch_1'",
        code="resource_missing",
        http_status=404,
        request_id="req_9",
        operation="charges.retrieve",
    )


def test_a_missing_object_is_named_not_stripes_bare_not_found():
    err = stripe_failure(_missing(), "charge", "ch_1")
    assert isinstance(err, StripeFailure) and isinstance(err, ServiceError)
    assert err.message == "Stripe: there is no charge ch_1 on this account (or it was deleted)"
    assert err.not_found and err.request_id == "req_9" and not err.transient
    assert "charges.retrieve" in err.detail and "request=req_9" in err.detail


def test_other_failures_say_what_stripe_said_with_request_and_doing():
    busy = GatewayError("Too many requests", request_id="req_7", http_status=429, transient=True)
    assert stripe_failure(busy).message == "Stripe: Too many requests"
    assert stripe_failure(busy).transient
    assert (
        stripe_failure(busy, with_request=True).message == "Stripe: Too many requests (Stripe request req_7)"
    )
    made = stripe_failure(busy, doing="did not create the product")
    assert made.message == "Stripe did not create the product: Too many requests"
    assert (
        stripe_failure(_missing(), "charge").message == "Stripe: No such charge: 'ch_1'"
    )  # no id: Stripe's words


def test_a_declined_card_is_marked_so_the_api_answers_402():
    declined = stripe_failure(GatewayError("Your card was declined.", kind="card_error", http_status=402))
    assert declined.card and not declined.transient
    other = stripe_failure(GatewayError("No such price", kind="invalid_request_error", http_status=400))
    assert not other.card
