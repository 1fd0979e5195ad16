"""The previous release's code keeps working against the schema migrated to head (docs/deploy.md "Upgrading":
additive migrations first, then backfill, then drop in a later release): until the restart, the running web
processes and workers are the old code, and webhooks keep arriving.

The previous release is the commit before the one that added the newest migration, taken from git history
(``git archive``); without git history the test is skipped and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from io import BytesIO

import pytest
from alembic.script import ScriptDirectory
from conftest import ROOT, TEST_ENCRYPTION_KEY, WEBHOOK_SECRET
from flask_migrate import upgrade
from sqlalchemy import func, select, text
from test_migrations import MIGRATIONS, migrated_app, scratch_url  # noqa: F401 - fixtures

from admin.extensions import db
from admin.models import StripeEvent

sys.path.insert(0, str(ROOT / "bench"))
from stripe_standin import scene  # noqa: E402

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
DONORS = 4

# Run in the previous release's tree: its app ingests the signed events through its webhook endpoint.
OLD_INGEST = """
import hashlib, hmac, json, sys, time
from wsgi import app
from admin.models import PaymentProcessor
from admin.extensions import db
events = json.load(open(sys.argv[1]))
with app.app_context():
    ppid = db.session.scalars(db.select(PaymentProcessor.id)).first()
client = app.test_client()
codes = []
for ev in events:
    body = json.dumps(ev).encode()
    ts = int(time.time())
    sig = hmac.new(sys.argv[2].encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    r = client.post(f"/webhooks/stripe/{ppid}", data=body,
                    headers={"Stripe-Signature": f"t={ts},v1={sig}", "Content-Type": "application/json"})
    codes.append(r.status_code)
print(json.dumps(codes))
"""


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, timeout=120)


def previous_release(tmp_path) -> tuple[str, str]:
    """The tree of the newest commit without the newest migration, unpacked under tmp_path; (commit, path)."""
    if _git("rev-parse", "--git-dir").returncode:
        pytest.skip("no git history here (an unpacked release?): the previous release's code cannot be taken")
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    # Back along the first parents (main's own history) to the newest commit without the head revision: a
    # migration re-chained or renamed on its way in is found by its revision id, not its file name.
    before = ""
    for commit in _git("rev-list", "--first-parent", "--max-count=500", "HEAD").stdout.decode().split():
        if _git("grep", "-q", "-F", "-e", head, commit, "--", "migrations/versions").returncode == 1:
            before = commit
            break
    if not before:
        pytest.skip(f"git history has no commit before revision {head} arrived (a shallow clone?)")
    archive = _git("archive", "--format=tar", before, "admin", "migrations", "wsgi.py")
    assert archive.returncode == 0, archive.stderr.decode()
    old = tmp_path / "previous-release"
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(old, filter="data")
    return before, str(old)


@pytest.mark.postgres
def test_previous_release_ingests_and_processes_webhooks_on_the_migrated_schema(
    migrated_app,  # noqa: F811 - the fixture imported above
    scratch_url,  # noqa: F811
    tmp_path,
):
    from admin.services.settings.processors import add_processor

    commit, old = previous_release(tmp_path)
    upgrade(directory=str(MIGRATIONS))  # the new release's migrations, before its code starts

    events, objects = scene(DONORS * len(PER_DONOR), id_prefix="evt_compat_", per_donor=PER_DONOR)
    (tmp_path / "objects.json").write_text(json.dumps(objects))
    (tmp_path / "events.json").write_text(json.dumps(events))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    standin = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "stripe_standin.py"),
            "--port",
            str(port),
            "--latency",
            "0",
            "--objects",
            str(tmp_path / "objects.json"),
        ]
    )
    try:
        add_processor(
            name="Stripe stand-in",
            secret_key="sk_test_standin",
            publishable_key="pk_test_standin",
            webhook_secrets=[WEBHOOK_SECRET],
            api_base=f"http://127.0.0.1:{port}",
            mode="test",
            default=True,
        )
        db.session.remove()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
        env.update(
            PAYDESK_DATABASE_URL=scratch_url,
            PAYDESK_SECRET_KEY="test-secret-key",
            PAYDESK_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY,
            PAYDESK_OUTBOX_DIR=str(tmp_path / "outbox"),
            PAYDESK_STRIPE_API_BASES="127.0.0.1",
            PYTHONPATH=old,
        )
        ingest = subprocess.run(
            [sys.executable, "-c", OLD_INGEST, str(tmp_path / "events.json"), WEBHOOK_SECRET],
            cwd=old,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ingest.returncode == 0, (
            f"previous release ({commit[:10]}) ingest failed:\n{ingest.stderr[-3000:]}"
        )
        assert set(json.loads(ingest.stdout.strip().splitlines()[-1])) == {200}
        worker = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--once"],
            cwd=old,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert worker.returncode == 0, (
            f"previous release ({commit[:10]}) worker failed:\n{worker.stderr[-3000:]}"
        )
    finally:
        standin.terminate()
        standin.wait(timeout=10)

    db.session.rollback()
    statuses = dict(
        db.session.execute(select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all()
    )
    assert sum(statuses.values()) == len(events) and set(statuses) <= {"success", "ignored"}, statuses
    records = {
        t: db.session.execute(text(f"SELECT count(*) FROM {t}")).scalar()
        for t in ("contact", "contribution", "payment", "outbox_task")
    }
    assert records == {
        "contact": DONORS,
        "contribution": 2 * DONORS,
        "payment": DONORS,
        "outbox_task": 3 * DONORS,
    }
