"""Benchmark paydesk's Stripe webhook pipeline against a floor, on this machine, in one run.

1. Ingest: ``POST /webhooks/stripe/<ppid>`` under gunicorn with the production
   settings (``gunicorn.conf.py``: 2 threaded workers) against ``bench/floor_app.py``
   (verify signature + one INSERT) under the same gunicorn settings, on SQLite (WAL) and PostgreSQL, at several concurrencies.
   An asyncio + aiohttp client sends N distinct events, each signed just before
   it is sent, from a fixed number of tasks pulling from a queue; afterwards the
   rows in the database are counted (stored must equal sent).
2. Worker: objects are created in a real localstripe through paydesk's
   Gateway until localstripe has produced the requested number of events; the
   events are read back from ``GET /v1/events``, stored with ``store_event`` in a
   fresh paydesk database, and the worker (``run_forever``) is timed draining
   the queue.

    .venv/bin/python bench/webhooks.py                 # the full run (several minutes)
    .venv/bin/python bench/webhooks.py --quick         # smoke run
    .venv/bin/python bench/webhooks.py --backends postgresql --concurrency 8 --skip-worker

Only 127.0.0.1 is contacted. Scratch databases (``paydesk_bench_<pid>_<n>``)
and SQLite files are removed at the end; results go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import hashlib
import hmac
import io
import json
import logging
import math
import os
import platform
import pstats
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # stripe_objects: events built from fixtures3.json

import aiohttp  # noqa: E402
import psycopg  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"
PG_ADMIN_URL = os.environ.get("PAYDESK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WEBHOOK_SECRET = "whsec_bench_" + "a1b2c3d4e5f6a7b8c9d0"
SECRET_KEY = "bench-secret-key-not-for-production"
ENCRYPTION_KEY = "bench-encryption-key-not-for-production"
STRIPE_KEY = "sk_test_bench_" + "0123456789abcdef"
ID_MARK = "evt_XXXXXXXX_"  # replaced per run by evt_<8 hex>_ so every run sends fresh event ids
WARM_TAG = "warmwarm"
WARMUP_EVENTS = 20

log = logging.getLogger("bench")


def tool(name: str) -> str:
    path = VENV_BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


# -- infrastructure -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Databases:
    """Scratch databases: SQLite files under the run directory, PostgreSQL databases on the server."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.n = 0
        self.pg_names: list[str] = []
        self.files: list[Path] = []

    def create(self, backend: str, label: str) -> str:
        self.n += 1
        if backend == "sqlite":
            path = self.workdir / f"{label}-{self.n}.sqlite3"
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                p.unlink(missing_ok=True)
            self.files.append(path)
            return f"sqlite:///{path}"
        name = f"paydesk_bench_{os.getpid()}_{self.n}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.pg_names.append(name)
        return re.sub(r"/[^/]*$", "/" + name, PG_ADMIN_URL)

    def drop(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :])
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                p.unlink(missing_ok=True)
            return
        name = url.rsplit("/", 1)[1]
        try:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if name in self.pg_names:
                self.pg_names.remove(name)
        except psycopg.Error as exc:
            log.warning("could not drop %s: %s", name, exc)

    def drop_all(self) -> None:
        for name in list(self.pg_names):
            self.drop(re.sub(r"/[^/]*$", "/" + name, PG_ADMIN_URL))
        for path in self.files:
            self.drop(f"sqlite:///{path}")


def raw_connect(url: str):
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn
    return psycopg.connect(url, autocommit=True)


def scalar(url: str, sql: str, params: tuple = ()) -> int:
    conn = raw_connect(url)
    try:
        if not url.startswith("sqlite"):
            sql = sql.replace("?", "%s")
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def paydesk_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    env.update(
        PAYDESK_DATABASE_URL=url,
        PAYDESK_SECRET_KEY=SECRET_KEY,
        PAYDESK_ENCRYPTION_KEY=ENCRYPTION_KEY,
        PAYDESK_STRIPE_API_BASES="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    return env


def flask_cli(url: str, *args: str) -> str:
    res = subprocess.run(
        [tool("flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=paydesk_env(url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if res.returncode:
        raise RuntimeError(f"flask {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return res.stdout


def paydesk_database(url: str, api_base: str | None = None) -> int:
    """Schema via ``flask db upgrade`` and a processor via ``flask processor add``; returns the ppid."""
    flask_cli(url, "db", "upgrade")
    args = [
        "processor",
        "add",
        "--name",
        "bench",
        "--secret-key",
        STRIPE_KEY,
        "--publishable-key",
        "pk_test_bench",
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--default",
        "--format",
        "json",
    ]
    if api_base:
        args += ["--api-base", api_base]
    out = flask_cli(url, *args)
    return int(json.loads(out.strip().splitlines()[-1])["id"])


# -- events for ingest ----------------------------------------------------------------------------

INGEST_MIX = [  # (type, weight): roughly what a donation site receives
    ("payment_intent.created", 2),
    ("payment_intent.succeeded", 3),
    ("charge.succeeded", 3),
    ("invoice.paid", 2),
    ("invoice.payment_succeeded", 2),
    ("customer.subscription.updated", 1),
    ("customer.updated", 1),
    ("charge.refunded", 1),
]


def ingest_bodies(n: int, seed: int = 7) -> tuple[list[str], collections.Counter]:
    """``n`` JSON bodies of real-shaped events (fixtures3 objects), ids carrying ``ID_MARK``."""
    import stripe_objects as so

    rng = random.Random(seed)
    types = [t for t, w in INGEST_MIX for _ in range(w)]
    bodies, counts = [], collections.Counter()
    scene: dict = {}
    for i in range(n):
        if i % 8 == 0:  # a new donor every few events: customer, subscription, invoice, intent, charge
            cus = so.customer(name=f"Donor {i}", email=f"donor{i}@example.org")
            pi = so.payment_intent(customer=cus["id"], amount=rng.choice([1000, 2500, 5000]))
            ch = so.charge(customer=cus["id"], payment_intent=pi["id"], amount=pi["amount"])
            sub = so.subscription(customer=cus["id"], amount=1500)
            inv = so.invoice(customer=cus["id"], subscription=sub["id"], amount=1500)
            scene = {"customer": cus, "payment_intent": pi, "charge": ch, "subscription": sub, "invoice": inv}
        kind = rng.choice(types)
        if kind.startswith("payment_intent"):
            data = scene["payment_intent"]
        elif kind.startswith("charge"):
            data = dict(scene["charge"], refunded=kind == "charge.refunded")
        elif kind.startswith("invoice"):
            data = scene["invoice"]
        elif kind.startswith("customer.subscription"):
            data = scene["subscription"]
        else:
            data = scene["customer"]
        ev = so.event(kind, data, event_id=f"{ID_MARK}{i:07d}")
        bodies.append(json.dumps(ev, separators=(",", ":")))
        counts[kind] += 1
    return bodies, counts


def sign(body: bytes, secret: str) -> str:
    ts = int(time.time())
    sig = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={sig}"


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    status_counts: dict[str, int] = field(default_factory=dict)


async def _load(url: str, bodies: list[bytes], concurrency: int, time_limit: float) -> LoadResult:
    res = LoadResult()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    statuses: collections.Counter = collections.Counter()
    deadline = time.monotonic() + time_limit
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            headers = {"Stripe-Signature": sign(body, WEBHOOK_SECRET), "Content-Type": "application/json"}
            res.sent += 1
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    text = await resp.read()
                    status = resp.status
                res.latencies.append(time.perf_counter() - t0)
                statuses[str(status)] += 1
                if 200 <= status < 300:
                    res.ok += 1
                else:
                    res.errors += 1
                    if len(res.error_samples) < 5:
                        res.error_samples.append(f"HTTP {status}: {text[:200].decode(errors='replace')}")
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                res.latencies.append(time.perf_counter() - t0)
                statuses[type(exc).__name__] += 1
                res.errors += 1
                if len(res.error_samples) < 5:
                    res.error_samples.append(f"{type(exc).__name__}: {exc}")

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        res.elapsed = time.perf_counter() - t0
    res.status_counts = dict(statuses)
    return res


def load(url: str, bodies: list[bytes], concurrency: int, time_limit: float) -> LoadResult:
    return asyncio.run(_load(url, bodies, concurrency, time_limit))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]  # nearest rank


@dataclass
class IngestRow:
    app: str
    backend: str
    concurrency: int
    events_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    stored: int
    sent: int
    status_counts: dict[str, int]
    error_samples: list[str]
    load1: float = 0.0
    runs: list[float] = field(default_factory=list)


def run_ingest(
    app_name: str,
    backend: str,
    concurrency: int,
    templates: list[str],
    dbs: Databases,
    workdir: Path,
    time_limit: float,
) -> IngestRow:
    url = dbs.create(backend, f"{app_name}-ingest")
    port = free_port()
    logfile = open(workdir / f"gunicorn-{app_name}-{backend}-c{concurrency}.log", "wb")  # noqa: SIM115
    try:
        if app_name == "paydesk":
            ppid = paydesk_database(url)
            env = paydesk_env(url)
            cmd = [
                tool("gunicorn"),
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{port}",
                "wsgi:app",
            ]
            cwd, path, table = ROOT, f"/webhooks/stripe/{ppid}", "stripe_event"
        else:
            sys.path.insert(0, str(BENCH))
            from floor_app import create_schema

            create_schema(url)
            env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
            env.update(FLOOR_DATABASE_URL=url, FLOOR_WEBHOOK_SECRET=WEBHOOK_SECRET)
            cmd = [
                tool("gunicorn"),
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{port}",
                "floor_app:app",
            ]
            cwd, path, table = BENCH, "/webhook", "floor_event"
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=logfile, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc)
            endpoint = f"http://127.0.0.1:{port}{path}"
            warm = [t.replace(ID_MARK, f"evt_{WARM_TAG}_", 1).encode() for t in templates[:WARMUP_EVENTS]]
            load(endpoint, warm, 2, 60)  # imports, connection pools and processor cache in both workers
            tag = secrets.token_hex(4)
            bodies = [t.replace(ID_MARK, f"evt_{tag}_", 1).encode() for t in templates]
            load1 = os.getloadavg()[0]  # other work on the machine when the run starts
            res = load(endpoint, bodies, concurrency, time_limit)
            time.sleep(0.2)
        finally:
            stop_process(proc)
        stored = scalar(url, f"SELECT count(*) FROM {table} WHERE event_id LIKE ?", (f"evt_{tag}_%",))
    finally:
        logfile.close()
        dbs.drop(url)
    eps = res.ok / res.elapsed if res.elapsed else 0.0
    return IngestRow(
        app=app_name,
        backend=backend,
        concurrency=concurrency,
        events_per_s=eps,
        p50_ms=pct(res.latencies, 50) * 1000,
        p99_ms=pct(res.latencies, 99) * 1000,
        errors=res.errors + (len(templates) - res.sent),
        stored=stored,
        sent=len(templates),
        status_counts=res.status_counts,
        error_samples=res.error_samples,
        load1=load1,
        runs=[eps],
    )


def best_of(rows: list[IngestRow]) -> IngestRow:
    """The fastest repetition (other load on the machine only slows a run down); errors and losses of all."""
    best = max(rows, key=lambda r: r.events_per_s)
    best.runs = [r.events_per_s for r in rows]
    best.errors = sum(r.errors for r in rows)
    best.sent, best.stored = sum(r.sent for r in rows), sum(r.stored for r in rows)
    best.error_samples = [e for r in rows for e in r.error_samples][:5]
    statuses: collections.Counter = collections.Counter()
    for r in rows:
        statuses.update(r.status_counts)
    best.status_counts = dict(statuses)
    return best


def ingest_table(rows: list[IngestRow]) -> str:
    lines = [
        f"{'app':<8} {'backend':<10} {'conc':>4} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
        f"{'stored/sent':>12} {'% of floor':>10} {'load':>5}"
    ]
    floor = {(r.backend, r.concurrency): r.events_per_s for r in rows if r.app == "floor"}
    for r in rows:
        share = ""
        if r.app == "paydesk" and floor.get((r.backend, r.concurrency)):
            share = f"{100 * r.events_per_s / floor[(r.backend, r.concurrency)]:.0f}%"
        lines.append(
            f"{r.app:<8} {r.backend:<10} {r.concurrency:>4} {r.events_per_s:>9.0f} {r.p50_ms:>8.1f} "
            f"{r.p99_ms:>8.1f} {r.errors:>6} {f'{r.stored}/{r.sent}':>12} {share:>10} {r.load1:>5.1f}"
        )
    return "\n".join(lines)


def ingest_targets(rows: list[IngestRow]) -> list[tuple[str, bool]]:
    out = []
    floor = {(r.backend, r.concurrency): r for r in rows if r.app == "floor"}
    for r in rows:
        if r.app != "paydesk":
            continue
        where = f"ingest {r.backend} c={r.concurrency}"
        f = floor.get((r.backend, r.concurrency))
        if r.concurrency == 8 and f:
            share = 100 * r.events_per_s / f.events_per_s if f.events_per_s else 0
            out.append(
                (
                    f"{where}: paydesk {r.events_per_s:.0f} ev/s = {share:.0f}% of floor "
                    f"{f.events_per_s:.0f} ev/s (target >= 50%)",
                    share >= 50,
                )
            )
            out.append((f"{where}: p99 {r.p99_ms:.1f} ms (target < 50 ms)", r.p99_ms < 50))
        out.append(
            (
                f"{where}: {r.errors} errors, {r.sent - r.stored} lost of {r.sent} (target 0 and 0)",
                r.errors == 0 and r.stored == r.sent,
            )
        )
    return out


# -- worker ---------------------------------------------------------------------------------------


def _card() -> dict:
    return {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}


def make_stripe_events(
    api_base: str, wanted: int, time_limit: float, seed: int = 11
) -> tuple[list[dict], dict]:
    """Drive localstripe like donors do until it has produced ``wanted`` events; return them oldest first."""
    from admin.stripe_gateway import Gateway, RetryPolicy

    gw = Gateway(STRIPE_KEY, api_base, policy=RetryPolicy(max_attempts=3, base=0.05, cap=0.5))
    rng = random.Random(seed)
    product = gw.create("products", {"name": "Monthly donation", "type": "service"})
    plans = [
        gw.create(
            "plans",
            {
                "amount": amount,
                "currency": "usd",
                "interval": "month",
                "product": product["id"],
                "nickname": f"Monthly ${amount // 100}",
            },
        )
        for amount in (500, 1500, 3000)
    ]
    made: collections.Counter = collections.Counter()
    produced = 2 + len(plans)  # product.created, plan.created
    deadline = time.monotonic() + time_limit
    t0 = time.perf_counter()
    i = 0
    while time.monotonic() < deadline:
        if produced >= wanted:  # the estimate says enough: count what localstripe really has
            produced = _count_events(gw, wanted)
            if produced >= wanted:
                break
        i += 1
        cus = gw.create(
            "customers",
            {
                "name": f"Bench Donor {i}",
                "email": f"donor{i}@example.org",
                "metadata": {"source": "paydesk bench"},
            },
        )
        produced += 1
        pm = gw.create("payment_methods", {"type": "card", "card": _card()})
        gw.call("payment_methods", "attach", pm["id"], params={"customer": cus["id"]})
        if rng.random() < 0.6:  # a monthly donor: default card, subscription (invoice, intent, charge)
            gw.update("customers", cus["id"], {"invoice_settings": {"default_payment_method": pm["id"]}})
            gw.create(
                "subscriptions",
                {
                    "customer": cus["id"],
                    "items": [{"plan": rng.choice(plans)["id"]}],
                    "metadata": {"source": "paydesk bench"},
                },
            )
            made["subscriptions"] += 1
            produced += 5  # customer.updated, subscription.created, invoice.created/payment_succeeded, pi
        for _ in range(rng.choice((1, 1, 2))):  # one-off donations
            gw.create(
                "payment_intents",
                {
                    "amount": rng.choice((1000, 2500, 5000)),
                    "currency": "usd",
                    "customer": cus["id"],
                    "payment_method": pm["id"],
                    "payment_method_types": ["card"],
                    "confirm": True,
                    "metadata": {"source": "paydesk bench"},
                },
            )
            made["one_off_payments"] += 1
            produced += 1
        made["customers"] += 1
    create_s = time.perf_counter() - t0
    events: list[dict] = []
    after = None
    for _ in range(10_000):
        page = gw.list("events", limit=100, starting_after=after)
        events.extend(page["data"])
        if not page.get("has_more") or not page["data"]:
            break
        after = page["data"][-1]["id"]
    events.reverse()  # Stripe lists newest first; deliver oldest first
    made.update(api_calls_s=round(create_s, 1))
    return events, dict(made)


def _count_events(gw, wanted: int) -> int:
    n, after = 0, None
    for _ in range(wanted // 100 + 2):
        page = gw.list("events", limit=100, starting_after=after)
        n += len(page["data"])
        if not page.get("has_more") or not page["data"] or n >= wanted:
            break
        after = page["data"][-1]["id"]
    return n


def worker_app(url: str, workdir: Path, backend: str):
    from admin import create_app

    return create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": SECRET_KEY,
            "ENCRYPTION_KEY": ENCRYPTION_KEY,
            "OUTBOX_DIR": str(workdir / f"outbox-{backend}"),
            "SERVER_NAME": None,
        }
    )


def store_events(app, events: list[dict]) -> tuple[int, float]:
    from admin.extensions import db
    from admin.models import PaymentProcessor
    from admin.webhooks.ingest import store_event

    with app.app_context():
        proc = db.session.get(PaymentProcessor, 1) or db.session.scalars(db.select(PaymentProcessor)).first()
        db.session.expunge(proc)
        t0 = time.perf_counter()
        stored = sum(store_event(proc, ev, json.dumps(ev)) for ev in events)
        elapsed = time.perf_counter() - t0
        db.session.remove()
    return stored, elapsed


def status_counts(url: str, table: str = "stripe_event") -> dict[str, int]:
    conn = raw_connect(url)
    try:
        return dict(conn.execute(f"SELECT status, count(*) FROM {table} GROUP BY status").fetchall())
    finally:
        conn.close()


def error_messages(url: str) -> list[tuple[str, str, int]]:
    conn = raw_connect(url)
    try:
        return [
            tuple(r)
            for r in conn.execute(
                "SELECT type, coalesce(last_error, status_reason, ''), count(*) FROM stripe_event "
                "WHERE status = 'error' GROUP BY 1, 2 ORDER BY 3 DESC"
            ).fetchall()
        ]
    finally:
        conn.close()


@dataclass
class WorkerRow:
    backend: str
    threads: int
    events: int
    seconds: float
    events_per_s: float
    statuses: dict[str, int]
    outbox: dict[str, int]
    outbox_seconds: float | None
    errors: list[tuple[str, str, int]]
    store_per_s: float
    timed_out: bool
    worker_cpu_ms: float = 0.0  # CPU of the worker processes per event (paydesk's own Python)
    processes: int = 1
    stripe_cpu_ms: float = 0.0  # CPU of localstripe per event (what the Stripe calls cost the machine)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def settle(procs: list[subprocess.Popen], timeout: float = 60) -> None:
    """Wait until the processes have started (their CPU stops growing for half a second)."""
    deadline = time.monotonic() + timeout
    last = -1.0
    while procs and time.monotonic() < deadline:
        now = sum(proc_cpu(p.pid) for p in procs)
        if now > 0.3 and now - last < 0.02:
            return
        last = now
        time.sleep(0.5)


def run_worker(
    backend: str,
    threads: int,
    events: list[dict],
    api_base: str,
    dbs: Databases,
    workdir: Path,
    time_limit: float,
    stripe_pid: int = 0,
    processes: int = 1,
) -> WorkerRow:
    from admin.worker.loop import run_forever

    url = dbs.create(backend, "worker")
    try:
        paydesk_database(url, api_base)
        app = worker_app(url, workdir, backend)
        stored, store_s = store_events(app, events)
        stop = threading.Event()
        thread = threading.Thread(
            target=run_forever, args=(app, threads, stop), name="bench-worker", daemon=True
        )
        conn = raw_connect(url)
        pending_sql = "SELECT count(*) FROM stripe_event WHERE status IN ('queued', 'processing')"
        outbox_sql = "SELECT count(*) FROM outbox_task WHERE status IN ('queued', 'processing')"
        # Held back while the extra worker processes start, so their start-up (imports, the app: ~1.7 s of
        # CPU each) is not counted as CPU per event; all made due at once when they are idle.
        conn.execute("UPDATE stripe_event SET next_attempt_at = '2100-01-01 00:00:00'")
        env = {
            **os.environ,
            "PAYDESK_DATABASE_URL": url,
            "PAYDESK_SECRET_KEY": SECRET_KEY,
            "PAYDESK_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "PAYDESK_OUTBOX_DIR": str(workdir / f"outbox-{backend}"),
        }
        extra = [
            subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--concurrency", str(threads)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(processes - 1)
        ]
        settle(extra)
        deadline = time.monotonic() + time_limit
        t0 = time.perf_counter()
        cpu0, stripe0 = time.process_time(), proc_cpu(stripe_pid)
        extra0 = sum(proc_cpu(e.pid) for e in extra)
        conn.execute("UPDATE stripe_event SET next_attempt_at = '2000-01-01 00:00:00'")
        thread.start()
        seconds = outbox_seconds = None
        cpu = stripe_cpu = 0.0
        try:
            while time.monotonic() < deadline:
                time.sleep(0.1)
                if seconds is None and not conn.execute(pending_sql).fetchone()[0]:
                    seconds = time.perf_counter() - t0
                    cpu = time.process_time() - cpu0 + sum(proc_cpu(e.pid) for e in extra) - extra0
                    stripe_cpu = proc_cpu(stripe_pid) - stripe0
                if seconds is not None and not conn.execute(outbox_sql).fetchone()[0]:
                    outbox_seconds = time.perf_counter() - t0
                    break
        finally:
            conn.close()
            stop.set()
            for e in extra:
                e.terminate()
            thread.join(timeout=120)
            for e in extra:
                e.wait(timeout=60)
        timed_out = seconds is None
        if timed_out:
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu0 + sum(proc_cpu(e.pid) for e in extra) - extra0
            stripe_cpu = proc_cpu(stripe_pid) - stripe0
        with app.app_context():
            from admin.extensions import db

            db.engine.dispose()
        return WorkerRow(
            backend=backend,
            threads=threads,
            processes=processes,
            events=stored,
            seconds=seconds,
            events_per_s=stored / seconds if seconds else 0.0,
            statuses=status_counts(url),
            outbox=status_counts(url, "outbox_task"),
            outbox_seconds=outbox_seconds,
            errors=error_messages(url),
            store_per_s=stored / store_s if store_s else 0.0,
            timed_out=timed_out,
            worker_cpu_ms=1000 * cpu / max(stored, 1),
            stripe_cpu_ms=1000 * stripe_cpu / max(stored, 1),
        )
    finally:
        dbs.drop(url)


def profile_worker(
    backend: str, events: list[dict], api_base: str, dbs: Databases, workdir: Path, top: int = 25
) -> str:
    """cProfile of ``run_once`` (one thread) over ``events``; the top functions, paydesk's own first."""
    from admin.worker.loop import run_once

    url = dbs.create(backend, "profile")
    try:
        paydesk_database(url, api_base)
        app = worker_app(url, workdir, f"profile-{backend}")
        store_events(app, events)
        prof = cProfile.Profile()
        with app.app_context():
            t0 = time.perf_counter()
            prof.enable()
            n = run_once()
            prof.disable()
            elapsed = time.perf_counter() - t0
            from admin.extensions import db

            db.engine.dispose()
        prof.dump_stats(str(workdir / f"worker-{backend}.prof"))
        out = io.StringIO()
        out.write(
            f"cProfile of run_once on {backend}: {n} events and tasks in {elapsed:.1f} s "
            f"({len(events) / elapsed:.0f} events/s under the profiler)\n"
        )
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative")
        out.write("\n-- paydesk functions by cumulative time --\n")
        stats.print_stats(r"admin/", top)
        stats.sort_stats("tottime")
        out.write("\n-- all functions by own time --\n")
        stats.print_stats(top)
        text = out.getvalue()
        text = text.replace(str(ROOT) + "/", "").replace(str(Path(sys.prefix)) + "/", "")
        return re.sub(r"\n{3,}", "\n\n", text)
    finally:
        dbs.drop(url)


def worker_table(rows: list[WorkerRow]) -> str:
    lines = [
        f"{'backend':<10} {'procs x threads':>15} {'events':>6} {'seconds':>8} {'events/s':>9} {'cpu ms/ev':>9} "
        f"{'stripe ms/ev':>12}  statuses   (outbox)"
    ]
    for r in rows:
        st = ", ".join(f"{k} {v}" for k, v in sorted(r.statuses.items()))
        ob = ", ".join(f"{k} {v}" for k, v in sorted(r.outbox.items())) or "none"
        more = f"; outbox drained at {r.outbox_seconds:.1f} s" if r.outbox_seconds else ""
        lines.append(
            f"{r.backend:<10} {f'{r.processes} x {r.threads}':>15} {r.events:>6} {r.seconds:>8.1f} {r.events_per_s:>9.0f} "
            f"{r.worker_cpu_ms:>9.1f} {r.stripe_cpu_ms:>12.1f}  "
            f"{st}   (outbox: {ob}{more}){' TIMED OUT' if r.timed_out else ''}"
        )
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "admin", "migrations", "wsgi.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return f"{head}{' (admin/ has uncommitted changes)' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=5000, help="events per ingest run and for the worker")
    p.add_argument("--concurrency", default="1,8,32", help="client concurrencies, comma separated")
    p.add_argument("--backends", default="sqlite,postgresql", help="sqlite, postgresql or both")
    p.add_argument("--quick", action="store_true", help="smoke run: 300 events, concurrency 1,8")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="ingest runs per app/backend/concurrency; the table shows the fastest, errors of all",
    )
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--skip-worker", action="store_true")
    p.add_argument("--worker-events", type=int, help="events for the worker test (default: --events)")
    p.add_argument(
        "--worker-concurrency",
        type=int,
        help="worker threads per process on PostgreSQL (default 2; SQLite: 1)",
    )
    p.add_argument(
        "--worker-processes",
        type=int,
        help="worker processes on PostgreSQL (default 2, one per core; SQLite: 1)",
    )
    p.add_argument(
        "--profile",
        choices=["auto", "always", "never"],
        default="auto",
        help="cProfile the worker (auto: when PostgreSQL misses 300 events/s)",
    )
    p.add_argument("--profile-events", type=int, default=600)
    p.add_argument("--time-limit", type=float, default=600, help="seconds allowed for each load or drain")
    p.add_argument(
        "--keep", action="store_true", help="keep the run directory's logs (databases are dropped)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.events = min(args.events, 300)
        if args.concurrency == "1,8,32":
            args.concurrency = "1,8"
        args.profile_events = min(args.profile_events, 150)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in args.backends:
        if b not in ("sqlite", "postgresql"):
            p.error(f"unknown backend {b!r}")
    if not (0 < args.events <= 100_000) or any(not 0 < c <= 256 for c in args.concurrency):
        p.error("--events must be 1..100000 and each concurrency 1..256")
    args.worker_events = args.worker_events or args.events
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = BENCH / "results" / f"run-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    # paydesk's own loggers (worker retries, gateway) go to a file, not between the tables.
    fh = logging.FileHandler(workdir / "paydesk.log")
    fh.setLevel(logging.INFO)
    for name in ("admin", "stripe"):
        lg = logging.getLogger(name)
        lg.addHandler(fh)
        lg.propagate = False
    logging.getLogger("alembic").setLevel(logging.WARNING)
    dbs = Databases(workdir)
    header = (
        f"paydesk webhook benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, paydesk {git_revision()}, events {args.events}, concurrency "
        f"{','.join(map(str, args.concurrency))}, backends {','.join(args.backends)}"
    )
    report: list[str] = [header, ""]
    results: dict = {"header": header, "ingest": [], "worker": [], "targets": []}
    targets: list[tuple[str, bool]] = []
    try:
        if not args.skip_ingest:
            templates, mix = ingest_bodies(args.events)
            log.info(
                "ingest: %d events per run, mix %s, ~%d bytes each",
                len(templates),
                dict(mix),
                statistics.mean(len(t) for t in templates),
            )
            rows: list[IngestRow] = []
            for backend in args.backends:
                for conc in args.concurrency:
                    reps: dict[str, list[IngestRow]] = {"floor": [], "paydesk": []}
                    for _ in range(args.repeat):
                        for app_name in ("floor", "paydesk"):  # interleaved, so drift hits both alike
                            row = run_ingest(
                                app_name, backend, conc, templates, dbs, workdir, args.time_limit
                            )
                            reps[app_name].append(row)
                            log.info(
                                "%-7s %-10s c=%-3d %6.0f ev/s p50 %.1f ms p99 %.1f ms errors %d stored %d/%d "
                                "load %.1f %s",
                                app_name,
                                backend,
                                conc,
                                row.events_per_s,
                                row.p50_ms,
                                row.p99_ms,
                                row.errors,
                                row.stored,
                                row.sent,
                                row.load1,
                                row.error_samples[:2] or "",
                            )
                    for app_name in ("floor", "paydesk"):
                        row = best_of(reps[app_name])
                        rows.append(row)
            report += [
                "Ingest (gunicorn -c gunicorn.conf.py -w 2: threaded workers; aiohttp client on the same machine)",
                ingest_table(rows),
                "",
            ]
            for r in rows:
                if r.error_samples:
                    report.append(
                        f"  {r.app} {r.backend} c={r.concurrency} errors {r.status_counts}: "
                        f"{r.error_samples[:3]}"
                    )
            targets += ingest_targets(rows)
            results["ingest"] = [asdict(r) for r in rows]
        if not args.skip_worker:
            port = free_port()
            ls_log = open(workdir / "localstripe.log", "wb")  # noqa: SIM115
            ls = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "localstripe_server.py"), "--port", str(port)],
                stdout=ls_log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for_port(port, ls)
                api_base = f"http://127.0.0.1:{port}"
                events, made = make_stripe_events(api_base, args.worker_events, args.time_limit)
                types = collections.Counter(e["type"] for e in events)
                log.info("localstripe: %d events from %s: %s", len(events), made, dict(types))
                wrows: list[WorkerRow] = []
                for backend in args.backends:
                    threads = 1 if backend == "sqlite" else (args.worker_concurrency or 2)
                    procs = 1 if backend == "sqlite" else (args.worker_processes or 2)
                    row = run_worker(
                        backend,
                        threads,
                        events,
                        api_base,
                        dbs,
                        workdir,
                        args.time_limit,
                        ls.pid,
                        processes=procs,
                    )
                    wrows.append(row)
                    log.info(
                        "worker %s: %d events in %.1f s = %.0f ev/s %s",
                        backend,
                        row.events,
                        row.seconds,
                        row.events_per_s,
                        row.statuses,
                    )
                report += [
                    f"Worker end to end ({len(events)} localstripe events: "
                    + ", ".join(f"{t} {n}" for t, n in types.most_common())
                    + ")",
                    worker_table(wrows),
                    "",
                ]
                for r in wrows:
                    for etype, msg, n in r.errors[:10]:
                        report.append(f"  {r.backend} error x{n} {etype}: {msg[:300]}")
                    if r.backend == "postgresql":
                        targets.append(
                            (
                                f"worker postgresql ({r.processes} processes x {r.threads} threads): {r.events_per_s:.0f} events/s "
                                f"(target >= 300)",
                                r.events_per_s >= 300 and not r.timed_out,
                            )
                        )
                    targets.append(
                        (
                            f"worker {r.backend}: {r.statuses.get('error', 0)} events in error, "
                            f"{r.statuses.get('queued', 0) + r.statuses.get('processing', 0)} unprocessed",
                            not r.statuses.get("error") and not r.timed_out,
                        )
                    )
                results["worker"] = [asdict(r) for r in wrows]
                pg = [r for r in wrows if r.backend == "postgresql"]
                if args.profile == "always" or (args.profile == "auto" and pg and pg[0].events_per_s < 300):
                    backend = "postgresql" if pg else args.backends[0]
                    log.info("profiling the worker on %s with %d events", backend, args.profile_events)
                    text = profile_worker(backend, events[: args.profile_events], api_base, dbs, workdir)
                    (workdir / "worker-profile.txt").write_text(text)
                    results["profile"] = text
                    report += [f"Worker profile: see {workdir.relative_to(ROOT)}/worker-profile.txt", ""]
            finally:
                stop_process(ls)
                ls_log.close()
        if targets:
            report.append("Targets")
            report += [f"  {'PASS' if ok else 'FAIL'}  {text}" for text, ok in targets]
            report.append("")
        results["targets"] = [{"target": t, "pass": ok} for t, ok in targets]
    finally:
        dbs.drop_all()
        text = "\n".join(report)
        print("\n" + text)
        (workdir / "report.txt").write_text(text + "\n")
        (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
        latest = BENCH / "results" / "latest.txt"
        latest.write_text(text + "\n")
        if not args.keep:
            for p in workdir.glob("*.sqlite3*"):
                p.unlink(missing_ok=True)
            for d in workdir.glob("outbox-*"):
                shutil.rmtree(d, ignore_errors=True)
    return 0 if all(ok for _, ok in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
