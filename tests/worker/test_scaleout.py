"""Scale-out on one PostgreSQL database: two app processes (gunicorn, the shipped gunicorn.conf.py) and three
worker processes share it with no other coordination. Ingest is exactly-once, each event is processed once,
a worker killed with SIGKILL half way loses nothing, a job started twice at once runs once, and the scheduled
process-stripe does its work once per period however many hosts start it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import ROOT, TEST_ENCRYPTION_KEY, WEBHOOK_SECRET
from sqlalchemy import func, select, text
from stripe_objects import signed

from admin.extensions import db
from admin.models import EV_PROCESSING, EV_QUEUED, StripeEvent
from admin.models.jobs import EventAttempt, Job

sys.path.insert(0, str(ROOT / "bench"))
from stripe_standin import scene  # noqa: E402

EVENTS = 2000
DUPLICATES = 500  # events delivered a second time, to the other app process, while the first may still run
PER_DONOR = [
    "payment_intent.created",
    "payment_intent.succeeded",
    "charge.succeeded",
    "invoice.paid",
    "invoice.payment_succeeded",
    "customer.subscription.updated",
    "customer.updated",
    "charge.refunded",
]
# What one donor's 8 events make (one worker, in order): a contact and its Stripe customer, the one-off
# payment's contribution and payment, the subscription and its invoice's contribution, three receipts.
PER_DONOR_RECORDS = {
    "contact": 1,
    "stripe_customer": 1,
    "contribution": 2,
    "payment": 1,
    "contribution_recur": 1,
    "outbox_task": 3,
}
pytestmark = pytest.mark.postgres_only


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode} before listening on {port}")
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def scalar(sql: str) -> int:
    db.session.rollback()
    return int(db.session.execute(text(sql)).scalar() or 0)


@pytest.fixture
def processes(app, tmp_path):
    """Start processes sharing the test's PostgreSQL database; all stopped (SIGKILL if need be) at the end."""
    url = app.config["DATABASE_URL"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    env.update(
        PAYDESK_DATABASE_URL=str(url),
        PAYDESK_SECRET_KEY="test-secret-key",
        PAYDESK_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY,
        PAYDESK_OUTBOX_DIR=str(tmp_path / "outbox"),
        PAYDESK_WORKER_LEASE_SECONDS="4",
        PAYDESK_STRIPE_API_BASES="127.0.0.1",
        PAYDESK_WORKER_IDLE_SLEEP="0.05",
        PYTHONUNBUFFERED="1",
    )
    started: list[subprocess.Popen] = []
    logs = []

    def start(*cmd: str, name: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115
        logs.append(log)
        proc = subprocess.Popen(list(cmd), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    start.env = env
    start.tmp = tmp_path
    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for log in logs:
        log.close()


def test_two_app_processes_and_three_workers_process_every_event_once_with_one_worker_killed(
    app, processes, tmp_path
):
    from admin.services.settings.processors import add_processor

    events, objects = scene(EVENTS, id_prefix="evt_scaleout_", per_donor=PER_DONOR)
    (tmp_path / "objects.json").write_text(json.dumps(objects))
    stripe_port = free_port()
    standin = processes(
        sys.executable,
        str(ROOT / "bench" / "stripe_standin.py"),
        "--port",
        str(stripe_port),
        "--latency",
        "0.002",
        "--objects",
        str(tmp_path / "objects.json"),
        name="stripe",
    )
    proc = add_processor(
        name="Stripe stand-in",
        secret_key="sk_test_standin",
        publishable_key="pk_test_standin",
        webhook_secrets=[WEBHOOK_SECRET],
        api_base=f"http://127.0.0.1:{stripe_port}",
        mode="test",
        default=True,
    )
    ppid = proc.id
    db.session.commit()
    ports = [free_port(), free_port()]
    apps = [
        processes(
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "wsgi:app",
            name=f"app{i}",
        )
        for i, port in enumerate(ports)
    ]
    workers = [
        processes(
            sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--concurrency", "2", name=f"worker{i}"
        )
        for i in range(3)
    ]
    for port, app_proc in zip(ports, apps, strict=True):
        wait_for_port(port, app_proc)
    wait_for_port(stripe_port, standin)

    # Every event once, to one app process or the other; DUPLICATES of them again, to the other one.
    deliveries = [(i % 2, ev) for i, ev in enumerate(events)]
    deliveries += [((i + 1) % 2, events[i]) for i in range(0, EVENTS, EVENTS // DUPLICATES)]
    deliveries.sort(key=lambda d: hash(d[1]["id"]) % 97)  # duplicates near, not next to, their first delivery
    codes: list[int] = []
    lock = threading.Lock()

    def send(chunk: list[tuple[int, dict]]) -> None:
        with requests.Session() as http:
            for which, ev in chunk:
                body, headers = signed(ev, WEBHOOK_SECRET)
                r = http.post(
                    f"http://127.0.0.1:{ports[which]}/webhooks/stripe/{ppid}",
                    data=body,
                    headers=headers,
                    timeout=60,
                )
                with lock:
                    codes.append(r.status_code)

    killed: dict = {}

    def kill_one_half_way() -> None:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and "at" not in killed:
            if (
                scalar("SELECT count(*) FROM stripe_event WHERE status NOT IN ('queued', 'processing')")
                >= EVENTS // 2
            ):
                workers[0].send_signal(signal.SIGKILL)
                killed["at"] = scalar("SELECT count(*) FROM stripe_event WHERE status = 'processing'")
                return
            time.sleep(0.05)

    from admin import create_app

    watcher_app = create_app(
        {
            "DATABASE_URL": app.config["DATABASE_URL"],
            "SECRET_KEY": "x",
            "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
            "SERVER_NAME": None,
        }
    )

    def watch() -> None:
        with watcher_app.app_context():
            kill_one_half_way()
            db.session.remove()
            db.engine.dispose()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    chunks = [deliveries[i::8] for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, chunks))
    sent_s = time.monotonic() - t0
    watcher.join(timeout=120)
    assert "at" in killed, "the first worker was never killed (half the events never processed?)"
    assert workers[0].wait(timeout=10) == -signal.SIGKILL

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        db.session.rollback()
        left = db.session.scalar(
            select(func.count())
            .select_from(StripeEvent)
            .where(StripeEvent.status.in_([EV_QUEUED, EV_PROCESSING]))
        )
        if not left:
            break
        time.sleep(0.2)
    drained_s = time.monotonic() - t0
    db.session.rollback()

    assert codes.count(200) == len(deliveries), sorted(set(codes))
    assert scalar("SELECT count(*) FROM stripe_event") == EVENTS  # duplicates stored once
    statuses = dict(
        db.session.execute(select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all()
    )
    assert set(statuses) <= {"success", "ignored"}, statuses
    # Each event has exactly one finished run; a run the killed worker had started left no trace.
    finished = db.session.execute(
        select(EventAttempt.event_row_id, func.count())
        .where(EventAttempt.outcome.in_(["success", "ignored"]))
        .group_by(EventAttempt.event_row_id)
    ).all()
    assert len(finished) == EVENTS and {n for _, n in finished} == {1}
    donors = EVENTS // len(PER_DONOR)
    records = {table: scalar(f"SELECT count(*) FROM {table}") for table in PER_DONOR_RECORDS}
    assert records == {table: n * donors for table, n in PER_DONOR_RECORDS.items()}
    ran_by = {w.split(":")[1] for (w,) in db.session.execute(select(EventAttempt.worker).distinct())}
    assert {str(w.pid) for w in workers} <= ran_by  # all three worked, the killed one included
    print(
        f"\n{len(deliveries)} deliveries sent in {sent_s:.1f} s, {EVENTS} events processed by "
        f"{drained_s:.1f} s; worker 0 killed holding {killed['at']} events"
    )


def test_a_job_started_twice_at_once_runs_once_and_process_stripe_once_per_period(app, processes):
    from admin.services.core import jobs as jobs_service

    ids: list[tuple[int, bool]] = []
    barrier = threading.Barrier(2)
    from admin import create_app

    def start_it() -> None:
        other = create_app(
            {
                "DATABASE_URL": app.config["DATABASE_URL"],
                "SECRET_KEY": "x",
                "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
                "SERVER_NAME": None,
            }
        )
        with other.app_context():
            barrier.wait()
            started = jobs_service.start(
                "intents.process_stripe",
                {"delete_old": "0", "cancel_incomplete": "0", "period": None, "ppid": None},
            )
            ids.append((started.job.id, started.created))
            db.session.remove()
            db.engine.dispose()

    threads = [threading.Thread(target=start_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(ids) == 2 and ids[0][0] == ids[1][0] and sorted(c for _, c in ids) == [False, True]
    assert scalar("SELECT count(*) FROM audit_log WHERE action = 'job.start'") == 1
    worker = processes(sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--once", name="worker")
    assert worker.wait(timeout=120) == 0
    db.session.rollback()
    assert [j.status for j in db.session.scalars(select(Job))] == ["done"]

    # Two hosts run the cron line at once, twice in the same period: one job does the period's work.
    cron = [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "wsgi",
        "jobs",
        "process-stripe",
        "--period",
        "1 day",
        "--delete-old",
        "0",
        "--cancel-incomplete",
        "0",
        "--format",
        "json",
    ]
    for _ in range(2):
        hosts = [processes(*cron, name=f"cron{i}") for i in range(2)]
        assert [h.wait(timeout=120) for h in hosts] == [0, 0]
    db.session.rollback()
    period_jobs = [j for j in db.session.scalars(select(Job).order_by(Job.id)) if j.params.get("period")]
    assert period_jobs and all(j.status == "done" for j in period_jobs)
    worked = [j for j in period_jobs if "skipped" not in ((j.result or {}).get("counts") or {})]
    assert len(worked) == 1, [(j.id, j.result) for j in period_jobs]
