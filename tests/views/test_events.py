"""``/events`` and ``/events/<id>`` as staff use them: what each role sees, htmx partials, bad filters
as messages, replay / mark ignored in place with audit entries, bulk confirmation counts, the tools."""

from __future__ import annotations

import json
import re
from html import escape, unescape

import pytest
import stripe_objects as so
from confirm_support import confirm
from sqlalchemy import func, select
from stripe_world import OneOff

from admin.extensions import db
from admin.models import AuditLog, StripeEvent
from admin.models.jobs import Job
from admin.services.events import queries as ev
from admin.webhooks.ingest import store_event

HX = {"HX-Request": "true"}


@pytest.fixture
def stored(world, offline_processor):
    """Four stored events: two charges in error (Stripe still has them), an invoice paid, a customer update."""
    out = {}
    for name, amount in (("first", 1100), ("second", 2200)):
        pay = OneOff(world, amount=amount)
        e = pay.event("charge.succeeded")
        world.add(e)
        store_event(offline_processor, e, status="error")
        out[name] = e
    out["invoice"] = so.event("invoice.paid", so.invoice(customer="cus_x", subscription="sub_x"))
    out["customer"] = so.event("customer.updated", so.customer())
    for name in ("invoice", "customer"):
        store_event(offline_processor, out[name], status="success")
    db.session.commit()
    rows = {e.event_id: e.id for e in db.session.scalars(select(StripeEvent))}
    return {name: rows[e["id"]] for name, e in out.items()} | {"events": out, "ppid": offline_processor.id}


def _ids_shown(html: str) -> set[int]:
    return {int(i) for i in re.findall(r'<tr id="event-(\d+)"', html)}


def test_viewer_sees_the_events_and_no_action_buttons(client, auth, stored):
    auth.login("viewer@example.org", "viewer")
    html = client.get("/events").get_data(as_text=True)
    assert _ids_shown(html) == {stored["first"], stored["second"], stored["invoice"], stored["customer"]}
    for action in (
        'name="ids"',
        "Replay…",
        "Mark ignored…",
        "Tools: pull, retry, clean up",
        "select-all-matching",
    ):
        assert action not in html, action
    page = client.get(f"/events/{stored['first']}").get_data(as_text=True)
    assert "charge.succeeded" in page and "Raw JSON as received" in page
    assert "/replay" not in page and "/ignore" not in page and "Mark ignored" not in page


def test_operator_sees_bulk_actions_tools_and_row_buttons(client, auth, stored):
    auth.login("operator@example.org", "operator")
    html = client.get("/events").get_data(as_text=True)
    assert (
        'name="ids"' in html and "Select all 4 matching this filter" in html and "Tools: pull, retry" in html
    )
    assert "Clean up" not in html  # an admin's tool
    page = client.get(f"/events/{stored['first']}").get_data(as_text=True)
    assert f"/events/{stored['first']}/replay" in page and "Mark ignored" in page


def test_htmx_gets_the_results_partial_others_the_whole_page(client, auth, stored):
    auth.login("viewer@example.org", "viewer")
    partial = client.get("/events?status=error", headers=HX).get_data(as_text=True)
    assert "<html" not in partial and 'role="search"' not in partial
    assert _ids_shown(partial) == {stored["first"], stored["second"]}
    for headers in (
        {**HX, "HX-History-Restore-Request": "true"},
        {**HX, "HX-Boosted": "true"},
        {**HX, "HX-Request-Type": "full"},
        {},
    ):
        assert "<html" in client.get("/events?status=error", headers=headers).get_data(as_text=True), headers


def test_filters_and_counts_follow_the_query_string(client, auth, stored):
    auth.login("viewer@example.org", "viewer")
    html = client.get("/events?type=charge.*&status=error").get_data(as_text=True)
    assert _ids_shown(html) == {stored["first"], stored["second"]}
    counts = dict(re.findall(r'st-(\w+)">\w+</span> <span class="num">(\d+)', html))
    assert counts["error"] == "2" and counts["success"] == "0"  # counts for the filter, whatever its status
    active = re.findall(
        r'<a class="count-chip active" href="[^"]*" aria-current="true">\s*<span class="badge st-(\w+)', html
    )
    assert active == ["error"]  # the chosen status is marked for screen readers too
    html = client.get(f"/events?q={stored['events']['second']['id']}").get_data(as_text=True)
    assert _ids_shown(html) == {stored["second"]}
    assert "No events match this filter." in client.get("/events?type=payout.paid").get_data(as_text=True)


@pytest.mark.parametrize(
    "query, field",
    [
        ("status=sleeping", "status"),
        ("since=31-12-2026", "since"),
        ("ppid=abc", "ppid"),
        ("after=garbage!", "after"),
        ("size=100&before=%7B%7D", "before"),
        ("until=2026-01-01&since=2026-02-01", "until"),
        ("source=moon", "source"),
        ("source=stripe&status=error", "status"),
    ],
)
def test_bad_filters_are_a_message_not_a_500(client, auth, stored, query, field):
    auth.login("viewer@example.org", "viewer")
    for headers in ({}, HX):
        resp = client.get(f"/events?{query}", headers=headers)
        html = resp.get_data(as_text=True)
        assert resp.status_code == 200, (query, resp.status_code)
        label = ev.EventFilter.label(field)  # named as the form labels it, not by its parameter
        assert "could not be read" in html and f"<strong>{escape(label)}</strong>" in html, query


def test_stripe_source_problems_are_a_message(client, auth, world, stored):
    auth.login("viewer@example.org", "viewer")
    html = client.get("/events?source=stripe&ppid=77").get_data(as_text=True)
    assert "<strong>Processor</strong>: there is no payment processor 77" in unescape(html)
    world.fail(r"/v1/events$", [500] * 10)
    html = client.get("/events?source=stripe").get_data(as_text=True)
    assert "Could not list Stripe&#39;s events" in html


def test_replay_swaps_the_status_block_and_writes_an_audit_entry(client, auth, stored):
    auth.login("operator@example.org", "operator")
    resp = client.post(
        f"/events/{stored['first']}/replay",
        data={"no_receipt": "1"},
        headers={**HX, "X-CSRFToken": auth.token()},
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and html.lstrip().startswith('<section class="card" id="event-status"')
    assert "Replayed: success" in html and "st-success" in html and "Replayed without receipts." in html
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "event.replay"))
    assert (entry.actor, entry.object_id, entry.result) == (
        "operator@example.org",
        str(stored["first"]),
        "ok",
    )
    assert entry.parameters["no_receipt"] is True


def test_replay_without_javascript_flashes_and_redirects(client, auth, stored):
    auth.login("operator@example.org", "operator")
    resp = client.post(f"/events/{stored['second']}/replay", data={"csrf_token": auth.token()})
    assert resp.status_code == 302 and resp.headers["Location"] == f"/events/{stored['second']}"
    assert "Replayed: success" in client.get(resp.headers["Location"]).get_data(as_text=True)


def test_mark_ignored_needs_a_reason_and_is_audited(client, auth, stored):
    auth.login("operator@example.org", "operator")
    url = f"/events/{stored['customer']}/ignore"
    empty = client.post(url, data={"reason": "  "}, headers={**HX, "X-CSRFToken": auth.token()})
    assert empty.status_code == 422 and "Say why" in empty.get_data(as_text=True)
    ok = client.post(url, data={"reason": "test data"}, headers={**HX, "X-CSRFToken": auth.token()})
    assert ok.status_code == 200 and "Marked ignored." in ok.get_data(as_text=True)
    assert "marked ignored by operator@example.org: test data" in ok.get_data(as_text=True)
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "event.ignore"))
    assert entry.parameters == {
        "event_id": stored["events"]["customer"]["id"],
        "reason": "test data",
        "was": "success",
    }


def test_bulk_confirmation_says_how_many_then_starts_one_job(client, auth, stored):
    auth.login("operator@example.org", "operator")
    token = auth.token()
    picked = client.post(
        "/events/bulk",
        data={"action": "replay", "ids": [stored["first"], stored["second"]], "csrf_token": token},
        headers=HX,
    )
    assert picked.status_code == 200 and "Replay 2 events?" in picked.get_data(as_text=True)
    assert "Do not send receipts" in picked.get_data(as_text=True)
    criteria = json.dumps({"status": ["success"]})
    matching = client.post(
        "/events/bulk",
        data={"action": "ignore", "all": "1", "criteria": criteria, "csrf_token": token},
        headers=HX,
    )
    assert "Mark ignored 2 events?" in matching.get_data(as_text=True)
    assert "Reason (required)" in matching.get_data(as_text=True)
    no_reason = confirm(client, "/events/bulk", matching, {"csrf_token": token}, headers=HX)
    assert no_reason.status_code == 422 and "Say why" in no_reason.get_data(as_text=True)
    assert "Mark ignored 2 events?" in no_reason.get_data(as_text=True)  # the same confirmation, asked again
    started = confirm(client, "/events/bulk", picked, {"csrf_token": token}, headers=HX)
    assert started.status_code == 202 and "Replay 2 selected events" in started.get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in started.get_data(as_text=True)
    job = db.session.scalar(select(Job))
    assert job.kind == "events.replay" and job.params == {
        "ids": sorted([stored["first"], stored["second"]], reverse=True),
        "filter": None,
        "no_receipt": False,
    }
    assert (
        db.session.scalar(
            select(AuditLog.action).where(AuditLog.object_type == "job", AuditLog.object_id == str(job.id))
        )
        == "job.start"
    )
    ignored = confirm(
        client, "/events/bulk", matching, {"csrf_token": token, "reason": "test data"}, headers=HX
    )
    assert ignored.status_code == 202  # the token of the confirmation asked again still runs it, once
    assert db.session.scalar(select(Job).where(Job.kind == "events.ignore")).params == {
        "ids": [],
        "filter": {"status": ["success"]},
        "reason": "test data",
    }
    nothing = client.post("/events/bulk", data={"action": "replay", "csrf_token": token}, headers=HX)
    assert nothing.status_code == 422 and "Tick at least one event first." in nothing.get_data(as_text=True)
    damaged = client.post(
        "/events/bulk",
        data={"action": "replay", "all": "1", "criteria": "{oops", "csrf_token": token},
        headers=HX,
    )
    assert damaged.status_code == 422 and "damaged" in damaged.get_data(as_text=True)


def test_bulk_without_javascript_confirms_on_a_page_of_its_own(client, auth, stored):
    auth.login("operator@example.org", "operator")
    resp = client.post(
        "/events/bulk", data={"action": "replay", "ids": [stored["first"]], "csrf_token": auth.token()}
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "<html" in html and "Replay 1 event?" in html
    assert '<form method="post" action="/events/bulk">' in html
    run = confirm(client, "/events/bulk", html, {"csrf_token": auth.token()})
    assert run.status_code == 302 and re.fullmatch(r"/jobs/\d+", run.headers["Location"])


def test_tools_confirm_then_start_jobs_and_cleanup_needs_an_admin(client, auth, stored):
    auth.login("operator@example.org", "operator")
    headers = {**HX, "X-CSRFToken": auth.token()}
    pop = client.post(
        "/events/tools/populate-log", data={"types": "charge.succeeded", "limit": "5"}, headers=headers
    )
    assert pop.status_code == 200 and "Populate the log from" in pop.get_data(as_text=True)
    assert "charge.succeeded; at most 5" in pop.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Job)) == 0
    pop = confirm(client, "/events/tools/populate-log", pop, headers=headers)
    assert pop.status_code == 202 and "Populate log from Stripe: charge.succeeded, at most 5" in pop.get_data(
        as_text=True
    )
    retry = client.post("/events/tools/retry-all", data={"limit": "10", "days": "3"}, headers=headers)
    assert retry.status_code == 200 and "Retry up to 10 payments of the last 3 days?" in retry.get_data(
        as_text=True
    )
    retry = confirm(client, "/events/tools/retry-all", retry, headers=headers)
    assert retry.status_code == 202 and "up to 10, last 3 days" in retry.get_data(as_text=True)
    bad = client.post("/events/tools/retry-all", data={"limit": "lots"}, headers=headers)
    assert bad.status_code == 422 and "At most: a whole number from 1 to 10,000" in bad.get_data(as_text=True)
    assert (
        client.post("/events/tools/cleanup", data={"older_than": "90 days"}, headers=headers).status_code
        == 403
    )
    assert client.post("/events/tools/nonsense", data={}, headers=headers).status_code == 404
    auth.logout()
    auth.login("admin@example.org", "admin")
    headers = {**HX, "X-CSRFToken": auth.token()}
    tooyoung = client.post("/events/tools/cleanup", data={"older_than": "2 hours"}, headers=headers)
    assert tooyoung.status_code == 422 and "at least a day" in tooyoung.get_data(as_text=True)
    ok = client.post("/events/tools/cleanup", data={"older_than": "90 days"}, headers=headers)
    assert ok.status_code == 202 and "Clean up events older than 90 days" in ok.get_data(as_text=True)
    kinds = sorted(db.session.scalars(select(Job.kind)))
    assert kinds == ["events.cleanup", "events.populate", "events.retry_all"]
    starts = db.session.scalar(
        select(func.count()).select_from(AuditLog).where(AuditLog.action == "job.start")
    )
    assert starts == 3


def test_viewer_cannot_act_and_posts_need_csrf(client, auth, stored):
    auth.login("viewer@example.org", "viewer")
    token = auth.token()
    for url in (
        f"/events/{stored['first']}/replay",
        f"/events/{stored['first']}/ignore",
        "/events/bulk",
        "/events/tools/populate-log",
        "/events/replay-from-stripe",
    ):
        assert (
            client.post(url, data={"csrf_token": token, "reason": "x", "action": "replay"}).status_code == 403
        ), url
    auth.logout()
    auth.login("operator@example.org", "operator")
    assert client.post(f"/events/{stored['first']}/replay", headers=HX).status_code == 400
    assert db.session.scalar(select(StripeEvent.status).where(StripeEvent.id == stored["first"])) == "error"
    assert (
        db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action.like("event.%")))
        == 0
    )


def test_unknown_event_is_404(client, auth, stored):
    auth.login("operator@example.org", "operator")
    assert client.get("/events/999999").status_code == 404
    assert client.post("/events/999999/replay", headers={"X-CSRFToken": auth.token()}).status_code == 404


def test_the_stripe_source_stores_and_processes_a_missing_event(
    client, auth, world, stored, offline_processor
):
    pay = OneOff(world, amount=5500)
    unknown = pay.event("charge.succeeded")
    world.add(unknown)
    auth.login("operator@example.org", "operator")
    html = client.get("/events?source=stripe").get_data(as_text=True)
    assert "not in paydesk" in html and "Store and process" in html
    resp = client.post(
        "/events/replay-from-stripe",
        data={"event_id": unknown["id"], "ppid": offline_processor.id},
        headers={**HX, "X-CSRFToken": auth.token()},
    )
    assert resp.status_code == 200 and f"{unknown['id']}: success" in unescape(resp.get_data(as_text=True))
    assert (
        db.session.scalar(select(StripeEvent.source).where(StripeEvent.event_id == unknown["id"])) == "replay"
    )


def test_counts_above_the_cap_say_more_than(client, auth, stored, monkeypatch):
    from admin.services.events import queries as ev

    monkeypatch.setattr(ev, "COUNT_CAP", 1)
    assert ev.status_counts(ev.EventFilter()) == {
        "logged": 0,
        "queued": 0,
        "processing": 0,
        "success": 2,
        "error": 2,
        "ignored": 0,
    }
    assert ev.status_counts(ev.EventFilter(), exact=True)["success"] == 2
    auth.login("operator@example.org", "operator")
    html = client.get("/events").get_data(as_text=True)
    counts = dict(re.findall(r'st-(\w+)">\w+</span> <span class="num">([\d,+]+)', html))
    assert counts["error"] == "1+" and counts["ignored"] == "0"
    assert "Select all 2+ matching this filter" in html
    monkeypatch.setattr(ev, "COUNT_CAP", 10_000)
    assert "Select all 4 matching this filter" in client.get("/events").get_data(as_text=True)


def test_a_subscription_filter_is_checked_before_stripe_is_asked(client, auth, world, stored):
    """``?subscription=abc`` says what a subscription id looks like (not Stripe's "invoices: Bad request"); a
    pasted page of text is refused without being echoed back; ``?ppid=999`` is named, as /reconcile does."""
    auth.login("viewer@example.org", "viewer")
    html = unescape(client.get("/events?subscription=abc").get_data(as_text=True))
    assert (
        "<strong>Subscription</strong>: 'abc' is not a subscription id: a subscription id looks like sub_"
        in html
    )
    assert "Bad request" not in html and world.count("GET", r"/v1/invoices") == 0
    long = "sub_" + "x" * 3000
    html = client.get(f"/events?subscription={long}").get_data(as_text=True)
    assert "<strong>Subscription</strong>: at most 255 characters" in html and "x" * 300 not in html
    html = unescape(client.get("/events?ppid=999&status=error").get_data(as_text=True))
    assert "<strong>Processor</strong>: there is no payment processor 999" in html
    assert _ids_shown(html) == {stored["first"], stored["second"]}  # the rest of the filter still applies


def test_tools_refuse_unknown_event_types_and_negative_ages_by_their_labels(client, auth, stored):
    auth.login("admin@example.org", "admin")
    headers = {**HX, "X-CSRFToken": auth.token()}
    bad = client.post(
        "/events/tools/populate-log", data={"types": "invoice.paid, nonsense.type"}, headers=headers
    )
    text = unescape(bad.get_data(as_text=True))
    assert bad.status_code == 422 and "Types: 'nonsense.type' is not a Stripe event type" in text
    assert db.session.scalar(select(func.count()).select_from(Job)) == 0  # no job that would find nothing
    group = client.post("/events/tools/populate-log", data={"types": "invoice.*"}, headers=headers)
    assert group.status_code == 200  # a group of Stripe's types is a type filter Stripe takes: confirmed
    assert confirm(client, "/events/tools/populate-log", group, headers=headers).status_code == 202
    back = client.post("/events/tools/cleanup", data={"older_than": "-5 days"}, headers=headers)
    text = unescape(back.get_data(as_text=True))
    assert back.status_code == 422 and "Older than: '-5 days' is negative" in text and "--" not in text


def test_a_reason_with_a_control_character_is_refused(client, auth, stored):
    auth.login("operator@example.org", "operator")
    headers = {**HX, "X-CSRFToken": auth.token()}
    one = client.post(
        f"/events/{stored['customer']}/ignore", data={"reason": "test\x00data"}, headers=headers
    )
    assert one.status_code == 422 and "Reason: remove the control character (U+0000)" in one.get_data(
        as_text=True
    )
    shown = client.post("/events/bulk", data={"action": "ignore", "ids": [stored["first"]]}, headers=headers)
    bulk = confirm(client, "/events/bulk", shown, {"reason": "a\x1bb"}, headers=headers)
    assert bulk.status_code == 422 and "U+001B" in bulk.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Job)) == 0
    assert db.session.get(StripeEvent, stored["customer"]).status == "success"


def test_an_ignored_event_does_not_claim_the_records_of_its_objects(client, auth, stored):
    auth.login("operator@example.org", "operator")
    client.post(
        f"/events/{stored['invoice']}/ignore",
        data={"reason": "not ours"},
        headers={**HX, "X-CSRFToken": auth.token()},
    )
    html = client.get(f"/events/{stored['invoice']}").get_data(as_text=True)
    assert "Records it created or changed" not in html
    assert "records of its objects" in html and "was ignored, so it created and changed none" in html
    assert "Records it created or changed" in client.get(f"/events/{stored['customer']}").get_data(
        as_text=True
    )
