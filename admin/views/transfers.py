"""``/connect/transfers``: transfers to connected accounts (list) and a new transfer (operator), confirmed
first with the amount and the account it goes to (the one confirmation: the transfer made is the one
stored when it was shown, never values posted again)."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, request, url_for

from admin.errors import ServiceError
from admin.security import role_required
from admin.services.connect import common, transfers
from admin.services.core.confirmations import ConfirmationRefused
from admin.services.core.idempotency import new_action_key
from admin.services.payments.common import form_metadata
from admin.views.actions import labelled, sentence
from admin.views.confirm import JobConfirmation, confirmation, is_run, refused, take_action
from admin.views.connect import _listing, export_listing, go

bp = Blueprint("transfers", __name__)

KIND = "connect.transfer_create"


@bp.get("/connect/transfers")
@role_required("viewer")
def index():
    return _listing(transfers.TransferFilter, transfers.transfers_page, "transfers")


@bp.get("/connect/transfers/export.csv")
@role_required("viewer")
def export():
    return export_listing(
        transfers.TransferFilter,
        transfers.transfers_page,
        "transfers",
        transfers.CSV,
        "transfers.index",
        money=("amount", "amount_reversed"),
    )


def _new_transfer(form) -> transfers.NewTransfer:
    return transfers.NewTransfer(
        account=form.get("account") or "",
        amount=form.get("amount") or "",
        currency=form.get("currency") or "",
        transfer_group=form.get("transfer_group"),
        description=form.get("description"),
        metadata=form_metadata(form),
    )


@bp.post("/connect/transfers")
@role_required("operator")
def create():
    f = request.form
    back = request.values.get("back") or ""
    back = back if back.startswith("/connect") else url_for("transfers.index")
    try:
        if is_run():
            try:
                row = take_action(KIND)
            except ConfirmationRefused as err:
                return refused(err, back)
            proc = common.processor_of(row.processor_id)
            stored = dict(row.params)
            key = stored.pop("action_key", None)
            new = transfers.NewTransfer(**stored)
            checked = transfers.check_new(new)
            made = transfers.create_transfer(proc, new, action_key=key)
        else:
            proc = common.processor_of(f.get("ppid") or None)
            new = _new_transfer(f)
            checked = transfers.check_new(new)
            new.metadata = checked.metadata
            group = f" in transfer group {checked.transfer_group}" if checked.transfer_group else ""
            return confirmation(
                JobConfirmation(
                    title=f"Transfer {checked.money} to {checked.account}?",
                    detail=f"The money moves from {proc.name}'s Stripe balance to the connected account{group}. "
                    "Only reversing the transfer in Stripe brings it back.",
                    confirm=f"Yes, transfer {checked.money}",
                    action=url_for("transfers.create", back=back),
                    back=back,
                    back_label="Back",
                    kind=KIND,
                    params={**asdict(new), "action_key": new_action_key()},
                    processor_id=proc.id,
                    single=True,
                    attention=True,
                    target="#transfer-result",
                )
            )
    except ServiceError as err:
        return go(back, sentence(labelled(err, transfers.LABELS)), "error")
    return go(
        url_for("transfers.index", account=checked.account, ppid=proc.id),
        f"Transferred {checked.money} to {checked.account}: {made['id']}.",
    )
