"""``/jobs``: the list for each role, filters, the polled progress partial, cancel and resume (with the
job kind's role), and ``/jobs/outbox`` with its retry button."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from admin.extensions import db
from admin.models import AuditLog, OutboxTask, StripeEvent
from admin.models.jobs import Job
from admin.services.core import jobs
from admin.timeutil import utcnow
from admin.worker import queues

HX = {"HX-Request": "true"}


@pytest.fixture
def some_jobs(offline_processor):
    rows = [
        StripeEvent(
            processor_id=offline_processor.id,
            event_id=f"evt_j{i}",
            type="invoice.paid",
            raw="{}",
            status="error",
            created=1_700_000_000 + i,
        )
        for i in range(3)
    ]
    db.session.add_all(rows)
    db.session.commit()
    ids = [r.id for r in rows]
    done = jobs.start("events.ignore", {"ids": ids[:1], "reason": "finished one"}).job
    while queues.run_jobs("t", seconds=30):
        pass
    running = jobs.start("events.ignore", {"ids": ids[1:], "reason": "still going"}).job
    cleanup = jobs.start(
        "events.cleanup", {"older_than": "90 days", "include_errors": False, "ppid": None}
    ).job
    return {"done": done.id, "running": running.id, "cleanup": cleanup.id}


def _job_rows(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<a href="/jobs/(\d+)">#\d+</a>', html)]


def test_viewer_sees_jobs_newest_first_without_buttons(client, auth, some_jobs):
    auth.login("viewer@example.org", "viewer")
    html = client.get("/jobs").get_data(as_text=True)
    assert _job_rows(html) == [some_jobs["cleanup"], some_jobs["running"], some_jobs["done"]]
    page = client.get(f"/jobs/{some_jobs['running']}").get_data(as_text=True)
    assert "Mark ignored 2 selected events" in page and "Cancel job" not in page and "Resume" not in page


def test_filters_and_htmx_partial(client, auth, some_jobs):
    auth.login("viewer@example.org", "viewer")
    assert _job_rows(client.get("/jobs?status=done").get_data(as_text=True)) == [some_jobs["done"]]
    assert _job_rows(client.get("/jobs?kind=events.cleanup").get_data(as_text=True)) == [some_jobs["cleanup"]]
    partial = client.get("/jobs?status=queued", headers=HX).get_data(as_text=True)
    assert "<html" not in partial and _job_rows(partial) == [some_jobs["cleanup"], some_jobs["running"]]
    bad = client.get("/jobs?status=sleeping&after=zzz")
    html = bad.get_data(as_text=True)
    assert (
        bad.status_code == 200 and "<strong>Status</strong>" in html and "<strong>Page link</strong>" in html
    )


def test_progress_partial_polls_while_active_and_stops_when_done(client, auth, some_jobs):
    auth.login("viewer@example.org", "viewer")
    active = client.get(f"/jobs/{some_jobs['running']}/progress").get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in active and "<html" not in active and "st-queued" in active
    done = client.get(f"/jobs/{some_jobs['done']}/progress").get_data(as_text=True)
    assert "hx-trigger" not in done and 'value="100"' in done and "1 of 1 (100%)" in done
    assert client.get("/jobs/987654/progress").status_code == 404


def test_operator_cancels_and_resumes_with_audit_entries(client, auth, some_jobs):
    auth.login("operator@example.org", "operator")
    headers = {**HX, "X-CSRFToken": auth.token()}
    resp = client.post(f"/jobs/{some_jobs['running']}/cancel", headers=headers)
    assert resp.status_code == 200 and "Cancelled." in resp.get_data(as_text=True)
    again = client.post(f"/jobs/{some_jobs['running']}/cancel", headers=headers)
    assert "has already ended (cancelled)" in again.get_data(as_text=True)
    job = db.session.get(Job, some_jobs["running"])
    job.status = "failed"  # a job that failed may be resumed
    db.session.commit()
    resumed = client.post(f"/jobs/{some_jobs['running']}/resume", headers=headers)
    assert "Queued again" in resumed.get_data(as_text=True)
    actions = list(
        db.session.scalars(
            select(AuditLog.action).where(AuditLog.object_id == str(job.id)).order_by(AuditLog.id)
        )
    )
    assert actions == ["job.start", "job.cancel", "job.resume"]
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "job.cancel"))
    assert entry.actor == "operator@example.org"


def test_an_admins_job_needs_an_admin_to_cancel(client, auth, some_jobs):
    auth.login("operator@example.org", "operator")
    resp = client.post(f"/jobs/{some_jobs['cleanup']}/cancel", headers={**HX, "X-CSRFToken": auth.token()})
    assert resp.status_code == 403
    assert db.session.get(Job, some_jobs["cleanup"]).status == "queued"
    page = client.get(f"/jobs/{some_jobs['running']}").get_data(as_text=True)
    assert "Cancel job" in page


def test_failed_side_effects_with_a_retry_button(client, auth, offline_processor):
    task = OutboxTask(
        kind="receipt",
        key="receipt:1",
        processor_id=offline_processor.id,
        payload={},
        status="error",
        attempts=5,
        last_error="SMTP said no",
        next_attempt_at=utcnow(),
    )
    db.session.add(task)
    db.session.commit()
    auth.login("viewer@example.org", "viewer")
    listing = client.get("/jobs").get_data(as_text=True)
    assert "Failed side effects: 1" in listing
    html = client.get("/jobs/outbox?status=error").get_data(as_text=True)
    assert "SMTP said no" in html and ">Retry</button>" not in html
    auth.logout()
    auth.login("operator@example.org", "operator")
    html = client.get("/jobs/outbox?status=error").get_data(as_text=True)
    assert ">Retry</button>" in html
    resp = client.post(f"/jobs/outbox/{task.id}/retry", headers={**HX, "X-CSRFToken": auth.token()})
    row = resp.get_data(as_text=True)
    assert resp.status_code == 200 and row.lstrip().startswith(f'<tr id="task-{task.id}"')
    assert "Queued again" in row and "st-queued" in row
    db.session.refresh(task)
    assert task.status == "queued" and task.attempts == 0
    assert db.session.scalar(select(AuditLog.action)) == "outbox.retry"
    again = client.post(f"/jobs/outbox/{task.id}/retry", headers={**HX, "X-CSRFToken": auth.token()})
    assert again.status_code == 200 and "Queued again" not in again.get_data(as_text=True)
    assert (
        client.post("/jobs/outbox/424242/retry", headers={**HX, "X-CSRFToken": auth.token()}).status_code
        == 404
    )


def test_an_unknown_kind_is_named_not_matched_silently(client, auth, some_jobs):
    auth.login("viewer@example.org", "viewer")
    html = client.get("/jobs?kind=bogus&status=done").get_data(as_text=True)
    assert "<strong>Kind</strong>: &#39;bogus&#39; is not a kind of job: one of " in html
    assert _job_rows(html) == [some_jobs["done"]]  # the rest of the filter still applies
    outbox = client.get("/jobs/outbox?kind=bogus").get_data(as_text=True)
    assert (
        "<strong>Kind</strong>: &#39;bogus&#39; is not a kind of side effect: one of customer_metadata, notification, receipt"
        in outbox
    )
