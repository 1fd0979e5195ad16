"""What the card-testing alarm costs a staff page: the banner's check over a busy database.

    .venv/bin/python bench/card_testing_alarm.py [--intents 200000] [--contributions 200000]
                                                 [--signals 20000] [--backends sqlite,postgresql]

Fills a scratch database (SQLite file in a temporary directory; PostgreSQL at PAYDESK_BENCH_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test, in a database of its own, dropped afterwards) with intents,
contributions and card-testing signals spread over the last 30 days, 2% of intents and 5% of contributions
failed, plus a burst of 25 failures in the last hour, then times:

- ``check``: what a page does when its cached answer has expired (every CARD_TESTING_ALARM_CACHE_SECONDS per
  web process): count the failures of the last hour per processor and source, open or close an episode;
- ``cached``: what every other page does;
- ``failures_per_hour``: the dashboard chart's 7 days of hourly counts.

Prints the median and the 95th percentile of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_URL = os.environ.get("PAYDESK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fill(n_intents: int, n_contributions: int, n_signals: int) -> None:
    from sqlalchemy import insert

    from admin.extensions import db
    from admin.models import CardTestingSignal, Contribution, StripePaymentIntent
    from admin.services.settings.processors import add_processor
    from admin.timeutil import utcnow

    ppid = add_processor(
        name="bench", secret_key="sk_test_bench", webhook_secrets=["whsec_b"], api_base="http://127.0.0.1:9"
    ).id
    now = utcnow()
    rnd = random.Random(7)

    def when(spread_days: int = 30):
        return now - timedelta(seconds=rnd.randint(3600, spread_days * 86400))

    chunk = 5000
    for start in range(0, n_intents, chunk):
        rows = []
        for i in range(start, min(n_intents, start + chunk)):
            failed = rnd.random() < 0.02
            rows.append(
                {
                    "stripe_intent_id": f"pi_bench{i}",
                    "processor_id": ppid,
                    "status": "succeeded",
                    "amount": 1000,
                    "currency": "usd",
                    "created_date": when(),
                    "stripe_updated": 0,
                    "updated_at": now,
                    "last_error": "declined" if failed else None,
                    "last_error_at": when() if failed else None,
                }
            )
        db.session.execute(insert(StripePaymentIntent), rows)
    for start in range(0, n_contributions, chunk):
        rows = []
        for i in range(start, min(n_contributions, start + chunk)):
            rows.append(
                {
                    "processor_id": ppid,
                    "amount": 1000,
                    "currency": "usd",
                    "trxn_id": f"ch_bench{i}",
                    "status": "Failed" if rnd.random() < 0.05 else "Completed",
                    "receive_date": when(),
                    "fee_amount": 0,
                    "net_amount": 0,
                    "refunded_amount": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        db.session.execute(insert(Contribution), rows)
    db.session.execute(
        insert(CardTestingSignal),
        [{"processor_id": ppid, "charge_id": f"ch_probe{i}", "created_at": when()} for i in range(n_signals)],
    )
    burst = [
        {
            "stripe_intent_id": f"pi_burst{i}",
            "processor_id": ppid,
            "status": "requires_payment_method",
            "amount": 100,
            "currency": "usd",
            "created_date": now,
            "stripe_updated": 0,
            "updated_at": now,
            "last_error": "declined",
            "last_error_at": now - timedelta(minutes=i),
        }
        for i in range(25)
    ]
    db.session.execute(insert(StripePaymentIntent), burst)
    db.session.commit()


def timed(fn, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def run(backend: str, args) -> None:
    from admin import create_app
    from admin.extensions import db
    from admin.services.monitoring import alarms

    tmp = Path(tempfile.mkdtemp(prefix="paydesk-bench-alarm-"))
    dbname = None
    if backend == "postgresql":
        import psycopg

        dbname = f"paydesk_bench_alarm_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        url = PG_URL.rsplit("/", 1)[0] + "/" + dbname
    else:
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    app = create_app(
        {"DATABASE_URL": url, "SECRET_KEY": "bench", "TESTING": True, "CARD_TESTING_ALARM_CACHE_SECONDS": 30}
    )
    try:
        with app.app_context():
            db.create_all()
            t = time.perf_counter()
            fill(args.intents, args.contributions, args.signals)
            print(
                f"{backend}: {args.intents:,} intents, {args.contributions:,} contributions, {args.signals:,} "
                f"signals made in {time.perf_counter() - t:.1f} s"
            )
            found = alarms.check()
            print(f"  alarm: {[(a.processor_name, a.count, a.by_source) for a in found]}")
            rows = [
                ("check (cache expired)", *timed(alarms.check, args.runs)),
                ("cached (every other page)", *timed(alarms.banner_alarms, args.runs)),
                ("failures_per_hour (7 days)", *timed(alarms.failures_per_hour, max(5, args.runs // 5))),
            ]
            for name, p50, p95 in rows:
                print(f"  {name:<28} p50 {p50:8.3f} ms   p95 {p95:8.3f} ms")
            db.session.remove()
            db.engine.dispose()
    finally:
        if dbname:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intents", type=int, default=200_000)
    parser.add_argument("--contributions", type=int, default=200_000)
    parser.add_argument("--signals", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        try:
            run(backend.strip(), args)
        except Exception as exc:  # noqa: BLE001 - say which backend could not run, go on with the next
            print(f"{backend}: not run ({type(exc).__name__}: {str(exc).strip()[:160]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
