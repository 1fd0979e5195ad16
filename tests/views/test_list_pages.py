"""One list-page contract on every list (events, subscriptions, customers, contributions, payments, intents,
jobs, outbox, audit): following a filtered list's "Older" links shows each matching row once, "Newer" leads back
to the same rows, a crafted page link is a message rather than an error, and the CSV export holds exactly the
filtered rows in the order the pages show them."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from html import unescape

import pytest

from admin.extensions import db
from admin.listing import encode_cursor
from admin.models import (
    AuditLog,
    Contact,
    Contribution,
    ContributionRecur,
    OutboxTask,
    Payment,
    StripeCustomer,
    StripeEvent,
    StripePaymentIntent,
)
from admin.models.jobs import Job

WHEN = datetime(2026, 10, 5, 12, 0)
MATCHING, OTHERS = 30, 4  # more than a page (25) match the filter; a few do not


def _at(n: int) -> datetime:
    return WHEN + timedelta(minutes=n // 3)  # three rows share each moment: the key's id breaks the tie


def _rows(kind: str, ppid: int, n: int, hit: bool) -> list:
    tag = f"{'in' if hit else 'out'}{n}"
    at = _at(n)
    if kind == "events":
        return [
            StripeEvent(
                processor_id=ppid,
                event_id=f"evt_{tag}",
                type="invoice.paid",
                created=int(at.timestamp()),
                raw="{}",
                status="error" if hit else "success",
            )
        ]
    if kind == "subscriptions":
        return [
            ContributionRecur(
                processor_id=ppid,
                subscription_id=f"sub_{tag}",
                amount=1500,
                currency="usd",
                status="Cancelled" if hit else "In Progress",
                start_date=at,
            )
        ]
    if kind == "customers":
        contact = Contact(
            display_name=f"{'Listed' if hit else 'Other'} donor {n}",
            email=f"{tag}@example.org",
            created_at=at,
        )
        return [contact, StripeCustomer(customer_id=f"cus_{tag}", contact=contact, processor_id=ppid)]
    if kind in ("contributions", "payments"):
        c = Contribution(
            processor_id=ppid,
            amount=1000 + n,
            currency="usd",
            trxn_id=f"ch_{tag}",
            receive_date=at,
            status="Failed" if hit and kind == "contributions" else "Completed",
        )
        if kind == "contributions":
            return [c]
        return [
            c,
            Payment(
                contribution=c,
                processor_id=ppid,
                trxn_id=f"ch_{tag}",
                charge_id=f"ch_{tag}",
                amount=1000 + n,
                currency="usd",
                status="Refunded" if hit else "Completed",
                payment_date=at,
            ),
        ]
    if kind == "intents":
        return [
            StripePaymentIntent(
                stripe_intent_id=f"pi_{tag}",
                processor_id=ppid,
                amount=2000,
                currency="usd",
                status="canceled" if hit else "succeeded",
                created_date=at,
            )
        ]
    if kind == "jobs":
        return [
            Job(
                kind="events.cleanup",
                title=f"Job {tag}",
                params={},
                actor="a@example.org",
                status="failed" if hit else "done",
                created_at=at,
            )
        ]
    if kind == "outbox":
        return [
            OutboxTask(
                kind="receipt",
                key=f"receipt:{tag}",
                payload={},
                status="error" if hit else "success",
                created_at=at,
            )
        ]
    return [
        AuditLog(at=at, actor="a@example.org", action="test.listed" if hit else "test.other", result="ok")
    ]


# list -> (page, its filter, the id prefix of its rows)
LISTS = {
    "events": ("/events", "status=error", "event"),
    "subscriptions": ("/subscriptions", "status=Cancelled", "recur"),
    "customers": ("/customers", "q=Listed", "contact"),
    "contributions": ("/contributions", "status=Failed", "contribution"),
    "payments": ("/payments", "status=Refunded", "payment"),
    "intents": ("/intents", "status=canceled", "intent"),
    "jobs": ("/jobs", "status=failed", "job"),
    "outbox": ("/jobs/outbox", "status=error", "task"),
    "audit": ("/audit", "action=test.listed", "audit"),
}
EXPORTS = {"outbox": "/jobs/outbox/export.csv"}


@pytest.fixture
def listed(request, client, auth, offline_processor):
    kind = request.param
    for n in range(MATCHING + OTHERS):
        db.session.add_all(_rows(kind, offline_processor.id, n, hit=n < MATCHING))
    db.session.commit()
    auth.login("viewer@example.org", "viewer")
    return kind


def _ids(html: str, prefix: str) -> list[str]:
    return re.findall(rf'<tr id="{prefix}-(\d+)"', html)


def _link(html: str, rel: str) -> str | None:
    m = re.search(rf'<a class="button" rel="{rel}" href="([^"]+)"', html)
    return unescape(m.group(1)) if m else None


@pytest.mark.parametrize("listed", list(LISTS), indirect=True)
def test_pages_show_each_filtered_row_once_and_the_csv_holds_exactly_them(client, listed):
    path, args, prefix = LISTS[listed]
    first = client.get(f"{path}?{args}")
    assert first.status_code == 200
    html = first.get_data(as_text=True)
    page1 = _ids(html, prefix)
    assert len(page1) == 25
    older = _link(html, "next")
    assert older, "a list longer than a page links to its older rows"
    html2 = client.get(older).get_data(as_text=True)
    page2 = _ids(html2, prefix)
    assert len(page2) == MATCHING - 25 and not set(page1) & set(page2) and _link(html2, "next") is None
    newer = _link(html2, "prev")
    assert _ids(client.get(newer).get_data(as_text=True), prefix) == page1  # back to the same rows

    assert "download" in html and "export.csv" in html  # the page links its export, with its filter
    export = EXPORTS.get(listed, f"{path}/export.csv")
    resp = client.get(f"{export}?{args}")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.headers["Content-Disposition"].startswith(f'attachment; filename="{listed}-')
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True), newline="")))
    assert [r["id"] for r in rows] == page1 + page2  # exactly the filtered rows, in the pages' order
    everything = list(csv.DictReader(io.StringIO(client.get(export).get_data(as_text=True), newline="")))
    assert len(everything) >= MATCHING + OTHERS  # the filter, not the export, left the others out


CRAFTED = [
    "garbage",
    encode_cursor([1e30, 1e30]),
    encode_cursor([None, None]),
    encode_cursor([[1], [2]]),
    encode_cursor(["2026-10-05", "x"]),
    encode_cursor([10**30]),
    encode_cursor([]),
    "W3siZHQiOiJ4In0sMV0",
]


@pytest.mark.parametrize("listed", list(LISTS), indirect=True)
def test_a_crafted_page_link_is_a_message_and_the_first_page(client, listed):
    path, args, prefix = LISTS[listed]
    first = _ids(client.get(f"{path}?{args}").get_data(as_text=True), prefix)
    for cursor in CRAFTED:
        for name in ("after", "before"):
            resp = client.get(f"{path}?{args}&{name}={cursor}")
            html = resp.get_data(as_text=True)
            assert resp.status_code == 200, (cursor, name)
            assert "page link is damaged" in html, (cursor, name)
            assert _ids(html, prefix) == first
