"""Stripe webhooks: verify and store (endpoint), queue (stripe_event), process (worker + handlers)."""
