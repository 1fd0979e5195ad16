"""/healthz and /readyz (admin/services/monitoring/health.py): each readiness check fails on its own, with the
reason in the answer; the worker's heartbeat is written, read and removed."""

from __future__ import annotations

import threading
from datetime import timedelta

import stripe_objects as so
from sqlalchemy import text

from admin.extensions import db
from admin.models import StripeEvent, WorkerHeartbeat
from admin.services.monitoring import health
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_forever


def _stamp(revision: str | None = None) -> None:
    """Record the schema as migrated (the test database is made with create_all)."""
    rev = revision or sorted(health.migration_heads())[0]
    db.session.execute(text("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL)"))
    db.session.execute(text("DELETE FROM alembic_version"))
    db.session.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": rev})
    db.session.commit()


def test_healthz_says_the_process_is_up(client):
    assert client.get("/healthz").json == {"status": "ok", "database": "ok"}


def test_ready_with_the_schema_at_head_a_moving_queue_and_a_fresh_heartbeat(client, offline_processor):
    _stamp()
    health.beat("host-a:1")
    store_event(offline_processor, so.event("customer.updated", so.customer()))  # just arrived
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "ready" and answer.json["reasons"] == []
    assert set(answer.json["checks"]) == {"database", "migrations", "queue", "worker"}


def test_not_ready_before_migrations_or_at_an_old_one(client):
    health.beat()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "no migration record" in answer.json["checks"]["migrations"]
    _stamp("c4d1e2f3a5b6")
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["reasons"] == [answer.json["reasons"][0]] and "db upgrade" in answer.json["reasons"][0]
    assert "c4d1e2f3a5b6" in answer.json["checks"]["migrations"]


def test_not_ready_while_an_event_waits_too_long_for_a_worker(app, client, offline_processor):
    _stamp()
    health.beat()
    store_event(offline_processor, so.event("customer.updated", so.customer()))
    row = db.session.query(StripeEvent).one()
    row.next_attempt_at = utcnow() - timedelta(seconds=app.config["READY_QUEUE_MAX_AGE"] + 60)
    db.session.commit()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["reasons"][0].startswith("queue: the oldest queued event has waited 6")
    app.config["READY_QUEUE_MAX_AGE"] = 0  # the check turned off
    assert client.get("/readyz").status_code == 200


def test_not_ready_without_a_worker_or_with_a_stale_heartbeat(app, client):
    _stamp()
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.json["checks"]["worker"].startswith("no worker has reported")
    db.session.add(
        WorkerHeartbeat(
            name="gone:42",
            started_at=utcnow() - timedelta(hours=1),
            beat_at=utcnow() - timedelta(seconds=600),
        )
    )
    db.session.commit()
    answer = client.get("/readyz")
    assert answer.status_code == 503 and "heartbeat is 600 s old" in answer.json["checks"]["worker"]


def test_not_ready_when_the_database_is_unreachable(tmp_path):
    from conftest import make_app

    broken = make_app("postgresql://nobody@127.0.0.1:9/nothing", tmp_path)  # nothing listens on port 9
    answer = broken.test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.json["checks"]["database"].startswith("unreachable")


def test_the_worker_beats_while_it_runs_and_removes_its_heartbeat_when_it_stops(app):
    app.config.update(WORKER_HEARTBEAT_SECONDS=0.05, WORKER_IDLE_SLEEP=0.02)
    stop = threading.Event()
    runner = threading.Thread(target=run_forever, args=(app, 1, stop))
    runner.start()
    try:
        seen = []
        deadline = utcnow() + timedelta(seconds=10)
        while len(set(seen)) < 2 and utcnow() < deadline:
            db.session.rollback()
            beat = db.session.scalar(db.select(WorkerHeartbeat.beat_at))
            if beat is not None:
                seen.append(beat)
        assert len(set(seen)) >= 2, "the heartbeat was not renewed"
        assert health.heartbeat_age()[1] == 1
    finally:
        stop.set()
        runner.join(timeout=30)
    db.session.rollback()
    assert db.session.query(WorkerHeartbeat).count() == 0


def test_dead_workers_heartbeats_are_pruned(app):
    db.session.add(
        WorkerHeartbeat(
            name="old:1", started_at=utcnow() - timedelta(days=3), beat_at=utcnow() - timedelta(days=2)
        )
    )
    health.beat("live:2")
    assert health.prune_heartbeats() == 1
    assert [h.name for h in db.session.query(WorkerHeartbeat)] == ["live:2"]
