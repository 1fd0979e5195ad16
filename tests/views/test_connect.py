"""``/connect``: connected accounts, transfers and payouts pages (``ConnectWorld`` behind ``responses``)."""

from __future__ import annotations

import re

import pytest
from confirm_support import confirm
from sqlalchemy import select

from admin.extensions import db
from admin.models import AuditLog
from admin.services.connect import accounts

HX = {"HX-Request": "true"}


def test_accounts_list_filters_and_pages(app, client, auth, connect_world, offline_processor):
    for n in range(3):
        connect_world.account(email=f"shop{n}@example.org", created=1_700_000_000 + n * 86400)
    auth.login("viewer@example.org", "viewer")
    page = client.get("/connect").get_data(as_text=True)
    assert (
        page.count("@example.org</td>") == 3 and "Create a connected account" not in page
    )  # viewers see no form
    partial = client.get("/connect?since=2023-11-15&until=2023-11-15", headers=HX).get_data(as_text=True)
    assert "shop1@example.org" in partial and "shop0@" not in partial and "<html" not in partial
    bad = client.get("/connect?since=nope").get_data(as_text=True)
    assert "Created from" in bad and "is not a date" in bad


def test_a_stripe_failure_is_said_on_the_page(app, client, auth, connect_world, offline_processor):
    connect_world.refuse("GET", "/v1/accounts", 400, "Your account is not a Connect platform.")
    auth.login("viewer@example.org", "viewer")
    resp = client.get("/connect")
    text = resp.get_data(as_text=True)
    assert (
        resp.status_code == 200
        and "Stripe: Your account is not a Connect platform. (Stripe request req_" in text
    )


def test_operator_creates_an_account_and_sees_it(app, client, auth, connect_world, offline_processor):
    auth.login("operator@example.org", "operator")
    token = auth.token("/connect")
    resp = client.post(
        "/connect/accounts",
        data={
            "csrf_token": token,
            "ppid": offline_processor.id,
            "email": "shop@example.org",
            "type": "express",
            "country": "us",
            "action_key": "k9",
        },
        follow_redirects=True,
    )
    text = resp.get_data(as_text=True)
    assert (
        "Created connected account acct_" in text and "Currently due" in text and "external_account" in text
    )
    assert [s["key"] for s in connect_world.sent if s["method"] == "POST"] == ["paydesk-account-create-k9"]
    bad = client.post(
        "/connect/accounts",
        data={"csrf_token": token, "type": "custom", "country": "Narnia"},
        follow_redirects=True,
    )
    assert "Country: give the two-letter country code" in bad.get_data(as_text=True)


def test_account_page_shows_requirements_persons_balance(app, client, auth, connect_world, offline_processor):
    acct = connect_world.account(email="shop@example.org", charges_enabled=True)
    connect_world.person(acct["id"], "Ada", "Lovelace")
    connect_world.balances[acct["id"]] = {"available": [{"amount": 1234, "currency": "usd"}], "pending": []}
    auth.login("viewer@example.org", "viewer")
    text = client.get(f"/connect/accounts/{acct['id']}").get_data(as_text=True)
    assert "Ada Lovelace" in text and "tos_acceptance.date" in text and "12.34 USD available" in text
    assert "Delete this account" not in text and "New transfer" not in text
    missing = client.get("/connect/accounts/acct_missing")
    assert missing.status_code == 404 and "there is no connected account acct_missing" in missing.get_data(
        as_text=True
    )


def test_admin_deletes_an_account_after_confirming(app, client, auth, connect_world, offline_processor):
    acct = connect_world.account()
    auth.login("admin@example.org", "admin")
    token = auth.token("/connect")
    url = f"/connect/accounts/{acct['id']}/delete"
    ask = client.post(url, headers=HX, data={"csrf_token": token, "ppid": offline_processor.id})
    assert f"Delete connected account {acct['id']}?" in ask.get_data(as_text=True)
    assert connect_world.count("DELETE", "/v1/accounts") == 0
    bare = client.post(
        url, headers=HX, data={"csrf_token": token, "ppid": offline_processor.id, "step": "run"}
    )
    assert bare.status_code == 400 and "confirm first" in bare.get_data(as_text=True)
    assert connect_world.count("DELETE", "/v1/accounts") == 0
    done = confirm(client, url, ask, {"csrf_token": token}, headers=HX)
    assert done.headers["HX-Redirect"].startswith("/connect")
    assert connect_world.count("DELETE", "/v1/accounts") == 1
    assert f"Deleted connected account {acct['id']}" in client.get("/connect").get_data(as_text=True)
    again = confirm(client, url, ask, {"csrf_token": token}, headers=HX)
    assert again.status_code == 400 and "used already" in again.get_data(as_text=True)
    assert connect_world.count("DELETE", "/v1/accounts") == 1


def test_an_account_delete_confirmation_deletes_the_account_it_showed(
    app, client, auth, connect_world, offline_processor
):
    shown, other = connect_world.account(), connect_world.account()
    auth.login("admin@example.org", "admin")
    token = auth.token("/connect")
    ask = client.post(
        f"/connect/accounts/{shown['id']}/delete",
        headers=HX,
        data={"csrf_token": token, "ppid": offline_processor.id},
    )
    # its token posted to the other account's address (and its id alongside): the shown one goes
    confirm(
        client,
        f"/connect/accounts/{other['id']}/delete",
        ask,
        {"csrf_token": token, "account": other["id"]},
        headers=HX,
    )
    deleted = [s["path"] for s in connect_world.sent if s["method"] == "DELETE"]
    assert deleted == [f"/v1/accounts/{shown['id']}"]


def _transfer_form(token: str, ppid: int, account: str) -> dict:
    """The new-transfer form: 25.00 USD to ``account`` in group G7, metadata fund=roof (and an empty row)."""
    return {
        "csrf_token": token,
        "ppid": ppid,
        "account": account,
        "amount": "25",
        "currency": "usd",
        "transfer_group": "G7",
        "metadata_key": ["fund", ""],
        "metadata_value": ["roof", ""],
    }


def test_transfer_confirmed_with_money_then_made_once(app, client, auth, connect_world, offline_processor):
    acct = connect_world.account()
    auth.login("operator@example.org", "operator")
    token = auth.token("/connect/transfers")
    form = _transfer_form(token, offline_processor.id, acct["id"])
    ask = client.post("/connect/transfers", data=form, headers=HX).get_data(as_text=True)
    assert f"Transfer 25.00 USD to {acct['id']}?" in ask and connect_world.count("POST", "/v1/transfers") == 0
    assert 'name="step" value="run"' in ask and 'name="amount"' not in ask

    # re-posting the values with step=run, or a forged token: refused, nothing sent to Stripe
    for bare in ({**form, "step": "run"}, {**form, "step": "run", "token": "forged"}):
        refused = client.post("/connect/transfers", data=bare, headers=HX)
        assert refused.status_code == 400 and "Nothing was started" in refused.get_data(as_text=True)
    assert connect_world.count("POST", "/v1/transfers") == 0

    # the confirmation's token with a bigger amount and another account posted alongside: what it showed
    done = confirm(
        client,
        "/connect/transfers",
        ask,
        {"csrf_token": token, "amount": "9999", "account": "acct_other"},
        headers=HX,
    )
    assert "HX-Redirect" in done.headers
    again = confirm(client, "/connect/transfers", ask, {"csrf_token": token}, headers=HX)  # a double click
    assert again.status_code == 400 and "used already" in again.get_data(as_text=True)
    sent = [s for s in connect_world.sent if s["path"] == "/v1/transfers" and s["method"] == "POST"]
    # the key is the confirmation's own (stored with what it showed), not one a form posts
    assert len(sent) == 1 and re.fullmatch(f"paydesk-transfer-{acct['id']}-[0-9a-f]{{32}}", sent[0]["key"])
    assert connect_world.updates[-1][1]["metadata"] == {"fund": "roof"}
    listing = client.get(f"/connect/transfers?account={acct['id']}").get_data(as_text=True)
    assert "25.00 USD" in listing and "G7" in listing and "roof" in listing
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "connect.transfer_create"))
    assert entry.actor == "operator@example.org" and entry.stripe_request_id


def test_a_transfer_confirmation_is_its_users_only(app, client, auth, connect_world, offline_processor):
    acct = connect_world.account()
    auth.login("operator@example.org", "operator")
    form = {
        "csrf_token": auth.token("/connect/transfers"),
        "ppid": offline_processor.id,
        "account": acct["id"],
        "amount": "5",
        "currency": "usd",
    }
    ask = client.post("/connect/transfers", data=form, headers=HX).get_data(as_text=True)
    auth.logout()
    auth.login("admin@example.org", "admin")
    other = confirm(
        client, "/connect/transfers", ask, {"csrf_token": auth.token("/connect/transfers")}, headers=HX
    )
    assert other.status_code == 400 and "shown to someone else" in other.get_data(as_text=True)
    assert connect_world.count("POST", "/v1/transfers") == 0


def test_transfer_bad_input_refused_before_confirmation(app, client, auth, connect_world, offline_processor):
    auth.login("operator@example.org", "operator")
    token = auth.token("/connect/transfers")
    resp = client.post(
        "/connect/transfers",
        follow_redirects=True,
        data={"csrf_token": token, "account": "acct_1", "amount": "0", "currency": "usd"},
    )
    assert "Amount: a transfer moves a positive amount" in resp.get_data(as_text=True)
    # metadata read as on every payment form: a key given twice is refused, not silently the last one
    twice = _transfer_form(token, offline_processor.id, "acct_1")
    twice.update(metadata_key=["fund", "fund"], metadata_value=["roof", "bells"])
    resp = client.post("/connect/transfers", follow_redirects=True, data=twice)
    assert "Metadata: the key &#39;fund&#39; is given twice" in resp.get_data(as_text=True)
    assert connect_world.count("POST", "/v1/transfers") == 0  # (the lists on the pages are GETs)


def test_payouts_and_a_payouts_transactions(app, client, auth, connect_world, offline_processor):
    acct = connect_world.account()
    po = connect_world.payout(acct["id"], amount=1850)
    connect_world.transaction(acct["id"], po["id"], amount=2000, fee=150)
    auth.login("viewer@example.org", "viewer")
    assert "Choose a connected account." in client.get("/connect/payouts").get_data(as_text=True)
    listing = client.get(f"/connect/payouts?account={acct['id']}").get_data(as_text=True)
    assert po["id"] in listing and "18.50 USD" in listing
    one = client.get(f"/connect/payouts/{po['id']}?account={acct['id']}").get_data(as_text=True)
    assert "20.00 USD" in one and "1.50 USD" in one and "What this payout includes" in one


@pytest.mark.parametrize(
    "path", ["/connect/accounts", "/connect/accounts/acct_1/delete", "/connect/transfers"]
)
def test_viewer_refused_every_connect_action(app, client, auth, connect_world, offline_processor, path):
    auth.login("viewer@example.org", "viewer")
    resp = client.post(
        path, data={"csrf_token": auth.token(), "step": "run", "account": "acct_1", "amount": "5"}
    )
    assert resp.status_code == 403 and connect_world.sent == []


def _csv_rows(resp) -> list[dict]:
    import csv
    import io

    assert resp.status_code == 200 and resp.mimetype == "text/csv", resp.get_data(as_text=True)[:500]
    return list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))


def test_accounts_csv_is_every_page_of_exactly_the_filter(
    app, client, auth, connect_world, offline_processor
):
    """The list-page contract on Connect: the CSV reads Stripe's list to its end (100 a request), with the
    filter's period, and the page offers it."""
    for n in range(130):
        connect_world.account(email=f"shop{n}@example.org", created=1_700_000_000 + n * 60)
    connect_world.account(email="late@example.org", created=1_800_000_000)
    auth.login("viewer@example.org", "viewer")
    assert "/connect/export.csv" in client.get("/connect").get_data(as_text=True)
    rows = _csv_rows(client.get("/connect/export.csv?until=2024-01-01"))
    assert len(rows) == 130 and "late@example.org" not in {r["email"] for r in rows}
    assert tuple(rows[0]) == accounts.CSV
    assert rows[-1]["created"] == "2023-11-14 22:13:20"  # Unix seconds written as the other CSVs write times
    assert connect_world.count("GET", "/v1/accounts") == 1 + 2  # the page, then the CSV's two pages


def test_a_csv_that_stripe_refuses_is_a_message_not_a_broken_file(
    app, client, auth, connect_world, offline_processor
):
    connect_world.refuse("GET", "/v1/transfers", 400, "Your account is not a Connect platform.")
    auth.login("viewer@example.org", "viewer")
    resp = client.get("/connect/transfers/export.csv?transfer_group=G1")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(
        "/connect/transfers?transfer_group=G1"
    )
    assert "not a Connect platform" in client.get(resp.headers["Location"]).get_data(as_text=True)


def test_transfers_and_payouts_as_partials_and_csv(app, client, auth, connect_world, offline_processor):
    acct = connect_world.account()
    auth.login("operator@example.org", "operator")
    token = auth.token("/connect/transfers")
    ask = client.post(
        "/connect/transfers", data=_transfer_form(token, offline_processor.id, acct["id"]), headers=HX
    )
    confirm(client, "/connect/transfers", ask, {"csrf_token": token}, headers=HX)
    po = connect_world.payout(acct["id"], amount=1850)
    connect_world.transaction(acct["id"], po["id"], amount=2000, fee=150)

    partial = client.get(f"/connect/transfers?account={acct['id']}", headers=HX).get_data(as_text=True)
    assert "<html" not in partial and 'id="transfer-tr_' in partial and "transfers/export.csv" in partial
    [t] = _csv_rows(client.get(f"/connect/transfers/export.csv?account={acct['id']}"))
    assert (t["account"], t["amount"], t["currency"], t["transfer_group"], t["metadata"]) == (
        acct["id"],
        "25.00",
        "usd",
        "G7",
        '{"fund": "roof"}',
    )

    partial = client.get(f"/connect/payouts?account={acct['id']}", headers=HX).get_data(as_text=True)
    assert "<html" not in partial and f'id="payout-{po["id"]}"' in partial and "payouts/export.csv" in partial
    [p] = _csv_rows(client.get(f"/connect/payouts/export.csv?account={acct['id']}"))
    assert (p["id"], p["amount"]) == (po["id"], "18.50")
    page = client.get(f"/connect/payouts/{po['id']}?account={acct['id']}").get_data(as_text=True)
    assert f"/connect/payouts/{po['id']}/transactions.csv" in page
    txns = _csv_rows(client.get(f"/connect/payouts/{po['id']}/transactions.csv?account={acct['id']}"))
    assert [(r["amount"], r["fee"], r["net"]) for r in txns if r["type"] != "payout"] == [
        ("20.00", "1.50", "18.50")
    ]


def test_an_accounts_persons_as_csv(app, client, auth, connect_world, offline_processor):
    acct = connect_world.account()
    connect_world.person(acct["id"], "Ada", "Lovelace")
    auth.login("viewer@example.org", "viewer")
    page = client.get(f"/connect/accounts/{acct['id']}").get_data(as_text=True)
    assert f"/connect/accounts/{acct['id']}/persons.csv" in page and 'id="person-' in page
    [row] = _csv_rows(client.get(f"/connect/accounts/{acct['id']}/persons.csv"))
    assert row["name"] == "Ada Lovelace" and list(row)[:3] == ["id", "name", "email"]
    gone = client.get("/connect/accounts/acct_missing/persons.csv")
    assert gone.status_code == 302


def test_a_csv_larger_than_the_export_bound_is_a_message_not_an_endless_scan(
    app, client, auth, connect_world, offline_processor
):
    """A viewer's GET reads Stripe's list page after page within the web request (gunicorn's 30 s): past
    ``CONNECT_EXPORT_MAX_ROWS`` it stops and asks for a narrower filter instead of scanning on (and spending
    the account's Stripe rate limit) or being cut off mid-file; within the bound the file is whole."""
    for n in range(130):
        connect_world.account(email=f"shop{n}@example.org", created=1_700_000_000 + n * 60)
    app.config["CONNECT_EXPORT_MAX_ROWS"] = 100
    auth.login("viewer@example.org", "viewer")
    resp = client.get("/connect/export.csv")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/connect")
    assert connect_world.count("GET", "/v1/accounts") == 2  # 100, then one more row says there are more
    assert "More than 100 rows" in client.get(resp.headers["Location"]).get_data(as_text=True)
    app.config["CONNECT_EXPORT_MAX_ROWS"] = 130
    assert len(_csv_rows(client.get("/connect/export.csv"))) == 130
