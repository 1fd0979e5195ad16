"""The record filters (contributions, payments, subscriptions, contacts): every field narrows as
staff would expect, amounts are typed in major units whatever the currency, totals per currency,
and walking a filter's rows in chunks gives exactly the rows of its pages."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from werkzeug.datastructures import MultiDict

from admin.extensions import db
from admin.models import (
    CONTRIBUTION_STATUSES,
    Contact,
    Contribution,
    ContributionRecur,
    Payment,
    StripeCustomer,
    SubscriptionCheck,
)
from admin.services.records import common as rec
from admin.services.records.contacts import ContactFilter, contact_page
from admin.services.records.subscriptions import (
    RECUR_KEY,
    SubscriptionFilter,
    subscription_page,
    subscription_query,
)

DAY = datetime(2026, 10, 5, 12, 0)


@pytest.fixture
def book(offline_processor):
    """Two contacts, a subscription, contributions in three currencies and statuses, their payments."""
    p = offline_processor.id
    ada = Contact(display_name="Ada Lovelace", email="ada@example.org")
    bob = Contact(display_name="Bob Babbage", email="bob@example.org")
    db.session.add_all([ada, bob])
    db.session.flush()
    db.session.add(StripeCustomer(customer_id="cus_ada", contact_id=ada.id, processor_id=p))
    recur = ContributionRecur(
        processor_id=p,
        subscription_id="sub_ada",
        customer_id="cus_ada",
        contact_id=ada.id,
        amount=1500,
        currency="usd",
        interval="month",
        status="In Progress",
        start_date=DAY,
    )
    db.session.add(recur)
    db.session.flush()
    spec = [  # name, contact, amount, currency, status, day offset, recurring
        ("ada_usd", ada, 1500, "usd", "Completed", 0, True),
        ("ada_eur", ada, 5000, "eur", "Completed", 1, False),
        ("bob_jpy", bob, 1200, "jpy", "Completed", 2, False),
        ("bob_fail", bob, 2500, "usd", "Failed", 3, False),
        ("bob_refund", bob, 10000, "usd", "Refunded", 31, False),
    ]
    out = {"ada": ada, "bob": bob, "recur": recur}
    for name, who, amount, cur, status, offset, recurring in spec:
        c = Contribution(
            processor_id=p,
            contact_id=who.id,
            amount=amount,
            currency=cur,
            status=status,
            trxn_id=f"in_{name}" if recurring else f"ch_{name}",
            invoice_id=f"in_{name}" if recurring else None,
            recur_id=recur.id if recurring else None,
            receive_date=DAY + timedelta(days=offset),
            fee_amount=amount // 20 if status != "Failed" else 0,
            net_amount=amount - amount // 20 if status != "Failed" else 0,
            refunded_amount=amount if status == "Refunded" else 0,
        )
        db.session.add(c)
        db.session.flush()
        out[name] = c
        if status != "Failed":
            db.session.add(
                Payment(
                    contribution_id=c.id,
                    processor_id=p,
                    trxn_id=f"ch_pay_{name}",
                    charge_id=f"ch_pay_{name}",
                    amount=amount,
                    fee=amount // 20,
                    net=amount - amount // 20,
                    currency=cur,
                    status="Completed",
                    payment_date=c.receive_date,
                )
            )
        if status == "Refunded":
            db.session.add(
                Payment(
                    contribution_id=c.id,
                    processor_id=p,
                    trxn_id=f"re_{name}",
                    charge_id=f"ch_pay_{name}",
                    refund_id=f"re_{name}",
                    amount=-amount,
                    fee=0,
                    net=-amount,
                    currency=cur,
                    status="Refunded",
                    payment_date=c.receive_date + timedelta(hours=1),
                )
            )
    db.session.commit()
    return out


def names(book, rows) -> set[str]:
    ids = {c.id if hasattr(c, "id") else c["id"] for c in rows}
    return {k for k, v in book.items() if isinstance(v, Contribution) and v.id in ids}


def contributions(book, **args) -> set[str]:
    flt, errors = rec.ContributionFilter.from_args(MultiDict(args))
    assert errors == {}
    return names(book, rec.contribution_page(flt).rows)


@pytest.mark.postgres
def test_contribution_filters(book):
    everything = {"ada_usd", "ada_eur", "bob_jpy", "bob_fail", "bob_refund"}
    assert contributions(book) == everything
    assert contributions(book, status="Completed") == {"ada_usd", "ada_eur", "bob_jpy"}
    assert contributions(book, type="recurring") == {"ada_usd"}
    assert contributions(book, type="one-off") == everything - {"ada_usd"}
    # 15 means 15.00 dollars or euros but 15 yen: the amount is read in each row's currency
    assert contributions(book, min_amount="15") == {"ada_usd", "ada_eur", "bob_jpy", "bob_fail", "bob_refund"}
    assert contributions(book, min_amount="15.01") == {"ada_eur", "bob_jpy", "bob_fail", "bob_refund"}
    assert contributions(book, max_amount="25") == {"ada_usd", "bob_fail"}
    assert contributions(book, min_amount="20", max_amount="60", currency="EUR") == {"ada_eur"}
    assert contributions(book, q="ada@example") == {"ada_usd", "ada_eur"}
    assert contributions(book, q="BABBAGE") == {"bob_jpy", "bob_fail", "bob_refund"}
    assert contributions(book, q="cus_ada") == {"ada_usd", "ada_eur"}
    assert contributions(book, q="sub_ada") == {"ada_usd"}
    assert contributions(book, trxn_id="ch_pay_bob_jpy") == {"bob_jpy"}  # a payment's charge id finds it
    assert contributions(book, since="2026-10-06", until="2026-10-07") == {"ada_eur", "bob_jpy"}
    assert contributions(book, month="2026-11") == {"bob_refund"}
    assert contributions(book, contact_id=str(book["ada"].id), status="Completed") == {"ada_usd", "ada_eur"}
    assert contributions(book, ppid=str(book["ada_usd"].processor_id)) == everything
    missing = (
        book["ada_usd"].processor_id + 1
    )  # a processor that does not exist is named, not matched silently
    assert rec.ContributionFilter.from_args({"ppid": str(missing)})[1] == {
        "ppid": f"there is no payment processor {missing}"
    }


@pytest.mark.parametrize(
    "args, field",
    [
        ({"status": "Done"}, "status"),
        ({"type": "monthly"}, "type"),
        ({"min_amount": "ten"}, "min_amount"),
        ({"month": "2026-13"}, "month"),
        ({"min_amount": "9", "max_amount": "2"}, "max_amount"),
        ({"since": "2026-10-09", "until": "2026-10-01"}, "until"),
    ],
)
def test_a_bad_contribution_filter_is_named(book, args, field):
    _, errors = rec.ContributionFilter.from_args(args)
    assert list(errors) == [field]


@pytest.mark.postgres
def test_totals_and_status_counts_follow_the_filter(book):
    flt, _ = rec.ContributionFilter.from_args({"status": ["Completed", "Refunded"]})
    totals = {t.currency: (t.count, t.amount, t.fee, t.refunded) for t in rec.contribution_totals(flt)}
    assert totals == {"eur": (1, 5000, 250, 0), "jpy": (1, 1200, 60, 0), "usd": (2, 11500, 575, 10000)}
    counts = rec.contribution_status_counts(flt)  # whatever the status choice, per status
    assert counts["Completed"] == 3 and counts["Failed"] == 1 and counts["Refunded"] == 1

    pflt, _ = rec.PaymentFilter.from_args({"currency": "usd"})
    ptotals = {t.currency: (t.count, t.amount, t.fee, t.net) for t in rec.payment_totals(pflt)}
    assert ptotals == {"usd": (3, 1500, 575, 1500 - 75 + 10000 - 500 - 10000)}


def test_payment_filters(book):
    def pay(**args):
        flt, errors = rec.PaymentFilter.from_args(args)
        assert errors == {}
        return sorted(p.trxn_id for p in rec.payment_page(flt).rows)

    assert pay(kind="refund") == ["re_bob_refund"]
    assert pay(kind="charge", type="recurring") == ["ch_pay_ada_usd"]
    assert pay(q="bob@example.org", kind="charge") == ["ch_pay_bob_jpy", "ch_pay_bob_refund"]
    assert pay(status="Refunded") == ["re_bob_refund"]
    assert pay(charge="ch_pay_bob_refund") == ["ch_pay_bob_refund", "re_bob_refund"]
    assert pay(min_amount="50") == [
        "ch_pay_ada_eur",
        "ch_pay_bob_jpy",
        "ch_pay_bob_refund",
    ]  # 1,200 yen >= 50
    assert pay(contribution_id=str(book["ada_eur"].id)) == ["ch_pay_ada_eur"]


@pytest.mark.postgres
def test_walking_the_rows_gives_exactly_the_pages_rows(book, offline_processor):
    for n in range(1100):  # more than one export chunk
        db.session.add(
            Contribution(
                processor_id=offline_processor.id,
                amount=100 + n,
                currency="usd",
                status="Completed" if n % 3 else "Pending",
                trxn_id=f"ch_bulk{n}",
                receive_date=DAY - timedelta(minutes=n % 7),
            )
        )  # many rows share a time
    db.session.commit()
    flt, _ = rec.ContributionFilter.from_args({"status": "Completed", "size": "100"})
    paged = []
    while True:
        page = rec.contribution_page(flt)
        paged += [c.id for c in page.rows]
        if not page.next_after:
            break
        flt.after = page.next_after
    walked = [d["id"] for d in rec.contribution_rows(rec.ContributionFilter(status=["Completed"]))]
    assert walked == paged and len(walked) == len(set(walked)) == 733 + 3
    assert [
        d["id"] for d in rec.contribution_rows(rec.ContributionFilter(status=["Completed"]), limit=5)
    ] == paged[:5]


@pytest.mark.postgres
def test_subscription_and_contact_filters(book, offline_processor):
    other = ContributionRecur(
        processor_id=offline_processor.id,
        subscription_id="sub_yen",
        amount=500,
        currency="jpy",
        interval="year",
        status="Cancelled",
        start_date=DAY,
    )
    db.session.add(other)
    db.session.add(
        SubscriptionCheck(
            processor_id=offline_processor.id,
            subscription_id="sub_ada",
            differs=True,
            differences=[{"what": "status"}],
        )
    )
    db.session.commit()

    def subs(**args):
        flt, errors = SubscriptionFilter.from_args(args)
        assert errors == {}
        return sorted(r.subscription_id for r in subscription_page(flt).rows)

    assert subs() == ["sub_ada", "sub_yen"]
    assert subs(differs="1") == ["sub_ada"]
    assert subs(interval="year") == ["sub_yen"]
    assert subs(status="In Progress", q="Lovelace") == ["sub_ada"]
    assert subs(min_amount="10") == ["sub_ada", "sub_yen"]  # 15 dollars, and 500 yen
    assert subs(min_amount="10", currency="usd") == ["sub_ada"]
    assert subs(max_amount="1000", currency="jpy") == ["sub_yen"]

    def people(**args):
        flt, errors = ContactFilter.from_args(args)
        assert errors == {}
        return sorted(c.email for c in contact_page(flt).rows)

    assert people() == ["ada@example.org"]  # the /customers page: linked contacts
    assert people(linked="no") == ["bob@example.org"]
    assert people(linked="any", q="example.org") == ["ada@example.org", "bob@example.org"]
    assert people(customer="cus_ada") == ["ada@example.org"]


def _gift(
    p: int, contact: Contact, amount: int, status: str, *, refund: int = 0, fee: int = 100
) -> Contribution:
    """A one-off gift as the webhooks leave it: its charge (and refund) as payments, fee and net from them."""
    from admin.services.records.contributions import recompute

    c = Contribution(
        processor_id=p,
        contact_id=contact.id,
        amount=amount,
        currency="usd",
        status=status,
        trxn_id=f"ch_{contact.id}_{amount}",
        receive_date=DAY,
    )
    db.session.add(c)
    db.session.flush()
    if status != "Failed":
        db.session.add(
            Payment(
                contribution_id=c.id,
                processor_id=p,
                trxn_id=c.trxn_id,
                charge_id=c.trxn_id,
                amount=amount,
                fee=fee,
                net=amount - fee,
                currency="usd",
                status="Completed",
                payment_date=DAY,
            )
        )
    if refund:
        db.session.add(
            Payment(
                contribution_id=c.id,
                processor_id=p,
                trxn_id=f"re_{c.id}",
                charge_id=c.trxn_id,
                refund_id=f"re_{c.id}",
                amount=-refund,
                fee=0,
                net=-refund,
                currency="usd",
                status="Refunded",
                payment_date=DAY,
            )
        )
    recompute(c)
    return c


def test_totals_count_completed_money_and_show_failed_money_apart(offline_processor):
    """Amount - fees - refunded = net: a failed gift's amount is not in the totals (it has no fee or net), but is
    counted apart; a pending one is in neither."""
    from admin.services.records.contacts import giving_of

    p = offline_processor.id
    gave, lost, refunded = (Contact(display_name=n) for n in ("Gave", "Lost", "Refunded"))
    db.session.add_all([gave, lost, refunded])
    db.session.flush()
    _gift(p, gave, 5000, "Completed")
    _gift(p, gave, 3000, "Completed", refund=1000)
    _gift(p, gave, 700, "Pending")
    _gift(p, lost, 4000, "Failed")
    _gift(p, refunded, 2000, "Completed", refund=2000)
    db.session.commit()

    [usd] = rec.contribution_totals(rec.ContributionFilter())
    assert usd.amount - usd.fee - usd.refunded == usd.net == 10000 - 300 - 3000
    assert (usd.count, usd.amount, usd.failed_count, usd.failed) == (3, 10000, 1, 4000)
    only_failed = rec.contribution_totals(rec.ContributionFilter(status=["Failed"]))
    assert [(t.count, t.amount, t.failed_count, t.failed) for t in only_failed] == [(0, 0, 1, 4000)]

    # a donor whose only gift failed has given 0.00, as one whose gift was refunded: never blank for one of them
    giving = giving_of([gave.id, lost.id, refunded.id])
    assert giving[gave.id].totals == {"usd": 5000 + 3000 - 1000} and giving[gave.id].count == 3
    assert giving[lost.id].totals == {"usd": 0} and giving[lost.id].failed == {"usd": 4000}
    assert giving[refunded.id].totals == {"usd": 0} and giving[refunded.id].failed == {}


@pytest.mark.postgres
def test_searches_match_percent_underscore_and_backslash_as_typed(book, offline_processor):
    """Text typed into a search is matched as written: '%' and '_' are no wildcards, '\\' no escape."""
    from admin.models import AuditLog, StripeEvent, StripePaymentIntent
    from admin.services.core.audit import AuditFilter, audit_page
    from admin.services.events.queries import EventFilter, local_page
    from admin.services.intents.queries import IntentFilter, intent_page

    db.session.add_all(
        [
            Contact(display_name="Percy 100% Shelley", email="percy@example.org"),
            Contact(display_name="Mary_Shelley", email="mary_s@example.org"),
            Contact(display_name="Back\\slash", email="back@example.org"),
        ]
    )
    db.session.commit()

    def people(q):
        flt, errors = ContactFilter.from_args({"linked": "any", "q": q})
        assert errors == {}
        return sorted(c.display_name for c in contact_page(flt).rows)

    assert people("%") == ["Percy 100% Shelley"]
    assert people("_") == ["Mary_Shelley"]
    assert people("y_s") == [
        "Mary_Shelley"
    ]  # not "Percy Shelley"'s "y S" nor anything with one letter between
    assert people("\\") == ["Back\\slash"]
    assert people("%shelley") == []
    assert contributions(book, q="%") == set() and contributions(book, q="_") == set()

    db.session.add_all(
        [
            StripePaymentIntent(
                stripe_intent_id="pi_1",
                processor_id=offline_processor.id,
                status="succeeded",
                amount=100,
                currency="usd",
                description="50% off",
            ),
            StripePaymentIntent(
                stripe_intent_id="pi_2",
                processor_id=offline_processor.id,
                status="succeeded",
                amount=100,
                currency="usd",
                description="5000 off",
            ),
        ]
    )
    db.session.add_all(
        [
            AuditLog(action="user.sign_in", actor="a", result="ok"),
            AuditLog(action="user.signXin", actor="a", result="ok"),
        ]
    )
    db.session.add_all(
        [
            StripeEvent(
                processor_id=offline_processor.id,
                event_id="evt_1",
                type="invoice.paid",
                created=1760000000,
                raw="{}",
                status="success",
            ),
            StripeEvent(
                processor_id=offline_processor.id,
                event_id="evt_2",
                type="invoice_paid",
                created=1760000000,
                raw="{}",
                status="success",
            ),
        ]
    )
    db.session.commit()
    flt, _ = IntentFilter.from_args({"description": "0%"})
    assert [i.stripe_intent_id for i in intent_page(flt).rows] == ["pi_1"]
    flt, _ = AuditFilter.from_args({"action": "user.sign_*"})
    assert [a.action for a in audit_page(flt).rows] == ["user.sign_in"]
    flt, _ = EventFilter.from_args({"type": "invoice_*"})
    assert [e.event_id for e in local_page(flt).rows] == ["evt_2"]


@pytest.mark.postgres
def test_big_lists_count_to_a_cap_and_total_broad_filters_once_a_minute(book, monkeypatch):
    """What keeps /contributions, /payments and /intents as fast as /events on a big table: status chips count
    to a cap ("1+" here), and totals over more rows than the summary cap are computed once, said with their
    time, and reused by the next views; a filter that narrows the list below the cap is totalled exactly."""
    from admin import listing

    monkeypatch.setattr(listing, "COUNT_CAP", 1)
    counts = rec.contribution_status_counts(rec.ContributionFilter())
    assert counts["Completed"] == 2 and counts["Failed"] == 1  # three completed: counted to the cap, plus one
    assert listing.count_label(counts["Completed"], 1) == "1+"
    assert rec.payment_status_counts(rec.PaymentFilter()) == {
        "Completed": 2,
        "Failed": 0,
        "Refunded": 1,
        "Cancelled": 0,
    }

    monkeypatch.setattr(listing, "SUMMARY_CAP", 3)
    broad = rec.contribution_summary(rec.ContributionFilter())  # 5 contributions > 3: cached, with its time
    assert broad.as_of is not None
    [usd] = [t for t in broad.value if t.currency == "usd"]
    assert usd.failed_count == 1
    c = book["bob_fail"]
    c.status = "Completed"
    db.session.commit()
    again = rec.contribution_summary(rec.ContributionFilter())
    assert again is broad  # the same figures, not a second sum over the table
    narrow = rec.contribution_summary(rec.ContributionFilter(currency=["usd"]))  # 3 rows: exact, now
    assert narrow.as_of is None and [t.failed_count for t in narrow.value] == [0]
    monkeypatch.setattr(listing, "SUMMARY_TTL", 0.0)  # a minute later
    fresh = rec.contribution_summary(rec.ContributionFilter())
    assert fresh is not broad and [t.failed_count for t in fresh.value if t.currency == "usd"] == [0]


def test_record_pages_read_their_sort_index_not_the_whole_table(book):
    """First, deep and per-status pages of contributions, payments, intents and subscriptions walk an index in page order
    (SQLite's plan names it, and no temporary sort of the table)."""
    from admin.listing import _beyond, encode_cursor
    from admin.services.intents import queries as intents

    def plan(query) -> str:
        sql = query.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})
        return " | ".join(str(r[-1]) for r in db.session.execute(db.text(f"EXPLAIN QUERY PLAN {sql}")))

    cursor = [datetime(2026, 10, 6), 3]
    cases = [
        (rec.contribution_query(rec.ContributionFilter()), rec.CONTRIBUTION_KEY, "ix_contribution_when_id"),
        (
            rec.contribution_query(rec.ContributionFilter(status=["Failed"])),
            rec.CONTRIBUTION_KEY,
            "ix_contribution_status_when_id",
        ),
        (rec.payment_query(rec.PaymentFilter()), rec.PAYMENT_KEY, "ix_payment_when_id"),
        (
            rec.payment_query(rec.PaymentFilter(status=["Refunded"])),
            rec.PAYMENT_KEY,
            "ix_payment_status_when_id",
        ),
        (intents.intents_query(intents.IntentFilter()), intents.ORDER, "ix_stripe_paymentintent_created"),
        (subscription_query(SubscriptionFilter()), RECUR_KEY, "ix_contribution_recur_when_id"),
    ]
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's plan is read here; bench/list_pages.py measures both databases")
    for query, key, index in cases:
        ordered = query.order_by(*[c.desc() for c in key]).limit(26)
        deep = query.where(_beyond(key, cursor, older=True)).order_by(*[c.desc() for c in key]).limit(26)
        for q in (ordered, deep):
            shown = plan(q)
            assert index in shown and "TEMP B-TREE" not in shown, shown
    assert encode_cursor(cursor)  # the cursor's values are what the key holds


def test_refunds_and_one_processors_statuses_read_their_own_index(book, offline_processor):
    """``/payments?ppid=..&kind=refund``: the page and the capped status counts read only refunds (a few per cent
    of the payments: counting refunds per status read every charge before); ``/contributions?ppid=..``'s counts
    read the (processor, status) index alone. Planned with the statistics (ANALYZE) of a payment table shaped like
    a large organisation's: a few refunds, most payments on one account."""
    from query_plans import analyze, plans_of, recreate_last, statement

    from admin.services.settings.processors import add_processor

    p = offline_processor.id
    other = add_processor(
        name="Second account",
        secret_key="sk_test_other",
        webhook_secrets=["whsec_x"],
        api_base="http://127.0.0.1:9",
    )
    c = book["ada_usd"]
    rows = [
        dict(
            contribution_id=c.id,
            processor_id=p if i % 4 else other.id,
            trxn_id=f"ch_{i}",
            charge_id=f"ch_{i}",
            amount=1000,
            currency="usd",
            status="Completed",
            payment_date=DAY + timedelta(hours=i),
        )
        for i in range(400)
    ]
    rows += [
        dict(
            contribution_id=c.id,
            processor_id=p,
            trxn_id=f"re_{i}",
            charge_id=f"ch_{i}",
            refund_id=f"re_{i}",
            amount=-1000,
            currency="usd",
            status="Refunded",
            payment_date=DAY + timedelta(hours=i, minutes=5),
        )
        for i in range(0, 400, 40)
    ]
    db.session.execute(db.insert(Payment), rows)
    recreate_last(
        "ix_payment_refund_when_id",
        "ix_payment_refund_processor_when_id",
        "ix_payment_refund_status_processor_when_id",
    )  # as migration 258862654fd2 makes them
    analyze()
    flt = rec.PaymentFilter(ppid=p, kind="refund")
    out: dict = {}
    plans = plans_of(
        lambda: out.update(
            page=rec.payment_page(flt), totals=rec.payment_summary(flt), counts=rec.payment_status_counts(flt)
        )
    )

    assert len(out["page"].rows) == 11 and all(r.refund_id for r in out["page"].rows)  # and the book's refund
    assert out["counts"] == {"Completed": 0, "Failed": 0, "Refunded": 11, "Cancelled": 0}
    page = statement(plans, "FROM payment", "ORDER BY coalesce(payment.payment_date")
    assert "USING INDEX ix_payment_refund_" in page.plan and "TEMP B-TREE" not in page.plan, page
    counts = statement(plans, "AS status, count(*)", "FROM payment")
    # (refund_id, the index's condition, is no column of it: SQLite reads the table row of each refund counted)
    assert counts.plan.count(
        "INDEX ix_payment_refund_status_processor_when_id (status=? AND processor_id=?)"
    ) == len(rec.PAYMENT_STATUSES), counts
    narrow = statement(plans, "AS anon_2 FROM payment")
    # or the unique (processor_id, refund_id) of issue 19's records, as bounded: refunds of one processor only
    assert (
        "USING INDEX ix_payment_refund_" in narrow.plan
        or "COVERING INDEX sqlite_autoindex_payment_1 (processor_id=? AND refund_id>?)" in narrow.plan
    ), narrow
    by_status = plans_of(lambda: rec.contribution_status_counts(rec.ContributionFilter(ppid=p)))
    counts = statement(by_status, "AS status, count(*)", "FROM contribution")
    assert counts.plan.count(
        "USING COVERING INDEX ix_contribution_processor_status_when_id (processor_id=? AND status=?)"
    ) == len(CONTRIBUTION_STATUSES), counts
