"""Polling triggers: items after the client's cursor, oldest first, never missed or repeated, even when
the transactions that wrote them commit out of order (PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from admin.extensions import db
from admin.models import COMPLETED, PENDING, Contact, Contribution, ContributionRecur, Payment, StripeCustomer


def poll(client, headers, topic: str, after: str | None = None, limit: int = 100) -> dict:
    query = {"limit": limit, **({"after": after} if after else {})}
    resp = client.get(f"/api/v1/triggers/{topic}", headers=headers, query_string=query)
    db.session.rollback()  # the test shares the request's session: leave no read transaction open
    assert resp.status_code == 200, resp.json
    return resp.json


def _customer(session, processor_id: int, customer_id: str, name: str = "Ada") -> StripeCustomer:
    contact = Contact(display_name=name, email=f"{name.lower()}@example.org")
    session.add(contact)
    session.flush()
    link = StripeCustomer(customer_id=customer_id, contact_id=contact.id, processor_id=processor_id)
    session.add(link)
    session.flush()
    return link


def test_new_customers_in_order_without_repeats(app, client, reader, offline_processor):
    pid = offline_processor.id
    for n in range(3):
        _customer(db.session, pid, f"cus_{n}", name=f"Person{n}")
        db.session.commit()
    first = poll(client, reader, "new-customers", limit=2)
    assert [i["id"] for i in first["data"]] == ["cus_0", "cus_1"] and first["has_more"] is True
    assert first["data"][0]["email"] == "person0@example.org" and first["data"][0]["contact_id"]
    rest = poll(client, reader, "new-customers", first["next_cursor"])
    assert [i["id"] for i in rest["data"]] == ["cus_2"] and rest["has_more"] is False
    idle = poll(client, reader, "new-customers", rest["next_cursor"])
    assert idle["data"] == [] and idle["next_cursor"] == rest["next_cursor"]  # nothing new: same cursor
    _customer(db.session, pid, "cus_3")
    db.session.commit()
    assert [i["id"] for i in poll(client, reader, "new-customers", rest["next_cursor"])["data"]] == ["cus_3"]


def test_a_rolled_back_record_is_never_fed(app, client, reader, offline_processor):
    _customer(db.session, offline_processor.id, "cus_gone")
    db.session.rollback()
    assert poll(client, reader, "new-customers")["data"] == []


def test_a_customer_written_without_the_orm_is_fed_when_noted(app, client, reader, offline_processor):
    """A Core INSERT is unseen by the flush listener: ``feed.note`` feeds it at the commit (the donation form
    writes its customer link that way), or not at all when the transaction is rolled back."""
    from sqlalchemy import insert

    from admin.api import feed

    def written(customer_id: str) -> None:
        contact = Contact(display_name="Ada", email="ada@example.org")
        db.session.add(contact)
        db.session.flush()
        link = StripeCustomer(
            customer_id=customer_id, contact_id=contact.id, processor_id=offline_processor.id
        )
        values = {"customer_id": customer_id, "contact_id": contact.id, "processor_id": offline_processor.id}
        table = StripeCustomer.__table__
        link.id = db.session.connection().execute(insert(table).returning(table.c.id), values).scalar_one()
        feed.note(db.session(), feed.customer_row(link))

    written("cus_gone")
    db.session.rollback()
    written("cus_core")
    db.session.commit()
    assert [i["id"] for i in poll(client, reader, "new-customers")["data"]] == ["cus_core"]


def test_orders_charges_and_invoice_items(app, client, reader, offline_processor):
    pid = offline_processor.id
    link = _customer(db.session, pid, "cus_shop")
    gift = Contribution(
        processor_id=pid,
        contact_id=link.contact_id,
        amount=2500,
        currency="usd",
        status=PENDING,
        trxn_id="ch_1",
        payment_intent_id="pi_1",
        customer_id="cus_shop",
        description="Gift",
    )
    db.session.add(gift)
    db.session.commit()
    assert poll(client, reader, "new-orders")["data"] == []  # not completed yet
    gift.status = COMPLETED
    db.session.add(
        Payment(
            contribution_id=gift.id,
            processor_id=pid,
            trxn_id="ch_1",
            charge_id="ch_1",
            amount=2500,
            currency="usd",
            status=COMPLETED,
        )
    )
    db.session.commit()
    gift.description = "Gift (edited)"  # saved again: still one order
    db.session.commit()
    orders = poll(client, reader, "new-orders")["data"]
    assert [(o["id"], o["amount"], o["status"], o["contribution_id"], o["email"]) for o in orders] == [
        ("pi_1", 2500, "paid", gift.id, "ada@example.org")
    ]
    charges = poll(client, reader, "new-charges")["data"]
    assert [(c["id"], c["amount"], c["paid"], c["status"], c["customer"]) for c in charges] == [
        ("ch_1", 2500, True, "succeeded", "cus_shop")
    ]

    recur = ContributionRecur(
        processor_id=pid, contact_id=link.contact_id, subscription_id="sub_1", amount=1000, currency="usd"
    )
    db.session.add(recur)
    db.session.flush()
    db.session.add(
        Contribution(
            processor_id=pid,
            contact_id=link.contact_id,
            recur_id=recur.id,
            amount=1000,
            currency="usd",
            status=COMPLETED,
            invoice_id="in_1",
            trxn_id="in_1",
        )
    )
    db.session.commit()
    items = poll(client, reader, "new-invoice-items")["data"]
    assert [(i["invoice"], i["subscription"], i["amount"]) for i in items] == [("in_1", "sub_1", 1000)]
    assert len(poll(client, reader, "new-orders")["data"]) == 1  # an instalment is not an order


@pytest.mark.parametrize("cursor", ["abc", "1-2", "-1", "1.5", "9" * 19])
def test_a_damaged_cursor_is_400(client, reader, cursor):
    resp = client.get("/api/v1/triggers/new-charges", headers=reader, query_string={"after": cursor})
    assert resp.status_code == 400
    assert resp.json["error"]["field"] == "after"


@pytest.mark.postgres_only
def test_records_committed_out_of_order_are_neither_missed_nor_repeated(
    app, client, reader, offline_processor
):
    """Two transactions: the one that wrote its record first (the smaller record ids) commits last. A cursor on
    the records' ids (or times) would hand out the later one's larger id first and then skip the earlier
    one for good; the feed numbers items as they commit."""
    pid = offline_processor.id
    db.session.commit()
    early, late = Session(db.engine), Session(db.engine)
    try:
        early_link = _customer(early, pid, "cus_early", "Early")  # written first, transaction still open
        late_link = _customer(late, pid, "cus_late", "Late")
        assert early_link.id < late_link.id
        late.commit()  # the larger id commits first
        first = poll(client, reader, "new-customers")
        assert [i["id"] for i in first["data"]] == [
            "cus_late"
        ]  # the open transaction's item is not there yet
        early.commit()
        second = poll(client, reader, "new-customers", first["next_cursor"])
        assert [i["id"] for i in second["data"]] == ["cus_early"]  # ... and is not skipped once it commits
        assert poll(client, reader, "new-customers", second["next_cursor"])["data"] == []
        assert [i["id"] for i in poll(client, reader, "new-customers")["data"]] == ["cus_late", "cus_early"]
    finally:
        early.close()
        late.close()


@pytest.mark.postgres_only
def test_feed_writers_wait_for_each_others_commit(app, offline_processor):
    """A transaction writing feed rows holds the feed lock until its commit is visible: a second one waits
    (so feed ids follow commit order), and goes on as soon as the first commits."""
    import threading

    pid = offline_processor.id
    db.session.commit()
    first, second = Session(db.engine), Session(db.engine)
    done = threading.Event()
    try:
        _customer(first, pid, "cus_first", "First")
        first.flush()
        from admin.api import feed

        feed._before_commit(first)  # its feed rows written, lock taken; the commit has not happened yet
        _customer(second, pid, "cus_second", "Second")

        def commit_second():
            second.commit()
            done.set()

        worker = threading.Thread(target=commit_second)
        worker.start()
        assert not done.wait(1.0)  # waiting for the first transaction's commit
        first.commit()
        assert done.wait(10.0)
        worker.join()
        rows = db.session.execute(text("SELECT object_id FROM trigger_feed ORDER BY id")).scalars().all()
        assert rows == ["cus_first", "cus_second"]
    finally:
        first.close()
        second.close()
