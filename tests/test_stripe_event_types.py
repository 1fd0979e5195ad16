"""The recommended event types of a webhook endpoint: Stripe's types, and every one paydesk handles."""

from admin import stripe_event_types
from admin.webhooks import registry


def test_every_handled_type_is_recommended_and_each_is_a_stripe_type(app):
    handled = set(registry.handled_types())  # registered when the app is made
    assert handled and handled <= set(stripe_event_types.RECOMMENDED)
    assert set(stripe_event_types.RECOMMENDED) <= stripe_event_types.EVENT_TYPES
