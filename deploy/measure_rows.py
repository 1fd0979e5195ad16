"""Bytes per row of paydesk's tables, measured on a real PostgreSQL: the numbers behind docs/scaling.md.

    .venv/bin/python deploy/measure_rows.py                   # scratch databases on 127.0.0.1:5432, dropped after
    .venv/bin/python deploy/measure_rows.py --report          # the database PAYDESK_DATABASE_URL names, read only

Without ``--report`` it measures three things, each in a scratch database made with ``flask db upgrade``:

1. **The pipeline**: a local Stripe (localstripe, as ``make demo`` and ``bench/webhooks.py`` use it) is driven
   the way donors drive Stripe (customers, monthly subscriptions, one-off gifts) until it has made
   ``--pipeline-events`` events; paydesk stores them (``store_event``, what the webhook endpoint does) and its
   worker turns them into contacts, contributions, payments, intents, attempts and outbox tasks (receipts
   written as .eml files). Every table's rows and size.
2. **The event log at scale**: ``--events`` rows of ``stripe_event`` in the mix of types and statuses
   ``bench/events_page.py`` seeds, each with a body shaped like Stripe's own (the fixtures3.json objects the
   tests use; localstripe's objects are smaller than real Stripe's).
3. **The audit log**: ``--audit`` rows written by ``admin.services.audit.record`` in a mix of the actions
   staff and the scheduled job write (sign-ins, replays, intent cancellations, job starts).

Size is ``pg_total_relation_size`` (heap + TOAST + every index) after ``VACUUM ANALYZE``, less the same table's
size right after the migration (empty pages), divided by the rows. ``--report`` prints the same table for the
database paydesk is configured with (sizes and PostgreSQL's row estimates: it only reads), so an install can
compare its own figures with docs/scaling.md's.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # stripe_objects: Stripe-shaped objects from fixtures3.json

import psycopg  # noqa: E402

PG_ADMIN_URL = os.environ.get("PAYDESK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

SIZE_SQL = """
SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid),
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0), pg_indexes_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version'
ORDER BY c.relname
"""


# -- databases ------------------------------------------------------------------------------------------

def scratch(label: str) -> str:
    name = f"paydesk_rows_{label}_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return re.sub(r"/[^/]*$", "/" + name, PG_ADMIN_URL)


def drop(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sizes(url: str, estimate: bool = False) -> dict[str, dict[str, int]]:
    """Per table: rows (exact, after VACUUM ANALYZE; ``estimate``: PostgreSQL's own estimate, nothing run but
    reads), total, heap, toast and index bytes."""
    with psycopg.connect(url, autocommit=True) as conn:
        if not estimate:
            conn.execute("VACUUM ANALYZE")
        out = {}
        for name, total, heap, toast, index in conn.execute(SIZE_SQL).fetchall():
            if estimate:
                rows = conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass",
                                    (f'"{name}"',)).fetchone()[0]
            else:
                rows = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            out[name] = {"rows": rows, "total": total, "heap": heap, "toast": toast, "index": index}
        return out


def table(after: dict, before: dict | None = None, only=None, min_rows: int = 1) -> str:
    lines = [f"  {'table':<24} {'rows':>9} {'total':>10} {'bytes/row':>10} {'heap':>7} {'toast':>7} {'indexes':>8}"]
    for name, s in sorted(after.items(), key=lambda kv: -kv[1]["total"]):
        if (only and name not in only) or s["rows"] < min_rows:
            continue
        b = (before or {}).get(name, {"total": 0, "heap": 0, "toast": 0, "index": 0})
        per = {k: (s[k] - b[k]) / s["rows"] for k in ("total", "heap", "toast", "index")}
        lines.append(f"  {name:<24} {s['rows']:>9,} {s['total'] / 1e6:>8.1f}MB {per['total']:>10,.0f} "
                     f"{per['heap']:>7,.0f} {per['toast']:>7,.0f} {per['index']:>8,.0f}")
    return "\n".join(lines)


# -- 1. the pipeline ----------------------------------------------------------------------------------------

def pipeline(n_events: int, workdir: Path) -> str:
    from admin.extensions import db
    from admin.worker.loop import run_forever
    from bench.webhooks import (
        free_port,
        make_stripe_events,
        paydesk_database,
        stop_process,
        store_events,
        wait_for_port,
        worker_app,
    )

    port = free_port()
    with open(workdir / "localstripe.log", "wb") as log:
        ls = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "localstripe_server.py"), "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    url = scratch("pipeline")
    try:
        wait_for_port(port, ls)
        api_base = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        events, made = make_stripe_events(api_base, n_events, time_limit=1800)
        print(f"  localstripe made {len(events):,} events in {time.monotonic() - t0:.0f} s: {made}", flush=True)
        paydesk_database(url, api_base)
        empty = sizes(url)
        app = worker_app(url, workdir, "postgresql")
        stored, _ = store_events(app, events)
        stop = threading.Event()
        worker = threading.Thread(target=run_forever, args=(app, 2, stop), daemon=True)
        worker.start()
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                time.sleep(0.5)
                left = conn.execute("SELECT (SELECT count(*) FROM stripe_event WHERE status IN ('queued', 'processing'))"
                                    " + (SELECT count(*) FROM outbox_task WHERE status IN ('queued', 'processing'))"
                                    ).fetchone()[0]
                if not left:
                    break
            statuses = dict(conn.execute("SELECT status, count(*) FROM stripe_event GROUP BY 1").fetchall())
            types = collections.Counter(e["type"] for e in events)
        stop.set()
        worker.join(timeout=120)
        with app.app_context():
            db.engine.dispose()
        after = sizes(url)
        raw = [len(json.dumps(e)) for e in events]
        return (f"1. Pipeline: {stored:,} localstripe events ({dict(types.most_common())}), statuses {statuses}; "
                f"body {sum(raw) / len(raw):,.0f} bytes on average\n" + table(after, empty))
    finally:
        stop_process(ls)
        drop(url)


# -- 2. the event log with Stripe-shaped bodies --------------------------------------------------------------

def _body_maker():
    """type -> a function(tag, amount, created) giving a Stripe-shaped event body (fixtures3.json objects)."""
    import stripe_objects as so

    def make(type_: str, tag: str, amount: int, created: int) -> str:
        cus, sub, inv, pi, ch = (f"cus_B{tag}", f"sub_B{tag}", f"in_B{tag}", f"pi_B{tag}", f"ch_B{tag}")
        prefix = type_.rsplit(".", 1)[0]
        if prefix == "invoice":
            obj = so.invoice(customer=cus, subscription=sub, amount=amount, id=inv)
        elif prefix == "charge":
            obj = so.charge(customer=cus, payment_intent=pi, amount=amount, id=ch)
        elif prefix == "payment_intent":
            obj = so.payment_intent(customer=cus, amount=amount, id=pi)
        elif prefix == "customer.subscription":
            obj = so.subscription(customer=cus, amount=amount, id=sub)
        elif prefix == "refund":
            obj = so.refund(charge=ch, amount=amount, id=f"re_B{tag}")
        elif prefix == "checkout.session":
            obj = so.obj("checkout.session", id=f"cs_B{tag}", customer=cus, payment_intent=pi, amount_total=amount)
        else:
            obj = so.customer(id=cus, email=f"donor{tag}@example.org")
        return json.dumps(so.event(type_, obj, created=created), separators=(",", ":"))

    return make


def _process(conn, final: dict[int, str], chunk: int = 500) -> None:
    """What the worker does to each stored row: claim it (status, lease, attempts), then record the outcome,
    a few hundred rows at a time as events arrive, with (auto)vacuum keeping up."""
    ids = sorted(final)
    for n, start in enumerate(range(0, len(ids), chunk)):
        part = ids[start:start + chunk]
        conn.execute("UPDATE stripe_event SET status = 'processing', attempts = attempts + 1, "
                     "locked_until = now() + interval '2 minutes', locked_by = 'host-1:4242:paydesk-worker-0' "
                     "WHERE id = ANY(%s)", (part,))
        for status in ("success", "ignored", "error", "logged", "queued"):
            these = [i for i in part if final[i] == status]
            if these:
                conn.execute("UPDATE stripe_event SET status = %s, locked_until = NULL, locked_by = NULL, "
                             "processed_at = CASE WHEN %s IN ('queued', 'logged') THEN NULL ELSE now() END "
                             "WHERE id = ANY(%s)", (status, status, these))
        if n % 20 == 19:
            conn.execute("VACUUM stripe_event")


def event_log(n: int, processed: bool = True) -> str:
    from bench import events_page
    from bench.webhooks import paydesk_database

    url = scratch("events")
    try:
        ppid = paydesk_database(url)
        empty = sizes(url)
        make = _body_maker()
        cols = events_page.COLUMNS
        i_raw, i_type, i_created = cols.index("raw"), cols.index("type"), cols.index("created")
        i_status, i_processed = cols.index("status"), cols.index("processed_at")
        lengths = collections.defaultdict(list)
        final: dict[int, str] = {}
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.cursor() as cur, cur.copy(f"COPY stripe_event ({', '.join(cols)}) FROM STDIN") as copy:
                for k, row in enumerate(events_page.generate(n, [ppid] * len(events_page.PROCESSORS))):
                    row = list(row)
                    body = make(row[i_type], f"{k:09d}", random.choice((500, 1000, 2500, 5000)), row[i_created])
                    row[i_raw] = body
                    lengths[row[i_type]].append(len(body))
                    final[k + 1] = row[i_status]
                    if processed:  # stored queued, as the webhook endpoint stores it; the worker updates it below
                        row[i_status], row[i_processed] = "queued", None
                    copy.write_row(row)
            if processed:
                _process(conn, final)
        after = sizes(url)
        mean = sum(sum(v) for v in lengths.values()) / sum(len(v) for v in lengths.values())
        per_type = ", ".join(f"{t} {sum(v) / len(v):,.0f}" for t, v in sorted(lengths.items()))
        return (f"2. Event log: {n:,} events with Stripe-shaped bodies, {mean:,.0f} bytes on average, "
                f"{'stored queued then claimed and finished by a simulated worker' if processed else 'as stored'} "
                f"(by type: {per_type})\n" + table(after, empty, only={"stripe_event"}))
    finally:
        drop(url)


# -- 3. the audit log -------------------------------------------------------------------------------------------

AUDIT_MIX = (  # (weight, action, object type, parameters, with a Stripe request id)
    (30, "intent.cancel", "intent", {"reason": "abandoned", "outcome": "cancelled"}, True),
    (20, "user.sign_in", "user", {"address": "198.51.100.23"}, False),
    (15, "event.replay", "event", {"no_receipt": False, "type": "invoice.payment_succeeded"}, True),
    (10, "customer.update_metadata", "contact", {"customer": "cus_PLACEHOLDER"}, True),
    (8, "user.sign_in_failed", "user", {"email": "someone@example.org", "address": "203.0.113.7"}, False),
    (7, "job.start", "job", {"kind": "events.replay", "criteria": {"status": ["error"], "type": ["invoice.*"]}}, False),
    (5, "event.ignore", "event", {"reason": "handled by hand in Stripe's dashboard"}, False),
    (5, "intent.delete_old", "job", {"count": 120, "intents": ["pi_PLACEHOLDER"] * 20}, False),
)


def audit_log(n: int, workdir: Path) -> str:
    from admin.extensions import db
    from admin.services import audit
    from bench.webhooks import paydesk_database, worker_app

    url = scratch("audit")
    try:
        ppid = paydesk_database(url)
        empty = sizes(url)
        app = worker_app(url, workdir, "postgresql")
        rng = random.Random(5)
        weights = [m[0] for m in AUDIT_MIX]
        with app.app_context():
            for k in range(n):
                _, action, otype, params, with_request = rng.choices(AUDIT_MIX, weights)[0]
                oid = {"intent": f"pi_3Q{k:020d}", "event": str(k), "contact": str(k % 5000), "job": str(k % 900),
                       "user": str(k % 12)}[otype]
                audit.record(action, object_type=otype, object_id=oid, processor_id=ppid, parameters=params,
                             stripe_request_id=f"req_{k:014d}" if with_request else None,
                             actor="finance.officer@example.org" if action != "intent.cancel" else "system",
                             commit=(k % 1000 == 999))
            db.session.commit()
            db.engine.dispose()
        after = sizes(url)
        return f"3. Audit log: {n:,} entries ({', '.join(m[1] for m in AUDIT_MIX)})\n" + table(
            after, empty, only={"audit_log"})
    finally:
        drop(url)


def report(url: str) -> str:
    url = url.replace("postgresql+psycopg://", "postgresql://")
    if not url.startswith("postgresql://"):
        raise SystemExit("--report reads a PostgreSQL database: set PAYDESK_DATABASE_URL to postgresql://...")
    # Reads only: sizes, and PostgreSQL's row estimates (as of the last autovacuum). Tables of a few hundred rows
    # are mostly empty pages; their bytes per row mean nothing and are left out.
    return ("  rows are PostgreSQL's estimates; tables under 1,000 rows left out\n"
            + table(sizes(url, estimate=True), min_rows=1000))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", action="store_true", help="Sizes of the database PAYDESK_DATABASE_URL names.")
    ap.add_argument("--pipeline-events", type=int, default=4000)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--audit", type=int, default=50_000)
    ap.add_argument("--skip", action="append", default=[], choices=("pipeline", "events", "audit"))
    args = ap.parse_args(argv)
    if args.report:
        print(report(os.environ.get("PAYDESK_DATABASE_URL", "")))
        return 0
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    print(f"paydesk row sizes on PostgreSQL {version} ({PG_ADMIN_URL.rsplit('/', 1)[0]}), bytes per row after "
          "VACUUM ANALYZE, less the empty table", flush=True)
    with tempfile.TemporaryDirectory(prefix="paydesk-rows-") as tmp:
        if "pipeline" not in args.skip:
            print(pipeline(args.pipeline_events, Path(tmp)), flush=True)
        if "events" not in args.skip:
            print(event_log(args.events, processed=False), flush=True)
            print(event_log(args.events, processed=True), flush=True)
        if "audit" not in args.skip:
            print(audit_log(args.audit, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
