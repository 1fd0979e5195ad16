"""The Connect services against the real localstripe (scripts/localstripe_connect.py teaches it accounts,
persons, transfers, payouts, balance transactions, the platform account and webhook endpoints): what
``make demo`` runs, end to end through the gateway."""

from __future__ import annotations

import pytest

from admin.errors import ServiceError
from admin.services.connect import accounts, common, payouts, transfers
from admin.services.settings import webhook_endpoints
from admin.services.settings.processors import check_connection

pytestmark = pytest.mark.localstripe


def test_account_transfer_payout_and_its_transactions(app, processor):
    made = accounts.create_account(processor, accounts.NewAccount(email="shop@example.org", country="gb"))
    acct = made["id"]
    assert made["country"] == "GB" and made["charges_enabled"] is False
    common.gateway(processor).call(
        "accounts.persons",
        "create",
        acct,
        params={"first_name": "Ada", "last_name": "Lovelace", "relationship": {"representative": True}},
    )
    detail = accounts.get_account(processor, acct)
    assert (
        "external_account" in detail.requirements["currently_due"]
        and detail.persons[0]["name"] == "Ada Lovelace"
    )
    tr = transfers.create_transfer(
        processor, transfers.NewTransfer(account=acct, amount="40", transfer_group="D1")
    )
    assert transfers.transfers_page(transfers.TransferFilter(account=acct)).rows[0]["id"] == tr["id"]
    assert accounts.get_account(processor, acct).balance == {"usd": {"available": 4000, "pending": 0}}
    po = common.gateway(processor).call(
        "payouts", "create", params={"amount": 4000, "currency": "usd"}, stripe_account=acct
    )
    listed = payouts.payouts_page(payouts.PayoutFilter(account=acct))
    assert [p["id"] for p in listed.rows] == [po["id"]] and listed.rows[0]["status"] == "paid"
    txns = payouts.payout_transactions(processor, acct, po["id"])
    assert txns.totals == [{"currency": "usd", "count": 1, "amount": 4000, "fee": 0, "net": 4000}]
    accounts.delete_account(processor, acct)
    with pytest.raises(ServiceError, match=f"there is no connected account {acct}"):
        accounts.get_account(processor, acct)


def test_test_connection_and_webhook_endpoints(app, processor):
    assert check_connection(processor).ok
    made = webhook_endpoints.create_endpoint(processor)
    assert made.ours and made.missing == []
    assert webhook_endpoints.set_disabled(processor, made.id, True).status == "disabled"
    webhook_endpoints.delete_endpoint(processor, made.id)
    assert made.id not in [e.id for e in webhook_endpoints.list_endpoints(processor).rows]
