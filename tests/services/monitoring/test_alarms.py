"""The card-testing alarm: failed intents and failed charges per processor in a sliding window; at the
threshold (not below) an alarm, logged once per episode; the last 7 days hour by hour."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask import current_app
from sqlalchemy import func, select

from admin.extensions import db
from admin.models import CardTestingEpisode, CardTestingSignal, Contribution, StripePaymentIntent
from admin.services.monitoring import alarms
from admin.services.settings.processors import add_processor
from admin.timeutil import utcnow

_n = iter(range(1, 10**6))


def fail_intents(ppid: int, n: int, ago: timedelta = timedelta(minutes=5)) -> None:
    for _ in range(n):
        db.session.add(
            StripePaymentIntent(
                stripe_intent_id=f"pi_fail{next(_n)}",
                processor_id=ppid,
                status="requires_payment_method",
                amount=100,
                currency="usd",
                last_error="Your card was declined.",
                last_error_at=utcnow() - ago,
            )
        )
    db.session.commit()


def fail_charges(
    ppid: int, n: int, ago: timedelta = timedelta(minutes=5), renewal: bool = False, **extra
) -> None:
    for _ in range(n):
        k = next(_n)
        db.session.add(
            Contribution(
                processor_id=ppid,
                amount=100,
                currency="usd",
                status="Failed",
                trxn_id=f"ch_fail{k}",
                invoice_id=f"in_renewal{k}" if renewal else None,
                receive_date=utcnow() - ago,
                **extra,
            )
        )
    db.session.commit()


def signals(ppid: int, n: int, ago: timedelta = timedelta(minutes=5)) -> None:
    for _ in range(n):
        db.session.add(
            CardTestingSignal(processor_id=ppid, charge_id=f"ch_probe{next(_n)}", created_at=utcnow() - ago)
        )
    db.session.commit()


def total(ppid: int) -> int:
    return sum(alarms.failure_counts(60).get(ppid, {}).values())


@pytest.mark.postgres
def test_the_alarm_is_raised_at_the_threshold_and_not_below(offline_processor):
    ppid = offline_processor.id
    fail_intents(ppid, 9)
    fail_charges(ppid, 6)
    signals(ppid, 4)
    fail_intents(ppid, 5, ago=timedelta(minutes=61))  # outside the sliding hour
    fail_charges(ppid, 5, renewal=True)  # renewals failing on billing day are not card testing
    assert total(ppid) == 19
    assert alarms.current_alarms() == []
    signals(ppid, 1)
    [alarm] = alarms.current_alarms()
    assert (alarm.processor_id, alarm.count, alarm.threshold) == (ppid, 20, 20)
    assert alarm.by_source == {"intents": 9, "charges": 6, "signals": 5}


def test_an_attempt_that_failed_an_intent_and_its_contribution_counts_once(offline_processor):
    ppid = offline_processor.id
    fail_intents(ppid, 1)
    pi = db.session.scalar(select(StripePaymentIntent))
    fail_charges(ppid, 1, payment_intent_id=pi.stripe_intent_id)
    assert alarms.failure_counts(60)[ppid] == {"charges": 1}


def test_failures_count_per_processor_and_the_threshold_is_configurable(offline_processor):
    other = add_processor(name="Second account", secret_key="sk_test_other", webhook_secrets=["whsec_x"])
    fail_intents(offline_processor.id, 12)
    fail_intents(other.id, 12)
    assert alarms.current_alarms() == []  # 24 failures, but no processor has 20
    current_app.config["CARD_TESTING_ALARM_THRESHOLD"] = 12
    assert [a.processor_id for a in alarms.current_alarms()] == [offline_processor.id, other.id]
    current_app.config["CARD_TESTING_ALARM_WINDOW_MINUTES"] = 1
    assert alarms.current_alarms() == []
    current_app.config["CARD_TESTING_ALARM_THRESHOLD"] = 0  # off
    current_app.config["CARD_TESTING_ALARM_WINDOW_MINUTES"] = 60
    assert alarms.current_alarms() == []


def test_a_warning_is_logged_once_per_episode(offline_processor, caplog):
    ppid = offline_processor.id
    caplog.set_level(logging.INFO, logger="admin.services.monitoring.alarms")
    fail_intents(ppid, 20)
    for _ in range(3):
        assert len(alarms.check()) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "possible card testing" in warnings[0].getMessage()
    assert "20 failed payments in the last 60 minutes" in warnings[0].getMessage()
    fail_intents(ppid, 3)
    alarms.check()
    assert db.session.scalar(select(CardTestingEpisode.peak)) == 23

    later = utcnow() + timedelta(hours=2)  # the failures have left the window: the episode ends
    assert alarms.check(now=later) == []
    ep = db.session.scalar(select(CardTestingEpisode))
    assert ep.ended_at is not None and ep.open_key is None
    assert any("alarm over" in r.getMessage() for r in caplog.records)
    fail_intents(ppid, 20, ago=timedelta(minutes=-110))  # a second wave
    assert len(alarms.check(now=later)) == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    assert db.session.scalar(select(func.count()).select_from(CardTestingEpisode)) == 2


def test_other_failures_can_be_counted_by_registering_a_source(offline_processor):
    """Another kind of failure registers its own source (as the donation form's refusals do)."""
    from sqlalchemy import literal

    from admin.models import AuditLog

    def refusals(since, until):
        return select(literal(offline_processor.id).label("processor_id"), AuditLog.at).where(
            AuditLog.action == "form.refused", AuditLog.at >= since, AuditLog.at < until
        )

    alarms.register_source("audit_refusals", refusals)
    try:
        from admin.services.core import audit

        for _ in range(2):
            audit.record("form.refused", message="postcode missing")
        assert alarms.failure_counts(60)[offline_processor.id] == {"audit_refusals": 2}
    finally:
        alarms._SOURCES.pop("audit_refusals")


@pytest.mark.postgres
def test_failures_per_hour_for_the_last_seven_days(offline_processor):
    ppid = offline_processor.id
    fail_intents(ppid, 3, ago=timedelta(minutes=1))
    fail_charges(ppid, 2, ago=timedelta(hours=5))
    signals(ppid, 1, ago=timedelta(days=8))  # too old
    hours = alarms.failures_per_hour()
    assert len(hours) == 7 * 24 and hours[-1][0] <= utcnow() < hours[-1][0] + timedelta(hours=1)
    assert sum(n for _, n in hours) == 5

    def hour_of(ago: timedelta):
        return (utcnow() - ago).replace(minute=0, second=0, microsecond=0)

    assert dict(hours)[hour_of(timedelta(minutes=1))] == 3
    assert dict(hours)[hour_of(timedelta(hours=5))] == 2
    assert alarms.failures_per_hour(processor_id=ppid + 1000)[-1][1] == 0


def test_donation_form_refusals_count_towards_the_alarm_but_declines_are_not_counted_twice(offline_processor):
    from admin.models import DonationForm, DonationRefusal

    form = DonationForm(
        slug="spring", title="Spring appeal", processor_id=offline_processor.id, currency="usd"
    )
    db.session.add(form)
    db.session.commit()
    for reason in ("token_replayed", "honeypot", "rate_limit_ip", "payment_failed", "payment_failed"):
        db.session.add(
            DonationRefusal(
                form_id=form.id, client_ip="203.0.113.9", reason=reason, at=utcnow() - timedelta(minutes=3)
            )
        )
    db.session.commit()
    assert alarms.failure_counts(60)[offline_processor.id] == {"form_refusals": 3}
    hourly = alarms.failures_per_hour(days=7)
    assert len(hourly) == 7 * 24 and sum(n for _, n in hourly) == 3
