"""Transfers from the platform's balance to a connected account: create (amount, currency, transfer group,
metadata) and list (by account, by transfer group). Metadata is read and checked as for every payment operation
(``services/payments/common``: a form's rows, the CLI's ``key=value``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from admin.errors import ServiceError, check_text
from admin.listing import Filter, Page, processor_field
from admin.models import PaymentProcessor
from admin.money import format_money, parse_money, stripe_currency
from admin.services.connect import common
from admin.services.core import audit
from admin.services.core.idempotency import idempotency_key
from admin.services.payments.common import metadata_rows
from admin.stripe_gateway import GatewayError


@dataclass
class TransferFilter(Filter):
    ppid: int | None = processor_field()
    account: str | None = field(default=None, metadata={"stripe_id": "account", "label": "Connected account"})
    transfer_group: str | None = field(default=None, metadata={"label": "Transfer group"})
    since: datetime | None = field(default=None, metadata={"label": "Created from"})
    until: datetime | None = field(default=None, metadata={"end": True, "label": "Created to (inclusive)"})

    LABELS: ClassVar[dict[str, str]] = {}


# The CSV of the list (/connect/transfers/export.csv): every field of the rows.
CSV = (
    "id",
    "account",
    "amount",
    "currency",
    "amount_reversed",
    "transfer_group",
    "description",
    "metadata",
    "created",
)


def summary(tr: dict) -> dict[str, Any]:
    return {
        "id": tr.get("id"),
        "account": tr.get("destination"),
        "amount": tr.get("amount"),
        "currency": tr.get("currency"),
        "amount_reversed": tr.get("amount_reversed") or 0,
        "transfer_group": tr.get("transfer_group"),
        "description": tr.get("description"),
        "metadata": tr.get("metadata") or {},
        "created": tr.get("created"),
    }


def transfers_page(flt: TransferFilter) -> Page[dict]:
    return common.list_page(
        flt,
        "transfers",
        summary,
        what="transfer list",
        destination=flt.account,
        transfer_group=flt.transfer_group,
    )


@dataclass
class NewTransfer:
    account: str = ""
    amount: str = ""  # major units, as typed ("12.50")
    currency: str = "usd"
    transfer_group: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


LABELS = {
    "account": "Connected account",
    "amount": "Amount",
    "currency": "Currency",
    "transfer_group": "Transfer group",
    "description": "Description",
    "metadata": "Metadata",
}


@dataclass
class CheckedTransfer:
    account: str
    amount: int
    currency: str
    transfer_group: str | None
    description: str | None
    metadata: dict[str, str]

    @property
    def money(self) -> str:
        return format_money(self.amount, self.currency)

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"amount": self.amount, "currency": self.currency, "destination": self.account}
        if self.transfer_group:
            p["transfer_group"] = self.transfer_group
        if self.description:
            p["description"] = self.description
        if self.metadata:
            p["metadata"] = self.metadata
        return p


def check_new(new: NewTransfer) -> CheckedTransfer:
    """Everything Stripe would refuse, refused first, each naming its field."""
    account = common.check_id(new.account, "account", "account")
    code = (new.currency or "").strip().lower()
    cur = stripe_currency(code)
    if cur is None:
        raise ServiceError(
            f"{code[:10].upper() or 'that'} is not a currency Stripe takes (usd, eur, gbp, ...)",
            field="currency",
        )
    try:
        amount = parse_money(new.amount or "", code)
    except ValueError as err:
        raise ServiceError(str(err), field="amount") from None
    if amount <= 0:
        raise ServiceError("a transfer moves a positive amount", field="amount")
    if amount > cur.max_amount:
        raise ServiceError(f"at most {format_money(cur.max_amount, code)} in one transfer", field="amount")
    if amount % cur.step:
        raise ServiceError(
            f"{cur.upper} amounts are whole multiples of {format_money(cur.step, code)}", field="amount"
        )
    group = check_text(new.transfer_group, "Transfer group", "transfer_group") or None
    if group and len(group) > 255:
        raise ServiceError("at most 255 characters", field="transfer_group")
    description = check_text(new.description, "Description", "description") or None
    if description and len(description) > 500:
        raise ServiceError("at most 500 characters", field="description")
    return CheckedTransfer(
        account=account,
        amount=amount,
        currency=code,
        transfer_group=group,
        description=description,
        metadata=metadata_rows((new.metadata or {}).keys(), (new.metadata or {}).values()),
    )


def create_transfer(proc: PaymentProcessor, new: NewTransfer, *, action_key: str | None = None) -> dict:
    checked = check_new(new)
    key = idempotency_key("transfer", checked.account, action_key)
    shown = {
        "account": checked.account,
        "amount": checked.amount,
        "currency": checked.currency,
        "transfer_group": checked.transfer_group,
        "metadata": checked.metadata or None,
    }
    try:
        tr = common.gateway(proc).create("transfers", checked.params(), idempotency_key=key)
    except GatewayError as err:
        raise audit.stripe_failed(
            "connect.transfer_create",
            err,
            processor_id=proc.id,
            object_type="transfer",
            parameters=shown,
            with_request=True,
        ) from None
    audit.record(
        "connect.transfer_create",
        object_type="transfer",
        object_id=tr["id"],
        processor_id=proc.id,
        parameters=shown,
        stripe_request_id=tr.request_id,
        commit=True,
    )
    return summary(tr)
