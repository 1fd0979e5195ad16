"""Side effects after the commit: retried when the failure may pass, reported at once when it cannot."""

from __future__ import annotations

import responses
from sqlalchemy import select
from stripe_world import OneOff, StripeWorld

from admin.extensions import db
from admin.models import OutboxTask
from admin.webhooks.ingest import store_event
from admin.webhooks.worker import run_once


def metadata_task() -> OutboxTask:
    return db.session.scalar(select(OutboxTask).where(OutboxTask.kind == "customer_metadata"))


def test_customer_metadata_push_is_retried_while_stripe_is_down(app, offline_processor):
    app.config.update(WORKER_BACKOFF_BASE=3600)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        pay = OneOff(world)
        world.fail(rf"/v1/customers/{pay.customer['id']}$", [503] * 4, method="POST")  # a whole gateway call
        store_event(offline_processor, pay.event("charge.succeeded"))
        run_once()
    task = metadata_task()
    assert task.status == "queued" and task.attempts == 1
    assert "customers.update" in task.last_error and "http=503" in task.last_error


def test_customer_metadata_push_for_a_deleted_customer_is_an_error_at_once(app, offline_processor):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        pay = OneOff(world)
        world.fail(rf"/v1/customers/{pay.customer['id']}$", [404], method="POST")  # deleted meanwhile
        store_event(offline_processor, pay.event("charge.succeeded"))
        run_once()
    task = metadata_task()
    assert task.status == "error" and task.attempts == 1 and "No such object" in task.last_error
