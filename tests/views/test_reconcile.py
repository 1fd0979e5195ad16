"""``/reconcile``: the page for each role showing the kept scan, filters in the query string, a scan
started by an operator's POST (never by a page view), a fix per row (with a confirmation before a local
record is cancelled), "fix all" as a job over the kept scan, CSRF."""

from __future__ import annotations

import json
import re
from html import escape, unescape

import pytest
from confirm_support import confirm as confirm_run
from sqlalchemy import func, select
from stripe_world import OneOff

from admin.extensions import db
from admin.models import AuditLog, Contribution, Payment, ReconcileScan
from admin.models.jobs import Job
from admin.services.core import jobs
from admin.services.reconcile import scan as rc_scan
from admin.services.reconcile.filter import ReconcileFilter
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.worker import queues
from admin.worker.loop import run_once

HX = {"HX-Request": "true"}


@pytest.fixture
def drift(world, offline_processor):
    """Three one-off payments recorded from their webhooks, then: one payment deleted locally, one
    amount changed, and a completed payment Stripe never had."""
    pays = [OneOff(world, amount=n) for n in (1000, 2000, 3000)]
    for p in pays:
        store_event(offline_processor, p.event("charge.succeeded"))
    run_once()
    lost, changed, fine = (p.charge["id"] for p in pays)
    db.session.delete(db.session.scalar(select(Payment).where(Payment.trxn_id == lost)))
    db.session.scalar(select(Payment).where(Payment.trxn_id == changed)).amount = 1999
    c = Contribution(
        processor_id=offline_processor.id,
        amount=500,
        currency="usd",
        status="Completed",
        trxn_id="ch_ghost0042",
        receive_date=utcnow(),
    )
    db.session.add(c)
    db.session.flush()
    db.session.add(
        Payment(
            contribution_id=c.id,
            processor_id=offline_processor.id,
            trxn_id="ch_ghost0042",
            charge_id="ch_ghost0042",
            amount=500,
            net=500,
            currency="usd",
            status="Completed",
            payment_date=utcnow(),
        )
    )
    db.session.commit()
    compared(offline_processor)  # what the page shows: the kept scan of the last 7 days
    return {
        "lost": lost,
        "changed": changed,
        "fine": fine,
        "ghost": "ch_ghost0042",
        "ppid": offline_processor.id,
    }


def compared(proc, **filters) -> rc_scan.Scan:
    """A scan of the filter's period taken and kept (as the reconcile.scan job does)."""
    return rc_scan.take(proc, ReconcileFilter(**filters))


def _rows(html: str) -> dict[str, str]:
    """{stripe id: its row's html} of the table."""
    return {m.group(2): m.group(0) for m in re.finditer(r'<tr id="rc-(\w+)-(\w+)".*?</tr>', html, re.S)}


def test_viewer_sees_the_differences_and_no_buttons(client, auth, drift):
    auth.login("viewer@example.org", "viewer")
    resp = client.get("/reconcile")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "<h1>Reconcile with Stripe</h1>" in html
    rows = _rows(html)
    assert set(rows) == {drift["lost"], drift["changed"], drift["ghost"]}
    assert "missing in paydesk" in rows[drift["lost"]]
    assert (
        "amount differs" in rows[drift["changed"]]
        and "20.00 USD" in rows[drift["changed"]]
        and "19.99 USD" in rows[drift["changed"]]
    )
    assert "not in Stripe" in rows[drift["ghost"]]
    assert "Fix" not in html.split("<tbody>")[1] and "Fix all" not in html
    assert '<a href="/reconcile" class="active" aria-current="page">Reconcile</a>' in html


def test_rows_in_step_on_request_and_filters_in_the_query_string(client, auth, drift, offline_processor):
    auth.login("viewer@example.org", "viewer")
    html = client.get("/reconcile?matching=1").get_data(as_text=True)
    assert drift["fine"] in _rows(html) and "in step" in _rows(html)[drift["fine"]]
    html = client.get("/reconcile?problem=absent").get_data(as_text=True)
    assert set(_rows(html)) == {drift["ghost"]}
    html = client.get("/reconcile?object=invoice").get_data(as_text=True)
    assert _rows(html) == {} and "Nothing compared with Stripe for this period yet." in html
    compared(offline_processor, object=["invoice"])
    html = client.get("/reconcile?object=invoice").get_data(as_text=True)
    assert _rows(html) == {} and "Stripe and paydesk agree for this period." in html


def test_htmx_gets_the_results_partial_others_the_page(client, auth, drift):
    auth.login("viewer@example.org", "viewer")
    partial = client.get("/reconcile?problem=missing", headers=HX).get_data(as_text=True)
    assert "<html" not in partial and set(_rows(partial)) == {drift["lost"]}
    history = client.get("/reconcile", headers={**HX, "HX-History-Restore-Request": "true"}).get_data(
        as_text=True
    )
    assert "<html" in history


@pytest.mark.parametrize(
    "query, field",
    [
        ("days=0", "days"),
        ("problem=lost", "problem"),
        ("since=yesterday", "since"),
        ("after=%%%", "after"),
        ("since=2026-11-20&until=2026-11-10", "until"),
    ],
)
def test_bad_filters_show_a_message_never_a_500(client, auth, drift, query, field):
    auth.login("viewer@example.org", "viewer")
    resp = client.get(f"/reconcile?{query}")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    label = escape(ReconcileFilter.label(field))  # as the form labels it
    assert "could not be read" in html and f"<strong>{label}</strong>" in html


def test_unknown_processor_is_a_message(client, auth, world, drift):
    auth.login("viewer@example.org", "viewer")
    html = client.get("/reconcile?ppid=99").get_data(as_text=True)
    assert "No payment processor '99'" in unescape(html)  # a sentence, as every message on a page


def _form(html: str, stripe_id: str) -> dict:
    row = _rows(html)[stripe_id]
    found = re.findall(r'<input type="hidden" name="(\w+)" value=(?:\'([^\']*)\'|"([^"]*)")', row)
    return {name: unescape(a or b) for name, a, b in found}


def test_operator_fixes_a_row_in_place_with_an_audit_entry(client, auth, drift):
    auth.login("operator@example.org", "operator")
    html = client.get("/reconcile").get_data(as_text=True)
    form = _form(html, drift["lost"])
    assert form["object"] == "charge" and form["id"] == drift["lost"]
    resp = client.post("/reconcile/fix", data=form, headers={**HX, "X-CSRFToken": auth.token()})
    row = resp.get_data(as_text=True)
    assert resp.status_code == 200 and row.lstrip().startswith("<tr") and "Fixed (replayed" in row
    assert "in step" in row and "<html" not in row
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "event.replay"))
    assert entry.actor == "operator@example.org" and entry.result == "ok"
    assert drift["lost"] not in _rows(client.get("/reconcile").get_data(as_text=True))


def test_cancelling_a_local_record_asks_first(client, auth, drift):
    auth.login("operator@example.org", "operator")
    html = client.get("/reconcile").get_data(as_text=True)
    form = _form(html, drift["ghost"])
    asked = client.post("/reconcile/fix", data=form, headers={**HX, "X-CSRFToken": auth.token()})
    question = asked.get_data(as_text=True)
    assert (
        asked.status_code == 200
        and "Mark paydesk's charge payment" in question
        and "Yes, mark it Cancelled" in question
    )
    assert db.session.scalar(select(Payment.status).where(Payment.trxn_id == drift["ghost"])) == "Completed"
    kept = client.get(
        "/reconcile/row",
        query_string={"ppid": form["ppid"], "object": "charge", "id": drift["ghost"]},
        headers=HX,
    )
    assert "not in Stripe" in kept.get_data(as_text=True) and "Mark cancelled…" in kept.get_data(as_text=True)
    done = client.post(
        "/reconcile/fix", data={**form, "step": "run"}, headers={**HX, "X-CSRFToken": auth.token()}
    )
    assert "Fixed (marked charge payment" in done.get_data(as_text=True)
    assert db.session.scalar(select(Payment.status).where(Payment.trxn_id == drift["ghost"])) == "Cancelled"
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "reconcile.cancel_local"))


def test_without_javascript_the_fix_flashes_and_goes_back(client, auth, drift):
    auth.login("operator@example.org", "operator")
    html = client.get("/reconcile?problem=amount").get_data(as_text=True)
    form = _form(html, drift["changed"])
    resp = client.post("/reconcile/fix", data=form)
    assert resp.status_code == 302 and resp.headers["Location"] == "/reconcile?problem=amount"
    page = client.get("/reconcile?problem=amount").get_data(as_text=True)
    assert "Fixed (replayed" in page and _rows(page) == {}
    confirm = client.post(
        "/reconcile/fix", data=_form(client.get("/reconcile").get_data(as_text=True), drift["ghost"])
    )
    assert confirm.status_code == 200 and "<html" in confirm.get_data(as_text=True)
    assert "Keep it" in confirm.get_data(as_text=True)


def test_fix_all_confirms_how_many_and_how_much_then_starts_one_job(client, auth, drift):
    auth.login("operator@example.org", "operator")
    html = client.get("/reconcile").get_data(as_text=True)
    criteria = re.search(r'name="criteria" value=\'([^\']*)\'', html).group(1)
    data = {"csrf_token": auth.token(), "ppid": drift["ppid"], "criteria": criteria}
    confirm = client.post("/reconcile/fix-all", data=data, headers=HX).get_data(as_text=True)
    assert "Fix 2 differences?" in confirm and "30.00 USD" in confirm  # 10.00 + 20.00 from Stripe
    assert "1 row that would mark paydesk's records Cancelled is left out" in unescape(confirm)
    started = confirm_run(client, "/reconcile/fix-all", confirm, data, headers=HX)
    assert started.status_code == 202 and "Reconcile charges, refunds and invoices" in started.get_data(
        as_text=True
    )
    again = confirm_run(client, "/reconcile/fix-all", confirm, data, headers=HX)
    assert again.status_code == 400 and "used already" in again.get_data(as_text=True)
    job = db.session.scalar(select(Job))
    assert job.kind == "reconcile.fix_all" and job.processor_id == drift["ppid"]
    assert job.params["cancel_local"] is False
    run_once()
    db.session.refresh(job)
    assert job.status == "done" and job.result["counts"]["fixed"] == 2


def test_viewer_cannot_fix_and_posts_need_csrf(client, auth, drift):
    auth.login("viewer@example.org", "viewer")
    token = auth.token()
    form = {"ppid": drift["ppid"], "object": "charge", "id": drift["lost"], "csrf_token": token}
    assert client.post("/reconcile/fix", data=form).status_code == 403
    assert client.post("/reconcile/fix-all", data={"csrf_token": token, "criteria": "{}"}).status_code == 403
    auth.logout()
    auth.login("operator@example.org", "operator")
    no_token = {k: v for k, v in form.items() if k != "csrf_token"}
    assert client.post("/reconcile/fix", data=no_token).status_code == 400
    assert db.session.scalar(select(Payment).where(Payment.trxn_id == drift["lost"])) is None


def test_a_damaged_fix_request_is_a_message(client, auth, drift):
    auth.login("operator@example.org", "operator")
    resp = client.post(
        "/reconcile/fix",
        data={"ppid": drift["ppid"], "object": "charge", "id": "ch_'><b>x"},
        headers={**HX, "X-CSRFToken": auth.token()},
    )
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "is not a Stripe charge id" in body and "<b>x" not in body
    resp = client.post(
        "/reconcile/fix-all",
        data={"ppid": drift["ppid"], "step": "run", "params": "{nope"},
        headers={**HX, "X-CSRFToken": auth.token()},
    )
    assert resp.status_code == 400 and "confirm first" in resp.get_data(as_text=True)
    for criteria in ("[1, 2]", "{oops", '"text"'):
        resp = client.post(
            "/reconcile/fix-all",
            data={"ppid": drift["ppid"], "criteria": criteria},
            headers={**HX, "X-CSRFToken": auth.token()},
        )
        assert resp.status_code == 422 and "damaged" in resp.get_data(as_text=True), criteria


def _lists(world) -> int:
    """Requests for Stripe's lists of charges, refunds and invoices: one scan asks for each once."""
    return world.count("GET", r"^/v1/(charges|refunds|invoices)$")


def _scan_form(html: str) -> dict:
    form = re.search(r'<form class="bulk-bar scan-start".*?</form>', html, re.S).group(0)
    found = re.findall(r'<input type="hidden" name="(\w+)" value=(?:\'([^\']*)\'|"([^"]*)")', form)
    return {name: unescape(a or b) for name, a, b in found}


def test_a_viewer_page_view_starts_no_scan_and_asks_stripe_nothing(client, auth, world, drift):
    """Issue 16: a viewer could start a 15,000-object Stripe scan per distinct window with plain GETs."""
    auth.login("viewer@example.org", "viewer")
    before = world.count("GET", r"^/v1/")
    for url in (
        "/reconcile",
        "/reconcile?since=2026-01-01&until=2026-06-30",
        "/reconcile?days=300&matching=1",
        "/reconcile?since=2026-09-01",
    ):
        html = client.get(url).get_data(as_text=True)
        assert "Compare with Stripe" not in html and "Compare again" not in html  # no button for a viewer
    assert world.count("GET", r"^/v1/") == before  # not one request to Stripe
    assert db.session.scalar(select(func.count()).select_from(Job)) == 0
    assert "An operator can compare it with Stripe" in html
    token = auth.token()
    resp = client.post("/reconcile/scan", data={"csrf_token": token, "criteria": '{"days": 300}'})
    assert resp.status_code == 403 and db.session.scalar(select(func.count()).select_from(Job)) == 0


def test_an_operator_starts_one_scan_job_whose_result_the_page_then_shows(client, auth, world, drift):
    auth.login("operator@example.org", "operator")
    html = client.get("/reconcile?days=30").get_data(as_text=True)
    assert "Nothing compared with Stripe for this period yet." in html and _rows(html) == {}
    form = _scan_form(html)
    assert json.loads(form["criteria"]) == {"days": 30}
    lists = _lists(world)
    resp = client.post("/reconcile/scan", data=form, headers={**HX, "X-CSRFToken": auth.token()})
    text = resp.get_data(as_text=True)
    assert resp.status_code == 202 and "Started: Compare charges, refunds and invoices with Stripe" in text
    assert "Comparing with Stripe" in text and 'hx-trigger="every 2s"' in text  # the results poll
    again = client.post("/reconcile/scan", data=form, headers={**HX, "X-CSRFToken": auth.token()})
    assert "The same comparison was already queued" in again.get_data(as_text=True)
    job = db.session.scalar(select(Job))
    assert db.session.scalar(select(func.count()).select_from(Job)) == 1
    assert (job.kind, job.processor_id, job.params) == (
        "reconcile.scan",
        drift["ppid"],
        {"object": ["charge", "invoice", "refund"], "days": 30},
    )
    assert _lists(world) == lists  # starting it asked Stripe nothing: the worker does
    run_once()
    db.session.refresh(job)
    assert job.status == "done" and job.result["counts"] == {"compared": 4, "differ": 3}
    html = client.get("/reconcile?days=30", headers=HX).get_data(as_text=True)
    assert set(_rows(html)) == {drift["lost"], drift["changed"], drift["ghost"]}
    assert "every 2s" not in html and "Compare again" in html
    assert _lists(world) == lists + 3  # one list per kind of object, by the job


def test_a_user_runs_one_scan_at_a_time(client, auth, drift):
    auth.login("operator@example.org", "operator")
    html = client.get("/reconcile?days=30").get_data(as_text=True)
    first = client.post("/reconcile/scan", data=_scan_form(html), headers={**HX, "X-CSRFToken": auth.token()})
    assert first.status_code == 202
    other = {**_scan_form(html), "criteria": '{"days": 60}'}
    resp = client.post("/reconcile/scan", data=other, headers={**HX, "X-CSRFToken": auth.token()})
    text = unescape(resp.get_data(as_text=True))
    assert (
        resp.status_code == 422
        and "one at a time" in text
        and "Compare charges, refunds and invoices" in text
    )
    assert db.session.scalar(select(func.count()).select_from(Job)) == 1
    run_once()  # the first one ends: another may start
    assert (
        client.post("/reconcile/scan", data=other, headers={**HX, "X-CSRFToken": auth.token()}).status_code
        == 202
    )


def test_a_failing_scan_says_so_on_the_page(client, auth, world, drift):
    auth.login("operator@example.org", "operator")
    html = client.get("/reconcile?days=30").get_data(as_text=True)
    client.post("/reconcile/scan", data=_scan_form(html), headers={**HX, "X-CSRFToken": auth.token()})
    world.fail(r"/v1/charges$", [400] * 10)
    run_once()
    job = db.session.scalar(select(Job))
    assert job.status == "failed"
    page = client.get("/reconcile?days=30").get_data(as_text=True)
    assert "Nothing compared with Stripe for this period yet." in page and "Compare with Stripe" in page


@pytest.mark.postgres
def test_fix_all_counts_and_fixes_the_rows_the_page_showed_without_asking_stripe_again(
    client, auth, world, drift
):
    auth.login("operator@example.org", "operator")
    html = client.get("/reconcile").get_data(as_text=True)
    criteria = re.search(r'name="criteria" value=\'([^\']*)\'', html).group(1)
    data = {"csrf_token": auth.token(), "ppid": drift["ppid"], "criteria": criteria}
    confirm = client.post("/reconcile/fix-all", data=data, headers=HX).get_data(as_text=True)
    confirm_run(client, "/reconcile/fix-all", confirm, data, headers=HX)
    job = db.session.scalar(select(Job))
    assert jobs.run_slice(queues.claim_job("w"), "w", seconds=0) == "running"
    db.session.refresh(job)
    assert set(job.cursor) == {"scan", "i"} and job.total == 2  # an index into the kept scan, not its keys
    while queues.run_jobs("w", seconds=0):
        db.session.refresh(job)
        assert len(json.dumps(job.cursor)) < 40
    db.session.refresh(job)
    assert job.status == "done" and job.result["counts"]["fixed"] == 2
    assert _lists(world) == 3  # the kept scan counted the rows and the job worked through them
    kept = db.session.scalar(select(ReconcileScan))  # kept, its fixed rows as they are now
    assert sorted(r["problem"] or "in step" for r in kept.rows) == ["absent", "in step", "in step", "in step"]


def test_a_fix_without_its_confirmation_never_cancels_a_record(client, auth, world, drift):
    """The page looked at a row that needed fetching from Stripe; by the time it is fixed Stripe no longer has
    the charge. The fix works from the row it looked at, and cancels nothing without the confirmation."""
    changed = drift["changed"]
    seen: list[str] = []

    def charge_disappears(method: str, path: str) -> None:
        if path == f"/v1/charges/{changed}":
            seen.append(path)
            if len(seen) == 2:
                world.fail(rf"^/v1/charges/{changed}$", [404] * 10, method="GET")

    world.on_request = charge_disappears
    auth.login("operator@example.org", "operator")
    form = _form(client.get("/reconcile?problem=amount").get_data(as_text=True), changed)
    resp = client.post("/reconcile/fix", data=form, headers={**HX, "X-CSRFToken": auth.token()})
    assert resp.status_code in (200, 422) and "Fixed (marked" not in resp.get_data(as_text=True)
    assert db.session.scalar(select(Payment.status).where(Payment.trxn_id == changed)) == "Completed"
    assert db.session.scalar(select(AuditLog).where(AuditLog.action == "reconcile.cancel_local")) is None


def test_a_fix_asks_stripe_for_the_row_once_before_and_once_after(client, auth, world, drift):
    auth.login("operator@example.org", "operator")
    form = _form(client.get("/reconcile").get_data(as_text=True), drift["lost"])
    before = world.count("GET", rf"^/v1/charges/{drift['lost']}$")
    resp = client.post("/reconcile/fix", data=form, headers={**HX, "X-CSRFToken": auth.token()})
    assert "Fixed (replayed" in resp.get_data(as_text=True)
    # the page's look, the replayed handler's fetch, and the look after: not a second look before
    assert world.count("GET", rf"^/v1/charges/{drift['lost']}$") - before == 3


def test_a_fix_answers_the_summary_again_without_the_fixed_row(client, auth, drift):
    """After a fix the page's summary ("N differ", the chips) no longer counts the row just fixed."""
    auth.login("operator@example.org", "operator")
    html = client.get("/reconcile").get_data(as_text=True)
    assert "<strong>3 differ</strong>" in html
    resp = client.post(
        "/reconcile/fix", data=_form(html, drift["lost"]), headers={**HX, "X-CSRFToken": auth.token()}
    )
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Fixed (replayed" in text
    summary = text.split('<hx-partial hx-target="#reconcile-summary"', 1)[1]  # swapped out of band by htmx
    assert "<strong>2 differ</strong>" in summary and 'id="reconcile-summary"' in summary
    missing = re.search(r'missing here</span> <span class="num">(\d+)', summary).group(1)
    assert missing == "0"
