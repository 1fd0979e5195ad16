"""``flask worker`` as an operator runs it: a real process, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import stripe_objects as so
from conftest import ROOT
from sqlalchemy import func, select

from admin.extensions import db
from admin.models import StripeEvent, StripePaymentIntent
from admin.webhooks.ingest import store_event


@pytest.mark.postgres_only  # several worker processes need PostgreSQL (SQLite runs one writer)
def test_worker_processes_drain_the_queue_and_stop_on_sigterm(app, offline_processor, backend):
    for _ in range(200):  # events that need no Stripe call: the processes run against no Stripe at all
        store_event(
            offline_processor,
            so.event("payment_intent.created", so.payment_intent(status="requires_payment_method")),
        )
    env = {
        **os.environ,
        "PAYDESK_DATABASE_URL": app.config["DATABASE_URL"],
        "PAYDESK_SECRET_KEY": app.config["SECRET_KEY"],
        "PAYDESK_ENCRYPTION_KEY": app.config["ENCRYPTION_KEY"],
        "PAYDESK_WORKER_IDLE_SLEEP": "0.05",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--processes", "2", "--concurrency", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            db.session.rollback()
            if (
                db.session.scalar(
                    select(func.count()).select_from(StripeEvent).where(StripeEvent.status != "success")
                )
                == 0
            ):
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert "2 process(es) x 2 thread(s)" in out
    db.session.rollback()
    assert (
        db.session.scalar(
            select(func.count()).select_from(StripeEvent).where(StripeEvent.status == "success")
        )
        == 200
    )
    assert db.session.scalar(select(func.count()).select_from(StripePaymentIntent)) == 200
    leftover = subprocess.run(
        ["pgrep", "-f", "paydesk-worker-p|flask --app wsgi worker --processes 2"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert [p for p in leftover if int(p) != os.getpid() and _runs_in(p, ROOT)] == []


def _runs_in(pid: str, folder) -> bool:
    """True for a process working in ``folder`` (other checkouts on this machine may run their own workers)."""
    try:
        return os.path.realpath(f"/proc/{pid}/cwd") == os.path.realpath(folder)
    except OSError:
        return False
