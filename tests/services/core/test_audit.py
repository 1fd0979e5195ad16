"""services/core/audit.stripe_failed: the one record of a staff action's failed Stripe call."""

from __future__ import annotations

from sqlalchemy import select

from admin.errors import StripeFailure
from admin.extensions import db
from admin.models import AuditLog, Contact
from admin.services.core import audit
from admin.stripe_gateway import GatewayError


def test_a_failed_stripe_call_is_rolled_back_audited_and_translated(app, offline_processor):
    db.session.add(
        Contact(display_name="Half written", email="half@example.org")
    )  # the action's unfinished work
    err = GatewayError(
        "No such product: 'prod_1'", http_status=404, request_id="req_5", operation="products.update"
    )
    failure = audit.stripe_failed(
        "product.update", err, processor_id=offline_processor.id, object_type="product", object_id="prod_1"
    )
    assert isinstance(failure, StripeFailure) and failure.request_id == "req_5"
    assert failure.message == "Stripe: there is no product prod_1 on this account (or it was deleted)"
    db.session.rollback()  # the entry was committed on its own
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "product.update"))
    assert (entry.action, entry.result, entry.object_id, entry.stripe_request_id) == (
        "product.update",
        "error",
        "prod_1",
        "req_5",
    )
    assert "No such product" in entry.message and entry.processor_id == offline_processor.id
    assert db.session.scalar(select(Contact)) is None
