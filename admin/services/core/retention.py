"""How long paydesk keeps the rows nothing needs for ever, and deleting them: one policy, one place.

Each :class:`Rule` names a table (and which of its rows), the setting that says how long they are kept
(``RETENTION_*`` in ``admin/config.py``, overridden like any setting, e.g.
``PAYDESK_RETENTION_AUDIT_LOG="7 years"``), and the condition "older than the cutoff", which an index
answers (no delete reads a whole table). The worker's housekeeping (``admin.worker.loop.housekeeping``,
every 10 minutes) calls :func:`run` with a bounded number of batches per rule; ``flask cleanup`` runs the
same rules to the end, or ``--dry-run`` counts what would go.

A setting is an age with its unit ("24 hours", "30 days", "2 years") or ``"forever"`` (keep every row).
Anything else is refused when the app starts (``check_config``), naming the setting: a bare number (days?
hours?), ``0``, an empty value or ``null`` would otherwise mean "delete everything" or "nothing" by
accident. The audit log is evidence: it must be kept at least a year (an annual audit looks back that far),
or ``"forever"``; the other tables at least a day.

Deleting: a batch is the next ``RETENTION_BATCH`` candidates along the time column's index (oldest first,
from where the last batch ended), chosen by a plain read; those that may go are deleted in a short write
transaction of their own (SQLite's single writer is held for one batch at a time, never for a table), the
whole condition checked again so a row changed in between (a job resumed) stays. Rows that must stay (an
old event in error) are stepped over, not read again by every batch.

What each rule deletes, and why that is safe:

* ``api_idempotency_key`` older than 24 hours: Stripe forgets its keys after 24 hours; a client's retry
  later than that is a new request (the API docs say so).
* ``outbox_task`` done (30 days) and failed (90 days, counted from its last attempt): a receipt is sent once
  per contribution because of ``contribution.receipt_sent_at``, not because the task row exists; a metadata
  push asked for again after its row went is pushed again (the same values: harmless).
* ``job`` ended (done, failed, cancelled) 90 days ago; running, queued and paused jobs are never touched.
  Audit entries naming a deleted job keep its id (the link to it leads nowhere).
* ``trigger_feed`` older than 30 days: a polling client's cursor older than that continues from the oldest
  item kept (the API docs say so).
* ``card_testing_signal`` older than 90 days: the alarm looks at the last hour, the dashboard at a day.
* ``notification_delivery`` made 90 days ago, once delivered or failed for good (its outbox task finished
  or gone) and not attempted since the cutoff: the history on ``/settings/notifications``. One still being
  sent or retried (a resend of an old one too) stays. Whether one was delivered is kept on the row itself
  (``delivered_at``), so the history's status filter works after its outbox task was deleted.
* ``stripe_event`` (processed: success, ignored, logged; never queued or in error), by default kept for
  ever, as before: set ``RETENTION_EVENTS`` ("13 months") to have the worker do what ``events cleanup``
  does; their attempts go with them (``ON DELETE CASCADE``).
* ``audit_log`` older than 2 years, a whole day at a time (the cutoff is a UTC midnight), and each day's
  deletion is itself an audit entry (``retention.delete``: how many, before when).

Left to their own pruning (their ages follow from the limits they enforce, so they are not settings here):
``worker_heartbeat`` (a day), ``staff_session`` (``sessions.KEEP``), ``donation_refusal``
(``DONATE_REFUSAL_KEEP_DAYS``), ``rate_limit`` and ``limiter_counter`` (when their windows end),
``spent_form_token`` (``DONATE_TOKEN_MAX_AGE``), ``stripe_paymentintent`` (``jobs process-stripe
--delete-old``), ``reconcile_scan`` (a few per period, the oldest dropped when a scan is kept).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Select, and_, delete, exists, func, or_, select, tuple_

from admin.dbutil import immediate, rowcount
from admin.extensions import db
from admin.models import (
    EV_ERROR,
    EV_IGNORED,
    EV_LOGGED,
    EV_PROCESSING,
    EV_QUEUED,
    EV_SUCCESS,
    ApiIdempotencyKey,
    AuditLog,
    CardTestingSignal,
    Job,
    NotificationDelivery,
    OutboxTask,
    StripeEvent,
    TriggerFeed,
)
from admin.models.jobs import JOB_CANCELLED, JOB_DONE, JOB_FAILED
from admin.services.core import audit
from admin.services.core.outbox import SENDING
from admin.timeutil import parse_age, utcnow

log = logging.getLogger(__name__)

FOREVER = "forever"
WORKER_ACTOR = "paydesk worker (retention)"
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Rule:
    """Rows of ``table`` go once ``when`` is older than the setting's age.

    ``when`` is an indexed time column (with ``same``, an equality on the index's first column, where the
    index has one); batches walk that index oldest first. ``guard`` is what else a row must be to go
    (finished, processed): checked when deleting, not used to find rows, so the planner cannot prefer a
    status index that reads every finished row."""

    name: str  # what `flask cleanup` calls it
    table: str
    what: str  # which rows, in words
    setting: str  # the config key
    model: Any
    when: Any  # the time column
    same: ColumnElement[bool] | None = None
    guard: Callable[[datetime], ColumnElement[bool]] | None = None
    floor: timedelta = DAY
    whole_days: bool = False  # the cutoff is rounded down to a UTC midnight
    audited: bool = False  # each deletion is written to the audit log

    def found(self, cutoff: datetime) -> list[ColumnElement[bool]]:
        """The conditions that find candidates through the index."""
        return [c for c in (self.same, self.when < cutoff) if c is not None]

    def older(self, cutoff: datetime) -> ColumnElement[bool]:
        """Everything a row must be to go."""
        guard = self.guard(cutoff) if self.guard is not None else None
        return and_(*self.found(cutoff), *([guard] if guard is not None else []))


RULES: tuple[Rule, ...] = (
    Rule(
        "api_idempotency_keys",
        "api_idempotency_key",
        "answers kept for Idempotency-Key",
        "RETENTION_API_IDEMPOTENCY_KEYS",
        ApiIdempotencyKey,
        ApiIdempotencyKey.created_at,
    ),
    # done_at >= next_attempt_at (a task runs once due): ix_outbox_queue (status, next_attempt_at) finds them
    Rule(
        "outbox_done",
        "outbox_task",
        "side effects done",
        "RETENTION_OUTBOX_DONE",
        OutboxTask,
        OutboxTask.next_attempt_at,
        same=OutboxTask.status == EV_SUCCESS,
        guard=lambda cutoff: OutboxTask.done_at < cutoff,
    ),
    Rule(
        "outbox_failed",
        "outbox_task",
        "side effects failed for good (since their last attempt)",
        "RETENTION_OUTBOX_FAILED",
        OutboxTask,
        OutboxTask.next_attempt_at,
        same=OutboxTask.status == EV_ERROR,
    ),
    Rule(
        "jobs",
        "job",
        "jobs done, failed or cancelled",
        "RETENTION_JOBS",
        Job,
        Job.finished_at,  # set when a job ends, cleared when a failed one is resumed
        guard=lambda cutoff: Job.status.in_((JOB_DONE, JOB_FAILED, JOB_CANCELLED)),
    ),
    Rule(
        "trigger_feed",
        "trigger_feed",
        "items of the API's polling triggers",
        "RETENTION_TRIGGER_FEED",
        TriggerFeed,
        TriggerFeed.created_at,
    ),
    Rule(
        "card_testing_signals",
        "card_testing_signal",
        "failed charges counted by the card-testing alarm",
        "RETENTION_CARD_TESTING_SIGNALS",
        CardTestingSignal,
        CardTestingSignal.created_at,
    ),
    Rule(
        "notification_deliveries",
        "notification_delivery",
        "notifications delivered or failed for good, not attempted since",
        "RETENTION_NOTIFICATION_DELIVERIES",
        NotificationDelivery,
        NotificationDelivery.created_at,
        guard=lambda cutoff: and_(
            or_(
                NotificationDelivery.last_attempt_at.is_(None), NotificationDelivery.last_attempt_at < cutoff
            ),
            ~exists().where(
                OutboxTask.id == NotificationDelivery.task_id,
                OutboxTask.status.in_((EV_QUEUED, EV_PROCESSING, SENDING)),
            ),
        ),
    ),
    Rule(
        "events",
        "stripe_event",
        "events processed (success, ignored, logged) and their attempts",
        "RETENTION_EVENTS",
        StripeEvent,
        StripeEvent.received_at,
        guard=lambda cutoff: StripeEvent.status.in_((EV_SUCCESS, EV_IGNORED, EV_LOGGED)),
    ),
    Rule(
        "audit_log",
        "audit_log",
        "audit entries (whole days)",
        "RETENTION_AUDIT_LOG",
        AuditLog,
        AuditLog.at,
        floor=timedelta(days=365),
        whole_days=True,
        audited=True,
    ),
)
BY_NAME = {r.name: r for r in RULES}


# -- the settings ------------------------------------------------------------------------------------


def age_of(rule: Rule, value: Any) -> timedelta | None:
    """The setting's age (None: kept for ever); a ``ValueError`` naming the setting for anything else."""
    env = f"PAYDESK_{rule.setting}"
    hint = f'give an age with its unit ("{_words(rule.floor)}", "2 years") or "{FOREVER}"'
    if isinstance(value, str) and value.strip().lower() == FOREVER:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{env} is {value!r}: {hint}")
    try:
        age = parse_age(value)
    except ValueError as err:
        raise ValueError(f"{env}: {err}; {hint}") from None
    if age < rule.floor:
        why = " (the audit log is evidence)" if rule.audited else ""
        raise ValueError(
            f"{env} is {value.strip()!r}: keep {rule.table} at least {_words(rule.floor)}{why}, "
            f'or say "{FOREVER}"'
        )
    return age


def _words(age: timedelta) -> str:
    if age.days and age.days % 365 == 0:
        n = age.days // 365
        return f"{n} year" + ("s" if n > 1 else "")
    return f"{age.days} day" + ("s" if age.days != 1 else "")


def check_config(config: Mapping[str, Any]) -> None:
    """Refuse (``ValueError``) a retention setting that is not an age with a unit or "forever"; called by
    ``create_app``, so a bad value stops the web and the worker at start, not the worker's housekeeping."""
    for rule in RULES:
        age_of(rule, config.get(rule.setting))
    for key in ("RETENTION_BATCH", "RETENTION_MAX_BATCHES"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"PAYDESK_{key} is {value!r}: give a whole number of 1 or more")


def cutoff_of(rule: Rule, now: datetime | None = None) -> datetime | None:
    """Rows older than this go (None: the rule keeps everything)."""
    age = age_of(rule, current_app.config.get(rule.setting))
    if age is None:
        return None
    cutoff = (now or utcnow()) - age
    if rule.whole_days:
        cutoff = cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
    return cutoff


# -- deleting ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One rule's result: how many rows went (or would go), and whether some are left for the next round."""

    rule: Rule
    keep: str
    cutoff: datetime | None
    deleted: int = 0
    more: bool = False

    def as_row(self, dry_run: bool = False) -> dict[str, Any]:
        return {
            "rule": self.rule.name,
            "table": self.rule.table,
            "rows": self.rule.what,
            "keep": self.keep,
            "before": self.cutoff.isoformat(timespec="seconds") if self.cutoff else None,
            "would_delete" if dry_run else "deleted": self.deleted,
            **({} if dry_run else {"more": self.more}),
        }


def candidates(rule: Rule, cutoff: datetime, limit: int, after: tuple | None = None) -> Select:
    """(time, id) of the next ``limit`` rows that may go, oldest first, after the position ``after``."""
    pk = rule.model.__mapper__.primary_key[0]
    q = select(rule.when, pk).where(*rule.found(cutoff))
    if after is not None:
        q = q.where(tuple_(rule.when, pk) > tuple_(*after))
    return q.order_by(rule.when, pk).limit(limit)


def delete_batch(
    rule: Rule, cutoff: datetime, limit: int, after: tuple | None = None
) -> tuple[int, tuple | None]:
    """Look at the next ``limit`` candidates (oldest first, after the ``after`` position) and delete those that
    may go; how many went, and the position to go on from (None: no candidate was left). Commits."""
    pk = rule.model.__mapper__.primary_key[0]
    rows = db.session.execute(candidates(rule, cutoff, limit, after)).all()
    db.session.rollback()  # the read ends here: the write transaction below is as short as it can be
    if not rows:
        return 0, None
    immediate()
    n = rowcount(
        db.session.execute(
            delete(rule.model)
            .where(pk.in_([r[1] for r in rows]), rule.older(cutoff))
            .execution_options(synchronize_session=False)
        )
    )
    db.session.commit()
    return int(n or 0), (tuple(rows[-1]) if len(rows) == limit else None)


def count(rule: Rule, cutoff: datetime) -> int:
    n = db.session.scalar(select(func.count()).select_from(rule.model).where(rule.older(cutoff)))
    db.session.rollback()
    return int(n or 0)


def run(
    *,
    max_batches: int | None = None,
    dry_run: bool = False,
    only: tuple[str, ...] = (),
    now: datetime | None = None,
    actor: str | None = None,
) -> list[Outcome]:
    """Apply every rule (or the ``only`` ones): at most ``max_batches`` batches of ``RETENTION_BATCH`` rows
    each (None: until none is left), or with ``dry_run`` just count. Commits each batch. ``actor``: who the
    audit entry of a deletion names (None: the CLI's user, as ``audit.record`` finds them)."""
    cfg = current_app.config
    size = int(cfg["RETENTION_BATCH"])
    now = now or utcnow()
    outcomes = []
    for rule in RULES:
        if only and rule.name not in only:
            continue
        cutoff = cutoff_of(rule, now)
        out = Outcome(rule, str(cfg.get(rule.setting)).strip(), cutoff)
        outcomes.append(out)
        if cutoff is None:
            continue
        if dry_run:
            out.deleted = count(rule, cutoff)
            continue
        batches, after = 0, None
        while max_batches is None or batches < max_batches:
            n, after = delete_batch(rule, cutoff, size, after)
            out.deleted += n
            batches += 1
            if after is None:
                break
        else:
            out.more = True
        if out.deleted:
            log.info(
                "retention: deleted %d %s row(s) older than %s (%s)",
                out.deleted,
                rule.table,
                cutoff.isoformat(timespec="seconds"),
                rule.setting,
            )
            if rule.audited:
                audit.record(
                    "retention.delete",
                    object_type=None,
                    object_id=rule.table,
                    parameters={
                        "table": rule.table,
                        "deleted": out.deleted,
                        "before": cutoff.isoformat(timespec="seconds"),
                        "keep": out.keep,
                        "setting": rule.setting,
                    },
                    message=f"deleted {out.deleted} {rule.table} row(s) older than "
                    f"{cutoff:%Y-%m-%d} ({rule.setting} = {out.keep})",
                    actor=actor,
                    commit=True,
                )
    return outcomes


def housekeeping() -> list[Outcome]:
    """The worker's share: at most ``RETENTION_MAX_BATCHES`` batches per rule each round, so a backlog (the
    first round after an upgrade) is worked off over several rounds instead of holding the worker."""
    return run(max_batches=int(current_app.config["RETENTION_MAX_BATCHES"]), actor=WORKER_ACTOR)
