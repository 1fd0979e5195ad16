"""``flask --app wsgi reconcile``: the differences as a table or JSON, ``--fix`` as a job in the
foreground, and one-line errors."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from stripe_world import OneOff

from admin.extensions import db
from admin.models import Contribution, Payment
from admin.models.jobs import Job
from admin.services.core import jobs
from admin.services.reconcile import scan as rc_scan
from admin.services.reconcile.filter import ReconcileFilter
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.worker import queues
from admin.worker.loop import run_once


@pytest.fixture
def drift(world, offline_processor):
    kept, lost = OneOff(world, amount=1200), OneOff(world, amount=3400)
    for p in (kept, lost):
        store_event(offline_processor, p.event("charge.succeeded"))
    run_once()
    db.session.delete(db.session.scalar(select(Payment).where(Payment.trxn_id == lost.charge["id"])))
    c = Contribution(
        processor_id=offline_processor.id,
        amount=800,
        currency="usd",
        status="Completed",
        trxn_id="ch_ghost0777",
        receive_date=utcnow(),
    )
    db.session.add(c)
    db.session.flush()
    db.session.add(
        Payment(
            contribution_id=c.id,
            processor_id=offline_processor.id,
            trxn_id="ch_ghost0777",
            charge_id="ch_ghost0777",
            amount=800,
            net=800,
            currency="usd",
            status="Completed",
            payment_date=utcnow(),
        )
    )
    db.session.commit()
    return {"kept": kept.charge["id"], "lost": lost.charge["id"], "ghost": "ch_ghost0777"}


def test_lists_the_differences_as_json_and_as_a_table(runner, drift):
    result = runner.invoke(args=["reconcile", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["id"]: r["problem"] for r in rows} == {drift["lost"]: "missing", drift["ghost"]: "absent"}
    missing = next(r for r in rows if r["problem"] == "missing")
    assert (missing["stripe_amount"], missing["local_amount"], missing["fix"]) == (3400, None, "fetch")
    every = json.loads(runner.invoke(args=["reconcile", "--all", "--format", "json"]).stdout)
    assert {r["id"]: r["problem"] for r in every}[drift["kept"]] == "in step"
    only = json.loads(
        runner.invoke(
            args=["reconcile", "--problem", "absent", "--object", "charge", "--format", "json"]
        ).stdout
    )
    assert [r["id"] for r in only] == [drift["ghost"]]
    table = runner.invoke(args=["reconcile", "--days", "3"])
    assert table.stdout.splitlines()[0].split()[:3] == ["object", "id", "created"]
    assert drift["lost"] in table.stdout and "missing 1, absent 1, in step 1" in table.stderr


def test_fix_brings_them_in_step_and_cancelling_needs_its_own_flag(runner, drift):
    result = runner.invoke(args=["reconcile", "--fix", "--format", "json"])
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["kind"] == "reconcile.fix_all" and job["result"]["counts"] == {
        "fixed": 1,
        "left for staff (need confirmation)": 1,
    }
    left = json.loads(runner.invoke(args=["reconcile", "--format", "json"]).stdout)
    assert [r["id"] for r in left] == [drift["ghost"]]
    result = runner.invoke(args=["reconcile", "--fix", "--cancel-local"])
    assert result.exit_code == 0 and "fixed 1" in result.stdout
    assert json.loads(runner.invoke(args=["reconcile", "--format", "json"]).stdout) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ppid", "99"], "no payment processor"),
        (["--days", "400"], "--days"),
        (["--since", "someday"], "--since"),
        (["--since", "2026-11-20", "--until", "2026-11-01"], "--until: must be after the start date"),
        (["--object", "payout"], "--object"),
        (["--cancel-local"], "--cancel-local goes with --fix"),
    ],
)
def test_bad_input_is_one_line(runner, drift, args, message):
    result = runner.invoke(args=["reconcile", *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_the_comparison_is_the_scan_job_and_a_paused_one_is_continued(runner, drift, offline_processor):
    job = rc_scan.start(offline_processor, ReconcileFilter()).job
    jobs.run_slice(queues.claim_job("cli:elsewhere", job.id), "cli:elsewhere", seconds=0)  # the scan begun...
    jobs.pause(queues.claim_job("cli:elsewhere", job.id))  # ...then Ctrl-C
    scan_id = job.cursor["scan"]
    result = runner.invoke(args=["reconcile", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert f"job {job.id}; continuing it." in result.stderr
    assert {r["id"] for r in json.loads(result.stdout)} == {drift["lost"], drift["ghost"]}
    db.session.refresh(job)
    assert job.status == "done" and job.kind == "reconcile.scan" and job.result["scan"] == scan_id
    assert db.session.scalar(select(func.count()).select_from(Job)) == 1
