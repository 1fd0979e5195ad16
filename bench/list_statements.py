"""Time each SQL statement of the filtered list views in-process, with its query plan.

On a loaded machine the HTTP figures of ``bench/list_pages.py`` move with the load; the time of each statement a
view runs, measured in the benchmark's own process (``time.perf_counter`` around the cursor's execute, best of
``--repeat``), does much less. Seeds the same large organisation as ``bench/list_pages.py`` (``--scale``), or
reads a database it kept (``--url``), then for each view below calls the same service functions as the page
(page, status counts, totals) and prints every statement's best time and, with ``--plans``, its plan.

    .venv/bin/python bench/list_statements.py --scale 0.25 --backends sqlite,postgresql
    .venv/bin/python bench/list_statements.py --url sqlite:///bench/results/kept.sqlite3 --plans

The totals' cache (``listing.summary``) is emptied before each run, so a broad filter's sum is timed too (a page
view pays it at most once a minute per process).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from events_page import PROCESSORS, drop_database, scratch_database  # noqa: E402
from list_pages import ENCRYPTION_KEY, SECRET_KEY, SIZES, seed  # noqa: E402


def views(ppid: int):
    """(name, calls): what each filtered view of bench/list_pages.py runs, as the page runs it."""
    from admin.services.events import queries as ev
    from admin.services.intents import queries as intents
    from admin.services.records import common as rec
    from admin.services.records import subscriptions as subs

    def events(**kw):
        flt = ev.EventFilter(**kw)
        return lambda: (ev.describe_rows(ev.local_page(flt).rows), ev.status_counts(flt))

    def payments(**kw):
        flt = rec.PaymentFilter(**kw)
        return lambda: (rec.payment_page(flt), rec.payment_summary(flt), rec.payment_status_counts(flt))

    def contributions(**kw):
        flt = rec.ContributionFilter(**kw)
        return lambda: (
            rec.contribution_page(flt),
            rec.contribution_summary(flt),
            rec.contribution_status_counts(flt),
        )

    def intent_view(**kw):
        flt = intents.IntentFilter(**kw)
        return lambda: (
            intents.describe_rows(intents.intent_page(flt).rows),
            intents.intent_summary(flt),
            intents.status_counts(flt),
        )

    def subscriptions(**kw):
        flt = subs.SubscriptionFilter(**kw)
        return lambda: (subs.subscription_page(flt), subs.status_counts(flt))

    return [
        ("events ppid status=error", events(ppid=ppid, status=["error"])),
        ("events ppid", events(ppid=ppid)),
        ("events", events()),
        ("payments ppid kind=refund", payments(ppid=ppid, kind="refund")),
        ("payments kind=refund", payments(kind="refund")),
        ("payments ppid", payments(ppid=ppid)),
        ("payments", payments()),
        ("intents ppid status=incomplete", intent_view(ppid=ppid, status=["incomplete"])),
        ("intents status=incomplete", intent_view(status=["incomplete"])),
        ("intents ppid", intent_view(ppid=ppid)),
        ("intents", intent_view()),
        ("contributions ppid status=Completed", contributions(ppid=ppid, status=["Completed"])),
        ("contributions", contributions()),
        ("subscriptions ppid status=Cancelled", subscriptions(ppid=ppid, status=["Cancelled"])),
    ]


def measure(url: str, repeat: int, plans: float | None, only: str | None) -> None:
    """``plans``: print the plan of each statement taking at least this many ms (None: no plans)."""
    from flask import current_app
    from sqlalchemy import event, select

    from admin import create_app
    from admin.extensions import db
    from admin.models import PaymentProcessor

    app = create_app(
        {"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY, "TESTING": True}
    )
    with app.app_context():
        ppid = db.session.scalar(select(PaymentProcessor.id).order_by(PaymentProcessor.id))
        seen: list[tuple[str, object]] = []

        @event.listens_for(db.engine, "before_cursor_execute")
        def _note(conn, cursor, statement, params, context, executemany):
            seen.append((statement, params))

        for name, call in views(ppid):
            if only and only not in name:
                continue
            whole = float("inf")
            for _ in range(repeat):
                current_app.extensions.pop("paydesk_list_summaries", None)
                seen.clear()
                t = time.perf_counter()
                call()
                whole = min(whole, time.perf_counter() - t)
                db.session.rollback()
            print(f"\n{name}: {whole * 1000:.1f} ms in all (best of {repeat})")
            for sql, params in list(seen):
                if sql.strip() in ("BEGIN", "COMMIT", "ROLLBACK"):
                    continue
                ms = best_time(db, sql, params, repeat) * 1000
                head = " ".join(sql.split())
                print(f"  {ms:8.1f} ms  {head[:150]}{'...' if len(head) > 150 else ''}")
                if plans is not None and ms >= plans:
                    for line in plan_of(db, sql, params):
                        print(f"               {line}")


def best_time(db, sql: str, params, repeat: int) -> float:
    """Seconds to run ``sql`` and fetch all its rows on the session's own connection, best of ``repeat``."""
    raw = db.session.connection().connection.driver_connection
    best = float("inf")
    for _ in range(repeat):
        cur = raw.cursor()
        t = time.perf_counter()
        cur.execute(sql, params)
        cur.fetchall()
        best = min(best, time.perf_counter() - t)
        cur.close()
    db.session.rollback()
    return best


def plan_of(db, sql: str, params) -> list[str]:
    """The plan of a statement with the parameters it ran with."""
    try:
        raw = db.session.connection().connection.driver_connection
        if db.engine.dialect.name == "sqlite":
            return [str(r[-1]) for r in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()]
        with raw.cursor() as cur:
            cur.execute(f"EXPLAIN {sql}", params)
            return [r[0] for r in cur.fetchall()]
    except Exception as exc:  # a plan is a help, not the measurement
        return [f"(no plan: {type(exc).__name__}: {str(exc).splitlines()[0][:100]})"]
    finally:
        db.session.rollback()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--url", help="measure this database (kept by an earlier run) instead of seeding one")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--plans", action="store_true", help="print the plan of each statement of --plan-ms or more"
    )
    parser.add_argument("--plan-ms", type=float, default=1.0)
    parser.add_argument("--only", help="only the views whose name contains this")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases")
    args = parser.parse_args(argv)
    if args.url:
        measure(args.url, args.repeat, args.plan_ms if args.plans else None, args.only)
        return 0
    sizes = {k: max(10, int(v * args.scale)) for k, v in SIZES.items()}
    for backend in args.backends.split(","):
        url = scratch_database(backend.strip())
        try:
            from admin import create_app
            from admin.extensions import db
            from admin.services.settings.processors import add_processor

            app = create_app(
                {
                    "DATABASE_URL": url,
                    "SECRET_KEY": SECRET_KEY,
                    "ENCRYPTION_KEY": ENCRYPTION_KEY,
                    "TESTING": True,
                    "STRIPE_API_BASES": ["127.0.0.1"],
                }
            )
            with app.app_context():
                db.create_all()
                ppids = [
                    add_processor(
                        name=name,
                        secret_key=f"sk_test_bench{i}",
                        webhook_secrets=["whsec_b"],
                        api_base="http://127.0.0.1:9",
                    ).id
                    for i, (name, _) in enumerate(PROCESSORS)
                ]
                db.session.remove()
                db.engine.dispose()
            print(
                f"{backend}: seeded {', '.join(f'{v:,} {k}' for k, v in sizes.items())} in "
                f"{seed(url, sizes, ppids):.0f} s",
                flush=True,
            )
            measure(url, args.repeat, args.plan_ms if args.plans else None, args.only)
        finally:
            if args.keep:
                print(f"kept {url}")
            else:
                drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
