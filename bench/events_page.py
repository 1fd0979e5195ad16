"""Benchmark the ``/events`` page on a big event log: 1,000,000 stored events on SQLite and PostgreSQL.

Seeds a realistic log (90 days; payments that each leave a few related events of the usual types;
three processors; mostly success, some ignored, logged, a little error and queued), then times
server-side ``GET /events`` requests through the Flask app (routing, queries, template), median of
several runs after a warm-up:

1. the first page (``/events``);
2. a page filtered by type + status (a rare and a common combination);
3. the page 10,000 rows deep, reached by following the pages' own "Older" keyset links (size 100);
4. a free-text search for one object id (a charge id);
5. the status counts alone (part of every page above too): as the page counts them (exact up to
   ``COUNT_CAP`` per status), and for reference an exact ``GROUP BY status`` (not held to the target).

    .venv/bin/python bench/events_page.py                       # 1,000,000 events, SQLite and PostgreSQL
    .venv/bin/python bench/events_page.py --rows 200000 --backends sqlite
    .venv/bin/python bench/events_page.py --explain             # also print each query's plan

PostgreSQL is reached at ``PAYDESK_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
the run makes a scratch database ``paydesk_bench_events_<pid>`` and drops it (SQLite: a file under
``bench/results/``, removed unless ``--keep``). Target: every figure under 150 ms. Exit status 0 when met.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

PG_ADMIN_URL = os.environ.get("PAYDESK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = ROOT / "bench" / "results"
TARGET_MS = 150.0
DAYS = 90
PROCESSORS = (("Main account", 75), ("Second account", 20), ("Events account", 5))

# What one payment leaves in the log: (weight, kind, event types in the order Stripe sends them).
PAYMENT_SHAPES = (
    (
        45,
        "renewal",
        (
            "invoice.created",
            "invoice.finalized",
            "payment_intent.created",
            "payment_intent.succeeded",
            "charge.succeeded",
            "invoice.paid",
            "invoice.payment_succeeded",
        ),
    ),
    (35, "one-off", ("payment_intent.created", "payment_intent.succeeded", "charge.succeeded")),
    (
        4,
        "failed renewal",
        (
            "invoice.created",
            "invoice.finalized",
            "payment_intent.created",
            "payment_intent.payment_failed",
            "charge.failed",
            "invoice.payment_failed",
        ),
    ),
    (4, "declined one-off", ("payment_intent.created", "payment_intent.payment_failed", "charge.failed")),
    (3, "refund", ("charge.refunded", "refund.created")),
    (5, "customer", ("customer.created", "customer.updated")),
    (
        3,
        "subscription",
        ("customer.created", "customer.subscription.created", "customer.subscription.updated"),
    ),
    (1, "cancel", ("customer.subscription.updated", "customer.subscription.deleted")),
    (2, "checkout", ("checkout.session.completed",)),
    (1, "abandoned", ("payment_intent.created", "payment_intent.canceled")),
)
NO_HANDLER = {"invoice.created", "customer.created", "refund.created"}


def _ts(dt: datetime) -> int:
    return int(dt.replace(tzinfo=UTC).timestamp())


def generate(n: int, processor_ids: list[int], seed: int = 9):
    """Yield ``n`` event rows (tuples in COLUMNS order), oldest first."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(tzinfo=None)
    start = now - timedelta(days=DAYS)
    span = DAYS * 86400
    shapes = list(PAYMENT_SHAPES)
    weights = [s[0] for s in shapes]
    proc_weights = [w for _, w in PROCESSORS]
    made = 0
    t = 0.0
    per_payment = sum(w * len(types) for w, _, types in shapes) / sum(weights)
    step = span / (n / per_payment)
    pay = 0
    while made < n:
        pay += 1
        t += rng.expovariate(1 / step)
        when = start + timedelta(seconds=min(t, span - 60))
        _, kind, types = rng.choices(shapes, weights)[0]
        ppid = rng.choices(processor_ids, proc_weights)[0]
        tag = f"{pay:08x}{rng.getrandbits(24):06x}"
        customer, sub, invoice = f"cus_B{tag[2:]}", f"sub_B{tag}", f"in_B{tag}"
        intent, charge = f"pi_B{tag}", f"ch_B{tag}"
        recurring = kind in ("renewal", "failed renewal", "subscription", "cancel")
        amount = rng.choice((500, 1000, 1500, 2000, 2500, 5000, 10000))
        for i, type_ in enumerate(types):
            if made >= n:
                return
            created = when + timedelta(seconds=2 * i)
            prefix = type_.split(".")[0]
            obj_id = {
                "invoice": invoice,
                "charge": charge,
                "payment_intent": intent,
                "refund": f"re_B{tag}",
                "checkout": f"cs_B{tag}",
            }.get(prefix, sub if "subscription" in type_ else customer)
            obj_kind = "subscription" if "subscription" in type_ else prefix
            roll = rng.random()
            if type_ in NO_HANDLER:
                status, reason, error = "ignored", f"paydesk has no handler for {type_}", None
            elif roll < 0.03:
                status, reason, error = "logged", None, None
            elif roll < 0.045:
                status, reason, error = "error", None, "Stripe API error (500): injected"
            elif roll < 0.05 and created > now - timedelta(hours=2):
                status, reason, error = "queued", None, None
            else:
                status, reason, error = "success", None, None
            raw = json.dumps(
                {
                    "id": f"evt_B{tag}{i}",
                    "object": "event",
                    "type": type_,
                    "created": _ts(created),
                    "livemode": False,
                    "data": {
                        "object": {
                            "id": obj_id,
                            "object": obj_kind,
                            "amount": amount,
                            "currency": "usd",
                            "customer": customer,
                        }
                    },
                },
                separators=(",", ":"),
            )
            received = created + timedelta(seconds=rng.randint(1, 5))
            yield (
                ppid,
                f"evt_B{tag}{i}",
                type_,
                _ts(created),
                False,
                "2026-10-28.endive",
                obj_id,
                customer,
                sub if recurring else None,
                invoice
                if prefix == "invoice" or (recurring and prefix in ("charge", "payment_intent"))
                else None,
                charge if prefix in ("charge", "refund") or type_ == "payment_intent.succeeded" else None,
                intent if prefix in ("payment_intent", "charge") else None,
                raw,
                "webhook",
                status,
                reason,
                False,
                False,
                0 if status in ("logged", "queued") else 1,
                received if status == "queued" else None,
                None,
                None,
                error,
                received,
                None if status in ("logged", "queued") else received,
            )
            made += 1


COLUMNS = (
    "processor_id",
    "event_id",
    "type",
    "created",
    "livemode",
    "api_version",
    "object_id",
    "customer_id",
    "subscription_id",
    "invoice_id",
    "charge_id",
    "payment_intent_id",
    "raw",
    "source",
    "status",
    "status_reason",
    "no_receipt",
    "refetch",
    "attempts",
    "next_attempt_at",
    "locked_until",
    "locked_by",
    "last_error",
    "received_at",
    "processed_at",
)


# -- databases --------------------------------------------------------------------------------------------


def scratch_database(backend: str) -> str:
    if backend == "sqlite":
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"events-page-{os.getpid()}.sqlite3"
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    name = f"paydesk_bench_events_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return re.sub(r"/[^/]*$", "/" + name, PG_ADMIN_URL)


def drop_database(url: str) -> None:
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        return
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, n: int, processor_ids: list[int]) -> float:
    started = time.perf_counter()
    rows = generate(n, processor_ids)
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        sql = f"INSERT INTO stripe_event ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        batch: list[tuple] = []
        conn.execute("BEGIN")
        for row in rows:
            batch.append(tuple(v.isoformat(sep=" ") if isinstance(v, datetime) else v for v in row))
            if len(batch) >= 50_000:
                conn.executemany(sql, batch)
                batch.clear()
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY stripe_event ({', '.join(COLUMNS)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            conn.execute("VACUUM ANALYZE stripe_event")
    return time.perf_counter() - started


# -- measuring ------------------------------------------------------------------------------------------------


def median_ms(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up: caches, plans
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


def next_link(html: str) -> str:
    m = re.search(r'<a class="button" rel="next" href="([^"]+)"', html)
    if not m:
        raise RuntimeError("the page has no Older link")
    return m.group(1).replace("&amp;", "&")


def page_query(flt, after: str):
    """The query the page runs (``keyset_page``); ``flt`` None: the deep page, at cursor ``after``."""
    from admin.listing import _beyond, decode_cursor
    from admin.services.events import queries as ev

    if flt is not None:
        return ev.local_query(flt).order_by(*[c.desc() for c in ev.ORDER]).limit(flt.size + 1)
    return (
        ev.local_query(ev.EventFilter())
        .where(_beyond(ev.ORDER, decode_cursor(after, 2), older=True))
        .order_by(*[c.desc() for c in ev.ORDER])
        .limit(101)
    )


def explain(url: str, app, sql_of) -> str:
    from admin.extensions import db

    stmt = sql_of()
    compiled = stmt.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})
    prefix = (
        "EXPLAIN QUERY PLAN " if url.startswith("sqlite") else "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "
    )
    with db.engine.connect() as conn:
        lines = [" ".join(str(c) for c in r) for r in conn.exec_driver_sql(prefix + str(compiled)).all()]
    return "\n".join("      " + line for line in lines)


def run_backend(backend: str, rows: int, repeat: int, show_plans: bool, keep: bool) -> list[tuple]:
    from sqlalchemy import select

    from admin import create_app
    from admin.extensions import db
    from admin.models import StripeEvent
    from admin.services.events import queries as ev
    from admin.services.settings.processors import add_processor
    from admin.services.staff.users import create_user

    url = scratch_database(backend)
    out: list[tuple] = []
    try:
        app = create_app(
            {
                "DATABASE_URL": url,
                "SECRET_KEY": "bench",
                "WTF_CSRF_ENABLED": False,
                "TESTING": True,
                "LOGIN_MAX_FAILURES": 1000,
            }
        )
        with app.app_context():
            db.create_all()
            ids = [
                add_processor(
                    name=name,
                    secret_key=f"sk_test_bench{i}",
                    webhook_secrets=["whsec_b"],
                    api_base="http://127.0.0.1:9",
                ).id
                for i, (name, _) in enumerate(PROCESSORS)
            ]
            create_user("bench@example.org", "correct horse battery", "viewer")
            db.session.remove()
            db.engine.dispose()
        took = seed(url, rows, ids)
        print(f"  seeded {rows:,} events in {took:.0f} s", flush=True)
        with app.app_context():
            db.engine.dispose()
            client = app.test_client()
            resp = client.post(
                "/login", data={"email": "bench@example.org", "password": "correct horse battery"}
            )
            assert resp.status_code == 302, resp.status_code
            target = db.session.scalar(
                select(StripeEvent.charge_id)
                .where(StripeEvent.id >= rows // 2, StripeEvent.charge_id.is_not(None))
                .order_by(StripeEvent.id)
                .limit(1)
            )

            def page(path: str):
                def get():
                    r = client.get(path)
                    assert r.status_code == 200, (path, r.status_code)
                    return r

                return get

            deep = "/events?size=100"
            for _ in range(100):
                deep = next_link(page(deep)().get_data(as_text=True))
            deep_cursor = re.search(r"after=([^&]+)", deep).group(1)
            shown = page(deep)().get_data(as_text=True)
            assert "event-" in shown
            cases = [
                ("first page", "/events", ev.EventFilter()),
                (
                    "type+status, rare (invoice.paid, error)",
                    "/events?type=invoice.paid&status=error",
                    ev.EventFilter(type=["invoice.paid"], status=["error"]),
                ),
                (
                    "type+status, common (charge.succeeded, success)",
                    "/events?type=charge.succeeded&status=success",
                    ev.EventFilter(type=["charge.succeeded"], status=["success"]),
                ),
                ("10,000 rows deep via keyset links", deep, None),
                (f"search one object id ({target})", f"/events?q={target}", ev.EventFilter(q=target)),
            ]
            for label, path, flt in cases:
                median, worst = median_ms(page(path), repeat)
                out.append((backend, label, median, worst))
                print(f"  {label:<52} {median:7.1f} ms  (max {worst:.1f})", flush=True)
                if show_plans:
                    print(explain(url, app, lambda f=flt: page_query(f, deep_cursor)))
            for label, flt in (
                ("status counts, no filter", ev.EventFilter()),
                ("status counts, type charge.succeeded", ev.EventFilter(type=["charge.succeeded"])),
            ):
                median, worst = median_ms(lambda f=flt: ev.status_counts(f), repeat)
                out.append((backend, f"{label} (capped at {ev.COUNT_CAP:,})", median, worst))
                print(f"  {out[-1][1]:<66} {median:7.1f} ms  (max {worst:.1f})", flush=True)
                median, worst = median_ms(lambda f=flt: ev.status_counts(f, exact=True), repeat)
                out.append((backend, f"{label}, exact GROUP BY (reference)", median, worst))
                print(f"  {out[-1][1]:<66} {median:7.1f} ms  (max {worst:.1f})", flush=True)
                if show_plans:
                    from sqlalchemy import func

                    print(
                        explain(
                            url,
                            app,
                            lambda f=flt: (
                                ev.local_query(f, with_status=False)
                                .with_only_columns(StripeEvent.status, func.count())
                                .group_by(StripeEvent.status)
                            ),
                        )
                    )
            db.session.remove()
            db.engine.dispose()
    finally:
        if not keep:
            drop_database(url)
        else:
            print(f"  kept {url}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per figure (median reported)")
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    print(
        f"events page benchmark: {args.rows:,} events, median of {args.repeat}, target {TARGET_MS:.0f} ms "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f})"
    )
    results = []
    for backend in args.backends.split(","):
        print(f"\n{backend}:", flush=True)
        results += run_backend(backend.strip(), args.rows, args.repeat, args.explain, args.keep)
    slow = [r for r in results if r[2] >= TARGET_MS and "(reference)" not in r[1]]
    buf = io.StringIO()
    buf.write("\n| figure | " + " | ".join(b for b in args.backends.split(",")) + " |\n")
    buf.write("|---|" + "---:|" * len(args.backends.split(",")) + "\n")
    labels = list(dict.fromkeys(r[1] for r in results))
    for label in labels:
        cells = [
            next((f"{r[2]:.1f} ms" for r in results if r[0] == b and r[1] == label), "-")
            for b in args.backends.split(",")
        ]
        buf.write(f"| {label} | " + " | ".join(cells) + " |\n")
    print(buf.getvalue())
    print(
        "all under target" if not slow else f"OVER TARGET: {', '.join(f'{b} {what}' for b, what, *_ in slow)}"
    )
    return 0 if not slow else 1


if __name__ == "__main__":
    sys.exit(main())
