"""``/connect/transfers``: transfers to connected accounts (list) and a new transfer (operator), confirmed
first with the amount and the account it goes to."""

from __future__ import annotations

import json

from flask import Blueprint, request, url_for

from admin.errors import ServiceError
from admin.security import role_required
from admin.services.connect import common, transfers
from admin.views.actions import labelled, sentence
from admin.views.confirm import JobConfirmation, confirmation
from admin.views.connect import _listing, go

bp = Blueprint("transfers", __name__)


@bp.get("/connect/transfers")
@role_required("viewer")
def index():
    return _listing(transfers.TransferFilter, transfers.transfers_page, "transfers")


def _new_transfer(form) -> transfers.NewTransfer:
    if form.get("metadata_json"):  # the confirmation posts the rows it showed
        try:
            metadata = json.loads(form["metadata_json"])
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            raise ServiceError("the confirmation was damaged; start again", field="metadata")
    else:
        metadata = transfers.metadata_rows(form)
    return transfers.NewTransfer(
        account=form.get("account") or "",
        amount=form.get("amount") or "",
        currency=form.get("currency") or "",
        transfer_group=form.get("transfer_group"),
        description=form.get("description"),
        metadata=metadata,
    )


@bp.post("/connect/transfers")
@role_required("operator")
def create():
    f = request.form
    back = f.get("back") if (f.get("back") or "").startswith("/connect") else url_for("transfers.index")
    try:
        proc = common.processor_of(f.get("ppid") or None)
        new = _new_transfer(f)
        checked = transfers.check_new(new)
        if f.get("step") != "run":
            fields = {
                "ppid": str(proc.id),
                "account": checked.account,
                "amount": new.amount,
                "currency": checked.currency,
                "transfer_group": checked.transfer_group or "",
                "description": checked.description or "",
                "metadata_json": json.dumps(checked.metadata),
                "action_key": f.get("action_key") or "",
                "back": back,
            }
            group = f" in transfer group {checked.transfer_group}" if checked.transfer_group else ""
            return confirmation(
                JobConfirmation(
                    title=f"Transfer {checked.money} to {checked.account}?",
                    detail=f"The money moves from {proc.name}'s Stripe balance to the connected account{group}. "
                    "Only reversing the transfer in Stripe brings it back.",
                    confirm=f"Yes, transfer {checked.money}",
                    action=url_for("transfers.create"),
                    back=back,
                    back_label="Back",
                    fields=fields,
                    target="#transfer-result",
                )
            )
        made = transfers.create_transfer(proc, new, action_key=f.get("action_key"))
    except ServiceError as err:
        return go(back, sentence(labelled(err, transfers.LABELS)), "error")
    return go(
        url_for("transfers.index", account=checked.account, ppid=proc.id),
        f"Transferred {checked.money} to {checked.account}: {made['id']}.",
    )
