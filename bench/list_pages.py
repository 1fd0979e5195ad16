"""Benchmark every staff list page, its deep pages and its CSV export on a large organisation's data.

Seeds one database per backend with a large organisation (at ``--scale 1``: 1,000,000 events from
``bench/events_page.py``'s generator, 200,000 contributions, 188,000 payments, 220,000 payment intents,
50,000 contacts with a Stripe customer each, 20,000 subscriptions, 2,000 jobs, 5,000 outbox tasks,
50,000 audit entries), serves it with the shipped ``gunicorn -c gunicorn.conf.py`` (2 threaded workers),
signs in as a viewer, and for every list page times at concurrency 4 (``--concurrency``):

1. the first page (``/contributions``);
2. a deep page, reached by following the page's own "Older" links (size 100, up to 100 pages: 10,000 rows);
3. a filtered first page (one processor and a status or kind, where the page has them);
4. its CSV export: time to the first bytes of the streamed file (held to the target), and once the whole
   unfiltered file with its rows per second (for reference, not held to the target).

Each figure is p50 and p95 of ``--requests`` requests (after one warm-up round). ``/reconcile`` is left out:
it compares with a live Stripe account (see bench/README.md).

    .venv/bin/python bench/list_pages.py                          # scale 1, SQLite and PostgreSQL
    .venv/bin/python bench/list_pages.py --scale 0.05 --backends sqlite   # a quick run

PostgreSQL is reached at ``PAYDESK_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``); the
run makes a scratch database ``paydesk_bench_events_<pid>`` and drops it (SQLite: a file under ``bench/results/``).
Target: every p95 under 100 ms. Exit status 0 when met.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402
import requests  # noqa: E402
from events_page import COLUMNS as EVENT_COLUMNS  # noqa: E402
from events_page import PROCESSORS, drop_database, generate, scratch_database  # noqa: E402

TARGET_MS = 100.0
SECRET_KEY = "bench-secret-key"
ENCRYPTION_KEY = "bench-encryption-key-not-for-production"
EMAIL, PASSWORD = "bench@example.org", "correct horse battery"
DAYS = 365
SIZES = {
    "events": 1_000_000,
    "contacts": 50_000,
    "subscriptions": 20_000,
    "contributions": 200_000,
    "payments": 188_000,
    "intents": 220_000,
    "jobs": 2_000,
    "outbox": 5_000,
    "audit": 50_000,
}


# -- data -------------------------------------------------------------------------------------------------


def _table_rows(sizes: dict[str, int], ppids: list[int], seed: int = 17):
    """(table, columns, rows) for everything but the events, oldest first."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    start = now - timedelta(days=DAYS)
    weights = [w for _, w in PROCESSORS]

    def when(i: int, n: int) -> datetime:
        return start + timedelta(seconds=int(DAYS * 86400 * i / max(n, 1)) + rng.randint(0, 59))

    def ppid() -> int:
        return rng.choices(ppids, weights)[0]

    n_contacts = sizes["contacts"]
    first = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Tim")
    last = (
        "Lovelace",
        "Hopper",
        "Turing",
        "Dijkstra",
        "Liskov",
        "Knuth",
        "Allen",
        "Thompson",
        "Hamilton",
        "Lee",
    )
    contacts = [
        (
            i + 1,
            f"{rng.choice(first)} {rng.choice(last)} {i + 1}",
            f"donor{i + 1}@example.org",
            "stripe",
            False,
            when(i, n_contacts),
            when(i, n_contacts),
        )
        for i in range(n_contacts)
    ]
    yield (
        "contact",
        ("id", "display_name", "email", "source", "is_deleted", "created_at", "updated_at"),
        contacts,
    )
    customers = [
        (i + 1, f"cus_L{i + 1:08d}", i + 1, ppid(), False, False, c[5]) for i, c in enumerate(contacts)
    ]
    yield (
        "stripe_customer",
        ("id", "customer_id", "contact_id", "processor_id", "deleted", "unverified", "created_at"),
        customers,
    )
    n_subs = sizes["subscriptions"]
    statuses = (("In Progress", 70), ("Cancelled", 20), ("Failing", 5), ("Pending", 5))
    subs = []
    for i in range(n_subs):
        contact = rng.randrange(n_contacts) + 1
        made = when(i, n_subs)
        status = rng.choices([s for s, _ in statuses], [w for _, w in statuses])[0]
        subs.append(
            (
                i + 1,
                contact,
                customers[contact - 1][3],
                f"sub_L{i + 1:08d}",
                f"cus_L{contact:08d}",
                rng.choice((500, 1000, 2500, 5000)),
                "usd",
                "month",
                1,
                status,
                {"In Progress": "active", "Cancelled": "canceled", "Failing": "past_due"}.get(
                    status, "incomplete"
                ),
                made,
                made + timedelta(days=30),
                0,
                0,
                made,
                made,
            )
        )
    yield (
        "contribution_recur",
        (
            "id",
            "contact_id",
            "processor_id",
            "subscription_id",
            "customer_id",
            "amount",
            "currency",
            "interval",
            "interval_count",
            "status",
            "stripe_status",
            "start_date",
            "next_sched_date",
            "failure_count",
            "stripe_updated",
            "created_at",
            "updated_at",
        ),
        subs,
    )
    n_contrib = sizes["contributions"]
    c_statuses = (
        ("Completed", 88),
        ("Failed", 4),
        ("Pending", 3),
        ("Refunded", 2),
        ("Partially refunded", 1),
        ("Cancelled", 2),
    )
    currencies = (("usd", 80), ("eur", 12), ("gbp", 6), ("jpy", 2))
    contributions = []
    for i in range(n_contrib):
        made = when(i, n_contrib)
        recur = subs[rng.randrange(n_subs)] if rng.random() < 0.6 else None
        contact = recur[1] if recur else rng.randrange(n_contacts) + 1
        cur = rng.choices([c for c, _ in currencies], [w for _, w in currencies])[0]
        amount = rng.choice((500, 1000, 1500, 2000, 2500, 5000, 10000)) * (1 if cur != "jpy" else 1)
        status = rng.choices([s for s, _ in c_statuses], [w for _, w in c_statuses])[0]
        done = status in ("Completed", "Refunded", "Partially refunded")
        fee = amount * 3 // 100 + 30 if done else 0
        refunded = amount if status == "Refunded" else amount // 2 if status == "Partially refunded" else 0
        tag = f"{i + 1:09d}"
        contributions.append(
            (
                i + 1,
                contact,
                recur[2] if recur else ppid(),
                recur[0] if recur else None,
                amount,
                cur,
                status,
                f"in_L{tag}" if recur else f"ch_L{tag}",
                f"in_L{tag}" if recur else None,
                f"pi_L{tag}",
                f"cus_L{contact:08d}",
                made if status != "Pending" or rng.random() < 0.5 else None,
                "stripe",
                fee,
                amount - fee if done else 0,
                refunded,
                "card_declined" if status == "Failed" else None,
                made,
                made,
            )
        )
    yield (
        "contribution",
        (
            "id",
            "contact_id",
            "processor_id",
            "recur_id",
            "amount",
            "currency",
            "status",
            "trxn_id",
            "invoice_id",
            "payment_intent_id",
            "customer_id",
            "receive_date",
            "source",
            "fee_amount",
            "net_amount",
            "refunded_amount",
            "failure_message",
            "created_at",
            "updated_at",
        ),
        contributions,
    )
    done_rows = [c for c in contributions if c[6] in ("Completed", "Refunded", "Partially refunded")]
    payments = []
    n_pay = sizes["payments"]
    i = 0
    while len(payments) < n_pay and done_rows:
        c = done_rows[i % len(done_rows)]
        i += 1
        tag = f"{c[0]:09d}"
        if i <= len(done_rows):
            payments.append(
                (
                    len(payments) + 1,
                    c[0],
                    c[2],
                    f"ch_L{tag}",
                    f"ch_L{tag}",
                    None,
                    c[4],
                    c[13],
                    c[14],
                    c[5],
                    "Completed",
                    c[11] or c[17],
                    c[17],
                )
            )
        else:  # refunds, after every charge has its payment
            payments.append(
                (
                    len(payments) + 1,
                    c[0],
                    c[2],
                    f"re_L{tag}_{i}",
                    f"ch_L{tag}",
                    f"re_L{tag}_{i}",
                    -(c[15] or c[4]),
                    0,
                    -(c[15] or c[4]),
                    c[5],
                    "Refunded",
                    (c[11] or c[17]) + timedelta(days=3),
                    c[17] + timedelta(days=3),
                )
            )
    yield (
        "payment",
        (
            "id",
            "contribution_id",
            "processor_id",
            "trxn_id",
            "charge_id",
            "refund_id",
            "amount",
            "fee",
            "net",
            "currency",
            "status",
            "payment_date",
            "created_at",
        ),
        payments,
    )
    n_int = sizes["intents"]
    i_statuses = (
        ("succeeded", 80),
        ("requires_payment_method", 9),
        ("canceled", 6),
        ("requires_action", 3),
        ("processing", 1),
        ("requires_capture", 1),
    )
    intents = []
    for i in range(n_int):
        made = when(i, n_int)
        status = rng.choices([s for s, _ in i_statuses], [w for _, w in i_statuses])[0]
        contrib = contributions[i % n_contrib] if status == "succeeded" and i < n_contrib else None
        contact = contrib[1] if contrib else rng.randrange(n_contacts) + 1
        intents.append(
            (
                i + 1,
                f"pi_L{i + 1:09d}",
                contrib[0] if contrib else None,
                contrib[2] if contrib else ppid(),
                "Donation",
                status,
                contact,
                f"cus_L{contact:08d}",
                contrib[4] if contrib else 2500,
                "usd",
                "automatic",
                made,
                "Your card was declined." if status == "requires_payment_method" else None,
                made if status == "requires_payment_method" else None,
                int(made.timestamp()),
                made,
            )
        )
    yield (
        "stripe_paymentintent",
        (
            "id",
            "stripe_intent_id",
            "contribution_id",
            "processor_id",
            "description",
            "status",
            "contact_id",
            "customer_id",
            "amount",
            "currency",
            "capture_method",
            "created_date",
            "last_error",
            "last_error_at",
            "stripe_updated",
            "updated_at",
        ),
        intents,
    )
    n_jobs = sizes["jobs"]
    kinds = (
        "events.populate",
        "events.retry_all",
        "imports.customers",
        "imports.subscriptions",
        "intents.cancel",
    )
    jobs = [
        (
            i + 1,
            rng.choice(kinds),
            "Bench job",
            "{}",
            EMAIL,
            rng.choice(("done", "done", "done", "failed", "cancelled")),
            100,
            100,
            False,
            when(i, n_jobs),
            when(i, n_jobs),
        )
        for i in range(n_jobs)
    ]
    yield (
        "job",
        (
            "id",
            "kind",
            "title",
            "params",
            "actor",
            "status",
            "done",
            "total",
            "cancel_requested",
            "created_at",
            "updated_at",
        ),
        jobs,
    )
    n_out = sizes["outbox"]
    outbox = [
        (
            i + 1,
            k,
            f"{k}:{i + 1}",
            "{}",
            rng.choice(("done", "done", "done", "error")),
            1,
            when(i, n_out),
            when(i, n_out),
            "SMTP refused" if i % 4 == 0 else None,
        )
        for i, k in ((i, rng.choice(("receipt", "customer_metadata"))) for i in range(n_out))
    ]
    yield (
        "outbox_task",
        ("id", "kind", "key", "payload", "status", "attempts", "next_attempt_at", "created_at", "last_error"),
        outbox,
    )
    n_audit = sizes["audit"]
    actions = ("event.replay", "job.start", "import.charge", "intent.cancel", "subscription.cancel")
    audit = [
        (when(i, n_audit), EMAIL, rng.choice(actions), "event", str(rng.randrange(1, 1000)), None, "ok")
        for i in range(n_audit)
    ]
    yield "audit_log", ("at", "actor", "action", "object_type", "object_id", "parameters", "result"), audit


def seed(url: str, sizes: dict[str, int], ppids: list[int]) -> float:
    started = time.perf_counter()
    tables = [("stripe_event", EVENT_COLUMNS, generate(sizes["events"], ppids))]
    tables += list(_table_rows(sizes, ppids))
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        for table, cols, rows in tables:
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            batch: list[tuple] = []
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
            for table, cols, rows in tables:
                with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                if "id" in cols:
                    conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 1) FROM {table}))"
                    )
            conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


# -- serving and measuring ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    env.update(
        PAYDESK_DATABASE_URL=url,
        PAYDESK_SECRET_KEY=SECRET_KEY,
        PAYDESK_ENCRYPTION_KEY=ENCRYPTION_KEY,
        PAYDESK_STRIPE_API_BASES="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    gunicorn = ROOT / ".venv" / "bin" / "gunicorn"
    if not gunicorn.exists():
        gunicorn = Path(sys.executable).parent / "gunicorn"
    log = open(workdir / f"gunicorn-{os.getpid()}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn stopped ({proc.returncode}); see {log.name}")
        try:
            requests.get(base + "/healthz", timeout=10)
            return proc, base
        except requests.RequestException:  # not listening yet, or a worker still starting
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("gunicorn did not answer within 60 s")


def sign_in(base: str) -> requests.Session:
    s = requests.Session()
    page = s.get(base + "/login").text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    resp = s.post(
        base + "/login",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1) if token else ""},
        allow_redirects=False,
    )
    if resp.status_code != 302:
        raise RuntimeError(f"could not sign in: {resp.status_code}")
    return s


def next_link(html: str) -> str | None:
    m = re.search(r'<a class="button" rel="next" href="([^"]+)"', html)
    return m.group(1).replace("&amp;", "&") if m else None


def pct(values: list[float], p: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def timed(sessions: list[requests.Session], base: str, path: str, n: int, first_bytes: bool) -> list[float]:
    """``n`` GETs of ``path`` from ``len(sessions)`` threads at once; milliseconds each."""
    local = threading.local()
    pool = iter(sessions)
    lock = threading.Lock()

    def one(_: int) -> float:
        if not hasattr(local, "s"):
            with lock:
                local.s = next(pool)
        t = time.perf_counter()
        r = local.s.get(base + path, stream=first_bytes, timeout=120)
        if first_bytes:
            next(r.iter_content(4096), b"")
            took = (time.perf_counter() - t) * 1000
            r.close()
        else:
            _ = r.content
            took = (time.perf_counter() - t) * 1000
        if r.status_code != 200:
            raise RuntimeError(f"{path}: {r.status_code}")
        return took

    with ThreadPoolExecutor(len(sessions)) as ex:
        return list(ex.map(one, range(n)))


# Per list page: its path, its CSV, a filtered view.
PAGES = (
    ("events", "/events", "/events/export.csv", "ppid={p}&status=error"),
    ("subscriptions", "/subscriptions", "/subscriptions/export.csv", "ppid={p}&status=Cancelled"),
    ("customers", "/customers", "/customers/export.csv", "ppid={p}"),
    ("contributions", "/contributions", "/contributions/export.csv", "ppid={p}&status=Completed"),
    ("payments", "/payments", "/payments/export.csv", "ppid={p}&kind=refund"),
    ("intents", "/intents", "/intents/export.csv", "ppid={p}&status=incomplete"),
    ("jobs", "/jobs", "/jobs/export.csv", "status=failed"),
    ("outbox", "/jobs/outbox", "/jobs/outbox/export.csv", "status=error"),
    ("audit", "/audit", "/audit/export.csv", "action=job.start"),
)


def run_backend(
    backend: str, sizes: dict[str, int], n: int, concurrency: int, deep_pages: int, keep: bool, full_csv: bool
) -> list[dict]:
    from admin import create_app
    from admin.extensions import db
    from admin.services.settings.processors import add_processor
    from admin.services.staff.users import create_user

    url = scratch_database(backend)
    workdir = ROOT / "bench" / "results"
    workdir.mkdir(parents=True, exist_ok=True)
    out: list[dict] = []
    try:
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
            create_user(EMAIL, PASSWORD, "viewer")
            db.session.remove()
            db.engine.dispose()
        took = seed(url, sizes, ppids)
        print(f"  seeded in {took:.0f} s", flush=True)
        proc, base = start_server(url, workdir)
        try:
            sessions = [sign_in(base) for _ in range(concurrency)]
            for name, path, csv, filtered in PAGES:
                cases = [("first page", path)]
                deep, depth = path + "?size=100", 0
                for _ in range(deep_pages):
                    link = next_link(sessions[0].get(base + deep).text)
                    if not link:
                        break
                    deep, depth = link, depth + 1
                if depth:
                    cases.append((f"deep page ({depth * 100:,} rows in)", deep))
                cases.append(("filtered", f"{path}?{filtered.format(p=ppids[0])}"))
                for label, p in cases:
                    timed(sessions, base, p, concurrency, False)  # warm-up
                    ms = timed(sessions, base, p, n, False)
                    out.append(
                        {
                            "backend": backend,
                            "page": name,
                            "case": label,
                            "p50": pct(ms, 50),
                            "p95": pct(ms, 95),
                        }
                    )
                    print(
                        f"  {name:<14} {label:<32} p50 {out[-1]['p50']:7.1f} ms  p95 {out[-1]['p95']:7.1f} ms",
                        flush=True,
                    )
                if sessions[0].get(base + csv, stream=True).status_code != 200:
                    print(f"  {name:<14} (no CSV export)", flush=True)
                    continue
                timed(sessions, base, csv, concurrency, True)
                ms = timed(sessions, base, csv, n, True)
                out.append(
                    {
                        "backend": backend,
                        "page": name,
                        "case": "CSV, first bytes",
                        "p50": pct(ms, 50),
                        "p95": pct(ms, 95),
                    }
                )
                print(
                    f"  {name:<14} {'CSV, first bytes':<32} p50 {out[-1]['p50']:7.1f} ms  "
                    f"p95 {out[-1]['p95']:7.1f} ms",
                    flush=True,
                )
                if full_csv:
                    t = time.perf_counter()
                    body = sessions[0].get(base + csv, timeout=600).content
                    secs = time.perf_counter() - t
                    rows = body.count(b"\n") - 1
                    print(
                        f"  {name:<14} {'CSV, whole file (reference)':<32} {rows:,} rows in {secs:.1f} s "
                        f"({rows / secs:,.0f} rows/s)",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        if keep:
            print(f"  kept {url}")
        else:
            drop_database(url)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the large organisation (0.05: quick)"
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="timed requests per figure")
    parser.add_argument("--deep-pages", type=int, default=100, help="Older links followed for the deep page")
    parser.add_argument("--full-csv", action="store_true", help="also time each whole unfiltered CSV once")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = {k: max(10, int(v * args.scale)) for k, v in SIZES.items()}
    print(
        f"list pages benchmark: {', '.join(f'{v:,} {k}' for k, v in sizes.items())}; concurrency "
        f"{args.concurrency}, {args.requests} requests per figure, target p95 < {TARGET_MS:.0f} ms "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f})",
        flush=True,
    )
    results = []
    for backend in args.backends.split(","):
        print(f"\n{backend}:", flush=True)
        results += run_backend(
            backend.strip(), sizes, args.requests, args.concurrency, args.deep_pages, args.keep, args.full_csv
        )
    backends = [b.strip() for b in args.backends.split(",")]
    print("\n| page | figure | " + " | ".join(f"{b} p50 / p95" for b in backends) + " |")
    print("|---|---|" + "---:|" * len(backends))
    for key in dict.fromkeys((r["page"], r["case"]) for r in results):
        cells = [
            next(
                (
                    f"{r['p50']:.0f} / {r['p95']:.0f} ms"
                    for r in results
                    if r["backend"] == b and (r["page"], r["case"]) == key
                ),
                "-",
            )
            for b in backends
        ]
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    slow = [r for r in results if r["p95"] >= TARGET_MS]
    print(
        "\nall under target"
        if not slow
        else "\nOVER TARGET: " + ", ".join(f"{r['backend']} {r['page']} {r['case']}" for r in slow)
    )
    return 0 if not slow else 1


if __name__ == "__main__":
    sys.exit(main())
