"""``intents list|cancel|capture|cancel-incomplete|import`` and ``jobs process-stripe`` (against localstripe)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from localstripe_intents import abandoned, stripe_status, track, uncaptured, waiting_for_3ds

from admin.extensions import db
from admin.services.core import jobs
from admin.services.intents.jobs import period_key
from admin.worker import queues

pytestmark = pytest.mark.localstripe


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def test_list_takes_the_pages_filters(runner, processor):
    old, young = abandoned(processor, 1200), abandoned(processor, 3400)
    track(processor, old, age=timedelta(hours=2))
    track(processor, young)
    res = invoke(
        runner, "intents", "list", "--status", "incomplete", "--older-than", "1 hour", "--format", "json"
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["payment_intent_id"] for r in rows] == [old["id"]]
    assert rows[0]["display_amount"] == "12.00 USD" and rows[0]["age"].startswith("2 h")
    table = invoke(runner, "intents", "list", "--min-amount", "30", "--currency", "usd")
    assert (
        young["id"] in table.output and old["id"] not in table.output and "payment_intent_id" in table.output
    )
    bad = invoke(runner, "intents", "list", "--older-than", "a while", "--status", "pending")
    assert (
        bad.exit_code == 1
        and "--older-than: cannot read 'a while'" in bad.output
        and "--status" in bad.output
    )
    assert "Traceback" not in bad.output


def test_cancel_by_stripe_id_reports_each_outcome(runner, processor):
    one, two = abandoned(processor), abandoned(processor)
    track(processor, one)
    invoke(runner, "intents", "cancel", "--ppid", str(processor.id), two["id"])  # paydesk need not track it
    res = invoke(runner, "intents", "cancel", "--ppid", str(processor.id), one["id"], two["id"])
    assert res.exit_code == 0, res.output
    assert "already_cancelled 1, cancelled 1" in res.output and "already cancelled in Stripe" in res.output
    assert stripe_status(processor, one["id"])["cancellation_reason"] == "abandoned"
    bad = invoke(runner, "intents", "cancel", "ch_123")
    assert bad.exit_code == 1 and "is not a payment intent id" in bad.output


def test_capture_in_part_from_the_command_line(runner, processor):
    held = uncaptured(processor, 5000)
    res = invoke(runner, "intents", "capture", "--ppid", str(processor.id), held["id"], "--amount", "20.00")
    assert res.exit_code == 0, res.output
    assert "captured: Captured 20.00 USD of 50.00 USD" in res.output
    again = invoke(runner, "intents", "capture", held["id"], "--format", "json")
    assert again.exit_code == 0 and json.loads(again.output)["outcome"] == "already_succeeded"
    other = uncaptured(processor, 5000)
    too_much = invoke(runner, "intents", "capture", other["id"], "--amount", "60")
    assert too_much.exit_code == 1 and "more than the 50.00 USD authorised" in too_much.output


def test_cancel_incomplete_and_import(runner, processor):
    old, young, stuck = abandoned(processor), abandoned(processor), waiting_for_3ds(processor)
    res = invoke(runner, "intents", "import", "--since", "1 hour")
    assert (
        res.exit_code == 0 and "Import payment intents from Stripe created in the last 1 hour" in res.output
    )
    track(processor, old, age=timedelta(hours=3))
    track(processor, stuck, age=timedelta(hours=3))
    res = invoke(
        runner, "intents", "cancel-incomplete", "--older-than", "1 hour", "--ppid", str(processor.id)
    )
    assert res.exit_code == 0, res.output
    assert "cancelled 2" in res.output
    assert stripe_status(processor, young["id"])["status"] == "requires_payment_method"
    assert invoke(runner, "intents", "cancel-incomplete", "--older-than", "0").exit_code == 1


def test_process_stripe_from_cron_on_several_hosts(runner, processor):
    old = abandoned(processor)
    track(processor, old, age=timedelta(hours=2))
    args = ["jobs", "process-stripe", "--ppid", str(processor.id), "--period", "1 day"]
    first = invoke(runner, *args)
    assert first.exit_code == 0, first.output
    assert "cancelled 1" in first.output and stripe_status(processor, old["id"])["status"] == "canceled"
    second = invoke(runner, *args)  # another host, the same day
    assert (
        second.exit_code == 0
        and "skipped 1" in second.output
        and "already did this period's run" in second.output
    )

    # A host that starts it while another host runs it leaves it to that host.
    params = {
        "delete_old": "3 months",
        "cancel_incomplete": "1 hour",
        "period": period_key("1 hour"),
        "ppid": processor.id,
    }
    running = jobs.start("intents.process_stripe", params).job
    assert queues.claim_job("host-a", running.id) is not None
    third = invoke(runner, "jobs", "process-stripe", "--ppid", str(processor.id), "--period", "1 hour")
    assert third.exit_code == 0 and "is being run elsewhere; nothing to do here" in third.output
    db.session.expire_all()
    bad = invoke(runner, "jobs", "process-stripe", "--delete-old", "forever")
    assert bad.exit_code == 1 and "--delete-old: cannot read 'forever'" in bad.output
