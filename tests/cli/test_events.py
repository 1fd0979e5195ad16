"""``events list|populate-log|populate-queue|replay|retry-all|cleanup`` and ``jobs list|show|cancel|resume``
through the Flask CLI runner: every filter, ``--format json`` everywhere, and bad input answered with one
line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import stripe_objects as so
from sqlalchemy import func, select
from stripe_world import OneOff, Renewal

from admin.extensions import db
from admin.models import Contribution, StripeEvent
from admin.models.jobs import Job
from admin.services.core import jobs
from admin.services.settings.processors import add_processor
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_once

DAY = int(datetime(2026, 11, 10).timestamp())


def run(runner, *args: str, ok: bool = True):
    result = runner.invoke(args=list(args))
    out = result.output
    assert "Traceback" not in out, out
    if ok:
        assert result.exit_code == 0, out
    return result


def as_json(runner, *args: str):
    result = run(runner, *args, "--format", "json")
    return json.loads(result.stdout)


def failed(runner, *args: str) -> str:
    """The one line a bad command prints; it must exit non-zero."""
    result = run(runner, *args, ok=False)
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return lines[0]


@pytest.fixture
def log(offline_processor):
    """Stored events of two processors, several types, statuses and days."""
    other = add_processor(
        name="Second", secret_key="sk_test_other", webhook_secrets=["whsec_x"], api_base="http://127.0.0.1:9"
    )
    spec = [
        (
            "paid",
            offline_processor,
            "invoice.payment_succeeded",
            "success",
            DAY,
            so.invoice(customer="cus_ada", subscription="sub_cli1"),
        ),
        (
            "failed",
            offline_processor,
            "invoice.payment_failed",
            "error",
            DAY + 86400,
            so.invoice(customer="cus_ada", subscription="sub_cli1"),
        ),
        (
            "charge",
            offline_processor,
            "charge.succeeded",
            "queued",
            DAY + 2 * 86400,
            so.charge(customer="cus_bob", payment_intent=None),
        ),
        (
            "paid2",
            offline_processor,
            "invoice.payment_succeeded",
            "success",
            DAY + 3 * 86400,
            so.invoice(customer="cus_cy", subscription="sub_cli2"),
        ),
        (
            "other",
            other,
            "invoice.payment_succeeded",
            "ignored",
            DAY + 4 * 86400,
            so.invoice(customer="cus_dee", subscription="sub_cli3"),
        ),
    ]
    events = {}
    for name, proc, type_, status, created, obj in spec:
        e = so.event(type_, obj, created=created)
        store_event(proc, e)
        db.session.scalar(select(StripeEvent).where(StripeEvent.event_id == e["id"])).status = status
        events[name] = e["id"]
    db.session.commit()
    return {"events": events, "ppid": offline_processor.id, "other": other.id}


def ids(rows) -> list[str]:
    return [r["event_id"] for r in rows]


def test_events_list_every_filter(runner, log):
    e = log["events"]
    # every type by default (as the /events page), newest first, every processor
    assert ids(as_json(runner, "events", "list", "--type", "invoice.payment_succeeded")) == [
        e["other"],
        e["paid2"],
        e["paid"],
    ]
    assert ids(as_json(runner, "events", "list")) == ids(as_json(runner, "events", "list", "--type", "all"))
    assert ids(as_json(runner, "events", "list", "--type", "all")) == [
        e["other"],
        e["paid2"],
        e["charge"],
        e["failed"],
        e["paid"],
    ]
    assert ids(as_json(runner, "events", "list", "--type", "invoice.*", "--ppid", str(log["ppid"]))) == [
        e["paid2"],
        e["failed"],
        e["paid"],
    ]
    assert ids(
        as_json(runner, "events", "list", "--type", "charge.succeeded", "--type", "invoice.payment_failed")
    ) == [e["charge"], e["failed"]]
    assert ids(
        as_json(runner, "events", "list", "--type", "all", "--status", "error", "--status", "queued")
    ) == [e["charge"], e["failed"]]
    # --until is a whole day, as on the page: 11 to 12 November takes in both days' events
    assert ids(
        as_json(runner, "events", "list", "--type", "all", "--since", "2026-11-11", "--until", "2026-11-12")
    ) == [e["charge"], e["failed"]]
    assert ids(as_json(runner, "events", "list", "--type", "all", "--search", e["failed"])) == [e["failed"]]
    assert ids(as_json(runner, "events", "list", "--type", "all", "--subscription", "sub_cli1")) == [
        e["failed"],
        e["paid"],
    ]
    assert ids(as_json(runner, "events", "list", "--type", "all", "--limit", "2")) == [e["other"], e["paid2"]]
    assert ids(
        as_json(runner, "events", "list", "--type", "all", "--limit", "2", "--starting-after", e["paid2"])
    ) == [e["charge"], e["failed"]]
    raw = as_json(runner, "events", "list", "--search", e["paid"], "--output", "raw")
    assert raw[0]["raw"]["id"] == e["paid"] and raw[0]["raw"]["type"] == "invoice.payment_succeeded"
    table = run(runner, "events", "list", "--type", "all", "--status", "error").output
    assert table.splitlines()[0].split()[:4] == ["event_id", "type", "created", "status"]
    assert e["failed"] in table and e["paid"] not in table


def test_events_list_filter_processed(runner, world, offline_processor):
    done, pending = Renewal(world), Renewal(world)
    store_event(offline_processor, done.events["invoice.payment_succeeded"])
    run_once()
    store_event(offline_processor, pending.events["invoice.payment_succeeded"])
    everything = ids(as_json(runner, "events", "list"))
    hidden = ids(as_json(runner, "events", "list", "--filter-processed"))
    assert len(everything) == 2 and hidden == [pending.events["invoice.payment_succeeded"]["id"]]


def test_events_list_from_stripe_and_expected_charges(runner, world, offline_processor):
    renewal = Renewal(world, shape="older", amount=1500)
    stored, unknown = renewal.events["invoice.paid"], renewal.events["charge.succeeded"]
    world.add(stored, unknown)
    store_event(offline_processor, stored, status="logged")
    rows = as_json(runner, "events", "list", "--source", "stripe", "--type", "all")
    marks = {r["event_id"]: r["status"] for r in rows}
    assert marks == {stored["id"]: "logged", unknown["id"]: "not in paydesk"}
    expected = as_json(
        runner, "events", "list", "--subscription", renewal.subscription["id"], "--expected-charges"
    )
    assert [(x["invoice_id"], x["amount"], x["found"]) for x in expected] == [
        (renewal.invoice["id"], 1500, "MISSING")
    ]
    assert "needs --subscription" in failed(runner, "events", "list", "--expected-charges")


def test_populate_log_and_queue_without_duplicates(runner, world, offline_processor):
    pays = [OneOff(world, amount=100 * (i + 1)) for i in range(3)]
    world.add(*(p.event("charge.succeeded") for p in pays))
    job = as_json(runner, "events", "populate-log", "--type", "charge.succeeded")
    assert (
        job["status"] == "done" and job["result"]["counts"] == {"new": 3} and job["kind"] == "events.populate"
    )
    assert set(db.session.scalars(select(StripeEvent.status))) == {"logged"}
    again = as_json(runner, "events", "populate-queue", "--type", "charge.succeeded", "--limit", "2")
    assert again["done"] == 2 and again["result"]["counts"] == {"queued": 2}
    assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 3
    table = run(runner, "events", "populate-log", "--type", "charge.succeeded").output
    assert "done" in table and "present 3" in table


def test_replay_by_id_and_event_id_with_no_receipt(runner, world, offline_processor):
    pay = OneOff(world, amount=4200)
    event = pay.event("charge.succeeded")
    world.add(event)
    store_event(offline_processor, event, status="logged")
    row_id = db.session.scalar(select(StripeEvent.id))
    out = as_json(runner, "events", "replay", "--id", str(row_id), "--no-receipt")
    assert out["status"] == "success" and out["fetched_from_stripe"] is True and out["id"] == row_id
    assert db.session.scalar(select(StripeEvent.no_receipt)) is True
    table = run(runner, "events", "replay", "--event-id", event["id"]).output
    assert table.strip() == f"{event['id']} (charge.succeeded): success"
    assert db.session.scalar(select(func.count()).select_from(Contribution)) == 1


def test_retry_all_and_cleanup(runner, world, offline_processor):
    OneOff(world, amount=3000)  # paid in Stripe, unknown here
    job = as_json(runner, "events", "retry-all", "--limit", "5", "--days", "3")
    assert job["status"] == "done" and job["result"]["counts"] == {"imported": 1}
    assert db.session.scalar(select(Contribution.amount)) == 3000
    old = utcnow() - timedelta(days=40)
    for i, status in enumerate(("success", "error")):
        db.session.add(
            StripeEvent(
                processor_id=offline_processor.id,
                event_id=f"evt_old{i}",
                type="x.y",
                raw="{}",
                status=status,
                received_at=old,
            )
        )
    db.session.commit()
    job = as_json(runner, "events", "cleanup", "--older-than", "30 days")
    assert job["result"]["counts"] == {"deleted": 1}
    job = as_json(
        runner,
        "events",
        "cleanup",
        "--older-than",
        "30 days",
        "--include-errors",
        "--ppid",
        str(offline_processor.id),
    )
    assert job["result"]["counts"] == {"deleted": 1} and job["params"]["ppid"] == offline_processor.id


def test_jobs_list_show_cancel_resume(runner, log):
    job = jobs.start(
        "events.ignore", {"filter": {"status": ["error"], "type": ["all"]}, "reason": "cli test"}
    ).job
    listed = as_json(runner, "jobs", "list")
    assert [(j["id"], j["status"], j["kind"]) for j in listed] == [(job.id, "queued", "events.ignore")]
    assert as_json(runner, "jobs", "list", "--status", "done") == []
    assert as_json(runner, "jobs", "list", "--kind", "events.ignore")[0]["id"] == job.id
    shown = as_json(runner, "jobs", "show", str(job.id))
    assert (shown["id"], shown["status"], shown["params"]["reason"]) == (job.id, "queued", "cli test")
    assert run(runner, "jobs", "cancel", str(job.id)).output.strip() == f"job {job.id}: cancelled"
    assert "already ended (cancelled)" in failed(runner, "jobs", "cancel", str(job.id))
    assert "only a paused or failed job" in failed(runner, "jobs", "resume", str(job.id))

    paused = jobs.start("events.ignore", {"ids": [1, 2], "reason": "resume me"}).job
    paused.status = "paused"
    db.session.commit()
    out = as_json(runner, "jobs", "resume", str(paused.id))
    assert out["status"] == "done" and out["done"] == 2
    assert db.session.get(Job, paused.id).status == "done"
    table = run(runner, "jobs", "list").output
    assert table.splitlines()[0].split()[:3] == ["id", "kind", "status"]


def test_jobs_list_reads_the_jobs_page_filter(runner, log):
    ignore = jobs.start("events.ignore", {"ids": [1], "reason": "a"}).job
    cleanup = jobs.start(
        "events.cleanup", {"older_than": "30 days", "include_errors": False, "ppid": None}
    ).job
    jobs.cancel(cleanup)
    with jobs.audit.acting_as(None, "ops@example.org"):
        other = jobs.start("events.ignore", {"ids": [2], "reason": "b"}).job
    ids = [j["id"] for j in as_json(runner, "jobs", "list", "--status", "queued", "--status", "cancelled")]
    assert ids == [other.id, cleanup.id, ignore.id]
    assert [j["id"] for j in as_json(runner, "jobs", "list", "--kind", "events.ignore", "--limit", "1")] == [
        other.id
    ]
    assert [j["id"] for j in as_json(runner, "jobs", "list", "--actor", "ops@example.org")] == [other.id]
    assert [j["id"] for j in as_json(runner, "jobs", "list", "--kind", "events.cleanup,events.populate")] == [
        cleanup.id
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (("events", "list", "--ppid", "99"), "no payment processor"),
        (("events", "list", "--limit", "101"), "--limit"),
        (("events", "list", "--limit", "0"), "--limit"),
        (("events", "list", "--starting-after", "evt_nowhere"), "no stored event"),
        (("events", "list", "--since", "last tuesday"), "--since"),
        (("events", "list", "--status", "sleeping"), "--status"),
        (("events", "populate-log", "--ppid", "nobody"), "no payment processor"),
        (("events", "replay", "--id", "abc"), "is not a number"),
        (("events", "replay", "--id", "99999"), "no stored event with id 99999"),
        (("events", "replay", "--id", "99999999999999999999999"), "no stored event"),
        (("events", "replay", "--id", "\u00b2"), "is not a number"),
        (("events", "replay", "--id", "\u0663"), "is not a number"),
        (("events", "replay", "--id", "0"), "no stored event with id 0"),
        (("events", "replay", "--id", "3000000000"), "no stored event with id 3000000000"),
        (("events", "replay", "--event-id", "ch_123"), "is not a Stripe event id"),
        (("events", "replay"), "give either --id or --event-id"),
        (("events", "retry-all", "--limit", "0"), "--limit"),
        (("events", "retry-all", "--ppid", "99"), "no payment processor"),
        (("events", "cleanup", "--older-than", "soon"), "cannot read 'soon'"),
        (("events", "cleanup", "--older-than", "2 hours"), "at least a day"),
        (("events", "cleanup"), "--older-than"),
        (("jobs", "show", "abc"), "is not a job id"),
        (("jobs", "show", "424242"), "no job 424242"),
        (("jobs", "cancel", "-1"), "No such option '-1'"),
        (("jobs", "frobnicate"), "No such command 'frobnicate'"),
        (("jobs", "resume", "99999999999999999999"), "is not a job id"),
        (("jobs", "list", "--status", "sleeping"), "--status: 'sleeping' is not one of queued"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(runner, log, args, message):
    line = failed(runner, *args)
    assert line.startswith("Error:") and message in line, line


def test_retry_all_imports_a_charge_paid_in_localstripe(runner, empty_processor):
    """The demo's own Stripe (localstripe) takes ``created[gte]`` on charge lists, as Stripe does, so
    "retry all" works in ``make demo``."""
    from admin.demo_data import _card_for, _one_off
    from admin.services.settings.processors import gateway

    gw = gateway(empty_processor)
    cus = gw.create("customers", {"name": "Emmy Noether", "email": "emmy@example.org"})
    paid = _one_off(gw, cus["id"], _card_for(gw, cus["id"], "4242424242424242"), 2500, "gift")
    assert paid["status"] == "succeeded"
    result = runner.invoke(args=["events", "retry-all", "--days", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-2].endswith(": imported 1") and lines[-2].startswith("job ") and " done: " in lines[-2], (
        lines
    )
    assert "error" not in result.output
    assert db.session.scalar(select(Contribution.amount)) == 2500
