"""``connect accounts|persons|transfers|payouts`` (``ConnectWorld`` behind ``responses``)."""

from __future__ import annotations

import json


def _json(runner, *args):
    result = runner.invoke(args=[*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_accounts_create_list_get_and_delete(app, runner, connect_world, offline_processor):
    made = runner.invoke(
        args=["connect", "accounts", "create", "--email", "shop@example.org", "--country", "gb"]
    )
    assert made.exit_code == 0, made.output
    acct_id = made.output.strip()
    assert acct_id.startswith("acct_") and connect_world.updates[-1][1]["country"] == "GB"
    rows = _json(runner, "connect", "accounts", "list")
    assert [r["id"] for r in rows] == [acct_id] and rows[0]["charges_enabled"] is False
    table = runner.invoke(args=["connect", "accounts", "list"]).output
    assert acct_id in table and "currently_due" in table
    connect_world.person(acct_id)
    got = _json(runner, "connect", "accounts", "get", acct_id)
    assert got["requirements"]["currently_due"] and got["persons"][0]["name"] == "Grace Hopper"
    assert _json(runner, "connect", "persons", acct_id)[0]["roles"] == ["representative"]
    no = runner.invoke(args=["connect", "accounts", "delete", acct_id], input="n\n")
    assert no.exit_code == 1 and connect_world.count("DELETE", "/v1/accounts") == 0
    yes = runner.invoke(args=["connect", "accounts", "delete", acct_id, "--yes"])
    assert yes.exit_code == 0 and f"deleted {acct_id}" in yes.output


def test_transfers_create_and_list(app, runner, connect_world, offline_processor):
    acct = connect_world.account()
    made = runner.invoke(
        args=[
            "connect",
            "transfers",
            "create",
            "--account",
            acct["id"],
            "--amount",
            "12.50",
            "--transfer-group",
            "G1",
            "--metadata",
            "campaign=spring",
        ],
        input="y\n",
    )
    assert made.exit_code == 0, made.output
    assert "Transfer 12.50 USD to " + acct["id"] in made.output
    rows = _json(runner, "connect", "transfers", "list", "--account", acct["id"])
    assert (
        rows[0]["amount"] == 1250
        and rows[0]["transfer_group"] == "G1"
        and rows[0]["metadata"] == {"campaign": "spring"}
    )
    assert "12.50 USD" in runner.invoke(args=["connect", "transfers", "list"]).output


def test_bad_input_is_one_line_before_stripe(app, runner, connect_world, offline_processor):
    for args, message in (
        (["connect", "transfers", "create", "--account", "acct_1", "--amount", "-3", "--yes"], "Error: "),
        (
            ["connect", "transfers", "create", "--account", "cus_1", "--amount", "3", "--yes"],
            "not an account id",
        ),
        (
            [
                "connect",
                "transfers",
                "create",
                "--account",
                "acct_1",
                "--amount",
                "3",
                "--metadata",
                "x",
                "--yes",
            ],
            "'x' is not key=value",
        ),
        (["connect", "accounts", "create", "--country", "Narnia"], "two-letter country code"),
        (["connect", "transfers", "list", "--account", "ch_1"], "--account: 'ch_1' is not an account id"),
        (["connect", "payouts", "--account", "acct_1", "--payout", "tr_1"], "not a payout id"),
    ):
        result = runner.invoke(args=args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert connect_world.sent == []


def test_stripe_errors_carry_message_and_request_id(app, runner, connect_world, offline_processor):
    connect_world.refuse(
        "GET", "/v1/accounts/acct_gone", 404, "No such account: 'acct_gone'", code="resource_missing"
    )
    result = runner.invoke(args=["connect", "accounts", "get", "acct_gone"])
    assert result.exit_code == 1 and "there is no connected account acct_gone" in result.output
    assert "(Stripe request req_world" in result.output


def test_payouts_and_one_payouts_transactions(app, runner, connect_world, offline_processor):
    acct = connect_world.account()
    po = connect_world.payout(acct["id"], amount=1850)
    connect_world.transaction(acct["id"], po["id"], amount=2000, fee=150)
    rows = _json(runner, "connect", "payouts", "--account", acct["id"])
    assert [r["id"] for r in rows] == [po["id"]]
    data = _json(runner, "connect", "payouts", "--account", acct["id"], "--payout", po["id"])
    assert data["totals"] == [{"currency": "usd", "count": 1, "amount": 2000, "fee": 150, "net": 1850}]
    table = runner.invoke(args=["connect", "payouts", "--account", acct["id"], "--payout", po["id"]]).output
    assert "20.00 USD" in table and "18.50 USD" in table
