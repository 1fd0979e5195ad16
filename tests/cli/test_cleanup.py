"""``flask cleanup``: the retention rules at once, or what they would delete."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select

from admin.extensions import db
from admin.models import AuditLog, OutboxTask
from admin.timeutil import utcnow


def _outbox(age: timedelta, n: int = 1) -> None:
    at = utcnow() - age
    for i in range(n):
        db.session.add(
            OutboxTask(
                kind="receipt",
                key=f"receipt:{age.days}-{i}",
                status="success",
                next_attempt_at=at,
                created_at=at,
                done_at=at,
            )
        )
    db.session.commit()


def _tasks() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(OutboxTask))


def test_dry_run_says_what_would_go_and_deletes_nothing(app, runner):
    _outbox(timedelta(days=40), 3)
    _outbox(timedelta(days=2))
    result = runner.invoke(args=["cleanup", "--dry-run"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("outbox_done"))
    assert line.split()[:3] == ["outbox_done", "outbox_task", "30"] and " 3 " in line
    assert "would_delete" in result.output.splitlines()[0]
    assert "audit_log" in result.output and "forever" in result.output  # events: kept unless configured
    assert _tasks() == 4


def test_cleanup_deletes_and_reports_as_json(app, runner):
    _outbox(timedelta(days=40), 3)
    _outbox(timedelta(days=2))
    result = runner.invoke(args=["cleanup", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["rule"]: r for r in json.loads(result.output)}
    assert rows["outbox_done"]["deleted"] == 3 and rows["outbox_done"]["more"] is False
    assert rows["outbox_done"]["keep"] == "30 days" and rows["events"]["before"] is None
    assert _tasks() == 1


def test_only_one_rule(app, runner):
    _outbox(timedelta(days=40))
    db.session.add(AuditLog(actor="a", action="x", result="ok", at=utcnow() - timedelta(days=800)))
    db.session.commit()
    result = runner.invoke(args=["cleanup", "--only", "audit_log", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [r["rule"] for r in json.loads(result.output)] == ["audit_log"]
    assert _tasks() == 1
    note = db.session.scalar(select(AuditLog).where(AuditLog.action == "retention.delete"))
    assert note is not None and note.actor.startswith("cli:")


def test_an_unknown_rule_is_one_line(app, runner):
    result = runner.invoke(args=["cleanup", "--only", "everything"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "everything" in result.output and "audit_log" in result.output
