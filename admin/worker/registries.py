"""Fills the registries of what the workers run, explicitly, at app creation (``create_app``): the webhook
handler of each Stripe event type, the job kinds, the outbox task runners. Their modules only mark their
functions (``@handles``, ``@job_kind``, ``@runner``); nothing registers itself on import, and the
registries never import what they hold (no circle). A new handler, kind or runner module is added here.
"""

from __future__ import annotations

from admin.services.core import jobs, outbox
from admin.services.donations import receipts
from admin.services.events import jobs as event_jobs
from admin.services.intents import jobs as intent_jobs
from admin.services.notifications import delivery as notification_delivery
from admin.services.reconcile import fix as reconcile_fix
from admin.services.reconcile import scan as reconcile_scan
from admin.services.records import customers
from admin.services.records import jobs as record_jobs
from admin.webhooks import registry
from admin.webhooks.handlers import charges, checkout, invoices, payment_intents, subscriptions
from admin.webhooks.handlers import customers as customer_handlers

HANDLER_MODULES = (charges, checkout, customer_handlers, invoices, payment_intents, subscriptions)
JOB_KIND_MODULES = (event_jobs, intent_jobs, reconcile_fix, reconcile_scan, record_jobs)
OUTBOX_RUNNER_MODULES = (receipts, customers, notification_delivery)


def register_handlers() -> None:
    registry.register(*registry.handlers_in(*HANDLER_MODULES))


def register_job_kinds() -> None:
    jobs.register(*jobs.kinds_in(*JOB_KIND_MODULES))


def register_outbox_runners() -> None:
    outbox.register_runners(*outbox.runners_in(*OUTBOX_RUNNER_MODULES))


def register_all() -> None:
    register_handlers()
    register_job_kinds()
    register_outbox_runners()
