"""Webhook handlers, one module per area; importing this package registers them all."""

from admin.webhooks.handlers import charges, checkout, customers, invoices, payment_intents, subscriptions  # noqa: F401
