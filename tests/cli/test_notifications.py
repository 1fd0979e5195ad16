"""``notifications list|add|remove|rotate|deliveries|resend``: secrets printed once, JSON, one-line errors."""

from __future__ import annotations

import json

from notify_receiver import Receiver, readme_verify
from sqlalchemy import select

from admin.extensions import db
from admin.models import Contribution, NotificationEndpoint, OutboxTask
from admin.worker.loop import run_once


def test_add_list_deliveries_resend_remove(runner, app, offline_processor):
    app.config["NOTIFY_ALLOW_PRIVATE"] = True
    with Receiver(status=500) as rx:
        made = runner.invoke(
            args=["notifications", "add", "--url", rx.url, "--event", "contribution.completed"]
        )
        assert made.exit_code == 0, made.output
        secret = made.stdout.strip().splitlines()[0]
        assert secret.startswith("pdwhsec_") and "not shown again" in made.stderr
        listed = runner.invoke(args=["notifications", "list", "--format", "json"])
        (row,) = json.loads(listed.stdout)
        assert (
            row["url"] == rx.url
            and row["events"] == ["contribution.completed"]
            and secret not in listed.stdout
        )

        db.session.add(
            Contribution(processor_id=offline_processor.id, amount=900, currency="usd", status="Completed")
        )
        db.session.commit()
        run_once()
        db.session.scalar(select(OutboxTask)).status = "error"  # as after three days of 500s
        db.session.commit()
        history = json.loads(
            runner.invoke(args=["notifications", "deliveries", str(row["id"]), "--format", "json"]).stdout
        )
        assert [(d["status"], d["response_code"], d["attempts"]) for d in history] == [("failed", 500, 1)]
        failed_only = runner.invoke(
            args=["notifications", "deliveries", str(row["id"]), "--status", "failed"]
        )
        assert "contribution.completed" in failed_only.stdout

        rx.status = 200
        resent = runner.invoke(args=["notifications", "resend", str(history[0]["id"])])
        assert resent.exit_code == 0 and "queued to be sent again" in resent.stdout
        run_once()
        headers, body, _ = rx.received[-1]
        assert readme_verify()(secret, headers["Paydesk-Signature"], body)

    rotated = runner.invoke(args=["notifications", "rotate", str(row["id"]), "--format", "json"])
    assert json.loads(rotated.stdout)["secret"].startswith("pdwhsec_")
    gone = runner.invoke(args=["notifications", "remove", str(row["id"])])
    assert gone.exit_code == 0 and "removed" in gone.stdout
    db.session.rollback()
    assert db.session.scalar(select(NotificationEndpoint)) is None


def test_errors_are_one_line(runner, app):
    private = runner.invoke(args=["notifications", "add", "--url", "http://127.0.0.1/x"])
    assert private.exit_code == 1 and "Traceback" not in private.output
    assert private.output.startswith("Error: 127.0.0.1 is a private, loopback or reserved address")
    for args in (["remove", "404"], ["resend", "404"], ["deliveries", "nope"], ["rotate", "7"]):
        out = runner.invoke(args=["notifications", *args])
        assert out.exit_code == 1 and len(out.output.strip().splitlines()) == 1, out.output
    bad_type = runner.invoke(args=["notifications", "add", "--url", "https://example.org", "--event", "x"])
    assert bad_type.exit_code == 2
