"""services/core/audit.stripe_failed: the one record of a staff action's failed Stripe call; audit.about_user:
the one shape of an entry about a staff account."""

from __future__ import annotations

from sqlalchemy import select

from admin.errors import StripeFailure
from admin.extensions import db
from admin.models import AuditLog, Contact, User
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


def test_an_entry_about_a_staff_account_is_written_in_the_callers_transaction(app):
    user = User(email="staff@example.org", role="viewer")
    user.set_password("a long enough password")
    db.session.add(user)
    db.session.flush()
    audit.about_user("user.role", user, "role viewer -> operator", {"from": "viewer", "to": "operator"})
    audit.about_user(
        "user.sign_out",
        user,
        parameters={"address": "10.0.0.1"},
        email=False,
        actor=user.email,
        user_id=user.id,
    )
    audit.about_user("user.sign_in_failed", user, "wrong code", ok=False, actor="anonymous")
    assert db.session.new  # not committed on its own: the caller's change and its entries go together
    db.session.commit()
    entries = db.session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert [(e.object_type, e.object_id, e.parameters, e.result, e.actor) for e in entries] == [
        (
            "user",
            str(user.id),
            {"email": "staff@example.org", "from": "viewer", "to": "operator"},
            "ok",
            entries[0].actor,
        ),
        ("user", str(user.id), {"address": "10.0.0.1"}, "ok", "staff@example.org"),
        ("user", str(user.id), {"email": "staff@example.org"}, "error", "anonymous"),
    ]
