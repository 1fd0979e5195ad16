"""Read-only lists: exactly the pages' filters (a bad value named as the page names it) and their keyset
cursors."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from admin.extensions import db
from admin.models import COMPLETED, FAILED, AuditLog, Contribution, Payment


@pytest.fixture
def gifts(app, offline_processor):
    start = datetime(2026, 11, 1, 12, 0)
    rows = []
    for n in range(30):
        c = Contribution(
            processor_id=offline_processor.id,
            amount=1000 + n,
            currency="usd",
            status=FAILED if n % 10 == 0 else COMPLETED,
            trxn_id=f"ch_{n:03d}",
            receive_date=start + timedelta(hours=n),
        )
        db.session.add(c)
        db.session.flush()
        if c.status == COMPLETED:
            db.session.add(
                Payment(
                    contribution_id=c.id,
                    processor_id=offline_processor.id,
                    trxn_id=c.trxn_id,
                    charge_id=c.trxn_id,
                    amount=c.amount,
                    currency="usd",
                    payment_date=c.receive_date,
                )
            )
        rows.append(c)
    db.session.commit()
    return rows


def test_contributions_page_by_page_with_the_pages_cursor(client, reader, gifts):
    first = client.get("/api/v1/contributions", headers=reader).json
    assert len(first["data"]) == 25 and first["has_more"] is True
    assert first["data"][0]["trxn_id"] == "ch_029"  # newest first, as on the page
    second = client.get(
        "/api/v1/contributions", headers=reader, query_string={"after": first["next_cursor"]}
    ).json
    assert [c["trxn_id"] for c in second["data"]] == [f"ch_{n:03d}" for n in range(4, -1, -1)]
    assert second["has_more"] is False and second["next_cursor"] is None
    everything = {c["id"] for c in first["data"] + second["data"]}
    assert everything == {g.id for g in gifts}


def test_the_same_filters_as_the_page(client, reader, gifts):
    failed = client.get("/api/v1/contributions", headers=reader, query_string={"status": "Failed"}).json[
        "data"
    ]
    assert sorted(c["trxn_id"] for c in failed) == ["ch_000", "ch_010", "ch_020"]
    big = client.get(
        "/api/v1/contributions", headers=reader, query_string={"min_amount": "10.25", "size": 100}
    ).json["data"]
    assert {c["amount"] for c in big} == set(range(1025, 1030))
    day = client.get(
        "/api/v1/payments", headers=reader, query_string={"since": "2026-11-02", "until": "2026-11-02"}
    )
    assert {p["trxn_id"] for p in day.json["data"]} == {f"ch_{n:03d}" for n in range(12, 30) if n % 10}
    one = client.get("/api/v1/payments", headers=reader, query_string={"charge": "ch_005"}).json["data"]
    assert [p["amount"] for p in one] == [1005]


@pytest.mark.parametrize(
    "path, query, field",
    [
        ("/api/v1/contributions", {"status": "Lost"}, "status"),
        ("/api/v1/contributions", {"min_amount": "lots"}, "min_amount"),
        ("/api/v1/contributions", {"since": "yesterday"}, "since"),
        ("/api/v1/contributions", {"after": "not-a-cursor"}, "after"),
        ("/api/v1/payments", {"charge": "pi_123"}, "charge"),
        ("/api/v1/events", {"source": "stripe"}, "source"),
        ("/api/v1/jobs", {"kind": "nonsense.kind"}, "kind"),
        ("/api/v1/audit", {"ppid": "999"}, "ppid"),
        ("/api/v1/subscriptions", {"interval": "fortnight"}, "interval"),
        ("/api/v1/intents", {"older_than": "a while"}, "older_than"),
    ],
)
def test_a_bad_filter_is_400_naming_the_parameter(client, reader, app, path, query, field):
    resp = client.get(path, headers=reader, query_string=query)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["field"] == field
    assert resp.json["error"]["code"] == "invalid_request"


def test_audit_list_shows_the_api_writes(client, make_token, app, processor):
    from tests.api.conftest import bearer

    headers = bearer(make_token("read", "write", name="crm"))
    client.post("/api/v1/products", json={"name": "Pin"}, headers=headers)
    data = client.get("/api/v1/audit", headers=headers, query_string={"actor": "api:crm"}).json["data"]
    assert [e["action"] for e in data] == ["product.create"]
    assert db.session.query(AuditLog).filter_by(actor="api:crm").count() == 1
