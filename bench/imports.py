"""Benchmark the imports from Stripe: customers, then subscriptions with their invoices and charges.

A localstripe of its own is filled through paydesk's Gateway as donors would fill Stripe
(``--customers`` customers, ``--subscriptions`` of them subscribed by card: localstripe makes
each one's invoice, PaymentIntent and charge). Then, for each backend, a fresh paydesk database
(``flask db upgrade`` + ``flask processor add``) runs the import jobs in this process, as
``flask import customers`` / ``flask import subscriptions`` run them (the job runner in the
foreground), twice: the first run creates the records, the second must change nothing.

Printed per run: objects/s, records written, the Stripe calls paydesk made (counted by the
gateway, by resource and method) per object, paydesk's CPU per object, and localstripe's own
CPU per call (read from /proc), since localstripe shares the machine.

    .venv/bin/python bench/imports.py                       # 2,000 customers, 200 subscriptions, sqlite + postgresql
    .venv/bin/python bench/imports.py --customers 300 --subscriptions 30 --backends sqlite   # smoke run

Targets: at least 200 customers/s, at most one list call per 100 customers and no customer
fetched one by one; importing unchanged subscriptions again reads each one's invoices and nothing
else (one call per subscription and one per 100 listed, no balance transaction). Exit status 0 only when every
target passes.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import webhooks as wb  # noqa: E402  (the webhook benchmark's helpers: ports, scratch databases, /proc CPU)

from admin import create_app  # noqa: E402
from admin.demo_data import donation_plan, subscribe  # noqa: E402
from admin.stripe_gateway import Gateway, call_counts, call_seconds  # noqa: E402
from admin.worker import queues  # noqa: E402


@dataclass
class Run:
    backend: str
    what: str
    objects: int
    seconds: float
    calls: dict[str, int]
    cpu: float  # paydesk process CPU seconds
    stripe_cpu: float  # localstripe CPU seconds
    counts: dict[str, int]
    written: dict[str, int]
    stripe_wait: float = 0.0  # seconds spent waiting on Stripe's answers
    load: float = 0.0  # the machine's 1-minute load average when the run started

    @property
    def per_second(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def make_stripe_data(api_base: str, customers: int, subscriptions: int) -> float:
    gw = Gateway("sk_test_bench_imports", api_base)
    started = time.perf_counter()
    plans = [donation_plan(gw, amount) for amount in (500, 1500, 5000)]
    ids = []
    for i in range(customers):
        ids.append(
            gw.create(
                "customers",
                {
                    "name": f"Bench Donor {i}",
                    "email": f"donor{i}@bench.example.org",
                    "metadata": {"source": "bench"},
                },
            )["id"]
        )
        if (i + 1) % 500 == 0:
            print(f"    {i + 1} customers ({time.perf_counter() - started:.0f} s)", flush=True)
    for i in range(subscriptions):
        subscribe(gw, ids[i * max(1, customers // subscriptions)], plans[i % len(plans)])
        if (i + 1) % 50 == 0:
            print(f"    {i + 1} subscriptions ({time.perf_counter() - started:.0f} s)", flush=True)
    return time.perf_counter() - started


def record_counts() -> dict[str, int]:
    from sqlalchemy import func, select

    from admin.extensions import db
    from admin.models import Contact, Contribution, ContributionRecur, Payment, StripeCustomer

    return {
        m.__tablename__: int(db.session.scalar(select(func.count()).select_from(m)))
        for m in (Contact, StripeCustomer, ContributionRecur, Contribution, Payment)
    }


def run_import(app, backend: str, kind: str, ppid: int, stripe_pid: int) -> Run:
    from admin.services.core import jobs

    with app.app_context():
        before_rows = record_counts()
        calls0, cpu0, stripe0 = call_counts(), time.process_time(), wb.proc_cpu(stripe_pid)
        wait0, load = call_seconds(), os.getloadavg()[0]
        started = time.perf_counter()
        job = jobs.start(kind, {"limit": None, "starting_after": None}, processor_id=ppid).job
        status = queues.run_foreground(job, "bench")
        seconds = time.perf_counter() - started
        cpu, stripe_cpu = time.process_time() - cpu0, wb.proc_cpu(stripe_pid) - stripe0
        calls1, wait = call_counts(), call_seconds() - wait0
        job = jobs.get(job.id)
        if status != "done":
            raise RuntimeError(f"{kind} ended {status}: {job.error}")
        after_rows = record_counts()
        calls = {k: v - calls0.get(k, 0) for k, v in calls1.items() if v - calls0.get(k, 0)}
        written = {k: after_rows[k] - before_rows[k] for k in after_rows if after_rows[k] != before_rows[k]}
        return Run(
            backend,
            kind.split(".")[1],
            job.done,
            seconds,
            calls,
            cpu,
            stripe_cpu,
            dict((job.result or {}).get("counts") or {}),
            written,
            wait,
            load,
        )


def report(runs: list[Run], customers: int) -> list[tuple[bool, str]]:
    print()
    print(
        "per s: objects per second of wall time; own/s: per second of the time paydesk was not waiting on Stripe"
    )
    print(
        f"{'backend':<11}{'import':<14}{'run':<6}{'objects':>8}{'seconds':>8}{'stripe s':>9}{'per s':>7}{'own/s':>7}"
        f"{'calls/obj':>10}{'cpu ms/obj':>11}{'ls ms/call':>11}{'load':>6}  outcome / records written / Stripe calls"
    )
    for r in runs:
        per_call = r.stripe_cpu * 1000 / r.total_calls if r.total_calls else 0
        own = r.objects / max(r.seconds - r.stripe_wait, 1e-9)
        print(
            f"{r.backend:<11}{r.what:<14}{r.run:<6}{r.objects:>8}{r.seconds:>8.2f}{r.stripe_wait:>9.2f}"
            f"{r.per_second:>7.0f}{own:>7.0f}{r.total_calls / max(r.objects, 1):>10.3f}"
            f"{r.cpu * 1000 / max(r.objects, 1):>11.2f}{per_call:>11.1f}{r.load:>6.1f}"
            f"  {r.counts} / {r.written or 'nothing'} / {r.calls}"
        )
    checks = []
    for r in runs:
        if r.what == "customers" and r.run == "first":
            checks.append(
                (
                    r.per_second >= 200,
                    f"{r.backend}: customers imported at {r.per_second:.0f}/s (target >= 200/s)",
                )
            )
            lists, allowed = r.calls.get("customers.list", 0), math.ceil(customers / 100)
            checks.append(
                (
                    lists <= allowed and not r.calls.get("customers.retrieve"),
                    f"{r.backend}: {lists} customers.list calls for {customers} customers (at most {allowed}), "
                    f"{r.calls.get('customers.retrieve', 0)} customers.retrieve (target 0)",
                )
            )
        if r.run == "again":
            checks.append(
                (
                    not r.written and set(r.counts) <= {"linked", "unchanged"},
                    f"{r.backend}: importing {r.what} again wrote {r.written or 'nothing'} ({r.counts})",
                )
            )
        if r.run == "again" and r.what == "subscriptions":
            allowed = r.objects + math.ceil(r.objects / 100)  # each one's invoices, and the list of them
            checks.append(
                (
                    r.total_calls <= allowed and not r.calls.get("balance_transactions.retrieve"),
                    f"{r.backend}: importing {r.objects} unchanged subscriptions again: {r.total_calls} Stripe "
                    f"calls (at most {allowed}), {r.calls.get('balance_transactions.retrieve', 0)} balance "
                    f"transactions read again (target 0)",
                )
            )
    print()
    for ok, text in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--subscriptions", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("admin", "stripe", "alembic"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    port = wb.free_port()
    stripe = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "localstripe_server.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api_base = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="paydesk-bench-imports-"))
    dbs = wb.Databases(workdir)
    runs: list[Run] = []
    try:
        wb.wait_for_port(port, stripe)
        print(
            f"==> filling localstripe ({api_base}): {args.customers} customers, {args.subscriptions} subscribed",
            flush=True,
        )
        made = make_stripe_data(api_base, args.customers, args.subscriptions)
        print(f"    made in {made:.1f} s", flush=True)
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            try:
                url = dbs.create(backend, "imports")
            except Exception as exc:  # noqa: BLE001 - no PostgreSQL here: say so and carry on
                print(f"==> {backend}: skipped ({type(exc).__name__}: {exc})", flush=True)
                continue
            print(f"==> {backend}: importing into a fresh database", flush=True)
            ppid = wb.paydesk_database(url, api_base)
            # The keys of the processor flask processor add stored (wb.paydesk_database), as bench/webhooks.py
            # gives its in-process app: without ENCRYPTION_KEY its secret key cannot be read.
            app = create_app(
                {
                    "DATABASE_URL": url,
                    "SECRET_KEY": wb.SECRET_KEY,
                    "ENCRYPTION_KEY": wb.ENCRYPTION_KEY,
                    "JOB_SLICE_SECONDS": 3600,
                }
            )
            for run_name in ("first", "again"):
                for kind in ("imports.customers", "imports.subscriptions"):
                    r = run_import(app, backend, kind, ppid, stripe.pid)
                    r.run = run_name
                    runs.append(r)
                    print(f"    {kind} ({run_name}): {r.objects} in {r.seconds:.2f} s", flush=True)
            with app.app_context():
                from admin.extensions import db

                db.session.remove()
                db.engine.dispose()
            dbs.drop(url)
        checks = report(runs, args.customers)
    finally:
        wb.stop_process(stripe)
        dbs.drop_all()
    return 0 if checks and all(ok for ok, _ in checks) else 1


Run.run = "first"  # which of the two passes a run was

if __name__ == "__main__":
    sys.exit(main())
