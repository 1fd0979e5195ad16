"""The dashboard: counts from rows inserted through the models."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from admin.extensions import db
from admin.models import Contribution, ContributionRecur, StripeEvent, StripePaymentIntent
from admin.services.monitoring.dashboard import dashboard_counts, month_bounds
from admin.timeutil import utcnow


def _event(ppid, n, *, received_at, status="success"):
    return StripeEvent(
        processor_id=ppid,
        event_id=f"evt_{n}",
        type="invoice.paid",
        raw="{}",
        status=status,
        received_at=received_at,
    )


def _contribution(ppid, n, amount, currency, status, when):
    return Contribution(
        processor_id=ppid,
        amount=amount,
        currency=currency,
        status=status,
        trxn_id=f"ch_{n}",
        receive_date=when,
    )


def seed(ppid, now: datetime) -> None:
    month_start, _ = month_bounds(now)
    before_month = month_start - timedelta(seconds=1)
    db.session.add_all(
        [
            _event(ppid, 1, received_at=now - timedelta(hours=1)),
            _event(ppid, 2, received_at=now - timedelta(hours=2), status="error"),
            _event(ppid, 3, received_at=now - timedelta(hours=23), status="error"),
            _event(ppid, 4, received_at=now - timedelta(hours=25), status="error"),  # too old
            _event(ppid, 5, received_at=now - timedelta(minutes=5), status="queued"),
        ]
    )
    for n, status in enumerate(
        [
            "requires_payment_method",
            "requires_action",
            "processing",
            "succeeded",
            "canceled",
            "requires_capture",
        ]
    ):
        db.session.add(StripePaymentIntent(stripe_intent_id=f"pi_{n}", processor_id=ppid, status=status))
    for n, status in enumerate(["In Progress", "In Progress", "Cancelled", "Pending", "Failing"]):
        db.session.add(
            ContributionRecur(
                processor_id=ppid, subscription_id=f"sub_{n}", status=status, amount=1000, currency="usd"
            )
        )
    db.session.add_all(
        [
            _contribution(ppid, 1, 2500, "usd", "Completed", now),
            _contribution(ppid, 2, 1050, "usd", "Partially refunded", now),
            _contribution(ppid, 3, 123456, "eur", "Completed", now),
            _contribution(ppid, 4, 500, "jpy", "Completed", now),
            _contribution(ppid, 5, 9900, "usd", "Completed", before_month),  # last month
            _contribution(ppid, 6, 700, "usd", "Failed", now),
            _contribution(ppid, 7, 800, "usd", "Failed", now),
            _contribution(ppid, 8, 900, "usd", "Failed", before_month),  # last month
            _contribution(ppid, 9, 4000, "usd", "Pending", now),
            _contribution(ppid, 10, 4000, "usd", "Refunded", now),
        ]
    )
    db.session.commit()


@pytest.mark.postgres
def test_dashboard_counts_service(offline_processor):
    now = datetime(2026, 3, 15, 12, 0, 0)
    seed(offline_processor.id, now)
    c = dashboard_counts(now)
    assert (c.events_24h, c.events_24h_error) == (4, 2)
    assert c.intents_incomplete == 4
    assert c.subscriptions_active == 2
    assert c.contributions_month == 4
    assert [(t.currency, t.count, t.amount) for t in c.contributions_month_totals] == [
        ("eur", 1, 123456),
        ("jpy", 1, 500),
        ("usd", 2, 3550),
    ]
    assert c.contributions_month_failed == 2
    assert c.month_start == datetime(2026, 3, 1)


@pytest.mark.parametrize(
    "now, start, end",
    [
        (datetime(2026, 12, 31, 23, 59), datetime(2026, 12, 1), datetime(2027, 1, 1)),
        (datetime(2026, 2, 1, 0, 0), datetime(2026, 2, 1), datetime(2026, 3, 1)),
    ],
)
def test_month_bounds(now, start, end):
    assert month_bounds(now) == (start, end)


def test_dashboard_page_shows_counts(client, auth, offline_processor):
    seed(offline_processor.id, utcnow())
    auth.login("viewer@example.org", "viewer")
    resp = client.get("/")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)

    def value(label):
        m = re.search(re.escape(label) + r'</p>\s*<p class="stat-value">\s*(?:<a [^>]*>)?(\d+)', html)
        assert m, f"no card {label!r}"
        return int(m.group(1))

    assert value("Events received, last 24 h") == 4
    assert value("Events in error, last 24 h") == 2
    assert value("Incomplete payment intents") == 4
    assert value("Active subscriptions") == 2
    assert value("Contributions this month") == 4
    assert value("Failed contributions this month") == 2
    for money in ("35.50 USD", "1,234.56 EUR", "500 JPY"):
        assert money in html
    # Signed-in user, role, navigation.
    assert "viewer@example.org" in html and 'class="badge role-viewer"' in html
    assert '<a href="/" class="active" aria-current="page">Dashboard</a>' in html
    assert '<a href="/audit">Audit</a>' in html


def test_nav_greys_out_pages_not_built_and_links_those_that_are(client, auth, monkeypatch):
    """Every nav entry whose page exists is a link; one whose endpoint is not registered is shown, not linked."""
    from admin.views import NAV_ITEMS

    monkeypatch.setattr("admin.views.NAV_ITEMS", (*NAV_ITEMS, ("Later", "later.index")))
    auth.login("viewer@example.org", "viewer")
    html = client.get("/").get_data(as_text=True)
    assert '<a href="/events">Events</a>' in html and '<a href="/jobs">Jobs</a>' in html
    assert 'href="/events?status=error"' in html
    assert 'href="/intents?status=open"' in html  # the incomplete intents card: started, not finished
    assert '<span class="soon" title="Not built yet">Later</span>' in html
    assert '<a href="/connect">Connect</a>' in html


def test_dashboard_links_to_pages_that_exist(client, auth):
    """The nav and the counts link to every page that is built."""
    auth.login("viewer@example.org", "viewer")
    html = client.get("/").get_data(as_text=True)
    for label, path in (
        ("Events", "/events"),
        ("Subscriptions", "/subscriptions"),
        ("Customers", "/customers"),
        ("Contributions", "/contributions"),
        ("Payments", "/payments"),
    ):
        assert f'<a href="{path}">{label}</a>' in html
    assert 'href="/subscriptions?status=In+Progress"' in html
    assert 'href="/contributions?status=Completed&amp;month=' in html


def test_dashboard_partial_for_htmx(client, auth):
    auth.login("viewer@example.org", "viewer")
    frag = client.get("/", headers={"HX-Request": "true", "HX-Request-Type": "partial"})
    assert frag.status_code == 200
    text = frag.get_data(as_text=True)
    assert "<html" not in text and 'class="stats"' in text
    full = client.get("/", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in full.get_data(as_text=True)


def test_dashboard_needs_sign_in(client):
    resp = client.get("/")
    assert resp.status_code == 302 and resp.headers["Location"] == "/login?next=%2F"


def test_dashboard_shows_the_webhook_pipelines_health(client, auth, offline_processor):
    """Refused deliveries, card-testing probes and the worker's backlog are on the first page staff see."""
    import stripe_objects as so
    from conftest import WEBHOOK_SECRET
    from stripe_objects import signed

    target = f"/webhooks/stripe/{offline_processor.id}"
    body, headers = signed(so.event("charge.succeeded", so.charge()), "whsec_wrong")
    assert client.post(target, data=body, headers=headers).status_code == 400
    probe = so.charge(customer=None, payment_intent=None, status="failed", failure_code="card_declined")
    for ev in (so.event("charge.failed", probe), so.event("customer.updated", so.customer())):
        body, headers = signed(ev, WEBHOOK_SECRET)
        assert client.post(target, data=body, headers=headers).status_code == 200
    from admin.webhooks.pipeline import process
    from admin.worker.queues import claim_events

    (first,) = claim_events("test-worker", 1)  # the card-testing probe; the other stays queued
    process(first, "test-worker")
    auth.login("viewer@example.org", "viewer")
    html = client.get("/").get_data(as_text=True)

    def value(label):
        m = re.search(re.escape(label) + r'</p>\s*<p class="stat-value">\s*(?:<a [^>]*>)?(\d+)', html)
        assert m, f"no card {label!r}"
        return int(m.group(1))

    assert value("Webhook deliveries refused") == 1 and "last: signature mismatch" in html
    assert value("Card-testing probes, last 24 h") == 1
    assert value("Events waiting for the worker") == 1


def _stat(html: str, label: str) -> str:
    m = re.search(re.escape(label) + r'</p>\s*<p class="stat-value">\s*(?:<a[^>]*>)?([^<]+)', html)
    assert m, f"no card {label!r}"
    return m.group(1).strip()


def test_dashboard_shows_queue_health_at_a_glance(app, client, auth, offline_processor):
    from admin.services.monitoring import health
    from admin.timeutil import to_unix

    now = utcnow()
    auth.login(role="viewer")
    html = client.get("/").get_data(as_text=True)
    assert _stat(html, "Oldest queued event waiting") == "none"
    assert _stat(html, "Workers running") == "0" and "no worker has reported" in html

    waiting = _event(offline_processor.id, 1, received_at=now - timedelta(minutes=20), status="queued")
    waiting.next_attempt_at = now - timedelta(minutes=20)
    db.session.add(waiting)
    for n in range(3):  # processed in the last hour, one failed
        row = _event(
            offline_processor.id,
            10 + n,
            received_at=now - timedelta(minutes=30),
            status="error" if n == 0 else "success",
        )
        row.created, row.processed_at = to_unix(now - timedelta(minutes=30)), now - timedelta(minutes=29)
        db.session.add(row)
    db.session.commit()
    health.beat("host:1")

    html = client.get("/").get_data(as_text=True)
    assert _stat(html, "Oldest queued event waiting") == "20 min"
    assert "too long: is the worker running?" in html  # READY_QUEUE_MAX_AGE is 10 minutes
    assert _stat(html, "Workers running") == "1" and "last heartbeat 0 s ago" in html
    assert _stat(html, "Events in error, last hour") == "1"
    assert "Events per minute, last hour: received and processed" in html
    assert "Events in error per hour, last 48 hours" in html
    # the charts' numbers, in words for screen readers: 4 received (1 waiting + 3), 3 processed, 1 error
    assert (
        "Received: 4 in all" in html and "Processed: 3 in all" in html and "Events in error: 1 in all" in html
    )
