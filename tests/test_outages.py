"""Real PostgreSQL restarts and stops under paydesk (a throwaway cluster of the tests' own, never port 5432).

Skipped, with the reason, where no cluster can be made (not root, no pg_createcluster); set
PAYDESK_TEST_PG_RESTART=0 to skip them on purpose. The cluster is made once for this module (a few
seconds) and dropped at its end.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import responses
from conftest import WEBHOOK_SECRET, make_app
from db_faults import ThrowawayCluster, cluster_unavailable
from smtp_sink import SmtpSink
from sqlalchemy import func, select
from stripe_objects import signed
from stripe_world import OneOff, StripeWorld

from admin.extensions import db
from admin.models import Contribution, OutboxTask, Payment, StripeEvent
from admin.services.donations import receipts
from admin.services.records import contributions
from admin.worker.loop import run_forever, run_once

pytestmark = pytest.mark.pg_restart


@pytest.fixture(scope="module")
def cluster():
    why = cluster_unavailable()
    if why:
        pytest.skip(f"no throwaway PostgreSQL cluster: {why}")
    c = ThrowawayCluster().create()
    try:
        yield c
    finally:
        c.drop()


@pytest.fixture
def pg_app(cluster, tmp_path):
    url = cluster.create_database(f"paydesk_{uuid.uuid4().hex[:8]}")
    with SmtpSink() as sink:
        app = make_app(
            url,
            tmp_path,
            SMTP_URL=sink.url,
            DB_RETRY_BACKOFF_MAX=0.2,
            WORKER_IDLE_SLEEP=0.05,
            OUTAGE_LOG_INTERVAL=1.0,
            SYNC_CUSTOMER_METADATA=False,
        )
        app.sink = sink
        with app.app_context():
            db.create_all()
            yield app
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def world(pg_app):
    from admin.services.settings.processors import add_processor

    add_processor(
        name="Stripe mocked",
        secret_key="sk_test_mocked",
        publishable_key="pk_test_mocked",
        webhook_secrets=[WEBHOOK_SECRET],
        api_base="http://127.0.0.1:9",
        mode="test",
        default=True,
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield StripeWorld(rsps)


def count(model, *where) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_receipt_sent_as_postgresql_goes_down_is_recorded_on_its_return_and_never_sent_again(
    pg_app, world, cluster, monkeypatch
):
    """The issue's case: the mail goes out, then the database is restarting when the commit that records it
    comes (here: stopped for 1.5 s)."""
    from admin.services.settings.processors import processor_ref
    from admin.webhooks.ingest import store_event

    real = receipts.deliver
    outages = []

    def deliver_then_database_goes_away(msg, name):
        real(msg, name)
        if not outages:
            cluster.stop()
            outages.append(threading.Timer(1.5, cluster.start))
            outages[0].start()

    monkeypatch.setattr(receipts, "deliver", deliver_then_database_goes_away)
    store_event(processor_ref(1), OneOff(world).event("charge.succeeded"))
    run_once()
    outages[0].join()
    task = db.session.scalar(select(OutboxTask).where(OutboxTask.kind == "receipt"))
    assert task.status == "success" and len(pg_app.sink.messages) == 1
    assert db.session.scalar(select(Contribution)).receipt_sent_at is not None


def test_postgresql_stop_mid_batch_answers_503_then_processes_the_batch_on_its_return(
    pg_app, world, cluster, monkeypatch, caplog
):
    from admin.services.settings.processors import processor_ref
    from admin.webhooks.ingest import store_event

    pays = [OneOff(world) for _ in range(5)]
    for pay in pays:
        store_event(processor_ref(1), pay.event("charge.succeeded"))
    real_add = contributions.add_charge_payment
    answers = []

    def add_as_postgresql_stops(reader, c, charge):
        if not answers:  # the first event: Stripe fails it, and PostgreSQL stops before that is recorded
            cluster.stop()
            body, headers = signed(OneOff(world).event("charge.succeeded"), WEBHOOK_SECRET)
            answers.append(pg_app.test_client().post("/webhooks/stripe/1", data=body, headers=headers))
            threading.Timer(2.0, cluster.start).start()
            raise ConnectionError("Stripe unreachable")
        return real_add(reader, c, charge)

    monkeypatch.setattr(contributions, "add_charge_payment", add_as_postgresql_stops)
    run_once()
    assert answers[0].status_code == 503 and answers[0].headers["Retry-After"] == "10"
    rows = db.session.scalars(select(StripeEvent).order_by(StripeEvent.id)).all()
    assert [r.status for r in rows] == ["success"] * 5 and [r.attempts for r in rows] == [2, 1, 1, 1, 1]
    assert count(Payment) == 5 and len(pg_app.sink.messages) == 5
    assert "5 claimed event(s) handed back to the queue" in caplog.text


def test_postgresql_restart_under_ingest_and_worker_loses_and_doubles_nothing(pg_app, world, cluster, caplog):
    """Stripe keeps delivering (retrying what is refused) and two worker threads keep working while
    PostgreSQL restarts: every event stored once and applied once, one receipt per contribution."""
    payments = [OneOff(world) for _ in range(40)]
    events = [p.event("charge.succeeded") for p in payments]
    statuses: list[int] = []
    restarted = threading.Event()

    def deliver(i_ev) -> None:
        i, ev = i_ev
        if i == 15:
            cluster.restart()
            restarted.set()
        body, headers = signed(ev, WEBHOOK_SECRET)
        with pg_app.test_client() as c:
            for _ in range(200):  # Stripe retries until it gets a 2xx
                resp = c.post("/webhooks/stripe/1", data=body, headers=headers)
                statuses.append(resp.status_code)
                if resp.status_code == 200:
                    return
                assert resp.status_code == 503 and resp.headers["Retry-After"]
                time.sleep(0.1)

    stop = threading.Event()
    worker = threading.Thread(target=run_forever, args=(pg_app, 2, stop), daemon=True)
    worker.start()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(deliver, enumerate(events)))
        assert restarted.is_set()
        # well within the lease (120 s): nothing waits for a lease to run out
        assert wait_until(
            lambda: (
                count(StripeEvent, StripeEvent.status.in_(["queued", "processing"])) == 0
                and count(OutboxTask, OutboxTask.status != "success") == 0
            ),
            60,
        )
    finally:
        stop.set()
        worker.join(60)
    assert count(StripeEvent) == 40 and count(StripeEvent, StripeEvent.status == "success") == 40
    assert count(Payment) == 40 and count(Contribution) == 40
    ids = [m["Message-ID"] for m in pg_app.sink.messages]
    assert len(ids) == 40 and len(set(ids)) == 40  # one receipt per contribution
    assert (
        len([r for r in caplog.records if r.exc_info]) <= 6
    )  # one traceback per distinct error, not per failure
