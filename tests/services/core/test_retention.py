"""Nothing grows forever: each retention rule deletes its old rows, keeps recent (and unfinished) ones, in
bounded batches, through an index; the settings refuse an age that would delete by accident."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from conftest import make_app
from sqlalchemy import func, select, text

from admin.extensions import db
from admin.models import (
    ApiIdempotencyKey,
    ApiToken,
    AuditLog,
    CardTestingSignal,
    EventAttempt,
    Job,
    NotificationDelivery,
    NotificationEndpoint,
    OutboxTask,
    StripeEvent,
    TriggerFeed,
)
from admin.services.core import retention
from admin.timeutil import utcnow

# -- one old row and one recent row of each rule ---------------------------------------------------


def _token() -> int:
    token = db.session.scalar(select(ApiToken).limit(1))
    if token is None:
        token = ApiToken(name="t", token_hash=uuid.uuid4().hex, prefix="pd_", scopes="read,write")
        db.session.add(token)
        db.session.flush()
    return token.id


def idempotency_key(at: datetime, ppid: int):
    return ApiIdempotencyKey(
        token_id=_token(), key=uuid.uuid4().hex, request_hash="h", status_code=200, created_at=at
    )


def outbox_done(at: datetime, ppid: int):
    return OutboxTask(
        kind="receipt",
        key=f"receipt:{uuid.uuid4().hex}",
        status="success",
        next_attempt_at=at,
        created_at=at,
        done_at=at,
    )


def outbox_failed(at: datetime, ppid: int):
    return OutboxTask(
        kind="receipt", key=f"receipt:{uuid.uuid4().hex}", status="error", next_attempt_at=at, created_at=at
    )


def job(at: datetime, ppid: int):
    return Job(kind="events.cleanup", title="t", actor="a", status="done", created_at=at, finished_at=at)


def feed_item(at: datetime, ppid: int):
    return TriggerFeed(
        topic="charge",
        processor_id=ppid,
        object_id=f"ch_{uuid.uuid4().hex}",
        record_type="payment",
        record_id=1,
        created_at=at,
    )


def signal(at: datetime, ppid: int):
    return CardTestingSignal(processor_id=ppid, charge_id=f"ch_{uuid.uuid4().hex}", created_at=at)


def event(at: datetime, ppid: int, status: str = "success"):
    return StripeEvent(
        processor_id=ppid,
        event_id=f"evt_{uuid.uuid4().hex}",
        type="charge.succeeded",
        raw="{}",
        status=status,
        received_at=at,
    )


def _endpoint() -> int:
    hook = db.session.scalar(select(NotificationEndpoint).limit(1))
    if hook is None:
        hook = NotificationEndpoint(url="https://example.org/hook", secrets="x", secret_hint="pdwhsec_...")
        db.session.add(hook)
        db.session.flush()
    return hook.id


def notification(at: datetime, ppid: int, **changes):
    values = {
        "endpoint_id": _endpoint(),
        "notification_id": f"ntf_{uuid.uuid4().hex[:24]}",
        "type": "contribution.completed",
        "object_type": "contribution",
        "object_id": 1,
        "body": "{}",
        "created_at": at,
        "last_attempt_at": at,
        "delivered_at": at,
        **changes,
    }
    return NotificationDelivery(**values)


def audit_entry(at: datetime, ppid: int):
    return AuditLog(actor="staff@example.org", action="event.replay", result="ok", at=at)


# rule name -> (factory, setting for the test, an age that is past it, an age within it)
ROWS = {
    "api_idempotency_keys": (idempotency_key, "24 hours", timedelta(hours=25), timedelta(hours=23)),
    "outbox_done": (outbox_done, "30 days", timedelta(days=31), timedelta(days=29)),
    "outbox_failed": (outbox_failed, "90 days", timedelta(days=91), timedelta(days=89)),
    "jobs": (job, "90 days", timedelta(days=91), timedelta(days=89)),
    "trigger_feed": (feed_item, "30 days", timedelta(days=31), timedelta(days=29)),
    "card_testing_signals": (signal, "90 days", timedelta(days=91), timedelta(days=89)),
    "notification_deliveries": (notification, "90 days", timedelta(days=91), timedelta(days=89)),
    "events": (event, "13 months", timedelta(days=400), timedelta(days=380)),
    "audit_log": (audit_entry, "2 years", timedelta(days=732), timedelta(days=728)),
}


def test_every_rule_has_a_test_row():
    assert set(ROWS) == set(retention.BY_NAME)


def ids_of(model) -> set[int]:
    db.session.rollback()
    return set(db.session.scalars(select(model.__mapper__.primary_key[0])))


@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(ROWS))
def test_old_rows_go_and_recent_ones_stay(app, offline_processor, name):
    make, setting, past, within = ROWS[name]
    rule = retention.BY_NAME[name]
    app.config[rule.setting] = setting
    now = utcnow()
    old, recent = make(now - past, offline_processor.id), make(now - within, offline_processor.id)
    db.session.add_all([old, recent])
    db.session.commit()
    before, old_id = ids_of(rule.model), old.id

    (out,) = retention.run(only=(name,))

    assert out.deleted == 1 and not out.more
    after = ids_of(rule.model)
    assert old_id not in after and before - {old_id} <= after
    assert len(after - before) == (1 if rule.audited else 0)  # the audit log's own note of the deletion


def test_the_defaults_keep_a_day_old_key_a_month_of_outbox_and_two_years_of_audit(app, offline_processor):
    now = utcnow()
    rows = {name: make(now - past, offline_processor.id) for name, (make, _s, past, _w) in ROWS.items()}
    db.session.add_all(rows.values())
    db.session.commit()
    out = {o.rule.name: o.deleted for o in retention.run()}
    # every default is the age in ROWS, but the event log, which is kept unless RETENTION_EVENTS says otherwise
    assert out == {**{name: 1 for name in ROWS}, "events": 0}


def test_unfinished_work_is_never_deleted_however_old(app, offline_processor):
    long_ago = utcnow() - timedelta(days=3000)
    ppid = offline_processor.id
    queued = OutboxTask(
        kind="receipt", key="receipt:1", status="queued", next_attempt_at=long_ago, created_at=long_ago
    )
    sending = OutboxTask(
        kind="receipt", key="receipt:2", status="sending", next_attempt_at=long_ago, created_at=long_ago
    )
    paused = Job(kind="events.cleanup", title="t", actor="a", status="paused", created_at=long_ago)
    running = Job(kind="events.cleanup", title="t", actor="a", status="running", created_at=long_ago)
    in_error = event(long_ago, ppid, status="error")
    waiting = event(long_ago, ppid, status="queued")
    db.session.add_all([queued, sending, paused, running, in_error, waiting])
    db.session.commit()
    app.config["RETENTION_EVENTS"] = "1 day"
    assert sum(o.deleted for o in retention.run()) == 0
    assert ids_of(OutboxTask) == {queued.id, sending.id}
    assert ids_of(Job) == {paused.id, running.id}
    assert ids_of(StripeEvent) == {in_error.id, waiting.id}


def test_an_events_attempts_go_with_it(app, offline_processor):
    app.config["RETENTION_EVENTS"] = "13 months"
    old = event(utcnow() - timedelta(days=400), offline_processor.id)
    db.session.add(old)
    db.session.flush()
    db.session.add(EventAttempt(event_row_id=old.id, worker="w", outcome="success"))
    db.session.commit()
    retention.run(only=("events",))
    assert ids_of(StripeEvent) == set() and ids_of(EventAttempt) == set()


# -- batches ---------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_backlog_goes_in_bounded_batches_over_several_rounds(app, offline_processor):
    app.config.update(RETENTION_BATCH=3, RETENTION_MAX_BATCHES=2)
    long_ago = utcnow() - timedelta(days=100)
    db.session.add_all([signal(long_ago, offline_processor.id) for _ in range(10)])
    db.session.add(signal(utcnow(), offline_processor.id))
    db.session.commit()
    sizes = []
    real = retention.delete_batch

    def spy(rule, cutoff, limit, after=None):
        n, position = real(rule, cutoff, limit, after)
        sizes.append(n)
        return n, position

    retention.delete_batch = spy
    try:
        rounds = [retention.housekeeping() for _ in range(3)]
    finally:
        retention.delete_batch = real
    done = [next(o for o in r if o.rule.name == "card_testing_signals") for r in rounds]
    assert [(o.deleted, o.more) for o in done] == [(6, True), (4, False), (0, False)]
    assert max(sizes) == 3  # no transaction deleted more than a batch
    assert len(ids_of(CardTestingSignal)) == 1


def test_the_cli_run_goes_to_the_end(app, offline_processor):
    app.config.update(RETENTION_BATCH=3, RETENTION_MAX_BATCHES=1)
    long_ago = utcnow() - timedelta(days=100)
    db.session.add_all([signal(long_ago, offline_processor.id) for _ in range(10)])
    db.session.commit()
    (out,) = retention.run(only=("card_testing_signals",))  # max_batches None: everything
    assert out.deleted == 10 and not out.more


@pytest.mark.postgres
def test_a_notification_still_being_sent_or_resent_lately_stays(app, offline_processor):
    long_ago, ppid = utcnow() - timedelta(days=300), offline_processor.id
    retrying = OutboxTask(
        kind="notification",
        key="notification:1",
        status="queued",
        next_attempt_at=utcnow(),
        created_at=long_ago,
    )
    db.session.add(retrying)
    db.session.flush()
    in_flight = notification(long_ago, ppid, delivered_at=None, task_id=retrying.id)
    resent = notification(long_ago, ppid, last_attempt_at=utcnow() - timedelta(days=2))
    failed = notification(long_ago, ppid, delivered_at=None)  # its task went with retention: failed
    db.session.add_all([in_flight, resent, failed])
    db.session.commit()
    (out,) = retention.run(only=("notification_deliveries",))
    assert out.deleted == 1
    assert ids_of(NotificationDelivery) == {in_flight.id, resent.id}


def plan_of(stmt) -> list[str]:
    compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
    return [row[-1] for row in db.session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))]


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_batch_finds_its_rows_through_an_index_on_their_age(app, name):
    """SQLite's plan for a batch's read, first and later: a SEARCH of an index bounded by the age (``<?``),
    in its order (no sort of every old row), never a SCAN of the table or a search by status alone."""
    rule = retention.BY_NAME[name]
    for after in (None, (utcnow() - timedelta(days=5000), 10)):
        plan = plan_of(retention.candidates(rule, utcnow(), 1000, after))
        assert any(p.startswith(f"SEARCH {rule.table} USING") and "<?" in p for p in plan), plan
        assert not any(p.startswith(f"SCAN {rule.table}") or "TEMP B-TREE" in p for p in plan), plan


# -- the audit log ---------------------------------------------------------------------------------------


def test_audit_entries_go_a_whole_day_at_a_time_and_the_deletion_is_audited(app):
    now = datetime(2026, 12, 7, 15, 30)
    two_years = now - timedelta(days=730)  # 2024-12-07 15:30
    db.session.add_all(
        [
            audit_entry(two_years - timedelta(days=1), None),  # 2024-12-06: goes
            audit_entry(
                two_years - timedelta(hours=2), None
            ),  # 2024-12-07 13:30: past 2 years, but its day stays
        ]
    )
    db.session.commit()
    (out,) = retention.run(only=("audit_log",), now=now, actor="paydesk worker (retention)")
    assert out.deleted == 1 and out.cutoff == datetime(2024, 12, 7)
    entries = list(db.session.scalars(select(AuditLog).order_by(AuditLog.id)))
    assert [e.at.date() for e in entries[:-1]] == [datetime(2024, 12, 7).date()]
    note = entries[-1]
    assert note.action == "retention.delete" and note.actor == "paydesk worker (retention)"
    assert note.parameters["deleted"] == 1 and note.parameters["before"] == "2024-12-07T00:00:00"
    assert "RETENTION_AUDIT_LOG" in note.message
    # the same day again: nothing to delete, no second note
    retention.run(only=("audit_log",), now=now + timedelta(hours=1))
    assert db.session.scalar(select(func.count()).select_from(AuditLog)) == 2


def test_forever_keeps_everything(app):
    app.config["RETENTION_AUDIT_LOG"] = "forever"
    db.session.add(audit_entry(utcnow() - timedelta(days=5000), None))
    db.session.commit()
    (out,) = retention.run(only=("audit_log",))
    assert out.cutoff is None and out.deleted == 0
    assert len(ids_of(AuditLog)) == 1


def test_dry_run_counts_and_deletes_nothing(app, offline_processor):
    db.session.add_all([outbox_done(utcnow() - timedelta(days=40), None) for _ in range(3)])
    db.session.commit()
    (out,) = retention.run(only=("outbox_done",), dry_run=True)
    assert out.deleted == 3 and out.as_row(dry_run=True)["would_delete"] == 3
    assert len(ids_of(OutboxTask)) == 3


def test_the_worker_housekeeping_applies_the_rules(app, offline_processor):
    from admin.worker.loop import housekeeping

    old, recent = outbox_done(utcnow() - timedelta(days=31), None), outbox_done(utcnow(), None)
    db.session.add_all([old, recent])
    db.session.commit()
    keep = recent.id
    housekeeping()
    assert ids_of(OutboxTask) == {keep}


# -- the settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, "0", "0 days", "", None, 730, "30 days", "soon", "-2 years", True])
def test_an_audit_retention_that_could_delete_by_accident_is_refused(value):
    config = {r.setting: "forever" for r in retention.RULES} | {
        "RETENTION_BATCH": 1,
        "RETENTION_MAX_BATCHES": 1,
    }
    config["RETENTION_AUDIT_LOG"] = value
    with pytest.raises(ValueError, match="PAYDESK_RETENTION_AUDIT_LOG"):
        retention.check_config(config)


@pytest.mark.parametrize("value", ["forever", "Forever ", "1 year", "7 years", "400 days"])
def test_an_audit_retention_of_a_year_or_more_or_forever_is_taken(value):
    config = {r.setting: "forever" for r in retention.RULES} | {
        "RETENTION_BATCH": 1,
        "RETENTION_MAX_BATCHES": 1,
    }
    config["RETENTION_AUDIT_LOG"] = value
    retention.check_config(config)


@pytest.mark.parametrize(
    "setting,value",
    [
        ("RETENTION_OUTBOX_DONE", "0 days"),
        ("RETENTION_JOBS", 90),
        ("RETENTION_API_IDEMPOTENCY_KEYS", "1 hour"),
        ("RETENTION_BATCH", 0),
        ("RETENTION_MAX_BATCHES", "20"),
    ],
)
def test_other_settings_need_a_day_and_a_unit(setting, value):
    from admin.config import DefaultConfig

    config = {k: getattr(DefaultConfig, k) for k in dir(DefaultConfig) if k.startswith("RETENTION_")}
    retention.check_config(config)  # the defaults are fine
    config[setting] = value
    with pytest.raises(ValueError, match=f"PAYDESK_{setting}"):
        retention.check_config(config)


def test_the_app_does_not_start_with_a_zero_audit_retention(tmp_path, monkeypatch):
    monkeypatch.setenv("PAYDESK_RETENTION_AUDIT_LOG", "0")  # JSON-decoded: the number 0
    with pytest.raises(ValueError, match='PAYDESK_RETENTION_AUDIT_LOG is 0: .*"forever"'):
        make_app(f"sqlite:///{tmp_path / 'x.sqlite3'}", tmp_path)


@pytest.mark.postgres
def test_rows_that_must_stay_are_stepped_over_not_a_wall(app, offline_processor):
    """Old events in error fill the first batches: the processed ones behind them still go."""
    app.config.update(RETENTION_EVENTS="13 months", RETENTION_BATCH=2)
    long_ago = utcnow() - timedelta(days=500)
    errors = [event(long_ago - timedelta(days=10), offline_processor.id, status="error") for _ in range(5)]
    done = [event(long_ago, offline_processor.id) for _ in range(3)]
    db.session.add_all(errors + done)
    db.session.commit()
    keep = {e.id for e in errors}
    (out,) = retention.run(only=("events",))
    assert out.deleted == 3
    assert ids_of(StripeEvent) == keep
