"""``/intents`` and ``/intents/<id>``: the list with its filters, counts and totals; one intent as Stripe
has it now; cancel, capture, refresh; bulk cancel with its confirmation; roles; the card-testing banner."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from confirm_support import token_of
from localstripe_intents import abandoned, stripe_status, track, uncaptured
from sqlalchemy import select

from admin.extensions import db
from admin.models import AuditLog, StripePaymentIntent
from admin.services.intents.queries import by_intent_id
from admin.timeutil import utcnow
from admin.worker import queues

HTMX = {"HX-Request": "true"}


def post(client, auth, url: str, data: dict | None = None, htmx: bool = True, page: str = "/intents"):
    token = auth.token(page)
    headers = {**HTMX, "X-CSRFToken": token} if htmx else {}
    return client.post(url, data={**(data or {}), "csrf_token": token}, headers=headers)


def add(
    ppid: int,
    name: str,
    status: str,
    amount: int = 1000,
    currency: str = "usd",
    age=timedelta(minutes=5),
    **kw,
):
    row = StripePaymentIntent(
        stripe_intent_id=f"pi_{name}",
        processor_id=ppid,
        status=status,
        amount=amount,
        currency=currency,
        created_date=utcnow() - age,
        **kw,
    )
    db.session.add(row)
    db.session.commit()
    return row


def test_the_list_filters_counts_and_totals(client, auth, offline_processor):
    ppid = offline_processor.id
    add(ppid, "left", "requires_payment_method", 2000, age=timedelta(hours=2), description="Spring appeal")
    add(ppid, "fresh", "requires_action", 3000)
    add(ppid, "paid", "succeeded", 5000, "eur")
    auth.login("viewer@example.org", "viewer")
    html = client.get("/intents").get_data(as_text=True)
    assert "pi_left" in html and "pi_paid" in html and "3</strong> intents match" in html
    totals = re.findall(
        r'<tr><th scope="row">(\w+)</th><td class="num"[^>]*>(\d+)</td>\s*<td class="num"[^>]*>([^<]+)</td>',
        html,
    )
    assert totals == [("EUR", "1", "50.00 EUR"), ("USD", "2", "50.00 USD")]  # the records pages' totals table
    assert "requires payment method</span>" in html  # chip labels read as words
    chosen = client.get("/intents?status=requires_action").get_data(as_text=True)
    assert re.findall(
        r'count-chip active"[^>]*aria-current="true">\s*<span class="badge st-(\w+)', chosen
    ) == ["requires_action"]
    html = client.get("/intents?status=incomplete&older_than=1+hour").get_data(as_text=True)
    assert "pi_left" in html and "pi_fresh" not in html and "Spring appeal" in html and "2 h old" in html
    frag = client.get("/intents?status=incomplete", headers={**HTMX, "HX-Request-Type": "partial"})
    text = frag.get_data(as_text=True)
    assert "<html" not in text and "pi_fresh" in text and "pi_paid" not in text
    bad = client.get("/intents?older_than=soon&status=incomplete").get_data(as_text=True)
    assert (
        "cannot read &#39;soon&#39; as an age" in bad and "pi_fresh" in bad
    )  # the rest of the filter applies
    assert "Cancel in Stripe" not in html  # a viewer sees no buttons
    empty = client.get("/intents?q=pi_nothing").get_data(as_text=True)
    assert "No payment intents match this filter." in empty


@pytest.mark.localstripe
def test_the_detail_shows_stripe_now_paydesk_and_what_differs(client, auth, processor):
    pi = uncaptured(processor, 4200)
    track(processor, pi, status="requires_payment_method", stripe_updated=0)  # paydesk is behind
    auth.login("viewer@example.org", "viewer")
    html = client.get(f"/intents/{pi['id']}").get_data(as_text=True)
    assert "In Stripe now" in html and "Authorised, not captured" in html and "42.00 USD" in html
    assert "paydesk's record differs from Stripe" in html and "requires_capture in Stripe" in html
    assert "Operators can refresh, capture and cancel" in html

    untracked = abandoned(processor)
    html = client.get(f"/intents/{untracked['id']}").get_data(as_text=True)
    assert "paydesk does not track this intent yet" in html
    assert client.get("/intents/pi_neverexisted").status_code == 404
    assert client.get("/intents/not-an-intent").status_code == 404


def test_the_detail_says_plainly_when_stripe_cannot_be_reached(client, auth, offline_processor):
    add(offline_processor.id, "local", "requires_action", 1500)  # the processor's API base is a closed port
    auth.login("viewer@example.org", "viewer")
    resp = client.get("/intents/pi_local")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Could not ask Stripe for this intent just now" in html
    assert "Showing paydesk&#39;s record only" in html and "15.00 USD" in html


@pytest.mark.localstripe
def test_operator_cancels_captures_and_refreshes_from_the_page(client, auth, processor):
    left, held = abandoned(processor, 2000), uncaptured(processor, 3000)
    track(processor, left)
    track(processor, held)
    auth.login("operator@example.org", "operator")
    page = client.get(f"/intents/{held['id']}").get_data(as_text=True)
    assert "Capture" in page and 'name="action_key"' in page

    resp = post(
        client, auth, f"/intents/{held['id']}/capture", {"amount": "31.00"}, page=f"/intents/{held['id']}"
    )
    assert resp.status_code == 422 and "more than the 30.00 USD authorised" in resp.get_data(as_text=True)
    assert stripe_status(processor, held["id"])["status"] == "requires_capture"
    resp = post(client, auth, f"/intents/{held['id']}/capture", {"amount": "10", "action_key": "k1"})
    assert resp.status_code == 200 and "Captured 10.00 USD of 30.00 USD" in resp.get_data(as_text=True)
    assert "<html" not in resp.get_data(as_text=True)  # htmx: the detail block only

    resp = post(client, auth, f"/intents/{left['id']}/cancel", {"action_key": "k2"})
    assert resp.status_code == 200 and f"Cancelled {left['id']} (abandoned)." in resp.get_data(as_text=True)
    resp = post(client, auth, f"/intents/{left['id']}/cancel", {"action_key": "k3"})
    assert resp.status_code == 200 and "already cancelled in Stripe" in resp.get_data(as_text=True)
    resp = post(client, auth, f"/intents/{left['id']}/refresh", htmx=False)
    assert resp.status_code == 302 and resp.headers["Location"] == f"/intents/{left['id']}"  # no JavaScript
    actions = [
        (a.action, a.parameters.get("outcome"))
        for a in db.session.scalars(
            select(AuditLog).where(AuditLog.object_type == "intent").order_by(AuditLog.id)
        )
    ]
    assert actions == [
        ("intent.capture", "captured"),
        ("intent.cancel", "cancelled"),
        ("intent.cancel", "already_cancelled"),
        ("intent.refresh", "refreshed"),
    ]


@pytest.mark.localstripe
def test_a_viewer_cannot_cancel_or_capture(client, auth, processor):
    held = uncaptured(processor)
    track(processor, held)
    auth.login("viewer@example.org", "viewer")
    for verb in ("cancel", "capture", "refresh"):
        assert post(client, auth, f"/intents/{held['id']}/{verb}").status_code == 403
    assert (
        post(
            client, auth, "/intents/bulk", {"ids": str(by_intent_id(held["id"]).id), "step": "run"}
        ).status_code
        == 403
    )
    assert stripe_status(processor, held["id"])["status"] == "requires_capture"
    assert db.session.scalar(select(AuditLog.id).where(AuditLog.object_type == "intent")) is None


def test_bulk_cancel_confirms_how_many_and_how_much_then_starts_a_job(client, auth, offline_processor):
    ppid = offline_processor.id
    rows = [
        add(ppid, "a", "requires_payment_method", 1000),
        add(ppid, "b", "requires_action", 2550),
        add(ppid, "c", "requires_capture", 5000, "eur"),
        add(ppid, "d", "succeeded", 9999),
    ]
    auth.login("operator@example.org", "operator")
    resp = post(client, auth, "/intents/bulk", {"action": "cancel", "ids": [str(r.id) for r in rows]})
    html = resp.get_data(as_text=True)
    assert "Cancel 3 payment intents in Stripe?" in html
    assert (
        "<strong>50.00 EUR</strong>, <strong>35.50 USD</strong>" in html and "1 of the chosen intent" in html
    )
    shown = post(
        client,
        auth,
        "/intents/bulk",
        {"action": "cancel", "all": "1", "criteria": '{"status": ["incomplete"]}'},
    )
    resp = post(
        client, auth, "/intents/bulk", {"step": "run", "token": token_of(shown.get_data(as_text=True))}
    )
    assert resp.status_code == 202 and "Cancel payment intents matching status=incomplete" in resp.get_data(
        as_text=True
    )
    nojs = post(client, auth, "/intents/bulk", {"action": "cancel", "all": "1", "criteria": "{}"}, htmx=False)
    assert "Cancel 3 payment intents in Stripe?" in nojs.get_data(as_text=True) and "<html" in nojs.get_data(
        as_text=True
    )
    assert post(client, auth, "/intents/bulk", {"action": "cancel"}).status_code == 422  # nothing ticked


def test_process_now_is_for_admins(client, auth, offline_processor):
    auth.login("operator@example.org", "operator")
    data = {"cancel_incomplete": "1 hour", "delete_old": "3 months"}
    assert post(client, auth, "/intents/tools/process-stripe", data).status_code == 403
    assert post(client, auth, "/intents/tools/import", {"since": "a while"}).status_code == 422
    auth.logout()
    auth.login("admin@example.org", "admin")
    assert post(client, auth, "/intents/tools/process-stripe", data).status_code == 202
    assert (
        post(client, auth, "/intents/tools/process-stripe", {**data, "delete_old": "later"}).status_code
        == 422
    )


def test_the_card_testing_banner_is_on_every_staff_page_at_the_threshold_only(
    app, client, auth, offline_processor
):
    app.config["CARD_TESTING_ALARM_CACHE_SECONDS"] = 0
    app.config["CARD_TESTING_ALARM_THRESHOLD"] = 5
    for n in range(4):
        add(
            offline_processor.id,
            f"probe{n}",
            "requires_payment_method",
            last_error="Your card was declined.",
            last_error_at=utcnow() - timedelta(minutes=n),
        )
    auth.login("viewer@example.org", "viewer")
    assert "Possible card testing" not in client.get("/").get_data(as_text=True)
    add(
        offline_processor.id,
        "probe4",
        "requires_payment_method",
        last_error="declined",
        last_error_at=utcnow(),
    )
    for page in ("/", "/events", "/jobs", "/intents"):
        html = client.get(page).get_data(as_text=True)
        assert f"Possible card testing on {offline_processor.name}" in html, page
        assert "5 failed payments in the last 60 minutes" in html
    link = f"/intents?ppid={offline_processor.id}&amp;failed_within=60+minutes"
    assert link in html
    listed = client.get(link.replace("&amp;", "&")).get_data(as_text=True)
    assert "5</strong> intents match" in listed


@pytest.mark.localstripe
def test_the_demos_abandoned_and_3ds_intents_show_on_the_page(client, auth, processor):
    """make demo's intents through localstripe: the abandoned one and the one stopped at 3-D Secure send no
    webhook; the import from Stripe's list (which make demo runs) puts them on /intents."""
    from admin.demo_data import create_demo_data
    from admin.services.core import jobs
    from admin.services.settings.processors import gateway

    summary = create_demo_data(gateway(processor))
    jobs.start("intents.import", {"since": "1 hour"}, processor_id=processor.id)
    while queues.run_jobs("test", seconds=60):
        pass
    auth.login("viewer@example.org", "viewer")
    html = client.get(f"/intents?ppid={processor.id}&status=incomplete").get_data(as_text=True)
    assert summary["abandoned"] in html and summary["requires_action"] in html
    assert "Abandoned" in html and "Donation waiting for 3-D Secure" in html
    assert by_intent_id(summary["requires_action"]).status == "requires_action"


def test_tools_name_their_fields_by_label_and_refuse_negative_ages(client, auth, offline_processor):
    auth.login("admin@example.org", "admin")
    since = post(client, auth, "/intents/tools/import", {"since": "-5 days"})
    text = unescape(since.get_data(as_text=True))
    assert (
        since.status_code == 422
        and "Created in the last: '-5 days' is negative" in text
        and "--since" not in text
    )
    old = post(
        client, auth, "/intents/tools/process-stripe", {"cancel_incomplete": "1 hour", "delete_old": "later"}
    )
    assert "Delete final records older than: cannot read 'later'" in unescape(old.get_data(as_text=True))
    listed = client.get("/intents?older_than=-1+hour&ppid=999").get_data(as_text=True)
    assert "<strong>Older than</strong>" in listed and "<strong>Processor</strong>" in listed
