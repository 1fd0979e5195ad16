"""A key that cannot decrypt the stored Stripe secrets: one clear error naming the variable, never a traceback;
the webhook endpoint answers 503 (Stripe retries) and the worker retries later instead of giving up."""

from __future__ import annotations

import os
import subprocess
import sys

import stripe_objects as so
from conftest import ROOT, WEBHOOK_SECRET
from cryptography.fernet import Fernet
from sqlalchemy import select
from stripe_objects import signed

from admin.extensions import db
from admin.models import StripeEvent
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_once

OTHER_KEY = Fernet.generate_key().decode()


def _switch_key(app, key: str = OTHER_KEY) -> None:
    """As if paydesk restarted with another PAYDESK_ENCRYPTION_KEY."""
    app.config["ENCRYPTION_KEY"] = key
    app.extensions.pop("paydesk_processor_refs", None)
    db.session.expire_all()


def test_cli_says_which_variable_and_shows_no_traceback(app, runner, offline_processor):
    _switch_key(app)
    for args in (
        ["processor", "list"],
        ["processor", "list", "--format", "json"],
        ["events", "list", "--source", "stripe"],
    ):
        result = runner.invoke(args=args)
        out = result.output  # stdout and stderr, as a terminal shows them
        assert result.exit_code == 1, out
        assert "PAYDESK_ENCRYPTION_KEY" in out and "Traceback" not in out
        assert len(out.strip().splitlines()) == 1, out


def test_the_real_command_prints_one_line(app, offline_processor, tmp_path):
    """``flask --app wsgi processor list`` as an operator runs it, with the wrong key in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    env.update(
        PAYDESK_DATABASE_URL=app.config["DATABASE_URL"],
        PAYDESK_SECRET_KEY="s",
        PAYDESK_ENCRYPTION_KEY=OTHER_KEY,
    )
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "processor", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("Error: the stored Stripe secrets cannot be decrypted"), done.stderr
    assert "PAYDESK_ENCRYPTION_KEY" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_processor_secrets_can_be_entered_again_after_a_lost_key(app, runner, offline_processor):
    _switch_key(app)
    result = runner.invoke(
        args=[
            "processor",
            "set",
            str(offline_processor.id),
            "--secret-key",
            "sk_test_reentered",
            "--webhook-secret",
            "whsec_reentered",
        ]
    )
    assert result.exit_code == 0, result.output
    listed = runner.invoke(args=["processor", "list"])
    assert listed.exit_code == 0 and "sk_test_" in listed.output


def test_webhook_answers_503_so_stripe_retries(app, client, offline_processor, caplog):
    _switch_key(app)
    body, headers = signed(so.event("customer.updated", so.customer()), WEBHOOK_SECRET)
    resp = client.post(f"/webhooks/stripe/{offline_processor.id}", data=body, headers=headers)
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert db.session.scalar(select(StripeEvent)) is None
    assert (
        "PAYDESK_ENCRYPTION_KEY" in caplog.text and "Traceback" not in caplog.text and body not in caplog.text
    )
    _switch_key(app, _original_key())
    assert (
        client.post(f"/webhooks/stripe/{offline_processor.id}", data=body, headers=headers).status_code == 200
    )


def test_worker_keeps_the_event_queued_until_the_key_is_right(app, offline_processor):
    store_event(
        offline_processor,
        so.event("payment_intent.created", so.payment_intent(status="requires_payment_method")),
    )
    app.config["WORKER_BACKOFF_BASE"] = 60.0  # tests retry at once by default
    _switch_key(app)
    run_once()
    row = db.session.scalar(select(StripeEvent))
    assert row.status == "queued", row.last_error
    assert "PAYDESK_ENCRYPTION_KEY" in row.last_error and row.next_attempt_at > row.received_at
    _switch_key(app, _original_key())
    row.next_attempt_at = row.received_at  # the retry falls due
    db.session.commit()
    run_once()
    db.session.expire_all()
    assert db.session.scalar(select(StripeEvent)).status == "success"


def _original_key() -> str:
    from conftest import TEST_ENCRYPTION_KEY

    return TEST_ENCRYPTION_KEY


def test_secrets_stored_by_the_old_derivation_read_with_the_old_secret_key_as_encryption_key(
    app, offline_processor
):
    """Upgrading an install that never set PAYDESK_ENCRYPTION_KEY (the key used to be derived from the
    secret key): setting PAYDESK_ENCRYPTION_KEY to the old PAYDESK_SECRET_KEY value reads the stored secrets."""
    import base64
    import hashlib

    old_secret_key = "the secret key of an older install"
    legacy = Fernet(
        base64.urlsafe_b64encode(hashlib.sha256(b"paydesk-secrets:" + old_secret_key.encode()).digest())
    )
    offline_processor.secret_key_enc = legacy.encrypt(b"sk_test_from_before").decode()
    offline_processor.webhook_secrets_enc = legacy.encrypt(b'["whsec_from_before"]').decode()
    db.session.commit()
    _switch_key(app, old_secret_key)
    from admin.models import PaymentProcessor

    proc = db.session.get(PaymentProcessor, offline_processor.id)
    assert (proc.secret_key, proc.webhook_secrets) == ("sk_test_from_before", ["whsec_from_before"])
