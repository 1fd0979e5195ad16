"""``/audit``: every staff action newest first, each filter in the query string, objects linked,
bad filters as messages, read-only."""

from __future__ import annotations

import re
from datetime import datetime
from html import escape, unescape

import pytest

from admin.extensions import db
from admin.models import AuditLog
from admin.services.core.audit import AuditFilter

HX = {"HX-Request": "true"}


@pytest.fixture
def entries(app, offline_processor):
    spec = [
        ("ada@example.org", "event.replay", "event", "41", "ok", datetime(2026, 11, 1, 9), "req_one"),
        ("ada@example.org", "event.ignore", "event", "42", "ok", datetime(2026, 11, 2, 9), None),
        ("bob@example.org", "job.start", "job", "7", "ok", datetime(2026, 11, 3, 9), None),
        ("cli:root", "import.charge", "charge", "ch_9", "error", datetime(2026, 11, 4, 9), "req_two"),
        (
            "bob@example.org",
            "reconcile.cancel_local",
            "contribution",
            "5",
            "ok",
            datetime(2026, 11, 5, 9),
            None,
        ),
    ]
    for actor, action, otype, oid, result, at, rid in spec:
        db.session.add(
            AuditLog(
                actor=actor,
                action=action,
                object_type=otype,
                object_id=oid,
                result=result,
                at=at,
                stripe_request_id=rid,
                processor_id=offline_processor.id,
                parameters={"why": "because"} if action == "event.ignore" else None,
            )
        )
    db.session.commit()


def actions(html: str) -> list[str]:
    return re.findall(r'<td class="mono"[^>]*>([\w.]+)</td>', html)


def test_everything_newest_first_with_objects_linked(client, auth, entries):
    auth.login("viewer@example.org", "viewer")
    html = client.get("/audit").get_data(as_text=True)
    shown = actions(html)
    assert shown[0] == "user.sign_in"  # the viewer's own sign-in, the newest entry
    assert [a for a in shown if not a.startswith(("user.", "processor."))] == [
        "reconcile.cancel_local",
        "import.charge",
        "job.start",
        "event.ignore",
        "event.replay",
    ]
    assert (
        '<a href="/events/41" class="mono">41</a>' in html and '<a href="/jobs/7" class="mono">7</a>' in html
    )
    assert '<span class="mono">ch_9</span>' in html  # no page for a charge: shown, not linked
    assert "req_two" in html and "because" in html
    assert '<form method="post"' not in html.split('<div id="results"')[1]  # read-only


@pytest.mark.parametrize(
    "query, expected",
    [
        ("actor=ADA@example.org", ["event.ignore", "event.replay"]),
        ("action=job.start", ["job.start"]),
        ("action=event.*", ["event.ignore", "event.replay"]),
        ("action=job.start&action=import.charge", ["import.charge", "job.start"]),
        ("result=error", ["import.charge"]),
        ("q=req_one", ["event.replay"]),
        ("q=ch_9", ["import.charge"]),
        ("since=2026-11-02&until=2026-11-03", ["job.start", "event.ignore"]),
    ],
)
def test_each_filter(client, auth, entries, query, expected):
    auth.login("viewer@example.org", "viewer")
    assert actions(client.get(f"/audit?{query}").get_data(as_text=True)) == expected
    partial = client.get(f"/audit?{query}", headers=HX).get_data(as_text=True)
    assert "<html" not in partial and actions(partial) == expected


def test_paging_and_bad_filters(client, auth, entries):
    for _ in range(30):
        db.session.add(AuditLog(actor="x@example.org", action="bulk.test", result="ok"))
    db.session.commit()
    auth.login("viewer@example.org", "viewer")
    first = client.get("/audit?action=bulk.test").get_data(as_text=True)
    assert len(actions(first)) == 25
    older = re.search(r'href="(/audit\?[^"]*after=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert len(actions(client.get(older).get_data(as_text=True))) == 5
    for query, field in (
        ("result=maybe", "result"),
        ("since=soon", "since"),
        ("ppid=x", "ppid"),
        ("after=%%%", "after"),
        ("since=2026-11-05&until=2026-11-01", "until"),
    ):
        resp = client.get(f"/audit?{query}")
        label = escape(AuditFilter.label(field))  # as the form labels it: "Result", "From", "Page link"
        assert resp.status_code == 200 and f"<strong>{label}</strong>" in resp.get_data(as_text=True), query
    assert "<strong>Processor</strong>: there is no payment processor 999" in unescape(
        client.get("/audit?ppid=999").get_data(as_text=True)
    )
    assert "No entries match this filter." in client.get("/audit?actor=nobody").get_data(as_text=True)


def test_parameters_read_as_text_not_python(client, auth, offline_processor):
    db.session.add(
        AuditLog(
            actor="ada@example.org",
            action="contact.update",
            object_type="contact",
            object_id="3",
            result="ok",
            parameters={
                "name": ["Ada", "Ada Lovelace"],
                "dry_run": False,
                "ids": [4, 5],
                "filter": {"status": ["error"]},
            },
        )
    )
    db.session.commit()
    auth.login("viewer@example.org", "viewer")
    html = unescape(client.get("/audit?action=contact.update").get_data(as_text=True))
    params = re.search(r'data-label="Parameters">(.*?)</td>', html, re.S).group(1)
    text = " ".join(re.sub(r"<[^>]+>", " ", params).split())
    assert text == "dry run no filter status error ids 4, 5 name Ada, Ada Lovelace", text
    assert "[" not in params and "{" not in params
