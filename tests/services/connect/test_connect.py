"""Stripe Connect services against ``ConnectWorld`` (fixtures3 objects behind ``responses``; localstripe has
no Connect): accounts, persons, transfers, payouts and the balance transactions of one payout."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog
from admin.services.connect import accounts, payouts, transfers


def _audit(action: str) -> AuditLog:
    return db.session.scalar(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id.desc()))


def test_accounts_list_in_pages_newest_first(app, connect_world, offline_processor):
    made = [connect_world.account(email=f"shop{n}@example.org", created=1_700_000_000 + n) for n in range(3)]
    first = accounts.accounts_page(accounts.AccountFilter(size=25))
    assert [r["id"] for r in first.rows] == [a["id"] for a in reversed(made)]
    assert first.next_after is None and first.extra["request_id"].startswith("req_world")
    flt, errors = accounts.AccountFilter.from_args({"size": "25"})
    flt.size = 2
    page1 = accounts.accounts_page(flt)
    assert len(page1.rows) == 2 and page1.next_after
    flt.after = page1.next_after
    page2 = accounts.accounts_page(flt)
    assert [r["id"] for r in page2.rows] == [made[0]["id"]] and page2.prev_before and not page2.next_after
    assert connect_world.updates == [] and all(s["account"] is None for s in connect_world.sent)


def test_create_account_checks_input_first_then_sends_one_keyed_request(
    app, connect_world, offline_processor
):
    for bad, field in (
        (accounts.NewAccount(email="nope"), "email"),
        (accounts.NewAccount(type="platinum"), "type"),
        (accounts.NewAccount(country="USA"), "country"),
    ):
        with pytest.raises(ServiceError) as err:
            accounts.create_account(offline_processor, bad)
        assert err.value.field == field
    assert connect_world.sent == []
    made = accounts.create_account(
        offline_processor,
        accounts.NewAccount(email="shop@example.org", type="custom", country="de"),
        action_key="a1",
    )
    sent = connect_world.sent[-1]
    assert sent["key"] == "paydesk-account-create-a1" and connect_world.updates[-1][1]["country"] == "DE"
    assert (
        connect_world.updates[-1][1]["capabilities[transfers][requested]"] == "true"
    )  # Stripe wants them asked
    assert made["email"] == "shop@example.org" and made["id"].startswith("acct_")
    entry = _audit("connect.account_create")
    assert entry.object_id == made["id"] and entry.stripe_request_id and entry.actor.startswith("cli:")


def test_create_account_stripe_refusal_has_message_and_request_id(app, connect_world, offline_processor):
    connect_world.refuse("POST", "/v1/accounts", 400, "Connect is not enabled on this account.")
    with pytest.raises(ServiceError, match=r"Stripe: Connect is not enabled .*\(Stripe request req_world"):
        accounts.create_account(offline_processor, accounts.NewAccount())
    assert _audit("connect.account_create").result == "error"


def test_retrieve_account_with_requirements_persons_and_balance(app, connect_world, offline_processor):
    acct = connect_world.account(email="shop@example.org", charges_enabled=True, payouts_enabled=False)
    connect_world.person(acct["id"], "Grace", "Hopper")
    detail = accounts.get_account(offline_processor, acct["id"])
    assert detail.summary["charges_enabled"] is True and detail.summary["payouts_enabled"] is False
    assert detail.requirements["currently_due"] == ["external_account", "tos_acceptance.date"]
    assert [p["name"] for p in detail.persons] == ["Grace Hopper"] and detail.persons[0]["roles"] == [
        "representative"
    ]
    assert "usd" in detail.balance
    balance_call = next(s for s in connect_world.sent if s["path"] == "/v1/balance")
    assert balance_call["account"] == acct["id"]  # the connected account's balance, not the platform's
    assert accounts.list_persons(offline_processor, acct["id"])[0]["email"] == "grace@example.org"
    with pytest.raises(ServiceError, match="there is no connected account acct_missing.*Stripe request"):
        accounts.get_account(offline_processor, "acct_missing")
    with pytest.raises(ServiceError, match="not an account id"):
        accounts.get_account(offline_processor, "cus_123")


def test_delete_in_test_mode_any_time(app, connect_world, offline_processor):
    acct = connect_world.account()
    connect_world.balances[acct["id"]] = {"available": [{"amount": 500, "currency": "usd"}], "pending": []}
    assert accounts.delete_account(offline_processor, acct["id"]).startswith("req_world")
    assert acct["id"] not in connect_world.objects and _audit("connect.account_delete").result == "ok"


def test_delete_in_live_mode_needs_a_zero_balance_and_shows_stripes_refusal(
    app, connect_world, offline_processor
):
    offline_processor.mode = "live"
    offline_processor.secret_key = "sk_live_mocked"
    db.session.commit()
    acct = connect_world.account()
    connect_world.balances[acct["id"]] = {
        "available": [{"amount": 500, "currency": "usd"}],
        "pending": [{"amount": 0, "currency": "usd"}],
    }
    with pytest.raises(ServiceError, match=r"still has a balance \(5.00 USD\)"):
        accounts.delete_account(offline_processor, acct["id"])
    assert connect_world.count("DELETE", "/v1/accounts") == 0
    connect_world.balances[acct["id"]] = {"available": [{"amount": 0, "currency": "usd"}], "pending": []}
    connect_world.refuse(
        "DELETE",
        f"/v1/accounts/{acct['id']}",
        400,
        "This account cannot be deleted because it has a non-zero balance.",
    )
    with pytest.raises(
        ServiceError, match=r"^Stripe: This account cannot be deleted .* \(Stripe request req_world"
    ):
        accounts.delete_account(offline_processor, acct["id"])
    assert accounts.delete_account(offline_processor, acct["id"])


def test_transfer_is_checked_first_then_created_with_key_group_and_metadata(
    app, connect_world, offline_processor
):
    acct = connect_world.account()
    bad = [
        (transfers.NewTransfer(account="acct_x", amount="-5"), "amount"),
        (transfers.NewTransfer(account="acct_x", amount="0"), "amount"),
        (transfers.NewTransfer(account="acct_x", amount="1.234"), "amount"),
        (transfers.NewTransfer(account="acct_x", amount="5", currency="xyz"), "currency"),
        (transfers.NewTransfer(account="ch_1", amount="5"), "account"),
        (transfers.NewTransfer(account="acct_x", amount="5", metadata={"k" * 41: "v"}), "metadata"),
    ]
    for new, field in bad:
        with pytest.raises(ServiceError) as err:
            transfers.create_transfer(offline_processor, new)
        assert err.value.field == field, (new, err.value.message)
    assert connect_world.sent == []
    tr = transfers.create_transfer(
        offline_processor,
        transfers.NewTransfer(
            account=acct["id"],
            amount="12.50",
            currency="EUR",
            transfer_group="ORDER-7",
            metadata={"campaign": "spring"},
        ),
        action_key="t1",
    )
    form = connect_world.updates[-1][1]
    assert (form["amount"], form["currency"], form["destination"], form["transfer_group"]) == (
        "1250",
        "eur",
        acct["id"],
        "ORDER-7",
    )
    assert form["metadata"] == {"campaign": "spring"}
    assert connect_world.sent[-1]["key"] == f"paydesk-transfer-{acct['id']}-t1"
    entry = _audit("connect.transfer_create")
    assert entry.object_id == tr["id"] and entry.parameters["amount"] == 1250 and entry.stripe_request_id
    listed = transfers.transfers_page(transfers.TransferFilter(account=acct["id"]))
    assert [r["id"] for r in listed.rows] == [tr["id"]]
    assert transfers.transfers_page(transfers.TransferFilter(transfer_group="OTHER")).rows == []


def test_transfer_retried_after_a_5xx_sends_the_same_key(app, connect_world, offline_processor):
    acct = connect_world.account()
    connect_world.fail(r"^/v1/transfers$", [503], method="POST")
    transfers.create_transfer(
        offline_processor, transfers.NewTransfer(account=acct["id"], amount="3"), action_key="again"
    )
    keys = [s["key"] for s in connect_world.sent if s["path"] == "/v1/transfers"]
    assert keys == ["paydesk-transfer-" + acct["id"] + "-again"] * 2


def test_transfer_refused_by_stripe(app, connect_world, offline_processor):
    connect_world.refuse(
        "POST",
        "/v1/transfers",
        400,
        "You have insufficient funds in your Stripe account.",
        code="balance_insufficient",
    )
    acct = connect_world.account()
    with pytest.raises(ServiceError, match=r"insufficient funds .*\(Stripe request req_world"):
        transfers.create_transfer(offline_processor, transfers.NewTransfer(account=acct["id"], amount="3"))
    assert _audit("connect.transfer_create").result == "error"


def test_payouts_and_one_payouts_transactions_with_totals(app, connect_world, offline_processor):
    acct = connect_world.account()
    po = connect_world.payout(acct["id"], amount=3400)
    connect_world.payout(acct["id"], amount=100, status="failed")
    connect_world.transaction(acct["id"], po["id"], amount=2000, fee=88)
    connect_world.transaction(acct["id"], po["id"], amount=1500, fee=63)
    connect_world.transaction(acct["id"], po["id"], amount=1000, fee=0, currency="eur", type="transfer")
    connect_world.transaction(acct["id"], po["id"], amount=-3349, type="payout")
    page = payouts.payouts_page(payouts.PayoutFilter(account=acct["id"]))
    assert len(page.rows) == 2
    assert [
        r["status"]
        for r in payouts.payouts_page(payouts.PayoutFilter(account=acct["id"], status="failed")).rows
    ] == ["failed"]
    assert all(s["account"] == acct["id"] for s in connect_world.sent)
    txns = payouts.payout_transactions(offline_processor, acct["id"], po["id"])
    assert len(txns.rows) == 4 and not txns.more
    assert txns.totals == [
        {"currency": "eur", "count": 1, "amount": 1000, "fee": 0, "net": 1000},
        {"currency": "usd", "count": 2, "amount": 3500, "fee": 151, "net": 3349},
    ]
    with pytest.raises(ServiceError, match="there is no payout of .* po_missing"):
        payouts.payout_transactions(offline_processor, acct["id"], "po_missing")
