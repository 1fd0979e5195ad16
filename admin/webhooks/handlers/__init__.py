"""Webhook handlers, one module per area (registered at app creation: ``admin.worker.registries``)."""

from admin.webhooks.handlers import charges, checkout, customers, invoices, payment_intents, subscriptions  # noqa: F401
