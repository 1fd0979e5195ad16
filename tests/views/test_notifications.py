"""/settings/notifications: admins add URLs (secret shown once), rotate, remove and resend; others are refused."""

from __future__ import annotations

import re

import pytest
from notify_receiver import Receiver
from sqlalchemy import select

from admin.extensions import db
from admin.models import AuditLog, Contribution, NotificationDelivery, NotificationEndpoint, OutboxTask
from admin.worker.loop import run_once


@pytest.fixture
def allow_private(app):
    app.config["NOTIFY_ALLOW_PRIVATE"] = True


def test_admin_adds_a_url_sees_the_secret_once_and_its_deliveries(
    client, auth, allow_private, offline_processor
):
    auth.login(role="admin")
    assert "No URLs yet" in client.get("/settings/notifications").get_data(as_text=True)
    with Receiver(status=503) as rx:
        resp = client.post(
            "/settings/notifications",
            data={
                "url": rx.url,
                "events": ["contribution.failed"],
                "csrf_token": auth.token("/settings/notifications"),
            },
        )
        html = resp.get_data(as_text=True)
        assert resp.status_code == 200
        secret = re.search(r'value="(pdwhsec_[^"]+)"', html).group(1)
        hook = db.session.scalar(select(NotificationEndpoint))
        assert secret not in hook.secrets and hook.event_list == ["contribution.failed"]
        listing = client.get("/settings/notifications").get_data(as_text=True)
        assert secret not in listing and hook.secret_hint in listing and "…" in hook.secret_hint

        db.session.add(
            Contribution(processor_id=offline_processor.id, amount=700, currency="usd", status="Failed")
        )
        db.session.commit()
        run_once()
        page = client.get(f"/settings/notifications/{hook.id}").get_data(as_text=True)
        assert "contribution.failed" in page and "retrying" in page and "503" in page
        assert secret not in page and "Resend" not in page  # still being retried
        assert len(rx.received) == 1

        task = db.session.scalar(select(OutboxTask))
        task.status = "error"  # three days later
        db.session.commit()
        page_url = f"/settings/notifications/{hook.id}"
        assert "Resend" in client.get(page_url).get_data(as_text=True)
        rx.status = 200
        delivery_id = db.session.scalar(select(NotificationDelivery.id))
        resent = client.post(
            f"/settings/notifications/deliveries/{delivery_id}/resend",
            data={"csrf_token": auth.token(page_url)},
            follow_redirects=True,
        )
        assert "queued to be sent again" in resent.get_data(as_text=True)
        run_once()
        assert len(rx.received) == 2
        assert "delivered" in client.get(page_url).get_data(as_text=True)


def test_rotate_shows_the_new_secret_once_and_remove_is_audited(client, auth, allow_private):
    auth.login(role="admin")
    client.post(
        "/settings/notifications",
        data={"url": "http://127.0.0.1:9/hook", "csrf_token": auth.token("/settings/notifications")},
    )
    hook = db.session.scalar(select(NotificationEndpoint))
    page = f"/settings/notifications/{hook.id}"
    resp = client.post(f"{page}/rotate", data={"hours": "12", "csrf_token": auth.token(page)})
    new = re.search(r'value="(pdwhsec_[^"]+)"', resp.get_data(as_text=True)).group(1)
    shown = client.get(page).get_data(as_text=True)
    assert new not in shown and "Old secret" in shown
    bad = client.post(f"{page}/rotate", data={"hours": "soon", "csrf_token": auth.token(page)})
    assert bad.status_code == 422 and 'aria-invalid="true"' in bad.get_data(as_text=True)
    gone = client.post(f"{page}/remove", data={"csrf_token": auth.token(page)}, follow_redirects=True)
    assert "removed" in gone.get_data(as_text=True)
    assert db.session.scalar(select(NotificationEndpoint)) is None
    actions = list(db.session.scalars(select(AuditLog.action).order_by(AuditLog.id)))
    assert [a for a in actions if a.startswith("notification.")] == [
        "notification.add",
        "notification.rotate",
        "notification.remove",
    ]


def test_a_private_address_is_refused_next_to_the_field(client, auth):
    auth.login(role="admin")
    resp = client.post(
        "/settings/notifications",
        data={"url": "http://192.168.1.10/hook", "csrf_token": auth.token("/settings/notifications")},
    )
    html = resp.get_data(as_text=True)
    assert (
        resp.status_code == 422 and 'aria-invalid="true"' in html and "PAYDESK_NOTIFY_ALLOW_PRIVATE" in html
    )
    assert db.session.scalar(select(NotificationEndpoint)) is None


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins(client, auth, allow_private, role):
    from admin.services.notifications.endpoints import add_endpoint

    hook = add_endpoint("http://127.0.0.1:9/hook").endpoint
    auth.login(email=f"{role}@example.org", role=role)
    token = auth.token("/")
    for path in ("/settings/notifications", f"/settings/notifications/{hook.id}"):
        assert client.get(path).status_code == 403
    for path in (
        "/settings/notifications",
        f"/settings/notifications/{hook.id}/rotate",
        f"/settings/notifications/{hook.id}/remove",
        "/settings/notifications/deliveries/1/resend",
    ):
        assert client.post(path, data={"url": "http://127.0.0.1:9/x", "csrf_token": token}).status_code == 403
    assert db.session.scalar(select(NotificationEndpoint.id)) == hook.id


def test_the_form_needs_its_csrf_token(client, auth, allow_private):
    auth.login(role="admin")
    assert client.post("/settings/notifications", data={"url": "http://127.0.0.1:9/x"}).status_code == 400
    assert db.session.scalar(select(NotificationEndpoint)) is None
