"""``/payments``: charges and refunds, totals per currency, CSV export of exactly what is filtered; one
payment's page; refunding a charge (confirm the amount, then refund exactly what was confirmed)."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for

from admin.errors import ServiceError
from admin.extensions import db
from admin.htmx import is_partial
from admin.listing import page_or_first
from admin.models import Payment
from admin.security import role_required
from admin.services.core import audit
from admin.services.core.confirmations import ConfirmationRefused
from admin.services.payments import refunds
from admin.services.records import common as rec
from admin.services.settings.processors import get_processor, list_processors
from admin.views.actions import action_response, labelled
from admin.views.confirm import is_run, money_confirmation, take_action
from admin.views.export import csv_response

bp = Blueprint("payments", __name__)


@bp.get("/payments")
@role_required("viewer")
def index():
    flt, errors = rec.PaymentFilter.from_args(request.args)
    page = page_or_first(rec.payment_page, flt, errors)
    totals = rec.payment_summary(flt)
    data = {
        "flt": flt,
        "errors": errors,
        "page": page,
        "counts": rec.payment_status_counts(flt),
        "totals": totals.value,
        "totals_as_of": totals.as_of,
    }
    if is_partial():
        return render_template("payments/_results.html", **data)
    return render_template("payments/index.html", processors=list_processors(), **data)


@bp.get("/payments/export.csv")
@role_required("viewer")
def export():
    flt, _ = rec.PaymentFilter.from_args(request.args)
    return csv_response("payments", rec.PAYMENT_CSV, rec.payment_rows(flt), rec.payment_csv_row)


def money_context(c) -> dict:
    """What ``payments/_money.html`` shows for a contribution: what is left to refund of each charge."""
    left = {
        p.id: refunds.refundable(p)
        for p in c.payments
        if not p.refund_id and p.amount > 0 and p.status == "Completed" and p.charge_id
    }
    return {"c": c, "refundable": left}


def _payment_or_404(payment_id: int) -> Payment:
    pay = db.session.get(Payment, payment_id)
    if pay is None:
        abort(404)
    return pay


@bp.get("/payments/<id:payment_id>")
@role_required("viewer")
def show(payment_id: int):
    pay = _payment_or_404(payment_id)
    return render_template(
        "payments/show.html",
        p=pay,
        only=pay.id,
        **money_context(pay.contribution),
        history=audit.for_object("contribution", str(pay.contribution_id)),
    )


REFUND = "payment.refund"  # a single action confirmed through views/confirm.py


@bp.post("/payments/<id:payment_id>/refund")
@role_required("operator")
def refund(payment_id: int):
    """Without ``step=run``: check the refund and ask to confirm it (amount, what stays refundable), keeping
    exactly what was shown on the server; with it and that confirmation's token: refund what was stored (never
    values posted again) and answer the contribution's payments, the negative one among them."""
    pay = _payment_or_404(payment_id)
    back = url_for("payments.show", payment_id=pay.id)
    if not is_run():
        try:
            plan = refunds.plan_refund(refunds.RefundRequest.from_form(request.form, payment_id=pay.id))
        except ServiceError as err:
            return action_response("_message.html", back, labelled(err, refunds.LABELS), "error")
        return money_confirmation(
            "Refund",
            plan,
            kind=REFUND,
            processor_id=pay.processor_id,
            action=url_for("payments.refund", payment_id=pay.id),
            back=back,
            back_label=f"Payment #{pay.id}",
            target=f"#refund-result-{pay.id}",
            run_target="#payment-money",
            run_swap="outerHTML",
        )
    try:
        row = take_action(REFUND)
    except ConfirmationRefused as err:
        return _money_answer(payment_id, back, err.message, "error", status=400)
    req = refunds.RefundRequest(**row.params)
    try:
        out = refunds.refund(get_processor(row.processor_id), req)
    except ServiceError as err:
        db.session.rollback()
        return _money_answer(req.payment_id, back, labelled(err, refunds.LABELS), "error")
    db.session.expire_all()
    return _money_answer(req.payment_id, back, out.message, "success")


def _money_answer(payment_id: int, back: str, message: str, tone: str, status: int | None = None):
    """The contribution's payments (what the refund's button swaps) with what happened."""
    return action_response(
        "payments/_money.html",
        back,
        message,
        tone,
        status=status,
        **money_context(db.session.get_one(Payment, payment_id).contribution),
    )
