"""Read-only listings: contacts, contributions, payments, recurring, intents (JSON carries the Stripe ids)."""

from __future__ import annotations

import json

import pytest
import responses
from stripe_world import OneOff, Renewal, StripeWorld

from admin.webhooks.ingest import store_event
from admin.worker.loop import run_once


def invoke_json(runner, *args):
    result = runner.invoke(args=[*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_listings_show_the_records_with_their_stripe_ids(runner, offline_processor):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        ren, pay = Renewal(world), OneOff(world, amount=4200)
        for ev in (*ren.events.values(), pay.event("charge.succeeded")):
            store_event(offline_processor, ev)
        run_once()
    contributions = invoke_json(runner, "contributions", "list")
    assert {(c["trxn_id"], c["status"], c["amount"]) for c in contributions} == {
        (ren.invoice["id"], "Completed", 1000),
        (pay.charge["id"], "Completed", 4200),
    }
    recurring = invoke_json(runner, "recurring", "list")
    assert [(r["subscription_id"], r["status"]) for r in recurring] == [
        (ren.subscription["id"], "In Progress")
    ]
    payments = invoke_json(runner, "payments", "list", "--limit", "1000")
    assert {p["charge_id"] for p in payments} == {ren.charge["id"], pay.charge["id"]}
    contacts = invoke_json(runner, "contacts", "list")
    assert sorted(ids for c in contacts for ids in c["stripe_customer_ids"]) == sorted(
        [ren.customer["id"], pay.customer["id"]]
    )
    intents = invoke_json(runner, "intents", "list", "--status", "succeeded")
    assert {i["payment_intent_id"] for i in intents} == {ren.intent["id"]}
    # filters narrow, --limit bounds
    assert len(invoke_json(runner, "contributions", "list", "--trxn-id", pay.charge["id"])) == 1
    assert len(invoke_json(runner, "contributions", "list", "--limit", "1")) == 1
    assert invoke_json(runner, "contributions", "list", "--status", "Failed") == []
    table = runner.invoke(args=["contributions", "list"]).output
    assert "42.00 USD" in table and "10.00 USD" in table


def test_events_list_local_defaults_pages_and_raw(runner, offline_processor):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        rens = [Renewal(world) for _ in range(3)]
        for i, ren in enumerate(rens):
            ev = ren.events["invoice.payment_succeeded"]
            ev["created"] += i
            store_event(offline_processor, ev)
            store_event(offline_processor, ren.events["charge.succeeded"])
        run_once()
    default = invoke_json(runner, "events", "list", "--type", "invoice.payment_succeeded")  # newest first
    assert [e["invoice_id"] for e in default] == [r.invoice["id"] for r in reversed(rens)]
    assert {e["status"] for e in default} == {"success"}
    page2 = invoke_json(
        runner,
        "events",
        "list",
        "--type",
        "invoice.payment_succeeded",
        "--limit",
        "1",
        "--starting-after",
        default[0]["event_id"],
    )
    assert [e["event_id"] for e in page2] == [default[1]["event_id"]]
    assert len(invoke_json(runner, "events", "list", "--type", "all", "--limit", "100")) == 6
    assert len(invoke_json(runner, "events", "list", "--limit", "100")) == 6  # every type, as the page
    raw = json.loads(
        runner.invoke(
            args=["events", "list", "--type", "invoice.*", "--output", "raw", "--limit", "1"]
        ).output
    )
    assert raw[0]["raw"]["data"]["object"]["object"] == "invoice"
    too_many = runner.invoke(args=["events", "list", "--limit", "101"])
    assert too_many.exit_code != 0 and "101" in too_many.output


def test_worker_once_processes_what_is_due(runner, offline_processor):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        pay = OneOff(world)
        store_event(offline_processor, pay.event("charge.succeeded"))
        result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0 and "processed" in result.output
    assert invoke_json(runner, "contributions", "list")[0]["status"] == "Completed"


def test_events_list_from_stripe_shows_whether_paydesk_has_each(runner, empty_processor):
    """--source stripe asks Stripe (here a real, emptied localstripe: it lists oldest first, so in the
    session's shared one a new event may be past the first 100) and marks what paydesk has stored."""
    from admin.services.settings.processors import gateway

    processor = empty_processor

    cus = gateway(processor).create("customers", {"email": "listed@example.org"})
    args = ["events", "list", "--source", "stripe", "--type", "customer.created", "--limit", "100"]
    mine = [e for e in invoke_json(runner, *args) if e["object_id"] == cus["id"]]
    assert [e["status"] for e in mine] == ["not in paydesk"]
    raw = gateway(processor).list("events", type="customer.created", limit=100)["data"]
    store_event(processor, next(e for e in raw if e["data"]["object"]["id"] == cus["id"]))
    mine = [e for e in invoke_json(runner, *args) if e["object_id"] == cus["id"]]
    assert [e["status"] for e in mine] == ["queued"]


@pytest.mark.postgres
@pytest.mark.parametrize("bad", ["\u00b2", "\u0663", "0", "3000000000", "99999999999999999999"])
def test_a_ppid_that_is_no_id_is_looked_up_by_name(runner, offline_processor, bad):
    for group in ("contributions", "payments", "recurring", "contacts"):
        result = runner.invoke(args=[group, "list", "--ppid", bad])
        assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
        assert result.output.strip() == f"Error: no payment processor {bad!r}", result.output


def test_tables_show_money_and_times_as_the_pages_do_and_json_keeps_raw_values(
    app, runner, offline_processor
):
    from datetime import datetime

    from admin.extensions import db
    from admin.models import Contribution, Payment, StripeEvent

    c = Contribution(
        processor_id=offline_processor.id,
        amount=100_000_000,
        currency="usd",
        status="Completed",
        trxn_id="ch_big",
        receive_date=datetime(2026, 11, 29, 14, 5, 33),
    )
    db.session.add(c)
    db.session.flush()
    db.session.add(
        Payment(
            contribution_id=c.id,
            processor_id=offline_processor.id,
            trxn_id="ch_big",
            charge_id="ch_big",
            amount=100_000_000,
            fee=290_030,
            net=99_709_970,
            currency="usd",
            payment_date=datetime(2026, 11, 29, 14, 5, 33),
        )
    )
    db.session.add(
        StripeEvent(
            processor_id=offline_processor.id,
            event_id="evt_table",
            type="invoice.paid",
            created=1_795_961_133,
            raw="{}",
            status="success",
        )
    )  # 2026-11-29 14:05:33 UTC
    db.session.commit()

    table = runner.invoke(args=["payments", "list"]).output
    row = table.splitlines()[1]
    assert "1,000,000.00 USD" in row and "2,900.30 USD" in row and "997,099.70 USD" in row, table
    assert "2026-11-29 14:05" in row and "99709970" not in row and "T14:05:33" not in row, table
    [raw] = invoke_json(runner, "payments", "list")
    assert (raw["amount"], raw["fee"], raw["net"], raw["payment_date"]) == (
        100_000_000,
        290_030,
        99_709_970,
        "2026-11-29T14:05:33",
    )

    events = runner.invoke(args=["events", "list", "--type", "all"]).output
    assert "2026-11-29 14:05" in events.splitlines()[1] and "1795961133" not in events, events
    assert invoke_json(runner, "events", "list", "--type", "all")[0]["created"] == 1_795_961_133
