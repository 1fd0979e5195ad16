"""Payouts of a connected account, and the balance transactions one payout includes, with totals per
currency (asked with the ``Stripe-Account`` header: they are the connected account's own objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from admin.errors import ServiceError, stripe_failure
from admin.listing import Filter, Page, processor_field
from admin.models import PaymentProcessor
from admin.services.connect import common
from admin.stripe_gateway import GatewayError

STATUSES = ("paid", "pending", "in_transit", "canceled", "failed")
MOST_TRANSACTIONS = 1000  # read for one payout on a page view (10 requests); the CLI says when there are more


@dataclass
class PayoutFilter(Filter):
    ppid: int | None = processor_field()
    account: str | None = field(default=None, metadata={"stripe_id": "account", "label": "Connected account"})
    status: str | None = field(default=None, metadata={"label": "Status", "choices": STATUSES})
    since: datetime | None = field(default=None, metadata={"label": "Created from"})
    until: datetime | None = field(default=None, metadata={"end": True, "label": "Created to (inclusive)"})

    LABELS: ClassVar[dict[str, str]] = {}

    def check(self, errors: dict[str, str]) -> None:
        if self.status and self.status not in STATUSES:
            errors["status"] = f"choose one of {', '.join(STATUSES)}"
            self.status = None


# The CSV of the list (/connect/payouts/export.csv) and of one payout's balance transactions.
CSV = (
    "id",
    "amount",
    "currency",
    "status",
    "arrival_date",
    "method",
    "description",
    "failure_message",
    "created",
)
TRANSACTION_CSV = ("id", "type", "amount", "fee", "net", "currency", "source", "description", "created")


def summary(po: dict) -> dict[str, Any]:
    return {
        "id": po.get("id"),
        "amount": po.get("amount"),
        "currency": po.get("currency"),
        "status": po.get("status"),
        "arrival_date": po.get("arrival_date"),
        "method": po.get("method"),
        "description": po.get("description"),
        "failure_message": po.get("failure_message"),
        "created": po.get("created"),
    }


def payouts_page(flt: PayoutFilter) -> Page[dict]:
    if not flt.account:
        return Page(rows=[], size=flt.size)
    return common.list_page(
        flt, "payouts", summary, what="payout list", stripe_account=flt.account, status=flt.status
    )


@dataclass
class PayoutTransactions:
    payout: dict
    rows: list[dict]
    totals: list[dict]  # per currency: count, amount, fee, net
    more: bool  # more than MOST_TRANSACTIONS: the totals are of the first ones only


def transaction(t: dict) -> dict[str, Any]:
    return {
        "id": t.get("id"),
        "type": t.get("type"),
        "amount": t.get("amount"),
        "fee": t.get("fee"),
        "net": t.get("net"),
        "currency": t.get("currency"),
        "source": t.get("source") if isinstance(t.get("source"), str) else (t.get("source") or {}).get("id"),
        "description": t.get("description"),
        "created": t.get("created"),
    }


def payout_transactions(proc: PaymentProcessor, account_id: str, payout_id: str) -> PayoutTransactions:
    account_id = common.check_id(account_id, "account", "account")
    payout_id = common.check_id(payout_id, "payout", "payout")
    try:
        po = common.gateway(proc).call("payouts", "retrieve", payout_id, stripe_account=account_id)
    except GatewayError as err:
        raise stripe_failure(err, f"payout of {account_id},", payout_id, with_request=True) from None
    rows, more = common.every(
        proc,
        "balance_transactions",
        what="balance transaction list",
        stripe_account=account_id,
        most=MOST_TRANSACTIONS,
        payout=payout_id,
    )
    rows = [transaction(t) for t in rows]
    # The payout itself is one of the transactions (type "payout"): the totals are of what it pays out.
    counted = [r for r in rows if r["type"] != "payout"]
    totals: dict[str, dict[str, Any]] = {}
    for r in counted:
        t = totals.setdefault(
            r["currency"], {"currency": r["currency"], "count": 0, "amount": 0, "fee": 0, "net": 0}
        )
        t["count"] += 1
        for k in ("amount", "fee", "net"):
            t[k] += int(r[k] or 0)
    return PayoutTransactions(
        payout=summary(po), rows=rows, totals=[totals[c] for c in sorted(totals)], more=more
    )


def need_account(account: str | None) -> str:
    if not account:
        raise ServiceError("give the connected account (--account acct_...)", field="account")
    return account
