"""The one pager over Stripe's lists (``StripeReader.pages``): every page in turn, at most ``limit``
objects, no page more than needed, each object remembered and each request id kept; and one page of a
Stripe list as a list page shows it (``stripe_page``)."""

from __future__ import annotations

import pytest
import stripe_objects as so
from sqlalchemy import select

from admin.errors import ServiceError
from admin.extensions import db
from admin.listing import Filter, FilterError
from admin.models import AuditLog, Contact
from admin.services.core.stripe_reader import StripeReader, filter_cursors, read_then_write, stripe_page
from admin.services.settings.processors import gateway


def test_pages_go_through_the_whole_list_and_remember_what_they_carry(world, offline_processor):
    customers = [so.customer() for _ in range(250)]
    world.add(*customers)
    reader = StripeReader(offline_processor)
    pages = list(reader.pages("customers"))
    assert [len(p) for p in pages] == [100, 100, 50]
    assert {c["id"] for p in pages for c in p} == {c["id"] for c in customers}
    assert len(reader.request_ids) == 3 and all(r.startswith("req_") for r in reader.request_ids)
    assert reader.get("customers", customers[7]["id"])["email"] == "donor@example.org"
    assert world.count("GET", r"^/v1/customers") == 3  # the customer came from the list, not fetched again


def test_pages_stop_at_the_limit_and_when_the_caller_stops(world, offline_processor):
    world.add(*(so.customer() for _ in range(250)))
    assert [len(p) for p in StripeReader(offline_processor).pages("customers", limit=120)] == [100, 20]
    assert world.count("GET", r"^/v1/customers$") == 2
    first = next(StripeReader(offline_processor).pages("customers"))
    after = list(StripeReader(offline_processor).pages("customers", starting_after=first[-1]["id"]))
    assert [len(p) for p in after] == [100, 50] and after[0][0]["id"] != first[-1]["id"]
    assert world.count("GET", r"^/v1/customers$") == 2 + 1 + 2


def test_read_then_write_audits_a_refusal_rolls_back_a_refused_write_and_audits_the_change(
    world, offline_processor
):
    """The one skeleton of imports and reconcile's fixes: read Stripe, audit a refusal, write, audit."""

    def entries():
        return [
            (e.action, e.object_type, e.object_id, e.result, e.stripe_request_id)
            for e in db.session.scalars(
                select(AuditLog).where(AuditLog.action == "import.customer").order_by(AuditLog.id)
            )
        ]

    reader = StripeReader(offline_processor)
    with pytest.raises(ServiceError, match="there is no customer cus_nobody on this account"):
        read_then_write(
            reader,
            "import.customer",
            ("customer", "cus_nobody"),
            lambda: reader.get("customers", "cus_nobody"),
            lambda found: None,
        )
    [(action, kind, obj, result, request_id)] = entries()
    assert (action, kind, obj, result) == (
        "import.customer",
        "customer",
        "cus_nobody",
        "error",
    ) and request_id

    customer = so.customer()
    world.add(customer)

    def write(found):
        db.session.add(Contact(display_name="Kept?", email=found["email"]))
        db.session.flush()
        raise ServiceError("nothing to import")

    with pytest.raises(ServiceError, match="nothing to import"):
        read_then_write(
            reader,
            "import.customer",
            ("customer", customer["id"]),
            lambda: reader.get("customers", customer["id"]),
            write,
        )
    assert db.session.scalar(select(Contact)) is None and len(entries()) == 1  # rolled back, nothing audited

    reader = StripeReader(offline_processor)
    contact = read_then_write(
        reader,
        "import.customer",
        ("customer", customer["id"]),
        lambda: reader.get("customers", customer["id"]),
        lambda found: _added(Contact(display_name="Donor", email=found["email"])),
        audited=lambda c: {"object_type": "contact", "object_id": str(c.id)},
    )
    assert entries()[-1] == ("import.customer", "contact", str(contact.id), "ok", reader.request_ids[0])
    db.session.rollback()
    assert db.session.get(Contact, contact.id) is not None  # committed


def _added(obj):
    db.session.add(obj)
    db.session.flush()
    return obj


def test_stripe_page_is_a_list_page_over_a_stripe_list(world, offline_processor):
    """``stripe_page``: the one page of a Stripe list that list pages show, with list-page cursors both ways."""

    customers = [so.customer() for _ in range(5)]
    world.add(*customers)
    flt = Filter(size=2)
    first = stripe_page(gateway(offline_processor), "customers", flt, what="customer list")
    assert len(first.rows) == 2 and first.prev_before is None and first.next_after
    assert first.extra["request_id"].startswith("req_")
    flt.after = first.next_after
    second = stripe_page(
        gateway(offline_processor), "customers", flt, what="customer list", **filter_cursors(flt)
    )
    assert not {c["id"] for c in first.rows} & {c["id"] for c in second.rows}
    assert second.prev_before and second.next_after
    flt.after, flt.before = None, second.prev_before
    back = stripe_page(
        gateway(offline_processor), "customers", flt, what="customer list", **filter_cursors(flt)
    )
    assert [c["id"] for c in back.rows] == [c["id"] for c in first.rows]


def test_stripe_page_refuses_a_damaged_cursor_before_asking_stripe(world, offline_processor):

    for damaged in ("not-base64!", "WyJ4Il0", "WzEsMl0"):  # junk, ["x"] (no Stripe id), [1,2]
        with pytest.raises(FilterError):
            filter_cursors(Filter(after=damaged))
    assert world.count("GET", r"^/v1/") == 0
